"""Shared by the prefer tests: a tiny estimator checkpoint, a small canonical avatar, one torch thread."""

from __future__ import annotations

import pytest
import torch

from ..estimator.conftest import TINY  # the estimator tests' tiny network, small enough for a few DPO steps


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs at one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from facecore.estimator import Estimator

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("prefer") / "tiny.safetensors"
    Estimator(**TINY).save(path)
    return path


@pytest.fixture(scope="session")
def avatar():
    from facecore.prefer import CanonicalAvatar

    return CanonicalAvatar("ict", 32)


def tiny_config(out, init, **kw):
    from facecore.prefer import RoundConfig

    base = dict(out=str(out), init=str(init), rounds=2, pool="sim:5", eval_pool="sim:5", images=12,
                eval_images=12, resolution=48, avatar_resolution=32, k=4, pairs=30, relabel_pairs=30,
                reward_steps=20, steps=8, batch_size=8, lr=1e-3)
    base.update(kw)
    return RoundConfig(**base)
