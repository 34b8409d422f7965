"""Triangle rasterization ``pos[B,V,4], tri[T,3] -> rast[B,H,W,4] = (u, v, z/w, triangle_id + 1)``.

Custom ops ``facecore::rasterize`` / ``facecore::rasterize_backward``; the exact rules (clipping, snapping,
fill rule, tie rule, perspective-correct barycentrics) are in :mod:`facecore.reference.rasterize`.
Gradients of ``u, v, z/w`` flow to ``pos``; the triangle ids are piecewise constant (no gradient), and
visibility gradients come from :func:`facecore.ops.antialias`.
"""

from __future__ import annotations

import torch

from .. import _C
from ..reference.rasterize import rasterize as _ref_rasterize
from ._common import check_same_device, check_tensor, choose_backend, stream, threads

_FLOATS = (torch.float32, torch.float64)

# rast stores triangle_id + 1 in a channel of pos's dtype: float32 holds the integers exactly only up to 2^24,
# so a float32 mesh may have at most 2^24 - 1 triangles (the kernels index triangles with int32 in float64).
MAX_TRIANGLES = {torch.float32: 2**24 - 1, torch.float64: 2**31 - 1}


def checked_tri(op: str, tri: torch.Tensor, V: int, dtype: torch.dtype) -> torch.Tensor:
    """The triangle checks of every rasterize / interpolate / antialias custom op, run inside the op (so they
    hold under torch.compile, which calls the op and never the public wrapper's eager-only code): at most
    ``MAX_TRIANGLES[dtype]`` triangles, every index in ``[0, V)``; returns int32 contiguous triangles.

    The count is checked on the shape, before anything is copied. Indices are checked here on the GPU (one
    min/max reduction and one sync per call) and for int64 before the cast (2**32 + 1 would wrap to 1); CPU
    int32 triangles are checked by the C++ kernel itself, in the same pass that reads them."""
    T = tri.shape[0]
    limit = MAX_TRIANGLES.get(dtype, MAX_TRIANGLES[torch.float32])
    if T > limit:
        name = str(dtype).removeprefix("torch.")
        raise ValueError(
            f"{op}: tri has {T} triangles, more than the {limit} a {name} rast can identify "
            f"(it stores triangle_id + 1 as a {name} value)"
        )
    if tri.numel() and (tri.dtype != torch.int32 or tri.device.type != "cpu"):
        lo, hi = torch.stack(torch.aminmax(tri)).tolist()  # one sync
        if lo < 0 or hi >= V:
            bad = int(((tri < 0) | (tri >= V)).any(1).nonzero()[0])
            raise ValueError(f"{op}: tri[{bad}] = {tri[bad].tolist()} has a vertex index outside [0, V={V})")
    return tri.to(torch.int32).contiguous()


@torch.library.custom_op("facecore::rasterize", mutates_args=())
def _rasterize(
    pos: torch.Tensor, tri: torch.Tensor, height: int, width: int, cull_backfaces: bool, want_db: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    tri = checked_tri("rasterize", tri, pos.shape[1], pos.dtype)
    B = pos.shape[0]
    rast = torch.empty(B, height, width, 4, dtype=pos.dtype, device=pos.device)
    db = torch.empty((B, height, width, 4) if want_db else (0,), dtype=pos.dtype, device=pos.device)
    if pos.numel() == 0 or tri.numel() == 0:  # nothing to draw (and empty arrays carry no layout)
        return rast.zero_(), db.zero_()
    _C.rasterize_forward(pos, tri, rast, db, want_db, cull_backfaces, threads(), stream(pos))
    return rast, db


@_rasterize.register_fake
def _(pos, tri, height, width, cull_backfaces, want_db):
    B = pos.shape[0]
    rast = pos.new_empty(B, height, width, 4)
    return rast, pos.new_empty((B, height, width, 4) if want_db else (0,))


@torch.library.custom_op("facecore::rasterize_backward", mutates_args=())
def _rasterize_backward(
    grad_rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor, rast: torch.Tensor
) -> torch.Tensor:
    tri = checked_tri("rasterize_backward", tri, pos.shape[1], pos.dtype)
    grad_pos = torch.empty_like(pos)
    if pos.numel() == 0 or tri.numel() == 0:
        return grad_pos.zero_()
    _C.rasterize_backward(pos, tri, rast, grad_rast.contiguous(), grad_pos, threads(), stream(pos))
    return grad_pos


@_rasterize_backward.register_fake
def _(grad_rast, pos, tri, rast):
    return torch.empty_like(pos)


def _setup(ctx, inputs, output):
    pos, tri = inputs[0], inputs[1]
    ctx.save_for_backward(pos, tri, output[0])
    ctx.set_materialize_grads(True)


def _backward(ctx, grad_rast, grad_db):
    # db is not differentiable (texture-filtering footprints); its gradient is ignored.
    pos, tri, rast = ctx.saved_tensors
    return torch.ops.facecore.rasterize_backward(grad_rast, pos, tri, rast), None, None, None, None, None


torch.library.register_autograd("facecore::rasterize", _backward, setup_context=_setup)


def check_tri(op: str, tri: torch.Tensor) -> torch.Tensor:
    """Type and shape of the public ``tri`` argument (int32 or int64 ``[T, 3]``); its count and indices are
    checked by the op itself (:func:`checked_tri`)."""
    check_tensor(op, "tri", tri, ndim=2, dtypes=(torch.int32, torch.int64), spec="[T, 3]")
    if tri.shape[1] != 3:
        raise ValueError(f"{op}: tri must have shape [T, 3], got {list(tri.shape)}")
    return tri


def _resolution(op: str, resolution) -> tuple[int, int]:
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    try:
        H, W = (int(r) for r in resolution)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: resolution must be an int or (height, width), got {resolution!r}") from None
    if H < 1 or W < 1:
        raise ValueError(f"{op}: resolution must be at least (1, 1), got {(H, W)}")
    return H, W


def rasterize(
    pos: torch.Tensor,
    tri: torch.Tensor,
    resolution,
    *,
    cull_backfaces: bool = False,
    return_db: bool = False,
    backend: str = "auto",
):
    """Rasterize clip-space triangles.

    ``pos`` is ``[B, V, 4]`` (or ``[V, 4]`` for one image), ``tri`` int32/int64 ``[T, 3]`` (indices checked:
    a bad one raises ValueError; at most ``2**24 - 1`` triangles in float32, see :data:`MAX_TRIANGLES`),
    ``resolution`` an int or ``(H, W)``. Returns ``rast[B, H, W, 4] =
    (u, v, z/w, triangle_id + 1)`` (zeros on the background), and with ``return_db`` also ``db[B, H, W, 4] =
    (du/dX, du/dY, dv/dX, dv/dY)`` in pixels (no gradient). ``cull_backfaces`` drops triangles that are
    clockwise in NDC. Differentiable in ``pos`` through ``u, v, z/w``.
    """
    op = "rasterize"
    check_tensor(op, "pos", pos, ndim=(2, 3), dtypes=_FLOATS, spec="[B, V, 4] or [V, 4]")
    if pos.shape[-1] != 4:
        raise ValueError(f"{op}: pos must have shape [B, V, 4] or [V, 4] (clip space), got {list(pos.shape)}")
    H, W = _resolution(op, resolution)
    device = check_same_device(op, pos=pos, tri=tri)
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    tri = check_tri(op, tri)
    backend = choose_backend(op, backend, device)
    if backend == "reference":
        tri = checked_tri(op, tri, pos.shape[1], pos.dtype)
        return _ref_rasterize(pos, tri, (H, W), cull_backfaces, return_db)
    if backend == "cuda" and pos.dtype != torch.float32:
        raise TypeError(f"{op}: the cuda backend computes in float32, got {pos.dtype}")
    rast, db = torch.ops.facecore.rasterize(
        pos.contiguous(), tri, H, W, bool(cull_backfaces), bool(return_db)
    )
    return (rast, db) if return_db else rast
