"""One training step of the tiny face-reading VLM: facecore (fused linear log-probs + facecore attention)
against the same model through transformers' own loss (full ``[B, L, V]`` logits + cross-entropy) with
its eager and SDPA attention; and the throughput of constrained decoding.

Shape: batch 4, 64 image tokens + 832 answer tokens (a T1 answer's length), vocabulary 8192, decoder
2 x 128, SigLIP tower 2 x 96 at 64². Memory: ``extra_info["peak_rss_mib"]``, the peak resident-set growth
during one step sampled every millisecond (torch's CPU allocations are invisible to tracemalloc), as in
benchmarks/test_linear_logprobs.py. Issue-15 goals: peak <= 50 % of eager, time <= SDPA.
"""

from __future__ import annotations

import pytest
import torch

from facecore.semantic import data as sd
from facecore.semantic.decoding import AnswerGrammar, constrained_decode
from facecore.semantic.model import (
    VLMConfig,
    build_vlm,
    num_image_tokens,
    pixel_values,
    set_attn_implementation,
)
from facecore.semantic.tokenizer import train_tokenizer
from facecore.semantic.training import answer_loss

from .conftest import record_rate
from .memory import peak_rss

B, ANSWER, VOCAB = 4, 832, 8192
CFG = VLMConfig(image_size=64, patch_size=8, vision_hidden=96, vision_layers=2, text_hidden=128,
                text_layers=2)


class _Vocab:
    """The ids build_vlm reads, for a vocabulary of VOCAB tokens (no text needed for a timing step)."""

    pad_token_id, bos_token_id, eos_token_id, unk_token_id, image_token_id = 0, 1, 2, 3, 4

    def __len__(self) -> int:
        return VOCAB


@pytest.fixture(scope="module")
def step_inputs():
    torch.manual_seed(0)
    model = build_vlm(CFG, _Vocab())
    n = num_image_tokens(model, CFG.image_size)
    g = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.full((B, n), 4), torch.randint(5, VOCAB, (B, ANSWER), generator=g)], 1)
    labels = ids.clone()
    labels[:, :n] = -100
    pv = torch.rand(B, 3, CFG.image_size, CFG.image_size, generator=g) * 2 - 1
    return model, ids, labels, pv


@pytest.mark.parametrize("impl", ["facecore", "eager", "sdpa"])
def test_semantic_train_step(benchmark, step_inputs, impl):
    model, ids, labels, pv = step_inputs
    set_attn_implementation(model, impl)
    benchmark.group = f"semantic step B{B} L{ids.shape[1]} V{VOCAB}"

    def step():
        model.zero_grad(set_to_none=True)
        if impl == "facecore":
            loss = answer_loss(model, ids, labels, pv, "fused")
        else:  # transformers' own path: lm_head over every position, then its cross-entropy
            loss = model(input_ids=ids, pixel_values=pv, labels=labels).loss
        loss.backward()

    step()  # warm-up (allocator, kernels)
    benchmark.extra_info["peak_rss_mib"] = round(min(peak_rss(step)[0] for _ in range(2)), 1)
    benchmark.extra_info["logits_mib"] = round(B * ids.shape[1] * VOCAB * 4 / 2**20, 1)
    benchmark.pedantic(step, rounds=3, iterations=1)
    set_attn_implementation(model, "facecore")


def test_constrained_decoding_tokens_per_second(benchmark):
    tok = train_tokenizer(sd.tokenizer_corpus(64), 1024)
    torch.manual_seed(0)
    model = build_vlm(CFG, tok)
    grammar = AnswerGrammar(tok)
    prompt = torch.tensor([sd.prompt_ids(tok, num_image_tokens(model, CFG.image_size))] * B)
    pv = pixel_values(torch.randint(0, 256, (B, 64, 64, 3), dtype=torch.uint8), CFG.image_size)
    benchmark.group = "semantic constrained decoding"
    counts = []

    def run():
        counts.append(sum(d.tokens for d in constrained_decode(model, grammar, prompt, pv,
                                                              max_analysis_tokens=128)))

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["tokens"] = counts[-1]
    record_rate(benchmark, "tokens_per_s", counts[-1], stat="mean")
