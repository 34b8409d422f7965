"""Reference shading: the specification of :func:`facecore.ops.shade` (formula in
:mod:`facecore.render.lights`). Rows ``[N, 3]`` with one light set per image, chosen by ``batch [N]``."""

from __future__ import annotations

import torch

SH_CONSTANTS = (0.282095, 0.488603, 1.092548, 0.315392, 0.546274)
MODELS = ("lambert", "blinn_phong", "toon")


def sh_basis(n: torch.Tensor) -> torch.Tensor:
    """The 9 real SH basis functions at unit normals ``n[..., 3]`` -> ``[..., 9]`` (order
    ``Y00, Y1-1, Y10, Y11, Y2-2, Y2-1, Y20, Y21, Y22``)."""
    x, y, z = n.unbind(-1)
    c0, c1, c2, c3, c4 = SH_CONSTANTS
    return torch.stack(
        [torch.full_like(x, c0), c1 * y, c1 * z, c1 * x, c2 * x * y, c2 * y * z, c3 * (3 * z * z - 1),
         c2 * x * z, c4 * (x * x - y * y)], -1)


def shade(albedo: torch.Tensor, normal: torch.Tensor, view: torch.Tensor | None, batch: torch.Tensor,
          ambient: torch.Tensor, directions: torch.Tensor, colors: torch.Tensor, sh: torch.Tensor | None,
          specular: torch.Tensor, shininess: torch.Tensor, model: str = "lambert", bands: int = 3
          ) -> torch.Tensor:
    """``albedo, normal, view [N, 3]`` (``view`` may be None: no specular), ``batch [N]`` int64 image
    index; per image ``ambient [B, 3]``, unit ``directions``/``colors [B, L, 3]``, ``sh [B, 9, 3]`` or
    None, ``specular``/``shininess [B]`` -> RGB ``[N, 3]``. Elementwise products and sums over 3 (or L)
    entries only, so a row's result does not depend on how many rows are shaded together."""
    n = torch.nn.functional.normalize(normal, dim=-1)
    L = directions.index_select(0, batch)  # [N, L, 3]
    C = colors.index_select(0, batch)
    toon = model == "toon"
    ndl = (n.unsqueeze(-2) * L).sum(-1).clamp_min(0)  # [N, L]
    diffuse = torch.floor(ndl * bands + 0.5) / bands if toon else ndl
    irr = ambient.index_select(0, batch) + (diffuse.unsqueeze(-1) * C).sum(-2)
    if sh is not None:
        e = (sh_basis(n).unsqueeze(-1) * sh.index_select(0, batch)).sum(-2).clamp_min(0)
        irr = irr + (torch.floor(e * bands + 0.5) / bands if toon else e)
    out = albedo * irr
    if model == "lambert" or view is None:
        return out
    v = torch.nn.functional.normalize(view, dim=-1)
    h = torch.nn.functional.normalize(v.unsqueeze(-2) + L, dim=-1)  # [N, L, 3]
    ndh = (n.unsqueeze(-2) * h).sum(-1).clamp_min(0)
    shin = shininess.index_select(0, batch).unsqueeze(-1)  # [N, 1]
    spec = (ndh > 1 - 1 / shin.clamp_min(1)).to(ndh) if toon else ndh.pow(shin)
    spec = torch.where(ndl > 0, spec, torch.zeros_like(spec))
    return out + specular.index_select(0, batch).unsqueeze(-1) * (spec.unsqueeze(-1) * C).sum(-2)
