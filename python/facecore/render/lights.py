"""Lights and shading: ambient + spherical-harmonic environment + directional lights; Lambert diffuse,
optional Blinn-Phong specular, or flat cel ("toon") bands.

    colour = albedo * (ambient + E_sh(n) + sum_l D(n . l) c_l)
             + specular * sum_l [n . l > 0] max(0, n . h)^shininess c_l
with ``l`` the unit direction towards light ``l``, ``h = normalize(l + v)``, ``v`` the unit direction from
the surface to the camera, ``D(x) = max(0, x)`` (``"lambert"``, ``"blinn_phong"``) or, for ``"toon"``,
``D(x) = floor(max(0, x) * bands + 0.5) / bands`` (flat bands, no smooth gradient; specular, when
``specular > 0``, becomes a hard highlight: ``[n . h > 1 - 1 / shininess]``).

``E_sh`` is the irradiance of an environment given by order-2 (9-term) real spherical-harmonic
coefficients ``sh [9, 3]`` (RGB), already convolved with the clamped cosine (Ramamoorthi & Hanrahan,
"An Efficient Representation for Irradiance Environment Maps", SIGGRAPH 2001), in the order
``Y00, Y1-1, Y10, Y11, Y2-2, Y2-1, Y20, Y21, Y22`` of the world-space unit normal ``(x, y, z)``:

    E(n) = sum_k sh[k] * Y_k(n),  Y = (0.282095, 0.488603 y, 0.488603 z, 0.488603 x,
                                       1.092548 x y, 1.092548 y z, 0.315392 (3 z^2 - 1),
                                       1.092548 x z, 0.546274 (x^2 - y^2))

Every parameter may carry a leading batch dimension (``ambient [B, 3]``, ``directions``/``colors``
``[B, L, 3]``, ``sh [B, 9, 3]``, ``specular``/``shininess`` ``[B]``): one light set per image. Shading flat
pixel lists then needs ``batch [N]``, the image index of each row (:meth:`Lights.shade`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..reference.shade import MODELS, SH_CONSTANTS, sh_basis  # noqa: F401 (public here too)


def _rows(name: str, v, n: int | None = None) -> torch.Tensor:
    """``[L, 3]`` or batched ``[B, L, 3]`` float64 (one 3-vector becomes ``[1, 3]``)."""
    t = torch.as_tensor(v, dtype=torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() not in (2, 3) or t.shape[-1] != 3 or (n is not None and t.shape[-2] != n):
        want = f"[{n if n is not None else 'L'}, 3] or [B, {n if n is not None else 'L'}, 3]"
        raise ValueError(f"Lights: {name} must be {want} (or one 3-vector), got shape {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"Lights: {name} contains NaN or infinite values")
    return t


def _scalar(name: str, v) -> float | torch.Tensor:
    if isinstance(v, (int, float)):
        return float(v)
    t = torch.as_tensor(v, dtype=torch.float64)
    if t.dim() > 1 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"Lights: {name} must be a number or a finite [B] tensor, got shape {list(t.shape)}")
    return float(t) if t.dim() == 0 else t


@dataclass
class Lights:
    """``ambient`` RGB, ``directions`` ``[L, 3]`` towards each light (world space), ``colors`` ``[L, 3]``,
    ``model`` in :data:`MODELS` (``specular`` strength and ``shininess`` apply to ``"blinn_phong"`` and
    ``"toon"``), ``sh`` optional ``[9, 3]`` irradiance coefficients, ``bands`` the toon levels. Any of the
    tensors may be batched (module docstring); :attr:`batch_size` is then B (None when unbatched)."""

    ambient: tuple[float, float, float] | torch.Tensor = (0.35, 0.35, 0.35)
    directions: torch.Tensor | list = field(default_factory=lambda: [[0.3, 0.4, 1.0]])
    colors: torch.Tensor | list = field(default_factory=lambda: [[0.75, 0.75, 0.75]])
    model: str = "lambert"
    specular: float | torch.Tensor = 0.15
    shininess: float | torch.Tensor = 32.0
    sh: torch.Tensor | None = None
    bands: int = 3

    def __post_init__(self):
        a = torch.as_tensor(self.ambient, dtype=torch.float64)
        if a.dim() not in (1, 2) or a.shape[-1] != 3 or not bool(torch.isfinite(a).all()):
            raise ValueError(f"Lights: ambient must be finite RGB [3] or [B, 3], got shape {list(a.shape)}")
        self.ambient = a[0] if a.dim() == 2 and a.shape[0] == 1 else a  # [3] or [B, 3]
        d = _rows("directions", self.directions)
        n = d.norm(dim=-1, keepdim=True)
        if bool((n == 0).any()):
            raise ValueError("Lights: directions must be non-zero")
        self.directions = d / n
        self.colors = _rows("colors", self.colors, d.shape[-2])
        if self.model not in MODELS:
            models = ", ".join(map(repr, MODELS))
            raise ValueError(f"Lights: model must be one of {models}, got {self.model!r}")
        self.specular = _scalar("specular", self.specular)
        self.shininess = _scalar("shininess", self.shininess)
        if self.sh is not None:
            sh = torch.as_tensor(self.sh, dtype=torch.float64)
            if sh.dim() not in (2, 3) or tuple(sh.shape[-2:]) != (9, 3) or not bool(torch.isfinite(sh).all()):
                raise ValueError(f"Lights: sh must be finite [9, 3] or [B, 9, 3], got shape {list(sh.shape)}")
            self.sh = sh
        if isinstance(self.bands, bool) or not isinstance(self.bands, int) or self.bands < 1:
            raise ValueError(f"Lights: bands must be a positive int, got {self.bands!r}")
        sizes = {t.shape[0] for t, batched_dim in ((self.ambient, 2), (self.directions, 3), (self.colors, 3),
                                                   (self.sh, 3), (self.specular, 1), (self.shininess, 1))
                 if isinstance(t, torch.Tensor) and t.dim() == batched_dim}
        if len(sizes) > 1:
            raise ValueError(f"Lights: batched parameters disagree on the batch size: {sorted(sizes)}")
        self.batch_size = sizes.pop() if sizes else None

    def _per_image(self, t, B: int, batched_dim: int, like: torch.Tensor) -> torch.Tensor:
        """Parameter ``t`` as one entry per image: ``[B, ...]`` (an unbatched one repeated)."""
        t = torch.as_tensor(t).to(like)
        if t.dim() == batched_dim:
            return t
        return t.unsqueeze(0).expand(B, *t.shape).contiguous()

    def shade(
        self, albedo: torch.Tensor, normal: torch.Tensor, view_dir: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``albedo, normal[..., 3]`` (normal need not be unit), ``view_dir[..., 3]`` towards the camera
        (needed for specular) -> RGB ``[..., 3]``. With batched lights the inputs are ``[N, 3]`` rows and
        ``batch [N]`` (int64) says which image (light set) each row belongs to. Runs
        :func:`facecore.ops.shade` (a fused CPU kernel; the reference on other devices)."""
        from .. import ops

        shape = normal.shape
        if self.batch_size is not None:
            if batch is None:
                raise ValueError("Lights.shade: batched lights need batch (the image index of each row)")
            batch = batch.to(device=normal.device, dtype=torch.int64)
            if normal.dim() != 2 or batch.shape != normal.shape[:1]:
                raise ValueError(f"Lights.shade: batch must be [N] for [N, 3] rows, got {list(batch.shape)} "
                                 f"for normals {list(normal.shape)}")
            B = self.batch_size
        else:
            B = 1
        n = normal.reshape(-1, 3)
        rows = n.shape[0]
        if batch is None or self.batch_size is None:
            batch = torch.zeros(rows, dtype=torch.int64, device=n.device)
        a = albedo.expand(shape).reshape(-1, 3).to(n.dtype)
        spec_w = self._per_image(self.specular, B, 1, n)
        view = None
        if self.model != "lambert" and bool((spec_w != 0).any()):
            if view_dir is None:
                raise ValueError(f"Lights.shade: the {self.model} model with specular needs view_dir")
            view = view_dir.expand(shape).reshape(-1, 3).to(n.dtype)
        out = ops.shade(
            a, n, view, batch, self._per_image(self.ambient, B, 2, n),
            self._per_image(self.directions, B, 3, n), self._per_image(self.colors, B, 3, n),
            None if self.sh is None else self._per_image(self.sh, B, 3, n), spec_w,
            self._per_image(self.shininess, B, 1, n), model=self.model, bands=self.bands,
        )
        return out.view(*shape[:-1], 3)
