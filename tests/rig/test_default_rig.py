"""The shipped default rig: topology, winding, and that the shapes do what ARKit's reference says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore.arkit import BLENDSHAPES
from facecore.rig import default_rig

from ._mesh import boundary_loops, close_loops, consistently_oriented, edge_use, signed_volume, submesh


@pytest.fixture(scope="module")
def rig():
    return default_rig()


@pytest.fixture(scope="module")
def mesh(rig):
    return rig.neutral.numpy().astype(np.float64), rig.triangles.numpy().astype(np.int64)


def delta(rig, name):
    return rig.dense_deltas()[BLENDSHAPES.index(name)].numpy().astype(np.float64)


def test_size_and_contents(rig):
    assert 5_000 <= rig.num_vertices <= 20_000
    assert rig.channels == BLENDSHAPES and rig.missing_channels == ()
    for g in (
        "skin",
        "left_eye",
        "right_eye",
        "upper_teeth",
        "lower_teeth",
        "tongue",
        "mouth_interior",
        "eye_sockets",
    ):
        assert rig.groups[g].numel() > 0, g
    assert torch.isfinite(rig.neutral).all() and torch.isfinite(rig.dense_deltas()).all()
    assert torch.isfinite(rig.identity_basis).all()
    assert rig.metadata["units"] == "cm" and rig.metadata["up"] == "+y" and rig.metadata["forward"] == "+z"
    # Left eye on the subject's left (+x), eye centres at the eyeball sphere centres.
    assert rig.eye_centers[0, 0] > 0 > rig.eye_centers[1, 0]
    for i, g in enumerate(("left_eye", "right_eye")):
        r = (rig.neutral[rig.groups[g]] - rig.eye_centers[i]).norm(dim=1)
        assert 1.1 < float(r.min()) and float(r.max()) < 1.35
    # The whole asset stays small.
    from facecore.rig.default import ASSET

    assert ASSET.stat().st_size < 4e6


def test_skin_is_watertight_apart_from_eye_openings(rig, mesh):
    v, f = mesh
    ids = torch.cat([rig.groups[g] for g in ("skin", "eye_sockets", "mouth_interior")]).numpy()
    skin = submesh(f, ids)
    _, counts, _ = edge_use(skin)
    assert counts.max() == 2, "an edge is shared by more than two triangles"
    assert consistently_oriented(skin)
    loops = boundary_loops(skin)
    # The only openings are the far ends of the two eye-socket sleeves (behind the eyeballs).
    assert len(loops) == 2
    sockets = set(rig.groups["eye_sockets"].tolist())
    for loop in loops:
        assert set(loop) <= sockets
        assert len({np.sign(v[i, 0]) for i in loop}) == 1
    vc, fc = close_loops(v, skin)
    assert signed_volume(vc, fc) > 1000  # cm^3, outward winding (a head is a few litres)
    # The skin proper has exactly three openings: the two lid margins and the lip line.
    assert len(boundary_loops(submesh(f, rig.groups["skin"].numpy()))) == 3


@pytest.mark.parametrize("part", ["left_eye", "right_eye", "upper_teeth", "lower_teeth", "tongue"])
def test_closed_parts_wind_outward(rig, mesh, part):
    v, f = mesh
    sub = submesh(f, rig.groups[part].numpy())
    _, counts, _ = edge_use(sub)
    assert (counts == 2).all() and consistently_oriented(sub)
    assert signed_volume(v, sub) > 0


def test_skin_normals_point_outward(rig, mesh):
    v, f = mesh
    skin = submesh(f, rig.groups["skin"].numpy())
    n = np.cross(v[skin[:, 1]] - v[skin[:, 0]], v[skin[:, 2]] - v[skin[:, 0]])
    centre = np.array([0.0, -1.0, -0.5])
    out = (n * (v[skin].mean(1) - centre)).sum(1) > 0
    assert out.mean() > 0.97


def _x_centroid(rig, d):
    m = np.linalg.norm(d, axis=1)
    return float((m * rig.neutral[:, 0].numpy()).sum() / m.sum())


def _mirror_map(v):
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(v).query(v * np.array([-1.0, 1, 1]))
    assert dist.max() < 1e-4, "the default rig should be mirror symmetric"
    return idx


LEFT = [n for n in BLENDSHAPES if n.endswith("Left") and n not in ("JawLeft", "MouthLeft")]


@pytest.mark.parametrize("name", LEFT)
def test_left_shapes_move_the_left_side(rig, mesh, name):
    v, _ = mesh
    d = delta(rig, name)
    assert np.abs(d).max() > 0.1, f"{name} does not move"
    assert _x_centroid(rig, d) > 0.5
    right = delta(rig, name[:-4] + "Right")
    mirror = _mirror_map(v)
    np.testing.assert_allclose(right, d[mirror] * np.array([-1.0, 1, 1]), atol=1e-5)


def test_jaw_and_mouth_directions(rig, mesh):
    v, _ = mesh
    for name, sign in (("JawLeft", 1), ("JawRight", -1), ("MouthLeft", 1), ("MouthRight", -1)):
        d = delta(rig, name)
        moved = np.linalg.norm(d, axis=1) > 0.2
        assert sign * d[moved, 0].mean() > 0.2, name
    d = delta(rig, "JawForward")
    assert d[:, 2].max() > 0.5


def test_eye_blink_closes_upper_lid_onto_lower(rig, mesh):
    v, _ = mesh
    for side in ("left", "right"):
        up, lo = rig.groups[f"{side}_upper_lid"].numpy(), rig.groups[f"{side}_lower_lid"].numpy()
        d = delta(rig, "EyeBlinkLeft" if side == "left" else "EyeBlinkRight")
        before = np.abs(v[up][:, None] - v[lo][None]).sum(-1)
        closed = v + d
        gap_before = np.linalg.norm(v[up][:, None] - v[lo][None], axis=-1).min(1).max()
        gap_after = np.linalg.norm(closed[up][:, None] - closed[lo][None], axis=-1).min(1).max()
        assert gap_before > 0.6 and gap_after < 0.05, (side, gap_before, gap_after)
        assert (d[up, 1] <= 1e-6).all() and d[up, 1].min() < -0.4  # the upper lid comes down
        del before


def test_blink_keeps_lids_outside_the_eyeball(rig, mesh):
    v, _ = mesh
    for i, side in enumerate(("Left", "Right")):
        for name in ("EyeBlink", "EyeWide", "EyeSquint", "EyeLookDown", "EyeLookUp"):
            p = v + delta(rig, name + side)
            lid = np.concatenate([rig.groups[g].numpy() for g in ("eye_sockets", "skin")])
            r = np.linalg.norm(p[lid] - rig.eye_centers[i].numpy(), axis=1)
            assert r.min() > 1.2, (name + side, r.min())


def test_eye_look_rotates_the_eyeball(rig, mesh):
    v, _ = mesh
    idx = rig.groups["left_eye"].numpy()
    c = rig.eye_centers[0].numpy()
    front = idx[np.argmax(v[idx, 2])]
    for name, axis, sign in (
        ("EyeLookUpLeft", 1, 1),
        ("EyeLookDownLeft", 1, -1),
        ("EyeLookOutLeft", 0, 1),
        ("EyeLookInLeft", 0, -1),
    ):
        d = delta(rig, name)
        assert sign * d[front, axis] > 0.3, name
        r = np.linalg.norm(v[idx] + d[idx] - c, axis=1)  # rigid: radii preserved
        np.testing.assert_allclose(r, np.linalg.norm(v[idx] - c, axis=1), atol=1e-4)
        assert np.abs(d[rig.groups["right_eye"].numpy()]).max() == 0


def test_jaw_open_moves_chin_down_and_opens_mouth(rig, mesh):
    v, _ = mesh
    d = delta(rig, "JawOpen")
    lip_y = v[rig.groups["lower_lip_line"].numpy(), 1].mean()
    skin = rig.groups["skin"].numpy()
    below = skin[(v[skin, 1] < lip_y - 2.0) & (np.abs(v[skin, 0]) < 0.5)]
    chin = below[np.argmax(v[below, 2])]
    assert d[chin, 1] < -1.5
    up, lo = rig.groups["upper_lip_line"].numpy(), rig.groups["lower_lip_line"].numpy()
    mid_up, mid_lo = up[np.argmin(np.abs(v[up, 0]))], lo[np.argmin(np.abs(v[lo, 0]))]
    opening = (v[mid_up, 1] + d[mid_up, 1]) - (v[mid_lo, 1] + d[mid_lo, 1])
    assert opening > 1.5
    # Lower teeth and tongue go with the jaw, upper teeth stay.
    assert np.abs(d[rig.groups["upper_teeth"].numpy()]).max() == 0
    assert d[rig.groups["lower_teeth"].numpy(), 1].mean() < -1.0


def test_smile_pulls_corners_up_and_back(rig, mesh):
    v, _ = mesh
    d = delta(rig, "MouthSmileLeft")
    up = rig.groups["upper_lip_line"].numpy()
    corner = up[np.argmax(v[up, 0])]
    assert d[corner, 1] > 0.4 and d[corner, 2] < -0.2 and d[corner, 0] > 0


def test_tongue_out_and_cheek_puff(rig, mesh):
    v, _ = mesh
    t = rig.groups["tongue"].numpy()
    d = delta(rig, "TongueOut")
    lips_z = v[rig.groups["upper_lip_line"].numpy(), 2].max()
    assert (v[t, 2] + d[t, 2]).max() > lips_z + 0.5
    d = delta(rig, "CheekPuff")
    moved = np.linalg.norm(d, axis=1) > 0.3
    assert (np.sign(v[moved, 0]) * d[moved, 0] > 0).mean() > 0.9  # outward on both sides
    assert (v[moved, 0] > 0).any() and (v[moved, 0] < 0).any()


def test_deform_runs_on_default_rig(rig):
    from facecore import ops, reference

    params = torch.zeros(3, 61)
    params[0, BLENDSHAPES.index("JawOpen")] = 1
    params[1, 52:] = torch.tensor([0.3, -0.2, 0.1, 0.5, 0.2, 0, -0.4, 0.1, 0])
    params[2, :52] = 0.5
    out = ops.deform(params, rig)
    assert out.shape == (3, rig.num_vertices, 3) and torch.isfinite(out).all()
    torch.testing.assert_close(out, reference.deform(params, rig), atol=1e-4, rtol=1e-5)


def test_identity_controls(rig):
    assert len(rig.identity_names) >= 8
    wide = default_rig({"eye_spacing": 1.0})
    dx = wide.eye_centers[0, 0] - rig.eye_centers[0, 0]
    assert dx > 0.1 and torch.allclose(wide.eye_centers[1, 0], rig.eye_centers[1, 0] - dx)
    # Eyeballs stay spheres around the (moved) eye centres.
    r = (wide.neutral[wide.groups["left_eye"]] - wide.eye_centers[0]).norm(dim=1)
    r0 = (rig.neutral[rig.groups["left_eye"]] - rig.eye_centers[0]).norm(dim=1)
    torch.testing.assert_close(r, r0, atol=1e-4, rtol=0)
    many = default_rig(torch.linspace(-1.5, 1.5, len(rig.identity_names)))
    assert torch.isfinite(many.neutral).all()
    assert not torch.equal(many.neutral, rig.neutral)
