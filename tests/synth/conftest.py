"""Shared fixtures of the dataset tests: one small dataset written once per session."""

from __future__ import annotations

import pytest

# Small and fast: the stylised rig at 32x32; 7 samples in shards of 3 (the last one short).
SMALL = dict(rig="stylized", resolution=32, samples_per_shard=3, batch=2)


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    """(folder, write_dataset's result) of 7 samples with seed 5, shared by the read-only tests."""
    from facecore.synth.dataset import write_dataset

    out = tmp_path_factory.mktemp("ds") / "faces"
    return out, write_dataset(out, 7, seed=5, **SMALL)
