"""The shipped default-rig asset is exactly what ``python tools/build_default_rig.py`` generates."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from facecore.rig import FaceRig
from facecore.rig.default import ASSET

TOOL = Path(__file__).resolve().parents[2] / "tools" / "build_default_rig.py"


def load_tool():
    """The generator from the repository's tools/ (absent where only the installed package exists)."""
    if not TOOL.is_file():
        pytest.skip(f"{TOOL} not found (tests run outside a source checkout)")
    spec = importlib.util.spec_from_file_location("build_default_rig", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_runtime_package_does_not_ship_the_generator():
    import facecore.rig

    assert not (Path(facecore.rig.__file__).parent / "build_default.py").exists()
    # the tool regenerates the asset in the source tree; the installed package ships that same file
    shipped = ("facecore", "rig", "data", "default_rig.safetensors")
    assert load_tool().ASSET.parts[-4:] == ASSET.parts[-4:] == shipped


@pytest.mark.slow
def test_asset_is_regenerated_exactly(tmp_path):
    out = tmp_path / "rig.safetensors"
    load_tool().main(["--out", str(out)])
    fresh, shipped = FaceRig.load(out), FaceRig.load(ASSET)
    names = ("neutral", "triangles", "deltas", "colors", "identity_basis", "identity_pivots", "eye_centers")
    for name in names:
        same = torch.equal(getattr(fresh, name), getattr(shipped, name))
        assert same, f"{name} differs: regenerate with python tools/build_default_rig.py"
    assert fresh.groups.keys() == shipped.groups.keys()
    assert fresh.metadata == shipped.metadata
