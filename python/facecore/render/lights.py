"""Lights and shading: ambient + directional lights, Lambert diffuse and optional Blinn-Phong specular.

    colour = albedo * (ambient + sum_l max(0, n . l) c_l)
             + specular * sum_l [n . l > 0] max(0, n . h)^shininess c_l
with ``l`` the unit direction towards light ``l``, ``h = normalize(l + v)`` and ``v`` the unit direction
from the surface to the camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def _rows(name: str, v, n: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[1] != 3 or (n is not None and t.shape[0] != n):
        raise ValueError(f"Lights: {name} must be [L, 3] (or one 3-vector), got shape {list(t.shape)}")
    return t


@dataclass
class Lights:
    """``ambient`` RGB, ``directions`` ``[L, 3]`` towards each light (world space), ``colors`` ``[L, 3]``,
    ``model = "lambert"`` or ``"blinn_phong"`` (then ``specular`` strength and ``shininess`` apply)."""

    ambient: tuple[float, float, float] | torch.Tensor = (0.35, 0.35, 0.35)
    directions: torch.Tensor | list = field(default_factory=lambda: [[0.3, 0.4, 1.0]])
    colors: torch.Tensor | list = field(default_factory=lambda: [[0.75, 0.75, 0.75]])
    model: str = "lambert"
    specular: float = 0.15
    shininess: float = 32.0

    def __post_init__(self):
        self.ambient = _rows("ambient", self.ambient, 1)[0]
        d = _rows("directions", self.directions)
        n = d.norm(dim=1, keepdim=True)
        if bool((n == 0).any()):
            raise ValueError("Lights: directions must be non-zero")
        self.directions = d / n
        self.colors = _rows("colors", self.colors, d.shape[0])
        if self.model not in ("lambert", "blinn_phong"):
            raise ValueError(f"Lights: model must be 'lambert' or 'blinn_phong', got {self.model!r}")

    def shade(
        self, albedo: torch.Tensor, normal: torch.Tensor, view_dir: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``albedo, normal[..., 3]`` (normal need not be unit), ``view_dir[..., 3]`` towards the camera
        (needed for Blinn-Phong) -> RGB ``[..., 3]``."""
        n = torch.nn.functional.normalize(normal, dim=-1)
        L = self.directions.to(normal)
        C = self.colors.to(normal)
        ndl = (n @ L.T).clamp_min(0)  # [..., L]
        out = albedo * (self.ambient.to(normal) + ndl @ C)
        if self.model == "blinn_phong" and self.specular > 0:
            if view_dir is None:
                raise ValueError("Lights.shade: Blinn-Phong needs view_dir")
            v = torch.nn.functional.normalize(view_dir, dim=-1)
            h = torch.nn.functional.normalize(v.unsqueeze(-2) + L, dim=-1)  # [..., L, 3]
            ndh = (n.unsqueeze(-2) * h).sum(-1).clamp_min(0)
            spec = torch.where(ndl > 0, ndh.pow(self.shininess), torch.zeros_like(ndh))
            out = out + self.specular * (spec @ C)
        return out
