"""Shared by the estimator tests: a tiny network configuration and one torch thread per test."""

from __future__ import annotations

import pytest

# A network small enough to train a few steps in a test (the real default is EstimatorConfig()).
TINY = dict(image_size=32, channels=[8, 8, 16, 16], dim=16, depth=1, heads=2, groups=4)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs at one torch thread (tests/conftest.py)."""
