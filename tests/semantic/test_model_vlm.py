"""The tiny VLM of facecore.semantic: tokenizer, fused vs plain loss, facecore attention vs eager,
constrained decoding from a random model."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from facecore import arkit, synth  # noqa: E402
from facecore.io.semanticface import parse_semanticface  # noqa: E402
from facecore.semantic import data as sd  # noqa: E402
from facecore.semantic.decoding import AnswerGrammar, constrained_decode  # noqa: E402
from facecore.semantic.model import (  # noqa: E402
    VLMConfig,
    build_vlm,
    decoder_hidden,
    num_image_tokens,
    pixel_values,
    set_attn_implementation,
)
from facecore.semantic.tokenizer import (  # noqa: E402
    VALUE_STRINGS,
    section_headers,
    train_tokenizer,
)
from facecore.semantic.training import answer_loss  # noqa: E402

TINY = VLMConfig(image_size=32, patch_size=8, vision_hidden=32, vision_layers=1, vision_heads=2,
                 text_hidden=48, text_layers=1, text_heads=4, text_kv_heads=2)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(sd.tokenizer_corpus(12), 520)


@pytest.fixture(scope="module")
def batch(tok):
    b = sd.render(sd.RenderSpec(resolution=32, identity_pool=2), 0, 2)
    torch.manual_seed(0)
    model = build_vlm(TINY, tok)
    n = num_image_tokens(model, TINY.image_size)
    ids, labels = sd.text_batch(tok, b["params"], "T1", n)
    return model, ids, labels, pixel_values(b["image"], TINY.image_size), n


def test_tokenizer_is_deterministic_and_keeps_values_and_titles_whole(tok):
    again = train_tokenizer(sd.tokenizer_corpus(12), 520)
    assert again.get_vocab() == tok.get_vocab()
    for v in VALUE_STRINGS:
        assert len(tok.encode(v, add_special_tokens=False)) == 1, v
    for h in section_headers():
        assert len(tok.encode(h, add_special_tokens=False)) == 1, h
    text = sd.answer(synth.sample_params(1, 3)[0])
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_answer_matches_stage1_answer_text_and_pieces_tokenize_independently(tok):
    from facecore.semantic import answer_text

    p = synth.sample_params(3, 7)
    for row in p:
        assert sd.answer(row, "T1") == answer_text(row)
        pieces = sd.answer_pieces(row, "T1")
        assert sd.encode_pieces(tok, pieces) == tok.encode("".join(pieces), add_special_tokens=False)


def test_tokenizer_rejects_a_too_small_vocabulary():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["a b"], 10)


def test_fused_and_plain_loss_agree_in_value_and_gradient(batch):
    model, ids, labels, pv, _ = batch
    losses, grads = [], []
    for kind in ("fused", "plain"):
        model.zero_grad()
        loss = answer_loss(model, ids, labels, pv, kind)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    # float32, a few thousand rows: the two paths sum the same terms in different orders
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _decoder_pass(model, impl, ids, pv, mask, upstream):
    set_attn_implementation(model, impl)
    model.zero_grad()
    h = decoder_hidden(model, ids, pv, attention_mask=mask)
    (h * upstream).sum().backward()
    keep = slice(None) if mask is None else mask.bool()
    return h.detach()[keep], [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("padded", [False, True])
def test_facecore_attention_matches_eager_and_sdpa_forward_and_backward(batch, padded):
    model, ids, _, pv, n = batch
    # float64 (facecore's CPU kernel takes it), so the comparison shows the maths, not summation order
    model, pv = copy.deepcopy(model).double(), pv.double()
    mask = None
    if padded:  # a padding mask makes transformers build a 4-D boolean mask (facecore's bias path)
        mask = torch.ones_like(ids)
        mask[1, -5:] = 0
    upstream = torch.randn(*ids.shape, TINY.text_hidden, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)
    fc = _decoder_pass(model, "facecore", ids, pv, mask, upstream)
    sdpa = _decoder_pass(model, "sdpa", ids, pv, mask, upstream)
    eager = _decoder_pass(model, "eager", ids, pv, mask, upstream)
    set_attn_implementation(model, "facecore")
    assert len(fc[1]) == len(eager[1]) == len(sdpa[1]) > 0
    # SDPA computes in float64 throughout: agreement to float64 rounding
    torch.testing.assert_close(fc[0], sdpa[0], rtol=1e-10, atol=1e-10)
    scale = max(float(g.abs().max()) for g in sdpa[1])  # some are 0 in exact arithmetic (key biases)
    for a, b in zip(fc[1], sdpa[1]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11 * scale)
    # transformers' eager path takes the softmax in float32 (then casts back): float32-level agreement
    torch.testing.assert_close(fc[0], eager[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(fc[1], eager[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * scale)


def test_unknown_attention_implementation_is_refused():
    with pytest.raises(ValueError, match="attn_implementation"):
        VLMConfig(attn_implementation="flash")


def test_constrained_decoding_of_a_random_model_always_parses(tok):
    g = AnswerGrammar(tok)
    imgs = torch.randint(0, 256, (3, 40, 36, 3), dtype=torch.uint8)
    for seed in range(2):
        torch.manual_seed(seed)
        model = build_vlm(TINY, tok)
        n = num_image_tokens(model, TINY.image_size)
        prompt = torch.tensor([sd.prompt_ids(tok, n)] * 3)
        pv = pixel_values(imgs, TINY.image_size)
        for budget in (0, 8, 60):
            for d in constrained_decode(model, g, prompt, pv, max_analysis_tokens=budget):
                analysis, params = parse_semanticface(d.text, strict=budget > 0)
                obj = json.loads(d.text[d.text.rindex("{"):])
                assert list(obj) == list(arkit.NAMES)
                assert np.array_equal(params, d.params)
                assert ((params >= arkit.LOW) & (params <= arkit.HIGH)).all()
                if budget:
                    assert {"expression_category", "muscle_movements", "emotional_implication",
                            "symmetry"} <= set(analysis)


def test_nucleus_sampling_follows_the_truncated_softmax():
    from facecore.semantic.decoding import _Chooser

    logits = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0]).log()  # the last one is -inf: never allowed
    choose = _Chooser(1.0, 0.75, seed=0)  # the nucleus holding 0.75 is {0.5, 0.3}
    counts = np.bincount([choose(logits) for _ in range(4000)], minlength=5) / 4000
    assert counts[2:].sum() == 0
    assert abs(counts[0] - 0.625) < 0.03 and abs(counts[1] - 0.375) < 0.03
    hot = _Chooser(2.0, 1.0, seed=1)  # temperature 2 flattens: p ∝ sqrt(p)
    counts = np.bincount([hot(logits) for _ in range(4000)], minlength=5) / 4000
    want = np.sqrt([0.5, 0.3, 0.15, 0.05])
    assert counts[4] == 0 and np.abs(counts[:4] - want / want.sum()).max() < 0.03
    assert _Chooser(0.0, 1.0, seed=0)(logits) == 0  # greedy


def test_sampled_constrained_decoding_parses_and_reproduces(tok):
    g = AnswerGrammar(tok)
    torch.manual_seed(0)
    model = build_vlm(TINY, tok)
    n = num_image_tokens(model, TINY.image_size)
    prompt = torch.tensor([sd.prompt_ids(tok, n)] * 3)
    pv = pixel_values(torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8), TINY.image_size)

    def texts(**kw):
        return [d.text for d in constrained_decode(model, g, prompt, pv, max_analysis_tokens=40, **kw)]

    greedy, sampled = texts(), texts(temperature=1.0, seed=3)
    for text in sampled:
        _, params = parse_semanticface(text, strict=True)
        assert ((params >= arkit.LOW) & (params <= arkit.HIGH)).all()
    assert sampled == texts(temperature=1.0, seed=3)  # a seed reproduces its answers
    assert sampled != texts(temperature=1.0, seed=4) and sampled != greedy
    assert texts(temperature=1.0, top_p=1e-9) == greedy  # a nucleus of one token is the argmax
    for bad, match in (({"temperature": -1.0}, "temperature must be >= 0"), ({"top_p": 0.0}, "top_p"),
                       ({"top_p": 1.5}, "top_p"), ({"temperature": float("nan")}, "finite")):
        with pytest.raises(ValueError, match=match):
            texts(**bad)


def test_pixel_values_checks_and_normalises():
    x = pixel_values(np.full((20, 30, 3), 255, np.uint8), 16)
    assert x.shape == (1, 3, 16, 16) and torch.allclose(x, torch.ones_like(x))
    with pytest.raises(ValueError, match="images must be"):
        pixel_values(np.zeros((2, 2, 2, 2, 2), np.uint8), 16)


def test_vlm_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VLMConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="unknown VLMConfig"):
        VLMConfig.from_dict({"layers": 2})
