"""From the 9 pose channels to rotation matrices: the one place that defines pose semantics.

Channels (in [-1, 1]): ``HeadYaw, HeadPitch, HeadRoll, LeftEyeYaw, LeftEyePitch, LeftEyeRoll,
RightEyeYaw, RightEyePitch, RightEyeRoll``. A value of 1 is ``HEAD_MAX_ANGLE`` (90 degrees) for
the head and ``EYE_MAX_ANGLE`` (45 degrees) for the eyes; the mapping is linear.

Axes follow the rig convention (y up, the face looks toward +z, the subject's left is +x):

- yaw > 0 turns the face toward the subject's left (+x): rotation about +y;
- pitch > 0 tilts the face up (+y), so a lowered gaze has negative pitch (as in KeyframeFace data);
- roll > 0 tilts the top of the head toward the subject's left (+x).

The matrix is ``R = Ry(yaw) @ Rx(-pitch) @ Rz(-roll)`` (roll applied first). Mirroring in x
(facecore.arkit.mirror) negates yaw and roll, which is exactly ``M R M`` with ``M = diag(-1, 1, 1)``.
"""

from __future__ import annotations

import math

import torch

HEAD_MAX_ANGLE = math.pi / 2
EYE_MAX_ANGLE = math.pi / 4


def euler_to_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """``Ry(yaw) @ Rx(-pitch) @ Rz(-roll)`` for angles in radians, ``[...]`` -> ``[..., 3, 3]``."""
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(-pitch), torch.sin(-pitch)
    cr, sr = torch.cos(-roll), torch.sin(-roll)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return ry @ rx @ rz


def pose_rotations(pose: torch.Tensor, head_max_angle: float = HEAD_MAX_ANGLE,
                   eye_max_angle: float = EYE_MAX_ANGLE) -> torch.Tensor:
    """``pose [B, 9]`` -> rotations ``[B, 3, 3, 3]``: head, left eye, right eye (differentiable)."""
    if pose.shape[-1] != 9:
        raise ValueError(f"pose must have 9 channels [..., 9], got {list(pose.shape)}")
    angles = pose.unflatten(-1, (3, 3))  # [B, (head, left eye, right eye), (yaw, pitch, roll)]
    scale = pose.new_tensor([head_max_angle, eye_max_angle, eye_max_angle]).unsqueeze(-1)
    angles = angles * scale
    return euler_to_matrix(angles[..., 0], angles[..., 1], angles[..., 2])
