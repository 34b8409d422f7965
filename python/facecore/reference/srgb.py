"""Linear float images -> 8-bit codes, with optional per-image additive noise first: the specification of
:func:`facecore.ops.srgb_uint8`.

``v = x + noise_scale[b] * noise`` (in x's dtype), then ``q = floor(255 E(clamp(v, 0, 1)) + 1/2)`` with NaN
-> 0, where E is the sRGB curve (:mod:`facecore.render.color`) or the identity (``srgb=False``). E and the
rounding are evaluated in float64. Not differentiable (quantisation).
"""

from __future__ import annotations

import torch

SRGB_KNEE = 0.0031308


def srgb_uint8(x: torch.Tensor, noise: torch.Tensor | None = None, noise_scale: torch.Tensor | None = None,
               *, srgb: bool = True) -> torch.Tensor:
    """``x [B, ...]`` float; ``noise`` like ``x`` and ``noise_scale [B]`` (or both None) -> uint8 like x."""
    x = x.detach()
    if noise is not None:
        s = noise_scale.detach().to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        x = x + s * noise.detach().to(x.dtype)
    v = torch.nan_to_num(x.double(), nan=0.0).clamp(0.0, 1.0)
    if srgb:
        v = torch.where(v <= SRGB_KNEE, 12.92 * v, 1.055 * v.clamp_min(SRGB_KNEE) ** (1 / 2.4) - 0.055)
    return torch.floor(255.0 * v + 0.5).to(torch.uint8)
