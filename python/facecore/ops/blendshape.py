"""Blendshape and deform ops: parameters -> vertices, forward and backward.

``blendshape(weights[B,K], neutral[V,3], deltas)``: ``out[b,v] = neutral[v] + sum_k weights[b,k] deltas[k,v]``
with deltas dense ``[K,V,3]`` or a :class:`SparseDeltas` (block-sparse, lossless).

``deform(params[B,61], rig)``: the 52 blendshapes of the rig, then the eyeballs rotated about the eye
centres by the eye pose channels, then everything rotated about the neck pivot by the head pose
channels (see :mod:`facecore.pose` for the angle mapping), fused in one pass over the vertices.

Non-finite values follow IEEE arithmetic on every backend (cpu, cuda, triton, reference): a zero weight
is multiplied like any other, so ``0 * NaN = NaN`` and a NaN/inf delta reaches the output even when its
weight is zero. Only deltas that are not stored (the dropped all-zero blocks of a :class:`SparseDeltas`)
are exact zeros and never contribute.

Custom ops (all with fake implementations and autograd):
``facecore::blendshape`` / ``facecore::blendshape_backward`` and
``facecore::deform`` / ``facecore::deform_backward``. The rotations are built from the pose channels
in plain torch (a few dozen numbers), so autograd carries their gradient back to the pose channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _C
from .. import reference as ref
from ..pose import EYE_MAX_ANGLE, HEAD_MAX_ANGLE, pose_rotations
from ._common import check_same_device, check_same_dtype, check_tensor, choose_backend, stream, threads

BLOCK: int = _C.BLENDSHAPE_BLOCK  # vertices per sparse block
_FLOATS = (torch.float32, torch.float64)


# ----------------------------------------------------------------------------------------------
# Sparse deltas
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SparseDeltas:
    """Block-sparse blendshape deltas (exact: only all-zero blocks are dropped).

    Vertices are cut into blocks of ``BLOCK`` (32) consecutive vertices. For vertex block ``j`` the
    entries ``block_ptr[j]:block_ptr[j+1]`` hold the shapes (``block_shape``) that move at least one
    vertex of the block, with the deltas of all 32 vertices (``values``, zeros where a vertex stays).
    Each entry is 96 contiguous numbers: vector loads on the CPU, coalesced loads on the GPU.

    values ``[nnzb, 32, 3]`` (differentiable), block_ptr ``[ceil(V/32)+1]`` int32,
    block_shape ``[nnzb]`` int32, num_shapes K, num_vertices V.
    """

    values: torch.Tensor
    block_ptr: torch.Tensor
    block_shape: torch.Tensor
    num_shapes: int
    num_vertices: int

    def __post_init__(self) -> None:
        nblk = -(-self.num_vertices // BLOCK)
        op = "SparseDeltas"
        check_tensor(op, "values", self.values, ndim=3, dtypes=_FLOATS, spec="[nnzb, 32, 3]")
        check_tensor(op, "block_ptr", self.block_ptr, ndim=1, dtypes=(torch.int32,))
        check_tensor(op, "block_shape", self.block_shape, ndim=1, dtypes=(torch.int32,))
        nnzb = self.block_shape.shape[0]
        if tuple(self.values.shape) != (nnzb, BLOCK, 3):
            raise ValueError(f"{op}: values must have shape [nnzb, {BLOCK}, 3] = [{nnzb}, {BLOCK}, 3], "
                             f"got {list(self.values.shape)}")
        if self.block_ptr.shape[0] != nblk + 1:
            raise ValueError(f"{op}: block_ptr must have ceil(V/{BLOCK})+1 = {nblk + 1} entries, "
                             f"got {self.block_ptr.shape[0]}")
        bp = self.block_ptr.cpu()
        if bp[0] != 0 or bp[-1] != nnzb or bool((bp[1:] < bp[:-1]).any()):
            raise ValueError(f"{op}: block_ptr must rise from 0 to the number of entries ({nnzb})")
        if nnzb and (int(self.block_shape.min()) < 0 or int(self.block_shape.max()) >= self.num_shapes):
            raise ValueError(f"{op}: block_shape entries must lie in [0, {self.num_shapes})")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.num_shapes, self.num_vertices, 3)

    @property
    def density(self) -> float:
        """Stored fraction of the dense ``[K, V, 3]`` tensor."""
        return self.values.shape[0] * BLOCK / max(1, self.num_shapes * self.num_vertices)

    def to(self, *args, **kwargs) -> SparseDeltas:
        """Moves/casts ``values`` like ``Tensor.to``; the index arrays follow the device only."""
        values = self.values.to(*args, **kwargs)
        return SparseDeltas(values, self.block_ptr.to(values.device), self.block_shape.to(values.device),
                            self.num_shapes, self.num_vertices)

    def to_dense(self) -> torch.Tensor:
        """``[K, V, 3]``, differentiable with respect to ``values``."""
        nblk = self.block_ptr.shape[0] - 1
        counts = (self.block_ptr[1:] - self.block_ptr[:-1]).long()
        block_of_entry = torch.repeat_interleave(torch.arange(nblk, device=counts.device), counts)
        dense = self.values.new_zeros(self.num_shapes, nblk, BLOCK, 3)
        dense = dense.index_put((self.block_shape.long(), block_of_entry), self.values)
        return dense.reshape(self.num_shapes, nblk * BLOCK, 3)[:, : self.num_vertices]


def sparse_deltas(deltas: torch.Tensor, threshold: float = 0.0) -> SparseDeltas:
    """Dense ``[K, V, 3]`` deltas -> :class:`SparseDeltas`.

    With ``threshold = 0`` the conversion is lossless. A positive threshold first zeroes the deltas of
    vertices that a shape moves by at most ``threshold`` (Euclidean length, in rig units): pruning
    that the caller asks for explicitly.
    """
    check_tensor("sparse_deltas", "deltas", deltas, ndim=3, dtypes=_FLOATS, spec="[K, V, 3]")
    if deltas.shape[2] != 3:
        raise ValueError(f"sparse_deltas: deltas must have shape [K, V, 3], got {list(deltas.shape)}")
    if threshold < 0:
        raise ValueError(f"sparse_deltas: threshold must be >= 0, got {threshold}")
    deltas = deltas.detach()
    K, V, _ = deltas.shape
    if threshold > 0:
        deltas = torch.where(deltas.norm(dim=-1, keepdim=True) > threshold, deltas, 0.0)
    nblk = -(-V // BLOCK)
    blocks = torch.nn.functional.pad(deltas, (0, 0, 0, nblk * BLOCK - V)).reshape(K, nblk, BLOCK, 3)
    stored = (blocks != 0).flatten(2).any(-1)           # [K, nblk]
    j, k = stored.T.nonzero(as_tuple=True)               # sorted by block, then shape
    values = blocks[k, j].contiguous()
    counts = torch.bincount(j, minlength=nblk)
    block_ptr = torch.zeros(nblk + 1, dtype=torch.int32, device=deltas.device)
    block_ptr[1:] = torch.cumsum(counts, 0)
    return SparseDeltas(values, block_ptr, k.to(torch.int32), K, V)


# ----------------------------------------------------------------------------------------------
# blendshape: custom ops
# ----------------------------------------------------------------------------------------------
def _triton():
    from facecore.kernels.triton import blendshape as kernel  # imported only when chosen

    return kernel


@torch.library.custom_op("facecore::blendshape", mutates_args=())
def _blendshape(weights: torch.Tensor, neutral: torch.Tensor, deltas: torch.Tensor,
                block_ptr: torch.Tensor | None, block_shape: torch.Tensor | None,
                backend: str) -> torch.Tensor:
    out = weights.new_empty(weights.shape[0], neutral.shape[0], 3)
    if backend == "triton":
        _triton().blendshape_forward(weights, neutral, deltas, block_ptr, block_shape, out)
    else:
        _C.blendshape_forward(weights, neutral, deltas, block_ptr, block_shape, out, threads(), stream(out))
    return out


@_blendshape.register_fake
def _(weights, neutral, deltas, block_ptr, block_shape, backend):
    return weights.new_empty(weights.shape[0], neutral.shape[0], 3)


@torch.library.custom_op("facecore::blendshape_backward", mutates_args=())
def _blendshape_backward(grad_out: torch.Tensor, weights: torch.Tensor, neutral: torch.Tensor,
                         deltas: torch.Tensor, block_ptr: torch.Tensor | None,
                         block_shape: torch.Tensor | None, needs: list[bool],
                         backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gw, gn, gd = _grad_buffers(weights, neutral, deltas, needs)
    args = (weights, neutral, deltas, block_ptr, block_shape, grad_out.contiguous(),
            gw if needs[0] else None, gn if needs[1] else None, gd if needs[2] else None)
    if backend == "triton":
        _triton().blendshape_backward(*args)
    else:
        _C.blendshape_backward(*args, threads(), stream(grad_out))
    return gw, gn, gd


def _grad_buffers(weights, neutral, deltas, needs):
    # Unneeded gradients are empty tensors (a custom op cannot return None); autograd maps them to None.
    return tuple(t.new_empty(t.shape if need else (0,)) for t, need in zip((weights, neutral, deltas), needs))


@_blendshape_backward.register_fake
def _(grad_out, weights, neutral, deltas, block_ptr, block_shape, needs, backend):
    return _grad_buffers(weights, neutral, deltas, needs)


def _blendshape_setup(ctx, inputs, output):
    weights, neutral, deltas, block_ptr, block_shape, backend = inputs
    ctx.save_for_backward(weights, neutral, deltas, block_ptr, block_shape)
    ctx.backend = backend


def _blendshape_bwd(ctx, grad_out):
    weights, neutral, deltas, block_ptr, block_shape = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:3])
    gw, gn, gd = torch.ops.facecore.blendshape_backward(grad_out, weights, neutral, deltas, block_ptr,
                                                        block_shape, needs, ctx.backend)
    return (gw if needs[0] else None, gn if needs[1] else None, gd if needs[2] else None,
            None, None, None)


torch.library.register_autograd("facecore::blendshape", _blendshape_bwd, setup_context=_blendshape_setup)


# ----------------------------------------------------------------------------------------------
# deform: custom ops (blendshapes + rigid groups, fused)
# ----------------------------------------------------------------------------------------------
@torch.library.custom_op("facecore::deform", mutates_args=())
def _deform(weights: torch.Tensor, neutral: torch.Tensor, deltas: torch.Tensor,
            block_ptr: torch.Tensor | None, block_shape: torch.Tensor | None, rotations: torch.Tensor,
            pivots: torch.Tensor, group: torch.Tensor, backend: str) -> torch.Tensor:
    out = weights.new_empty(weights.shape[0], neutral.shape[0], 3)
    if backend == "triton":
        _triton().deform_forward(weights, neutral, deltas, block_ptr, block_shape, rotations, pivots,
                                 group, out)
    else:
        _C.deform_forward(weights, neutral, deltas, block_ptr, block_shape, rotations, pivots, group, out,
                          threads(), stream(out))
    return out


@_deform.register_fake
def _(weights, neutral, deltas, block_ptr, block_shape, rotations, pivots, group, backend):
    return weights.new_empty(weights.shape[0], neutral.shape[0], 3)


@torch.library.custom_op("facecore::deform_backward", mutates_args=())
def _deform_backward(grad_out: torch.Tensor, out: torch.Tensor, weights: torch.Tensor,
                     neutral: torch.Tensor, deltas: torch.Tensor, block_ptr: torch.Tensor | None,
                     block_shape: torch.Tensor | None, rotations: torch.Tensor, pivots: torch.Tensor,
                     group: torch.Tensor, needs: list[bool], backend: str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    grad_out = grad_out.contiguous()
    grad_points = torch.empty_like(out)
    grad_rot = torch.empty_like(rotations)
    if backend == "triton":
        _triton().rigid_backward(out, grad_out, rotations, pivots, group, grad_points, grad_rot)
    else:
        _C.rigid_backward(out, grad_out, rotations, pivots, group, grad_points, grad_rot, threads(),
                          stream(out))
    gw, gn, gd = torch.ops.facecore.blendshape_backward(grad_points, weights, neutral, deltas, block_ptr,
                                                        block_shape, needs[:3], backend)
    return gw, gn, gd, grad_rot


@_deform_backward.register_fake
def _(grad_out, out, weights, neutral, deltas, block_ptr, block_shape, rotations, pivots, group, needs,
      backend):
    return (*_grad_buffers(weights, neutral, deltas, needs[:3]), torch.empty_like(rotations))


def _deform_setup(ctx, inputs, output):
    weights, neutral, deltas, block_ptr, block_shape, rotations, pivots, group, backend = inputs
    ctx.save_for_backward(output, weights, neutral, deltas, block_ptr, block_shape, rotations, pivots, group)
    ctx.backend = backend


def _deform_bwd(ctx, grad_out):
    out, weights, neutral, deltas, block_ptr, block_shape, rotations, pivots, group = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:3]) + [ctx.needs_input_grad[5]]
    gw, gn, gd, gr = torch.ops.facecore.deform_backward(grad_out, out, weights, neutral, deltas, block_ptr,
                                                        block_shape, rotations, pivots, group, needs,
                                                        ctx.backend)
    return (gw if needs[0] else None, gn if needs[1] else None, gd if needs[2] else None, None, None,
            gr if needs[3] else None, None, None, None)


torch.library.register_autograd("facecore::deform", _deform_bwd, setup_context=_deform_setup)


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------
def _check_deltas(op: str, deltas, K: int, V: int, dtype: torch.dtype, device: torch.device):
    if isinstance(deltas, SparseDeltas):
        if (deltas.num_shapes, deltas.num_vertices) != (K, V):
            raise ValueError(f"{op}: deltas are for K={deltas.num_shapes} shapes and V={deltas.num_vertices} "
                             f"vertices, but weights give K={K} and neutral V={V}")
        values, bp, bs = deltas.values, deltas.block_ptr, deltas.block_shape
    else:
        check_tensor(op, "deltas", deltas, ndim=3, spec="[K, V, 3] or a SparseDeltas")
        if tuple(deltas.shape) != (K, V, 3):
            raise ValueError(f"{op}: deltas must have shape [K, V, 3] = [{K}, {V}, 3], "
                             f"got {list(deltas.shape)}")
        values, bp, bs = deltas, None, None
    check_same_dtype(op, weights=torch.empty(0, dtype=dtype), deltas=values)
    check_same_device(op, weights=torch.empty(0, device=device), deltas=values,
                      block_ptr=bp, block_shape=bs)
    return values.contiguous(), bp, bs


def blendshape(weights: torch.Tensor, neutral: torch.Tensor, deltas: torch.Tensor | SparseDeltas, *,
               backend: str = "auto") -> torch.Tensor:
    """Blendshape evaluation ``[B, K], [V, 3], deltas -> [B, V, 3]``.

    ``deltas`` is dense ``[K, V, 3]`` or a :class:`SparseDeltas` (see :func:`sparse_deltas`); gradients
    flow to weights, neutral and deltas (``SparseDeltas.values`` for sparse). float32 on every backend,
    float64 on the CPU and reference backends. Non-contiguous inputs are copied to contiguous ones.
    NaN/inf follow IEEE arithmetic (a zero weight times a NaN delta is NaN), identically on every backend.
    """
    op = "blendshape"
    check_tensor(op, "weights", weights, ndim=2, dtypes=_FLOATS, spec="[B, K]")
    check_tensor(op, "neutral", neutral, ndim=2, dtypes=_FLOATS, spec="[V, 3]")
    if neutral.shape[1] != 3:
        raise ValueError(f"{op}: neutral must have shape [V, 3], got {list(neutral.shape)}")
    check_same_dtype(op, weights=weights, neutral=neutral)
    device = check_same_device(op, weights=weights, neutral=neutral)
    K, V = weights.shape[1], neutral.shape[0]
    values, bp, bs = _check_deltas(op, deltas, K, V, weights.dtype, device)
    backend = choose_backend(op, backend, device, has_triton=True)
    if backend == "reference":
        return ref.blendshape(weights, neutral, deltas)
    _check_gpu_dtype(op, backend, weights)
    return torch.ops.facecore.blendshape(weights.contiguous(), neutral.contiguous(), values, bp, bs, backend)


def _check_gpu_dtype(op: str, backend: str, weights: torch.Tensor) -> None:
    if backend in ("cuda", "triton") and weights.dtype != torch.float32:
        raise TypeError(f"{op}: the {backend} backend computes in float32, got weights of dtype "
                        f"{str(weights.dtype).removeprefix('torch.')}")


def rig_vertex_groups(rig, device: torch.device) -> torch.Tensor:
    """``[V]`` int32: 0 for head vertices, 1 for the left eyeball, 2 for the right eyeball."""
    group = torch.zeros(rig.neutral.shape[0], dtype=torch.int32, device=device)
    group[rig.groups["left_eye"].to(device)] = 1
    group[rig.groups["right_eye"].to(device)] = 2
    return group


def deform(params: torch.Tensor, rig, *, backend: str = "auto", sparse: bool = True,
           head_max_angle: float = HEAD_MAX_ANGLE, eye_max_angle: float = EYE_MAX_ANGLE) -> torch.Tensor:
    """61 ARKit parameters ``[B, 61]`` -> posed vertices ``[B, V, 3]`` of ``rig`` (a FaceRig).

    Blendshapes (channels 0-51), then each eyeball rotated about its eye centre by its eye pose
    channels, then the whole head rotated about ``rig.neck_pivot`` by HeadYaw/Pitch/Roll; angles per
    :mod:`facecore.pose` (1.0 = 90 degrees for the head, 45 degrees for the eyes). Gradients flow to
    ``params``; to the rig's tensors too when they require grad (neutral and, with ``sparse=False``,
    the dense deltas). ``sparse=True`` uses the rig's exact block-sparse deltas.
    """
    op = "deform"
    check_tensor(op, "params", params, ndim=2, dtypes=_FLOATS, spec="[B, 61]")
    if params.shape[1] != 61:
        raise ValueError(f"{op}: params must have shape [B, 61], got {list(params.shape)}")
    neutral = rig.neutral
    if neutral.device != params.device or neutral.dtype != params.dtype:
        raise ValueError(f"{op}: rig is {neutral.dtype} on {neutral.device} but params are {params.dtype} on "
                         f"{params.device}; use rig.to(...) first")
    backend = choose_backend(op, backend, params.device, has_triton=True)
    if backend == "reference":
        return ref.deform(params, rig, head_max_angle=head_max_angle, eye_max_angle=eye_max_angle)
    _check_gpu_dtype(op, backend, params)
    deltas = rig.sparse_deltas() if sparse else rig.dense_deltas()
    values, bp, bs = _check_deltas(op, deltas, 52, neutral.shape[0], params.dtype, params.device)
    rotations = pose_rotations(params[:, 52:], head_max_angle, eye_max_angle).contiguous()
    pivots = torch.cat([rig.neck_pivot.reshape(1, 3), rig.eye_centers.reshape(2, 3)]).to(params).contiguous()
    group = rig_vertex_groups(rig, params.device)
    weights = params[:, :52].contiguous()
    return torch.ops.facecore.deform(weights, neutral.contiguous(), values, bp, bs, rotations, pivots, group,
                                     backend)
