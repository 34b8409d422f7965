"""Linear float images -> 8-bit codes (sRGB-encoded, or linear for alpha and data), with an optional
per-image additive noise term first: ``x [B, ...], noise [B, ...], noise_scale [B] -> uint8 [B, ...]``.
Custom op ``facecore::srgb_uint8``; specification in :mod:`facecore.reference.srgb`. The CPU kernel
finds, once per process, the 255 input values where the code steps up and encodes each value with a
bucket table on its float bits and a compare or two against them (the reference's float64 formula, with
no power function per value and no full-size temporaries; a float64 value within an ulp of a step may land
one code apart, where the C library's pow and torch's round differently; float32 values agree exactly).
No gradient (quantisation). On CUDA the reference runs.
"""

from __future__ import annotations

import torch

from .. import _C
from .. import reference as ref
from ._common import check_same_device, check_tensor, choose_backend, threads

_FLOATS = (torch.float32, torch.float64)


@torch.library.custom_op("facecore::srgb_uint8", mutates_args=())
def _srgb_uint8(x: torch.Tensor, noise: torch.Tensor | None, noise_scale: torch.Tensor | None,
                srgb: bool) -> torch.Tensor:
    B = x.shape[0]
    flat = x.reshape(B, -1)
    out = torch.empty(flat.shape, dtype=torch.uint8)
    if flat.numel():
        empty = x.new_empty(0)
        _C.srgb_uint8_forward(flat, empty if noise is None else noise.reshape(B, -1),
                              empty if noise_scale is None else noise_scale, srgb, out, threads())
    return out.view(x.shape)


@_srgb_uint8.register_fake
def _(x, noise, noise_scale, srgb):
    return torch.empty(x.shape, dtype=torch.uint8, device=x.device)


def srgb_uint8(x: torch.Tensor, noise: torch.Tensor | None = None, noise_scale: torch.Tensor | None = None,
               *, srgb: bool = True, backend: str = "auto") -> torch.Tensor:
    """Encode linear ``x [B, ...]`` (float32 or float64; values outside [0, 1] clamp, NaN gives 0) as
    uint8 of the same shape: sRGB curve (``srgb=True``) or linear (``srgb=False``), rounded half up.
    With ``noise`` (x's shape and dtype) and ``noise_scale [B]``, ``x + noise_scale[b] * noise`` is
    encoded instead. Never differentiable; the result is detached."""
    op = "srgb_uint8"
    check_tensor(op, "x", x, dtypes=_FLOATS)
    if x.dim() == 0:
        raise ValueError(f"{op}: x must have a batch dimension [B, ...], got a scalar")
    if (noise is None) != (noise_scale is None):
        raise ValueError(f"{op}: noise and noise_scale go together (both tensors or both None)")
    if noise is not None:
        check_tensor(op, "noise", noise, dtypes=(x.dtype,))
        if noise.shape != x.shape:
            raise ValueError(f"{op}: noise must have x's shape {list(x.shape)}, got {list(noise.shape)}")
        check_tensor(op, "noise_scale", noise_scale, ndim=1, dtypes=(x.dtype,), spec="[B]")
        if noise_scale.shape[0] != x.shape[0]:
            raise ValueError(f"{op}: noise_scale must have shape [{x.shape[0]}] (one value per image), "
                             f"got {list(noise_scale.shape)}")
    device = check_same_device(op, x=x, noise=noise, noise_scale=noise_scale)
    backend = choose_backend(op, backend, device, has_cuda=False)
    if backend == "reference":
        return ref.srgb_uint8(x, noise, noise_scale, srgb=bool(srgb))
    c = lambda t: None if t is None else t.detach().contiguous()  # noqa: E731
    return torch.ops.facecore.srgb_uint8(c(x), c(noise), c(noise_scale), bool(srgb))
