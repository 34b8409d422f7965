"""Backends under test. Triton runs through its CPU interpreter when no GPU is present."""

from __future__ import annotations

import importlib.util

import pytest
import torch

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()


def backend_params(*, triton: bool = True, cuda: bool = True):
    """pytest params for every backend an op has: cpu, triton (interpreted on CPU), cuda (GPU only)."""
    params = [pytest.param("cpu", id="cpu")]
    if triton:
        params.append(pytest.param("triton", id="triton", marks=pytest.mark.skipif(
            not HAS_TRITON, reason="triton not installed")))
    if cuda:
        params.append(pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(
            not HAS_CUDA, reason="needs a CUDA device")))
    return params


def device_for(backend: str) -> torch.device:
    """Where a backend's inputs live: CUDA for cuda; for triton CUDA if present, else the CPU interpreter."""
    if backend == "cuda" or (backend == "triton" and HAS_CUDA):
        return torch.device("cuda")
    return torch.device("cpu")
