"""Preference-round speed (issue 14): one round of the loop and where its time goes.

    pytest benchmarks/test_prefer.py --benchmark-only --benchmark-min-rounds=3

* ``round``: :func:`facecore.prefer.run_round` on the default estimator network (96^2 input, untrained
  weights: speed does not depend on them) with 64 images, k = 6 candidates, 500 judged pairs x 2 regions
  (1,000 judgments, simulated pool, in-process), the reward model and 20 DPO steps of batch 32, torch
  at 2 threads. ``extra_info`` holds the per-stage seconds of the last run (images, policy, candidates,
  render, judge, reward, dpo); the per-judgment cost scales the round to 2,000 pairs.
* ``render``: canonical-avatar renders (64^2) of 64 candidates, the judging path's main cost.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.threads import torch_threads
from facecore.estimator import Estimator
from facecore.prefer import CanonicalAvatar, RoundConfig, run_round


@pytest.fixture(scope="module")
def avatar():
    return CanonicalAvatar("ict", 64)


def test_round_cpu(benchmark, avatar):
    torch.manual_seed(0)
    policy = Estimator()
    cfg = RoundConfig(images=64, k=6, pairs=500, relabel_pairs=500, reward_steps=150, steps=20, batch_size=32)
    benchmark.group = "prefer round cpu 2t"
    timing = {}

    def run():
        with torch_threads(2):
            res = run_round(policy, cfg, 1, avatar=avatar)
        timing.update(res.metrics["timing"])

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update({f"seconds_{k}": round(v, 3) for k, v in timing.items()},
                                judgments=cfg.pairs * 2)


@pytest.mark.parametrize("B", [64])
def test_render_candidates_cpu(benchmark, avatar, B):
    from facecore.synth import sample_params

    p = sample_params(B, 3)
    benchmark.group = "prefer canonical render cpu 2t"
    benchmark.extra_info.update(batch=B, resolution=64)

    def run():
        with torch_threads(2):
            avatar.render(p)

    benchmark(run)
