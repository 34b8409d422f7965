"""Analytic silhouette antialiasing ``color[B,H,W,C], rast, pos, tri -> [B,H,W,C]`` with visibility
gradients to ``pos`` (the approach of Laine et al. 2020; formula in :func:`facecore.reference.antialias`).

Custom ops ``facecore::antialias`` / ``facecore::antialias_backward``. ``rast`` is a constant; ``pos`` must
be the clip-space positions ``rast`` was made from.
"""

from __future__ import annotations

import torch

from .. import _C
from ..reference.rasterize import antialias as _ref_antialias
from ._common import check_same_device, check_tensor, choose_backend, stream, threads
from .rasterize import check_tri, checked_tri

_FLOATS = (torch.float32, torch.float64)


@torch.library.custom_op("facecore::antialias", mutates_args=())
def _antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    tri = checked_tri("antialias", tri, pos.shape[1], color.dtype)
    out = torch.empty_like(color)
    if tri.numel() == 0 or color.numel() == 0:
        return out.copy_(color)
    _C.antialias_forward(color, rast, pos, tri, out, threads(), stream(color))
    return out


@_antialias.register_fake
def _(color, rast, pos, tri):
    return torch.empty_like(color)


@torch.library.custom_op("facecore::antialias_backward", mutates_args=())
def _antialias_backward(
    grad_out: torch.Tensor, color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    tri = checked_tri("antialias_backward", tri, pos.shape[1], color.dtype)
    grad_color = torch.empty_like(color)
    grad_pos = torch.empty_like(pos)
    if tri.numel() == 0 or color.numel() == 0:
        return grad_color.copy_(grad_out), grad_pos.zero_()
    _C.antialias_backward(
        color, rast, pos, tri, grad_out.contiguous(), grad_color, grad_pos, threads(), stream(color)
    )
    return grad_color, grad_pos


@_antialias_backward.register_fake
def _(grad_out, color, rast, pos, tri):
    return torch.empty_like(color), torch.empty_like(pos)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):
    color, rast, pos, tri = ctx.saved_tensors
    grad_color, grad_pos = torch.ops.facecore.antialias_backward(grad_out, color, rast, pos, tri)
    return grad_color, None, grad_pos, None


torch.library.register_autograd("facecore::antialias", _backward, setup_context=_setup)


def antialias(
    color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """Antialias ``color[B, H, W, C]`` along silhouette edges. ``rast`` comes from
    :func:`facecore.ops.rasterize` of ``pos[B, V, 4]`` (or ``[V, 4]``, shared by the batch) and ``tri``.
    Differentiable in ``color`` and ``pos``."""
    op = "antialias"
    check_tensor(op, "color", color, ndim=4, dtypes=_FLOATS, spec="[B, H, W, C]")
    check_tensor(op, "rast", rast, ndim=4, dtypes=_FLOATS, spec="[B, H, W, 4]")
    check_tensor(op, "pos", pos, ndim=(2, 3), dtypes=_FLOATS, spec="[B, V, 4] or [V, 4]")
    B, H, W, _ = color.shape
    if tuple(rast.shape) != (B, H, W, 4):
        raise ValueError(f"{op}: rast must have shape [B, H, W, 4] = {[B, H, W, 4]}, got {list(rast.shape)}")
    if pos.shape[-1] != 4:
        raise ValueError(f"{op}: pos must have shape [B, V, 4] or [V, 4], got {list(pos.shape)}")
    for name, t in (("rast", rast), ("pos", pos)):
        if t.dtype != color.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but color has {color.dtype}; they must match")
    device = check_same_device(op, color=color, rast=rast, pos=pos, tri=tri)
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    if pos.shape[0] != B:
        if pos.shape[0] != 1:
            raise ValueError(f"{op}: pos has batch {pos.shape[0]} but color has {B}")
        pos = pos.expand(B, -1, -1)
    tri = check_tri(op, tri)
    backend = choose_backend(op, backend, device)
    if backend == "reference":
        return _ref_antialias(color, rast, pos, checked_tri(op, tri, pos.shape[1], color.dtype))
    if backend == "cuda" and color.dtype != torch.float32:
        raise TypeError(f"{op}: the cuda backend computes in float32, got {color.dtype}")
    return torch.ops.facecore.antialias(color.contiguous(), rast.detach().contiguous(), pos.contiguous(), tri)
