"""Reference blendshape and deform: the specification of facecore.ops.blendshape / deform."""

from __future__ import annotations

import torch

from ..pose import EYE_MAX_ANGLE, HEAD_MAX_ANGLE, pose_rotations


def _dense(deltas) -> torch.Tensor:
    # SparseDeltas (facecore.ops) converts itself; duck-typed so the reference needs no ops import.
    return deltas.to_dense() if hasattr(deltas, "to_dense") else deltas


def blendshape(weights: torch.Tensor, neutral: torch.Tensor, deltas) -> torch.Tensor:
    """``out[b, v] = neutral[v] + sum_k weights[b, k] * deltas[k, v]``  -> ``[B, V, 3]``."""
    return neutral + torch.einsum("bk,kvc->bvc", weights, _dense(deltas))


def rigid(points: torch.Tensor, rotations: torch.Tensor, pivots: torch.Tensor,
          group: torch.Tensor) -> torch.Tensor:
    """Per-group rotation about its pivot (groups > 0), then group 0's rotation for every vertex.

    points ``[B, V, 3]``, rotations ``[B, G, 3, 3]``, pivots ``[G, 3]``, group ``[V]`` int.
    """
    g = group.long()
    R = rotations[:, g]                       # [B, V, 3, 3]
    c = pivots[g]                             # [V, 3]
    local = torch.einsum("bvij,bvj->bvi", R, points - c) + c
    q = torch.where((g > 0)[None, :, None], local, points)
    c0 = pivots[0]
    return torch.einsum("bij,bvj->bvi", rotations[:, 0], q - c0) + c0


def deform(params: torch.Tensor, rig, *, head_max_angle: float = HEAD_MAX_ANGLE,
           eye_max_angle: float = EYE_MAX_ANGLE) -> torch.Tensor:
    """61 parameters -> vertices: blendshapes, eye rotations about the eye centres, head about the neck."""
    points = blendshape(params[:, :52], rig.neutral, rig.dense_deltas())
    rotations = pose_rotations(params[:, 52:], head_max_angle, eye_max_angle)
    pivots = torch.cat([rig.neck_pivot.reshape(1, 3), rig.eye_centers.reshape(2, 3)]).to(points)
    group = torch.zeros(rig.neutral.shape[0], dtype=torch.int32, device=points.device)
    group[rig.groups["left_eye"].to(points.device)] = 1
    group[rig.groups["right_eye"].to(points.device)] = 2
    return rigid(points, rotations, pivots, group)
