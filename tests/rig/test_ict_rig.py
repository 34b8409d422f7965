"""The ICT-FaceKit-derived built-in rig: the shipped asset, its licence, its shapes, and that
``tools/build_ict_rig.py`` rebuilds it exactly from ICT-FaceKit (when ../shared/data is present)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from facecore._names import BLENDSHAPES, NAMES
from facecore.rig import BUILTIN_RIGS, DEFAULT_RIG, FaceRig, builtin_rig, default_rig, ict_rig
from facecore.rig.default import ICT_ASSET, ICT_LICENSE
from tests.conftest import REPO, SHARED_DATA

ICT = SHARED_DATA / "ict-facekit"
needs_ict = pytest.mark.skipif(not (ICT / "FaceXModel").is_dir(), reason="needs ../shared/data/ict-facekit")


@pytest.fixture(scope="module")
def rig() -> FaceRig:
    return ict_rig()


def test_names_and_default():
    assert BUILTIN_RIGS == ("ict", "stylized")
    assert DEFAULT_RIG == "ict"
    assert builtin_rig("default").num_vertices == ict_rig().num_vertices
    assert builtin_rig("stylized").num_vertices == default_rig().num_vertices
    with pytest.raises(ValueError, match="unknown built-in rig 'nope'.*ict, stylized"):
        builtin_rig("nope")


def test_asset_shape_and_parts(rig):
    assert 9000 <= rig.num_vertices <= 11000
    assert rig.channels == tuple(BLENDSHAPES) and not rig.missing_channels
    for g in ("face", "head", "skin", "teeth", "gums_tongue", "tongue", "left_eye", "right_eye"):
        assert rig.groups[g].numel() > 0, g
    # The shells that render black when opaque are gone.
    assert not {"eye_occlusion", "lacrimal_fluid", "eye_blend", "eyelashes"} & set(rig.groups)
    assert len(rig.identity_names) == 20 and rig.identity_basis.shape == (20, rig.num_vertices, 3)
    # Every triangle has three distinct vertices and a non-zero area; no edge has more than two faces.
    t = rig.triangles.long()
    assert (t[:, 0] != t[:, 1]).all() and (t[:, 1] != t[:, 2]).all() and (t[:, 0] != t[:, 2]).all()
    p = rig.neutral.double()
    area = torch.linalg.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]]).norm(dim=1)
    assert area.min() > 1e-8
    e = torch.sort(torch.cat([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), dim=1).values
    _, counts = torch.unique(e, dim=0, return_counts=True)
    assert counts.max() <= 2


def test_licence_and_attribution_ship_with_the_asset(rig):
    text = ICT_LICENSE.read_text()
    assert "MIT License" in text and "USC Institute for Creative Technologies" in text
    assert "Permission is hereby granted" in text and "tools/build_ict_rig.py" in text
    assert "ICT-FaceKit-LICENSE.txt" in rig.metadata["license"]
    assert "USC Institute for Creative Technologies" in rig.metadata["attribution"]


def test_tongue_out_moves_the_tongue_out_and_nothing_else_much(rig):
    d = rig.deltas[BLENDSHAPES.index("TongueOut")]
    tongue = rig.groups["tongue"]
    assert d[tongue, 2].max() > 2.5  # the tip slides out by about 3 cm
    jaw = rig.deltas[BLENDSHAPES.index("JawOpen")]
    others = torch.ones(rig.num_vertices, dtype=torch.bool)
    others[tongue] = False
    # Outside the tongue it is a fraction of jawOpen (the mouth opens to let the tongue out).
    assert torch.allclose(d[others], 0.45 * jaw[others], atol=1e-3)  # rows under 10 um are stored as 0


def test_eyes_have_pupil_iris_sclera_and_rotate_rigidly(rig):
    for side, i in (("left_eye", 0), ("right_eye", 1)):
        ids = rig.groups[side]
        col = rig.colors[ids]
        lum = col.mean(1)
        assert lum.min() < 0.02 and lum.max() > 0.7  # a black pupil and a white sclera
        r = (rig.neutral[ids] - rig.eye_centers[i]).norm(dim=1)
        assert torch.allclose(r, r.mean().expand_as(r), rtol=1e-5)  # a sphere about the eye centre
    p = torch.zeros(1, len(NAMES))
    p[0, NAMES.index("LeftEyeYaw")] = 0.3
    out = rig.deform(p)[0]
    ids = rig.groups["left_eye"]
    r = (out[ids] - rig.eye_centers[0]).norm(dim=1)
    r0 = (rig.neutral[ids] - rig.eye_centers[0]).norm(dim=1)
    assert torch.allclose(r, r0, atol=1e-4)
    assert (out[ids] - rig.neutral[ids]).norm(dim=1).max() > 0.1


def test_eye_region_renders_without_black_shells(rig):
    """Around the eyes only the pupils are near-black (no occlusion shells or lash cards drawn opaque)."""
    from facecore.render import Camera, Renderer

    def dark_fraction(r: FaceRig) -> float:
        ec = r.eye_centers.double()
        c = ec.mean(0)
        cam = Camera.perspective(eye=(float(c[0]), float(c[1]), float(c[2]) + 60.0), target=tuple(c.tolist()),
                                 resolution=(96, 192), fov_y=float(np.degrees(2 * np.arctan(3.0 / 60.0))))
        out = Renderer(r, cam, background=(1.0, 1.0, 1.0), cull_backfaces=True)(torch.zeros(1, len(NAMES)))
        return float((out.image[0].mean(-1) < 0.03).double().mean())

    assert 0.0 < dark_fraction(rig) < 0.02  # the two pupils, nothing else


@needs_ict
def test_vertices_are_ict_vertices(rig):
    """Decimation keeps original vertices: the 68 landmarks are ICT's landmark vertices exactly."""
    from facecore.rig import load_ict

    src = load_ict(ICT, identity_modes=False)
    js = json.loads((ICT / "FaceXModel" / "vertex_indices.json").read_text())["idx_to_landmark_verts"]
    lm = rig.metadata["landmarks68"]
    assert len(lm) == 68
    assert torch.equal(rig.neutral[lm], src.neutral[js])
    k = BLENDSHAPES.index("JawOpen")
    assert torch.allclose(rig.deltas[k, lm], src.deltas[k, js], atol=1e-3)


@needs_ict
@pytest.mark.timeout(300)
def test_build_tool_reproduces_the_shipped_asset(tmp_path):
    spec = importlib.util.spec_from_file_location("build_ict_rig", REPO / "tools" / "build_ict_rig.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    built = tool.build(ICT)
    built.save(tmp_path / "ict.safetensors")
    assert (tmp_path / "ict.safetensors").read_bytes() == ICT_ASSET.read_bytes()
    tool.write_license(ICT, tmp_path / "LICENSE.txt")
    assert (tmp_path / "LICENSE.txt").read_text() == ICT_LICENSE.read_text()
