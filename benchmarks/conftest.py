"""Shared benchmark fixtures: rigs (ICT-FaceKit from ../shared when present, the embedded default rig).

Run everything in one session so that ratios compare like with like on a noisy machine:
    pytest benchmarks/ --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACECORE_SHARED_DATA", REPO.parent / "shared" / "data"))
ICT_DIR = SHARED_DATA / "ict-facekit" / "FaceXModel"
HAS_CUDA = torch.cuda.is_available()
# Threads for facecore's CPU kernels (they use torch's setting); rows that say "-1t" set 1 themselves.
BENCH_THREADS = int(os.environ.get("FACECORE_BENCH_THREADS", min(2, os.cpu_count() or 1)))


@functools.cache
def load_rig(name: str):
    """A FaceRig by name ("ict" or "default"), loaded once per session; skips when unavailable."""
    import facecore.rig as rigs

    if name == "ict":
        if not (ICT_DIR / "generic_neutral_mesh.obj").exists():
            pytest.skip(f"ICT-FaceKit not found at {ICT_DIR}")
        return rigs.load_ict(ICT_DIR)
    return rigs.default_rig()


def record_rate(benchmark, key: str, amount: float, stat: str = "median") -> None:
    """``extra_info[key] = amount / seconds`` of the run's ``stat``; nothing under --benchmark-disable
    (the timings are not kept then, and a smoke run should not fail on it)."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info[key] = round(amount / getattr(stats.stats, stat), 4)


def pytest_configure(config):
    # Kernels use torch's thread setting; benchmarks pin it so tables are comparable between runs.
    torch.set_num_threads(BENCH_THREADS)
