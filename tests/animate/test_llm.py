"""The llm generator on a tiny randomly initialised causal LM built from a config (no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facecore._names import NAMES
from facecore.io import SYSTEM_PROMPT, make_requests, parse_response

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")

from facecore.animate.llm import LLMGenerator, allowed_values  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer Llama with a byte-level BPE tokenizer trained here on KeyframeFace-like text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-llm")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [SYSTEM_PROMPT, make_requests(["a smile", "a frown"], "a room", "joy")[0].user_prompt(),
              json.dumps({n: 0.25 for n in NAMES}), "0.1 0.25 -0.5 1.0 0.05 -0.75"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


def check_answer(gen: LLMGenerator, key: str, values: np.ndarray) -> None:
    obj = json.loads(gen.last_response)  # always strict JSON
    assert list(obj) == [key] and list(obj[key]) == list(NAMES)
    np.testing.assert_array_equal(parse_response(gen.last_response, strict=True)[key], values)
    assert (values[:52] >= 0).all() and (values[:52] <= 1).all()
    assert (values[52:] >= -1).all() and (values[52:] <= 1).all()


def test_greedy_output_is_valid_json_with_all_channels(tiny_model):
    gen = LLMGenerator(tiny_model)
    keys = gen.generate(["The gaze is lowered.", "A broad smile."], background="a room", emotion="joy")
    assert keys.shape == (2, 61) and keys.dtype == np.float32
    check_answer(gen, "Keyframe_two", keys[1])


def test_sampling_stays_valid(tiny_model):
    gen = LLMGenerator(tiny_model, temperature=3.0, seed=1)
    req = make_requests(["a smile"])[0]
    v = gen.generate_one(req)
    check_answer(gen, "Keyframe_one", v)
    assert len(set(v.tolist())) > 3  # high temperature: the values vary


@pytest.mark.parametrize("favoured, expect_blend, expect_pose", [("0", 0.0, 0.0), ("1", 1.0, 1.0),
                                                                 ("-", 1.0, -1.0)])
def test_values_follow_the_model(tiny_model, favoured, expect_blend, expect_pose):
    """With an LM head that always prefers one token, decoding yields the matching extreme value."""
    gen = LLMGenerator(tiny_model)
    vocab = gen.tokenizer.get_vocab()
    target = gen.tokenizer.convert_tokens_to_ids(favoured)
    assert target in vocab.values()
    logits = torch.zeros(len(gen.tokenizer))
    logits[target] = 10.0
    if favoured == "-":  # "-" where allowed (pose), else prefer "1" over "0"
        logits[gen.tokenizer.convert_tokens_to_ids("1")] = 5.0

    class Fixed(torch.nn.Module):
        def forward(self, h):
            return logits.expand(*h.shape[:-1], -1)

    gen.model.lm_head = Fixed()
    v = gen.generate_one(make_requests(["anything"])[0])
    check_answer(gen, "Keyframe_one", v)
    assert np.allclose(v[:52], expect_blend) and np.allclose(v[52:], expect_pose)


def test_lora_adapter(tiny_model, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft.get_peft_model(base, cfg).save_pretrained(tmp_path / "adapter")
    plain = LLMGenerator(tiny_model)
    adapted = LLMGenerator(tiny_model, adapter=tmp_path / "adapter")
    ids = torch.tensor([plain.tokenizer.encode("Keyframe One: a smile")])
    with torch.no_grad():
        assert not torch.allclose(plain.model(input_ids=ids).logits, adapted.model(input_ids=ids).logits)
    v = adapted.generate_one(make_requests(["a smile"])[0])
    check_answer(adapted, "Keyframe_one", v)


def test_pipeline_and_bad_paths(tiny_model, tmp_path):
    from facecore.animate import animate

    gen = LLMGenerator(tiny_model)
    tr = animate({"keyframes": ["a smile"], "fps": 10}, generator=gen, secondary=False)
    assert tr.params.shape[1] == 61 and len(tr) > 5
    with pytest.raises(FileNotFoundError, match="config.json"):
        LLMGenerator(tmp_path)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        LLMGenerator(tiny_model, adapter=tmp_path)


def test_allowed_values_are_in_range():
    for signed, lo in ((False, 0.0), (True, -1.0)):
        vals = [float(v) for v in allowed_values(signed)]
        assert min(vals) == lo and max(vals) == 1.0
        assert {0.25, 0.5, 0.05} <= set(vals)


def test_cli_llm_generator(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from facecore.cli import app

    script = tmp_path / "s.yaml"
    script.write_text("fps: 8\nkeyframes: [a smile]\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["animate", str(script), "-o", str(out), "--generator", "llm", "--model",
                                 str(tiny_model), "--no-video", "--resolution", "32", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (out / "s.csv").exists() and (out / "keyframes.jsonl").exists()
