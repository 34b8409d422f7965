"""Separable Gaussian blur with one sigma per image: the specification of :func:`facecore.ops.gaussian_blur`.

``out[b] = Gx_b * (Gy_b * img[b])`` for ``img [B, H, W, C]``: first along y, then along x, each pass a
weighted sum of shifted copies in tap order. ``G_b[j] = exp(-(j / s)^2 / 2) / sum_k exp(-(k / s)^2 / 2)``
over ``|j|, |k| <= r_b = max(1, ceil(3 s))`` with ``s = sigma[b]``. Borders reflect without repeating the
edge (``F.pad(mode="reflect")``) when the side is longer than ``r_b``, else replicate it. ``sigma[b] = 0``
copies image b through. Every image uses only its own sigma, so it blurs the same alone or in any batch.
Differentiable in ``img`` (sigma is a constant).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_SIGMA = 1024.0  # the kernels' limit (blur.h kMaxBlurSigma)


def _taps(sigma: torch.Tensor, r: int) -> torch.Tensor:
    """``[B', 2 r + 1]`` normalised taps of each sigma (> 0), zero beyond each one's own radius."""
    s = sigma[:, None]
    k = torch.arange(-r, r + 1, dtype=sigma.dtype, device=sigma.device)[None]
    inside = k.abs() <= torch.ceil(3 * s).clamp_min(1)
    w = torch.where(inside, torch.exp(-0.5 * (k / s) ** 2), torch.zeros_like(k))
    return w / w.sum(1, keepdim=True)


def _blur(x: torch.Tensor, w: torch.Tensor, r: int) -> torch.Tensor:
    """Both passes over ``x [B', C, H, W]`` with taps ``w [B', 2 r + 1]``, padding by ``r``."""
    for dim in (2, 3):
        n = x.shape[dim]
        pad = (0, 0, r, r) if dim == 2 else (r, r, 0, 0)
        xp = F.pad(x, pad, mode="reflect" if n > r else "replicate")
        acc = torch.zeros_like(x)
        for j in range(2 * r + 1):
            acc = acc + w[:, j, None, None, None] * xp.narrow(dim, j, n)
        x = acc
    return x


def gaussian_blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``img [B, H, W, C]``, ``sigma [B]`` (pixels, >= 0) -> blurred ``[B, H, W, C]``.

    Batched: the images with sigma > 0 share one padding of the largest radius (taps beyond an image's
    own radius weigh exactly 0, so it changes no sum); when a side is not longer than that radius, each
    image is blurred alone so that its border rule follows its own radius."""
    sigma = sigma.to(img)
    on = (sigma > 0).nonzero().squeeze(1)
    out = img.clone()
    if on.numel() == 0:
        return out
    s = sigma.index_select(0, on)
    radii = torch.ceil(3 * s).clamp_min(1).to(torch.int64).tolist()
    x = img.index_select(0, on).permute(0, 3, 1, 2)
    if min(img.shape[1], img.shape[2]) > max(radii):
        y = _blur(x, _taps(s, max(radii)), max(radii))
    else:
        y = torch.cat([_blur(x[i : i + 1], _taps(s[i : i + 1], r), r) for i, r in enumerate(radii)])
    return out.index_copy(0, on, y.permute(0, 2, 3, 1))
