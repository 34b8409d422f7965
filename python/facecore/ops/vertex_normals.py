"""Area-weighted vertex normals ``verts[B,V,3], faces[F,3] -> [B,V,3]``, forward and backward.

Custom ops ``facecore::vertex_normals`` / ``facecore::vertex_normals_backward``; formula in
:func:`facecore.reference.vertex_normals`. Degenerate (zero-area) triangles contribute nothing;
a vertex with no area around it gets a zero normal and no gradient (never NaN).
"""

from __future__ import annotations

import torch

from .. import _C
from .. import reference as ref
from ._common import check_same_device, check_tensor, checked_indices, choose_backend, stream, threads

_FLOATS = (torch.float32, torch.float64)


@torch.library.custom_op("facecore::vertex_normals", mutates_args=())
def _vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    faces = checked_indices("vertex_normals", "faces", faces, verts.shape[1])
    normals = torch.empty_like(verts)
    _C.vertex_normals_forward(verts, faces, normals, threads(), stream(verts))
    return normals


@_vertex_normals.register_fake
def _(verts, faces):
    return torch.empty_like(verts)


@torch.library.custom_op("facecore::vertex_normals_backward", mutates_args=())
def _vertex_normals_backward(grad_normals: torch.Tensor, verts: torch.Tensor,
                             faces: torch.Tensor) -> torch.Tensor:
    faces = checked_indices("vertex_normals_backward", "faces", faces, verts.shape[1])
    grad_verts = torch.empty_like(verts)
    _C.vertex_normals_backward(verts, faces, grad_normals.contiguous(), grad_verts, threads(), stream(verts))
    return grad_verts


@_vertex_normals_backward.register_fake
def _(grad_normals, verts, faces):
    return torch.empty_like(verts)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_normals):
    verts, faces = ctx.saved_tensors
    return torch.ops.facecore.vertex_normals_backward(grad_normals, verts, faces), None


torch.library.register_autograd("facecore::vertex_normals", _backward, setup_context=_setup)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Unit area-weighted vertex normals ``[B, V, 3]`` (or ``[V, 3]`` for ``[V, 3]`` input).

    ``faces`` is int32/int64 ``[F, 3]`` with indices in ``[0, V)`` (checked: a bad index raises
    ValueError naming the face). Outward normals for counter-clockwise faces seen from outside.
    """
    op = "vertex_normals"
    check_tensor(op, "verts", verts, ndim=(2, 3), dtypes=_FLOATS, spec="[B, V, 3] or [V, 3]")
    check_tensor(op, "faces", faces, ndim=2, dtypes=(torch.int32, torch.int64), spec="[F, 3]")
    if verts.shape[-1] != 3 or faces.shape[1] != 3:
        raise ValueError(f"{op}: verts must be [B, V, 3] and faces [F, 3], got {list(verts.shape)} and "
                         f"{list(faces.shape)}")
    device = check_same_device(op, verts=verts, faces=faces)
    unbatched = verts.dim() == 2
    if unbatched:
        verts = verts.unsqueeze(0)
    backend = choose_backend(op, backend, device)
    if backend == "reference":
        if faces.numel() and not torch.compiler.is_compiling():  # the ops check inside themselves
            checked_indices(op, "faces", faces.long(), verts.shape[1])
        out = ref.vertex_normals(verts, faces)
    else:
        if backend == "cuda" and verts.dtype != torch.float32:
            raise TypeError(f"{op}: the cuda backend computes in float32, got {verts.dtype}")
        # faces go in as given (int32 or int64): the op checks and casts them (see checked_indices).
        out = torch.ops.facecore.vertex_normals(verts.contiguous(), faces)
    return out[0] if unbatched else out
