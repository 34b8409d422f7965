"""The shipped default-rig asset is exactly what ``python -m facecore.rig.build_default`` generates."""

from __future__ import annotations

import pytest
import torch

from facecore.rig import FaceRig
from facecore.rig.default import ASSET


@pytest.mark.slow
def test_asset_is_regenerated_exactly(tmp_path):
    from facecore.rig import build_default

    out = tmp_path / "rig.safetensors"
    build_default.main(["--out", str(out)])
    fresh, shipped = FaceRig.load(out), FaceRig.load(ASSET)
    names = ("neutral", "triangles", "deltas", "colors", "identity_basis", "identity_pivots", "eye_centers")
    for name in names:
        same = torch.equal(getattr(fresh, name), getattr(shipped, name))
        assert same, f"{name} differs: regenerate with python -m facecore.rig.build_default"
    assert fresh.groups.keys() == shipped.groups.keys()
    assert fresh.metadata == shipped.metadata
