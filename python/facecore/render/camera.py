"""Cameras: world -> clip space for :func:`facecore.ops.rasterize` (OpenGL conventions).

The camera looks down its local -z axis with +y up; clip ``w`` is the distance in front of the camera,
``z/w`` maps the near plane to -1 and the far plane to +1. Pixel ``(x, y)`` (row 0 at the top) has its
centre at ``x + 0.5, y + 0.5``; intrinsics ``fx, fy, cx, cy`` are in those pixel units, so a camera point
``(X, Y, -Z)`` lands at pixel ``(cx + fx X / Z, cy - fy Y / Z)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _vec3(name: str, v, dtype=torch.float64) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=dtype).flatten()
    if t.numel() != 3 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"Camera: {name} must be 3 finite numbers, got {v!r}")
    return t


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """``[4, 4]`` float64 world -> camera matrix of a camera at ``eye`` looking at ``target``."""
    eye, target, up = _vec3("eye", eye), _vec3("target", target), _vec3("up", up)
    f = target - eye
    if float(f.norm()) == 0:
        raise ValueError("look_at: eye and target must differ")
    f = f / f.norm()
    s = torch.linalg.cross(f, up)
    if float(s.norm()) < 1e-12:
        raise ValueError("look_at: up must not be parallel to the viewing direction")
    s = s / s.norm()
    u = torch.linalg.cross(s, f)
    m = torch.eye(4, dtype=torch.float64)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


class Camera:
    """A pinhole (perspective) or orthographic camera for an image of ``resolution = (H, W)``.

    Build with :meth:`perspective` (vertical field of view or focal length in pixels), :meth:`orthographic`,
    or :meth:`framing` (aim at a mesh so that it fills the image). ``camera.clip(points[..., 3])`` returns
    clip-space ``[..., 4]`` positions, differentiable in the points.
    """

    def __init__(
        self,
        view: torch.Tensor,
        projection: torch.Tensor,
        resolution: Sequence[int] | int,
        kind: str = "perspective",
    ):
        H, W = (
            (resolution, resolution)
            if isinstance(resolution, int)
            else (int(resolution[0]), int(resolution[1]))
        )
        if H < 1 or W < 1:
            raise ValueError(f"Camera: resolution must be at least (1, 1), got {(H, W)}")
        self.view = torch.as_tensor(view, dtype=torch.float64)
        self.projection = torch.as_tensor(projection, dtype=torch.float64)
        if self.view.shape != (4, 4) or self.projection.shape != (4, 4):
            raise ValueError("Camera: view and projection must be [4, 4] matrices")
        self.resolution = (H, W)
        self.kind = kind

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def perspective(
        cls,
        eye=(0.0, 0.0, 50.0),
        target=(0.0, 0.0, 0.0),
        up=(0.0, 1.0, 0.0),
        *,
        resolution: Sequence[int] | int = 256,
        fov_y: float | None = 20.0,
        focal_px: float | Sequence[float] | None = None,
        principal: Sequence[float] | None = None,
        near: float = 1.0,
        far: float = 1000.0,
    ) -> Camera:
        """Perspective camera. Either ``fov_y`` (degrees) or ``focal_px`` (``f`` or ``(fx, fy)`` in pixels)
        sets the intrinsics; ``principal = (cx, cy)`` defaults to the image centre."""
        H, W = (resolution, resolution) if isinstance(resolution, int) else tuple(int(r) for r in resolution)
        if not 0 < near < far:
            raise ValueError(f"Camera.perspective: need 0 < near < far, got near={near}, far={far}")
        if focal_px is not None:
            fx, fy = (
                (float(focal_px), float(focal_px))
                if isinstance(focal_px, (int, float))
                else map(float, focal_px)
            )
        else:
            if fov_y is None or not 0 < fov_y < 180:
                raise ValueError(f"Camera.perspective: fov_y must be in (0, 180) degrees, got {fov_y}")
            fy = H / 2 / math.tan(math.radians(fov_y) / 2)
            fx = fy
        if fx <= 0 or fy <= 0:
            raise ValueError(f"Camera.perspective: focal lengths must be positive, got {(fx, fy)}")
        cx, cy = (W / 2, H / 2) if principal is None else (float(principal[0]), float(principal[1]))
        return cls(look_at(eye, target, up), intrinsics_projection(fx, fy, cx, cy, H, W, near, far), (H, W))

    @classmethod
    def orthographic(
        cls,
        eye=(0.0, 0.0, 50.0),
        target=(0.0, 0.0, 0.0),
        up=(0.0, 1.0, 0.0),
        *,
        resolution: Sequence[int] | int = 256,
        height: float = 30.0,
        near: float = 0.1,
        far: float = 1000.0,
    ) -> Camera:
        """Orthographic camera whose image spans ``height`` world units vertically (square pixels)."""
        H, W = (resolution, resolution) if isinstance(resolution, int) else tuple(int(r) for r in resolution)
        if height <= 0 or not near < far:
            raise ValueError(
                f"Camera.orthographic: need height > 0 and near < far, got {height}, {near}, {far}"
            )
        half_h, half_w = height / 2, height / 2 * W / H
        p = torch.zeros(4, 4, dtype=torch.float64)
        p[0, 0], p[1, 1] = 1 / half_w, 1 / half_h
        p[2, 2], p[2, 3] = -2 / (far - near), -(far + near) / (far - near)
        p[3, 3] = 1.0
        return cls(look_at(eye, target, up), p, (H, W), kind="orthographic")

    @classmethod
    def framing(
        cls,
        points: torch.Tensor,
        resolution: Sequence[int] | int = 256,
        *,
        direction=(0.0, 0.0, 1.0),
        up=(0.0, 1.0, 0.0),
        fov_y: float = 20.0,
        margin: float = 1.1,
        orthographic: bool = False,
    ) -> Camera:
        """A camera on ``direction`` from the centre of ``points[V, 3]`` that fits them in view."""
        pts = torch.as_tensor(points).detach().to(torch.float64).reshape(-1, 3)
        lo, hi = pts.min(0).values, pts.max(0).values
        center, radius = (lo + hi) / 2, float((hi - lo).norm()) / 2 * margin
        d = _vec3("direction", direction)
        d = d / d.norm()
        H, W = (resolution, resolution) if isinstance(resolution, int) else tuple(int(r) for r in resolution)
        if orthographic:
            eye = center + d * radius * 4
            return cls.orthographic(
                eye,
                center,
                up,
                resolution=(H, W),
                height=2 * radius * max(1.0, H / W),
                near=radius,
                far=radius * 8,
            )
        half = math.radians(fov_y) / 2
        dist = radius / math.sin(half) * max(1.0, H / W)
        return cls.perspective(
            center + d * dist,
            center,
            up,
            resolution=(H, W),
            fov_y=fov_y,
            near=max(dist - 2 * radius, dist * 1e-3),
            far=dist + 2 * radius,
        )

    # -- use ----------------------------------------------------------------------------------
    @property
    def eye(self) -> torch.Tensor:
        """Camera centre in world space ``[3]``."""
        R, t = self.view[:3, :3], self.view[:3, 3]
        return -R.T @ t

    @property
    def forward(self) -> torch.Tensor:
        """Unit viewing direction in world space ``[3]``."""
        return -self.view[2, :3]

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        v = self.view.to(points)
        return points @ v[:3, :3].T + v[:3, 3]

    def clip(self, points: torch.Tensor) -> torch.Tensor:
        """World points ``[..., 3]`` -> clip space ``[..., 4]`` (same dtype/device, differentiable)."""
        m = (self.projection @ self.view).to(points)
        return points @ m[:, :3].T + m[:, 3]

    def __repr__(self) -> str:
        e = [round(float(x), 3) for x in self.eye]
        return f"Camera({self.kind}, eye={e}, resolution={self.resolution})"


def intrinsics_projection(
    fx: float, fy: float, cx: float, cy: float, H: int, W: int, near: float, far: float
) -> torch.Tensor:
    """``[4, 4]`` projection from pixel intrinsics (see the module docstring) with OpenGL depth."""
    p = torch.zeros(4, 4, dtype=torch.float64)
    p[0, 0], p[0, 2] = 2 * fx / W, -(2 * cx / W - 1)
    p[1, 1], p[1, 2] = 2 * fy / H, -(1 - 2 * cy / H)
    p[2, 2], p[2, 3] = -(far + near) / (far - near), -2 * far * near / (far - near)
    p[3, 2] = -1.0
    return p
