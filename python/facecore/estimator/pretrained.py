"""The estimator checkpoint that ships inside the package (``facecore/estimator/data/``).

It is trained by facecore itself with the one command in :mod:`facecore.estimator.training`'s docstring;
the training log (``metrics.jsonl``) lies beside it. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .model import Estimator

DATA = Path(__file__).resolve().parent / "data"
PRETRAINED = DATA / "estimator.safetensors"


def pretrained_path() -> Path:
    """Where the shipped checkpoint lives (whether or not it is there)."""
    return PRETRAINED


def load_pretrained(device: torch.device | str = "cpu") -> Estimator:
    """The shipped estimator in eval mode. FileNotFoundError (saying how to train one, or to pass a
    checkpoint) when this installation has none."""
    if not PRETRAINED.is_file():
        raise FileNotFoundError(
            f"no pretrained estimator in this installation ({PRETRAINED} is missing); train one with "
            "`facecore estimator train -o RUN` (see facecore.estimator.training) and pass "
            "RUN/estimator.safetensors as --model / Estimator.load(path)")
    return Estimator.load(PRETRAINED, device=device)
