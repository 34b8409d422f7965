"""The judged face regions: which ARKit channels each one owns and which region a judging mode asks about.

A pair is judged per region: ``"upper"`` (brows, eyes, eye gaze, cheek squint, nose) and ``"lower"``
(jaw, mouth, cheek puff, tongue), or ``"face"`` (everything) for the whole-face ablation. Head pose moves
the whole face, so its three channels belong to both ``"upper"`` and ``"lower"``.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import arkit

REGIONS = ("upper", "lower", "face")
MODES = {"regionwise": ("upper", "lower"), "face": ("face",)}
"""Judging mode -> the regions asked about per pair."""


def _channels(region: str) -> np.ndarray:
    if region == "upper":
        idx = [arkit.group("upper_face"), arkit.group("eye_pose"), arkit.group("head_pose")]
    elif region == "lower":
        idx = [arkit.group("lower_face"), arkit.group("head_pose")]
    elif region == "face":
        idx = [np.arange(arkit.NUM_CHANNELS)]
    else:
        raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
    return np.unique(np.concatenate([np.asarray(i, dtype=np.int64) for i in idx]))


REGION_CHANNELS: dict[str, np.ndarray] = {r: _channels(r) for r in REGIONS}
"""Region -> sorted channel indices (into :data:`facecore.arkit.NAMES`)."""


def check_mode(mode: str) -> tuple[str, ...]:
    """The regions of judging ``mode`` (``"regionwise"`` or ``"face"``); ValueError otherwise."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return MODES[mode]


def channel_mask(regions, device=None) -> torch.Tensor:
    """``[R, 61]`` float 0/1 mask of ``regions`` (names of :data:`REGIONS`), the form
    :func:`facecore.losses.region_dpo_loss` takes."""
    regions = list(regions)
    mask = torch.zeros(len(regions), arkit.NUM_CHANNELS)
    for i, r in enumerate(regions):
        if r not in REGION_CHANNELS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {r!r}")
        mask[i, REGION_CHANNELS[r]] = 1.0
    return mask.to(device)


def expressiveness(params, region: str) -> np.ndarray:
    """Mean blendshape activation of ``params [N, 61]`` over ``region``'s blendshape channels ``[N]``:
    what a rater's "more expressive" bias responds to."""
    p = np.asarray(params, dtype=np.float64).reshape(-1, arkit.NUM_CHANNELS)
    idx = REGION_CHANNELS[region]
    idx = idx[idx < arkit.NUM_BLENDSHAPES]
    return p[:, idx].mean(1)
