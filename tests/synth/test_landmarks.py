"""68 landmarks: the iBUG layout on both built-in rigs, labels that match what is drawn, visibility."""

from __future__ import annotations

import math

import pytest
import torch

from facecore.rig import builtin_rig
from facecore.synth import render_batch, sample_params
from facecore.synth.landmarks import DEPTH_TOLERANCE, landmark_indices

RIGS = ["stylized", "ict"]
MIRROR = (
    [(k, 16 - k) for k in range(8)]
    + [(17 + k, 26 - k) for k in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
)
MIDLINE = (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)


@pytest.mark.parametrize("rig", RIGS)
def test_layout_is_ibug_68(rig):
    r = builtin_rig(rig)
    idx = landmark_indices(r)
    assert idx.shape == (68,) and len(set(idx.tolist())) == 68
    p = r.neutral[idx]
    for right, left in MIRROR:  # index 0.. on the subject's right (-x), mirror pairs at mirrored x
        assert p[right, 0] < 0 < p[left, 0], (right, left)
        assert abs(float(p[right, 0] + p[left, 0])) < 0.05 and abs(float(p[right, 1] - p[left, 1])) < 0.05
    assert p[list(MIDLINE), 0].abs().max() < 0.05
    y = p[:, 1]
    # top to bottom: brows, eyes, nose tip, upper lip, lower lip, chin
    assert y[17:27].min() > y[36:48].max() > y[30] > y[51] > y[57] > y[8]
    assert p[30, 2] == p[:, 2].max()  # the nose tip is the frontmost landmark
    # along each eye: outer corner, inner corner (right eye), inner, outer (left eye)
    assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]
    # upper lid above lower lid; outer lip contour outside the inner one
    assert p[37, 1] > p[41, 1] and p[44, 1] > p[46, 1]
    assert p[51, 1] > p[62, 1] and p[57, 1] < p[66, 1]


def test_rig_without_landmarks():
    r = builtin_rig("stylized")
    r.metadata = {k: v for k, v in r.metadata.items() if k != "landmarks68"}
    with pytest.raises(ValueError, match="landmarks68"):
        landmark_indices(r)
    out = render_batch(torch.zeros(1, 61), r, "clean", 16)
    assert torch.isnan(out["landmarks2d"]).all() and not out["landmarks_visible"].any()
    r.metadata["landmarks68"] = [0] * 67
    with pytest.raises(ValueError, match="68 vertex indices"):
        landmark_indices(r)


@pytest.mark.parametrize("rig", RIGS)
def test_visible_landmarks_lie_on_the_drawn_face(rig):
    r = builtin_rig(rig)
    p = sample_params(6, 11, "expressive")
    out = render_batch(p, r, "wild", 96, seed=11, maps=True)
    idx = landmark_indices(r)
    xy, vis = out["landmarks2d"], out["landmarks_visible"]
    assert vis.float().mean() > 0.6
    # a visible landmark: a triangle with the landmark vertex as a corner is drawn within 1 px, and the
    # drawn depth there is the landmark's own depth (its camera-space z)
    from facecore.synth.scene import drawn_triangles, materials_for, resolve_scene

    tri = drawn_triangles(r, materials_for(r, resolve_scene("wild"))).long()
    E = out["camera"]["extrinsics"]
    z = (out["landmarks3d"] @ E[:, :3, :3].transpose(1, 2) + E[:, None, :3, 3])[..., 2]
    from facecore import ops
    from facecore.synth.identity import deform_batch
    from facecore.synth.render import _transform

    verts = deform_batch(p, r, out["identity"])
    clip = _transform(out["camera"]["projection"], verts).contiguous()
    tid = ops.rasterize(clip, tri.int(), (96, 96))[..., 3].round().long() - 1
    assert torch.equal(tid >= 0, out["mask"])
    for b, k in vis.nonzero().tolist():
        ix, iy = math.floor(xy[b, k, 0]), math.floor(xy[b, k, 1])
        win = tid[b, max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2].reshape(-1)
        win = win[win >= 0]
        incident = bool((tri[win] == idx[k]).any())
        d = out["depth"][b, max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2]
        d = d[d > 0]
        assert d.numel() and (incident or float(z[b, k] - d.min()) <= DEPTH_TOLERANCE + 1e-4), (b, k)
    # and the invisible ones inside the image are really hidden: none of their triangles is drawn near
    # them and what is drawn there is well in front
    hidden = 0
    for b, k in (~vis).nonzero().tolist():
        ix, iy = math.floor(xy[b, k, 0]), math.floor(xy[b, k, 1])
        if 0 <= ix < 96 and 0 <= iy < 96:
            win = tid[b, max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2].reshape(-1)
            assert not (tri[win[win >= 0]] == idx[k]).any(), (b, k)
            d = out["depth"][b, max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2]
            d = d[d > 0]
            assert d.numel() == 0 or float(z[b, k] - d.min()) > DEPTH_TOLERANCE - 1e-4, (b, k)
            hidden += 1
    assert hidden > 0  # the expressive prior turns heads: some landmarks are occluded


@pytest.mark.parametrize("rig", RIGS)
def test_turned_heads_hide_the_far_side(rig):
    p = torch.zeros(2, 61)
    p[1, 52] = 0.55  # HeadYaw ~50 degrees toward the subject's left: the left side turns away
    out = render_batch(p, rig, "clean", 128, seed=0)
    vis = out["landmarks_visible"]
    assert int(vis[0].sum()) >= 56  # frontal neutral: nearly all visible
    far_jaw = list(range(11, 17))  # the subject's left jaw line (toward the ear)
    assert int(vis[1, far_jaw].sum()) < int(vis[0, far_jaw].sum())
    # the visible landmarks of the turned face: those of the near (right) side stay visible
    assert vis[1, [0, 1, 2, 36, 39, 48]].all()
