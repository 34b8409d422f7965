"""Fused scaled-dot-product attention with a learnable additive bias, forward and backward.

Custom ops ``facecore::attention`` / ``facecore::attention_backward``; the maths and every convention
(bottom-right causal alignment, ``key_padding_mask`` True = padding, GQA head mapping, fully masked
rows -> zeros) are those of :func:`facecore.reference.attention`.

Backends: ``cpu`` is the C++ kernel (blocked online softmax, recomputation in backward, float32 and
float64; float16/bfloat16 inputs are computed in float32); ``triton`` is the FlashAttention-2 Triton
kernel (float32/float16/bfloat16), which is also facecore's CUDA path: there is no hand-written CUDA
attention kernel, so ``backend="auto"`` on a GPU picks Triton and ``backend="cuda"`` is refused.
``reference`` runs the plain-torch oracle. Neither kernel stores the ``[Lq, Lk]`` attention matrix;
the only quadratic buffers are the bias and, on Triton, the bias gradient before its reduction to the
bias's shape.
"""

from __future__ import annotations

import math

import torch

from .. import _C
from .. import reference as ref
from ._common import check_same_device, check_same_dtype, check_tensor, choose_backend, threads

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_OP = "attention"


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _triton():
    from ..kernels.triton import attention as tk

    return tk


@torch.library.custom_op("facecore::attention", mutates_args=())
def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
               key_padding_mask: torch.Tensor | None, causal: bool, scale: float,
               backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "triton":
        return _triton().attention_forward(q, k, v, bias, key_padding_mask, causal, scale)
    out = torch.empty_like(q)
    lse = q.new_empty(q.shape[:3])
    _C.attention_forward(q, k, v, bias, key_padding_mask, causal, scale, out, lse, threads())
    return out, lse


@_attention.register_fake
def _(q, k, v, bias, key_padding_mask, causal, scale, backend):
    return torch.empty_like(q), q.new_empty(q.shape[:3], dtype=_lse_dtype(q.dtype))


@torch.library.custom_op("facecore::attention_backward", mutates_args=())
def _attention_backward(grad_out: torch.Tensor, grad_lse: torch.Tensor | None, q: torch.Tensor,
                        k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                        key_padding_mask: torch.Tensor | None, out: torch.Tensor, lse: torch.Tensor,
                        causal: bool, scale: float, backend: str,
                        bias_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv, dbias); dbias is an empty tensor when ``bias_grad`` is False."""
    if backend == "triton":
        dq, dk, dv, dbias = _triton().attention_backward(grad_out, grad_lse, q, k, v, bias, key_padding_mask,
                                                         out, lse, causal, scale, bias_grad)
        return dq, dk, dv, dbias if dbias is not None else q.new_empty(0)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dbias = torch.empty_like(bias) if bias_grad else None
    _C.attention_backward(q, k, v, bias, key_padding_mask, causal, scale, out, lse, grad_out.contiguous(),
                          None if grad_lse is None else grad_lse.contiguous(), dq, dk, dv, dbias, threads())
    return dq, dk, dv, dbias if dbias is not None else q.new_empty(0)


@_attention_backward.register_fake
def _(grad_out, grad_lse, q, k, v, bias, key_padding_mask, out, lse, causal, scale, backend, bias_grad):
    dbias = torch.empty_like(bias) if bias_grad else q.new_empty(0)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), dbias


def _setup(ctx, inputs, output):
    q, k, v, bias, kpm, causal, scale, backend = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, bias, kpm, out, lse)
    ctx.causal, ctx.scale, ctx.backend = causal, scale, backend
    ctx.bias_grad = bias is not None and ctx.needs_input_grad[3]


def _backward(ctx, grad_out, grad_lse):
    q, k, v, bias, kpm, out, lse = ctx.saved_tensors
    dq, dk, dv, dbias = torch.ops.facecore.attention_backward(
        grad_out, grad_lse, q, k, v, bias, kpm, out, lse, ctx.causal, ctx.scale, ctx.backend, ctx.bias_grad)
    return dq, dk, dv, (dbias if ctx.bias_grad else None), None, None, None, None


torch.library.register_autograd("facecore::attention", _backward, setup_context=_setup)


def _check(q, k, v, bias, causal, key_padding_mask, scale):
    """Validate the public arguments; returns (bias as a 4-D view or None, scale)."""
    check_tensor(_OP, "q", q, ndim=4, dtypes=_FLOATS, spec="[B, Hq, Lq, D]")
    check_tensor(_OP, "k", k, ndim=4, dtypes=_FLOATS, spec="[B, Hkv, Lk, D]")
    check_tensor(_OP, "v", v, ndim=4, dtypes=_FLOATS, spec="[B, Hkv, Lk, D]")
    check_same_dtype(_OP, q=q, k=k, v=v, bias=bias)
    check_same_device(_OP, q=q, k=k, v=v, bias=bias, key_padding_mask=key_padding_mask)
    B, Hq, Lq, D = q.shape
    if k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"{_OP}: k must have shape [B, Hkv, Lk, D] with B={B} and D={D} as in q "
                         f"{list(q.shape)}, got {list(k.shape)}")
    if v.shape != k.shape:
        raise ValueError(f"{_OP}: v must have the shape of k {list(k.shape)}, got {list(v.shape)}")
    Hkv, Lk = k.shape[1], k.shape[2]
    if min(B, Hq, Lq, D, Hkv, Lk) < 1:
        raise ValueError(f"{_OP}: every size must be >= 1, got q {list(q.shape)} and k {list(k.shape)}")
    if Hq % Hkv:
        raise ValueError(f"{_OP}: q has {Hq} heads, which must be a multiple of the {Hkv} heads of k and v "
                         "(grouped-query attention)")
    if not isinstance(causal, bool):
        raise TypeError(f"{_OP}: causal must be a bool, got {type(causal).__name__}")
    full = (B, Hq, Lq, Lk)
    if bias is not None:
        check_tensor(_OP, "bias", bias, ndim=(0, 1, 2, 3, 4), spec="broadcastable to [B, Hq, Lq, Lk]")
        shape = (1,) * (4 - bias.dim()) + tuple(bias.shape)
        if any(s not in (1, f) for s, f in zip(shape, full)):
            raise ValueError(f"{_OP}: bias must broadcast to [B, Hq, Lq, Lk] = {list(full)}, "
                             f"got {list(bias.shape)}")
        bias = bias.reshape(shape)
    if key_padding_mask is not None:
        check_tensor(_OP, "key_padding_mask", key_padding_mask, ndim=2, dtypes=(torch.bool,), spec="[B, Lk]")
        if tuple(key_padding_mask.shape) != (B, Lk):
            raise ValueError(f"{_OP}: key_padding_mask must have shape [B, Lk] = {[B, Lk]}, "
                             f"got {list(key_padding_mask.shape)}")
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    elif not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
        raise ValueError(f"{_OP}: scale must be a finite number or None, got {scale!r}")
    return bias, float(scale)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None,
              causal: bool = False, key_padding_mask: torch.Tensor | None = None, scale: float | None = None,
              return_lse: bool = False, backend: str = "auto"):
    """Attention ``softmax(scale * q k^T + bias) v`` without materialising the attention matrix.

    q ``[B, Hq, Lq, D]``, k/v ``[B, Hkv, Lk, D]`` (``Hq`` a multiple of ``Hkv``: grouped-query attention);
    ``bias`` broadcastable to ``[B, Hq, Lq, Lk]`` and differentiable (its gradient has the bias's shape);
    ``causal`` aligned bottom-right (query ``i`` sees keys ``j <= i + Lk - Lq``, as in FlashAttention
    >= 2.1 and KV-cache decoding; PyTorch's ``is_causal`` aligns top-left); ``key_padding_mask [B, Lk]``
    bool, True = padding key (never attended); ``scale`` defaults to ``1/sqrt(D)``. A query whose keys
    are all masked returns zeros (and ``lse = -inf``) with zero gradients. Padding keys may hold garbage:
    their scores are overwritten (not added to), their K/V rows read as zeros and get zero gradient, so a
    NaN/inf there (or in its bias) never reaches a real row; a NaN query gives a NaN row of its own.

    Returns ``out [B, Hq, Lq, D]`` and, with ``return_lse``, ``lse [B, Hq, Lq]`` (float32, or float64
    for float64 inputs), itself differentiable.
    """
    bias, scale = _check(q, k, v, bias, causal, key_padding_mask, scale)
    backend = choose_backend(_OP, backend, q.device, has_triton=True, has_cuda=False)
    if backend == "reference":
        res = ref.attention(q, k, v, bias, causal, key_padding_mask, scale, return_lse=True)
        out, lse = res[0], res[1].to(_lse_dtype(q.dtype))
        return (out, lse) if return_lse else out
    dtype = q.dtype
    if backend == "triton" and dtype == torch.float64:
        raise TypeError(f"{_OP}: the triton backend takes float32, float16 or bfloat16, got float64")
    if backend == "cpu" and dtype in (torch.float16, torch.bfloat16):
        # The CPU kernel computes in float32; the casts are ordinary differentiable torch ops.
        q, k, v = q.float(), k.float(), v.float()
        bias = None if bias is None else bias.float()
    kpm = None if key_padding_mask is None else key_padding_mask.contiguous()
    out, lse = torch.ops.facecore.attention(q.contiguous(), k.contiguous(), v.contiguous(),
                                            None if bias is None else bias.contiguous(), kpm, causal, scale,
                                            backend)
    out = out.to(dtype)
    return (out, lse) if return_lse else out
