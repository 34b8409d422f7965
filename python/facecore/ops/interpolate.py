"""Vertex attribute interpolation ``attr[B,V,C], rast[B,H,W,4], tri[T,3] -> [B,H,W,C]``.

Custom ops ``facecore::interpolate`` / ``facecore::interpolate_backward``; formula in
:func:`facecore.reference.interpolate`: ``u a_0 + v a_1 + (1-u-v) a_2`` of each pixel's triangle, zero on
the background. Gradients flow to ``attr`` and to ``rast``'s ``u, v`` (and from there, through
:func:`facecore.ops.rasterize`'s backward, to the vertex positions).
"""

from __future__ import annotations

import torch

from .. import _C
from ..reference.rasterize import interpolate as _ref_interpolate
from ._common import check_same_device, check_tensor, choose_backend, stream, threads
from .rasterize import check_tri, checked_tri

_FLOATS = (torch.float32, torch.float64)


@torch.library.custom_op("facecore::interpolate", mutates_args=())
def _interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    tri = checked_tri("interpolate", tri, attr.shape[1], rast.dtype)
    B, H, W, _ = rast.shape
    out = attr.new_empty(B, H, W, attr.shape[2])
    if attr.numel() == 0 or tri.numel() == 0 or out.numel() == 0:
        return out.zero_()
    _C.interpolate_forward(attr, rast, tri, out, threads(), stream(attr))
    return out


@_interpolate.register_fake
def _(attr, rast, tri):
    B, H, W, _ = rast.shape
    return attr.new_empty(B, H, W, attr.shape[2])


@torch.library.custom_op("facecore::interpolate_backward", mutates_args=())
def _interpolate_backward(
    grad_out: torch.Tensor, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    tri = checked_tri("interpolate_backward", tri, attr.shape[1], rast.dtype)
    grad_attr = torch.empty_like(attr)
    grad_rast = torch.empty_like(rast)
    if attr.numel() == 0 or tri.numel() == 0 or grad_out.numel() == 0:
        return grad_attr.zero_(), grad_rast.zero_()
    _C.interpolate_backward(
        attr, rast, tri, grad_out.contiguous(), grad_attr, grad_rast, threads(), stream(attr)
    )
    return grad_attr, grad_rast


@_interpolate_backward.register_fake
def _(grad_out, attr, rast, tri):
    return torch.empty_like(attr), torch.empty_like(rast)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):
    attr, rast, tri = ctx.saved_tensors
    grad_attr, grad_rast = torch.ops.facecore.interpolate_backward(grad_out, attr, rast, tri)
    return grad_attr, grad_rast, None


torch.library.register_autograd("facecore::interpolate", _backward, setup_context=_setup)


def interpolate(
    attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """Interpolate per-vertex ``attr[B, V, C]`` (or ``[V, C]``, shared by the batch) over ``rast[B, H, W, 4]``
    from :func:`facecore.ops.rasterize` with the same ``tri``. Returns ``[B, H, W, C]``."""
    op = "interpolate"
    check_tensor(op, "attr", attr, ndim=(2, 3), dtypes=_FLOATS, spec="[B, V, C] or [V, C]")
    check_tensor(op, "rast", rast, ndim=4, dtypes=_FLOATS, spec="[B, H, W, 4]")
    if rast.shape[-1] != 4:
        raise ValueError(f"{op}: rast must have shape [B, H, W, 4], got {list(rast.shape)}")
    if rast.dtype != attr.dtype:
        raise TypeError(f"{op}: rast has dtype {rast.dtype} but attr has {attr.dtype}; they must match")
    device = check_same_device(op, attr=attr, rast=rast, tri=tri)
    B = rast.shape[0]
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
        if B != 1:
            attr = attr.expand(B, -1, -1)
    if attr.shape[0] != B:
        raise ValueError(f"{op}: attr has batch {attr.shape[0]} but rast has {B}")
    tri = check_tri(op, tri)
    backend = choose_backend(op, backend, device)
    if backend == "reference":
        return _ref_interpolate(attr, rast, checked_tri(op, tri, attr.shape[1], rast.dtype))
    if backend == "cuda" and attr.dtype != torch.float32:
        raise TypeError(f"{op}: the cuda backend computes in float32, got {attr.dtype}")
    return torch.ops.facecore.interpolate(attr.contiguous(), rast.contiguous(), tri)
