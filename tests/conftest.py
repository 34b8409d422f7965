"""Shared fixtures: the reference data beside the repository, seeded RNGs, device lists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run through the CPU interpreter without a GPU; must be set before triton is imported.
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACECORE_SHARED_DATA", REPO.parent / "shared" / "data"))
ICT_DIR = SHARED_DATA / "ict-facekit" / "FaceXModel"
KEYFRAMEFACE_DIR = SHARED_DATA / "keyframeface"

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


@pytest.fixture
def ict_dir() -> Path:
    if not (ICT_DIR / "generic_neutral_mesh.obj").exists():
        pytest.skip(f"ICT-FaceKit not found at {ICT_DIR}")
    return ICT_DIR


@pytest.fixture
def keyframeface_dir() -> Path:
    if not (KEYFRAMEFACE_DIR / "example.jsonl").exists():
        pytest.skip(f"KeyframeFace examples not found at {KEYFRAMEFACE_DIR}")
    return KEYFRAMEFACE_DIR


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh-seeded generator per test: inputs differ between runs (seed printed on failure)."""
    seed = int.from_bytes(os.urandom(4), "little")
    g = torch.Generator().manual_seed(seed)
    print(f"torch generator seed: {seed}")
    return g


@pytest.fixture
def one_thread():
    """torch at one thread for the test (tiny trainings: no thread-pool overhead, no oversubscription
    when tests run beside other work); the previous setting is restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
