"""The canonical avatar every candidate is shown on, and the region-wise image distance raters judge by.

Candidates are rendered on one fixed face -- a built-in rig (``"ict"`` by default) with its neutral
identity, a frontal camera framed on the 68 landmarks (brows to chin), default lights -- so that a judgment
compares expressions, not identities or viewpoints. With ``frontal=True`` the head pose channels are also
zeroed before rendering (truth and candidates alike), so the head always faces the camera: on this pixel
distance a head-pose offset of 0.05 moves a region's distance by about 0.3, as much as JawOpen 0 -> 1.5
and ten times BrowInnerUp 0 -> 0.3, so with the pose rendered every expression judgment is mostly a
judgment of the pose (measured in docs/prefer.md). The frontal render judges expressions and gaze only,
and the head pose is left to the estimator (see ``keep_pose`` / ``anchor_weight`` in
:class:`facecore.prefer.RoundConfig`). Each rasterized triangle belongs to one region:

* a vertex is ``"upper"`` when the upper-face blendshapes (:func:`facecore.arkit.group` ``"upper_face"``)
  move it more than the lower-face ones, ``"lower"`` otherwise; eyeballs are upper, teeth, gums and
  tongue lower; vertices no blendshape moves are split at the height of the nose (landmark 33);
* a triangle takes the region of the majority of its three vertices.

:func:`region_distances` is the rater's perceptual proxy: per region, the mean absolute difference of the
shaded colour and the surface normal over the pixels where that region is visible in either render
(weighted by antialiased coverage), so a region that is barely visible weighs little and a channel that
changes nothing on screen cannot be judged.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from .. import arkit

_SPLIT_LANDMARK = 33  # iBUG-68 nose bottom: static vertices above it are "upper"
_MOVE_EPS = 1e-4  # rig units (cm): below this summed |delta| a vertex counts as static


class CanonicalAvatar:
    """Render ARKit parameters on a fixed face with per-pixel region masks.

    ``rig``: a built-in name or a :class:`facecore.rig.FaceRig` (its neutral identity is used).
    ``resolution``: square side in pixels (64-96 keeps judging cheap on a CPU). ``margin``: framing
    margin around the moving face. ``frontal``: render every face with zero head pose (module docstring).
    """

    def __init__(self, rig="ict", resolution: int = 64, *, margin: float = 1.0, frontal: bool = False):
        from ..render import Camera, Renderer
        from ..rig import FaceRig, builtin_rig

        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 16 <= resolution <= 1024:
            raise ValueError("CanonicalAvatar: resolution must be an integer in [16, 1024], "
                             f"got {resolution!r}")
        if isinstance(rig, str):
            rig = builtin_rig(rig)
        if not isinstance(rig, FaceRig):
            raise TypeError(f"CanonicalAvatar: rig must be a built-in rig name or a FaceRig, got "
                            f"{type(rig).__name__}")
        self.rig = rig.to(dtype=torch.float32)
        self.resolution = resolution
        if not isinstance(frontal, bool):
            raise ValueError(f"CanonicalAvatar: frontal must be True or False, got {frontal!r}")
        self.frontal = frontal
        upper_v, frame = self._vertex_regions()
        tri = self.rig.triangles.long()
        # [T] True where the triangle is upper-face (majority of its vertices)
        self.triangle_upper = upper_v[tri].sum(1) >= 2
        camera = Camera.framing(self.rig.neutral[frame], resolution, margin=margin)
        self.renderer = Renderer(self.rig, camera, resolution)

    def _vertex_regions(self) -> tuple[torch.Tensor, torch.Tensor]:
        rig = self.rig
        mag = rig.deltas.norm(dim=-1)  # [52, V]
        up = mag[torch.from_numpy(np.array(arkit.group("upper_face")))].sum(0)
        lo = mag[torch.from_numpy(np.array(arkit.group("lower_face")))].sum(0)
        y = rig.neutral[:, 1]
        lm = rig.metadata.get("landmarks68")
        if lm is not None and len(lm) > _SPLIT_LANDMARK:
            y_split = float(rig.neutral[int(lm[_SPLIT_LANDMARK]), 1])
        else:  # no landmarks: halfway between the eyes and the lowest moving vertex
            moving_y = y[(up + lo) > _MOVE_EPS]
            y_split = 0.5 * (float(rig.eye_centers[:, 1].mean()) + float(moving_y.min()))
        # Motion decides where one half clearly dominates (3x), height elsewhere (static or shared).
        upper = torch.where(up > 3 * lo, True, torch.where(lo > 3 * up, False, y > y_split))
        upper = torch.where((up + lo) <= _MOVE_EPS, y > y_split, upper)
        for name in ("left_eye", "right_eye"):
            upper[rig.groups[name]] = True
        for name in ("teeth", "gums_tongue", "tongue"):
            if name in rig.groups:
                upper[rig.groups[name]] = False
        if lm is not None and len(lm) == 68:
            frame = torch.as_tensor([int(i) for i in lm])  # the 68 landmarks: brows to chin
        else:
            frame = torch.nonzero((up + lo) > _MOVE_EPS).squeeze(1)
        return upper, frame

    @torch.no_grad()
    def render(self, params) -> dict[str, torch.Tensor]:
        """``params [B, 61]`` (or ``[61]``) -> ``image`` ``[B, H, W, 3]`` (linear light), ``normal``
        ``[B, H, W, 3]``, ``alpha`` ``[B, H, W]`` and region masks ``upper``/``lower``/``face``
        ``[B, H, W]`` (coverage in [0, 1])."""
        p = torch.as_tensor(np.asarray(params, dtype=np.float32) if not isinstance(params, torch.Tensor)
                            else params, dtype=torch.float32)
        if p.dim() == 1:
            p = p.unsqueeze(0)
        if p.dim() != 2 or p.shape[1] != arkit.NUM_CHANNELS:
            raise ValueError(f"CanonicalAvatar.render: params must have shape [B, 61], got {list(p.shape)}")
        if not bool(torch.isfinite(p).all()):
            raise ValueError("CanonicalAvatar.render: params contain NaN or infinite values")
        low, high = torch.from_numpy(np.array(arkit.LOW)), torch.from_numpy(np.array(arkit.HIGH))
        p = torch.maximum(torch.minimum(p, high), low)
        if self.frontal:
            p = p.clone()
            p[:, torch.tensor([int(i) for i in arkit.group("head_pose")])] = 0.0
        out = self.renderer(p)
        alpha = out.alpha[..., 0].clamp(0, 1)
        tid = out.triangle_id
        up = torch.zeros_like(alpha, dtype=torch.bool)
        covered = tid >= 0
        up[covered] = self.triangle_upper[tid[covered]]
        upper = alpha * up
        lower = alpha * (covered & ~up)
        return {"image": out.image, "normal": out.normal, "alpha": alpha,
                "upper": upper, "lower": lower, "face": alpha}

    def png(self, params) -> list[bytes]:
        """PNG bytes (sRGB) of each row of ``params``: what a person is shown."""
        import imageio.v3 as iio

        from ..render import to_uint8

        img = to_uint8(self.render(params)["image"]).cpu().numpy()
        out = []
        for im in img:
            buf = io.BytesIO()
            iio.imwrite(buf, im, extension=".png")
            out.append(buf.getvalue())
        return out


def region_distances(candidate: dict[str, torch.Tensor], truth: dict[str, torch.Tensor],
                     regions=("upper", "lower")) -> torch.Tensor:
    """Per-region perceptual distance ``[B, R]`` between two :meth:`CanonicalAvatar.render` results of
    the same batch size (or a truth of batch 1, broadcast): the coverage-weighted mean over the pixels of
    the region (visible in either render) of ``|colour difference| + 0.5 |normal difference|``
    (summed over channels)."""
    for k in ("image", "normal", *regions):
        if k not in candidate or k not in truth:
            raise ValueError(f"region_distances: renders must hold {k!r} (CanonicalAvatar.render output)")
    diff = (candidate["image"] - truth["image"]).abs().sum(-1) + \
        0.5 * (candidate["normal"] - truth["normal"]).abs().sum(-1)  # [B, H, W]
    cols = []
    for r in regions:
        w = torch.maximum(candidate[r], truth[r])
        cols.append((diff * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1.0))
    return torch.stack(cols, 1)
