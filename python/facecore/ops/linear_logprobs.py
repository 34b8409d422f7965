"""Fused linear log-probs ``hidden[N,H], weight[V,H], targets[N] -> log p(target) [N]``.

``logp[n] = (hidden[n] · weight[t] + bias[t]) - logsumexp_v(hidden[n] · weight[v] + bias[v])`` with
``t = targets[n]``; rows with ``targets[n] == ignore_index`` give 0 and no gradient. The kernels walk
the vocabulary chunk by chunk with an online log-sum-exp, so the ``[N, V]`` logits are never stored:
memory is O(N + V·H) instead of O(N·V). The backward recomputes each logits chunk from the saved
per-row log-sum-exp (``lse [N]``) and forms ``dlogits = g (onehot - softmax)`` chunk by chunk.

Custom ops ``facecore::linear_logprobs`` (returns ``(logp, lse)``) and
``facecore::linear_logprobs_backward``; spec in :func:`facecore.reference.linear_logprobs`.
Backends: ``cpu`` (C++, OpenMP), ``triton`` (GPU, or the interpreter on CPU), ``reference``.

Log-probs come back in float32 for float16/bfloat16 inputs (float64 stays float64): they are summed
over sequences of hundreds of tokens into values like -2000, where a half-precision result (bfloat16
spacing 8 there) would swamp the O(1) margins a preference loss compares.
"""

from __future__ import annotations

import torch

from .. import _C
from .. import reference as ref
from ._common import check_same_device, check_tensor, choose_backend, threads

_CPU_FLOATS = (torch.float32, torch.float64)
_GPU_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _triton():
    from ..kernels.triton import linear_logprobs as tk  # imported lazily: triton is optional

    return tk


@torch.library.custom_op("facecore::linear_logprobs", mutates_args=())
def _linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    ignore_index: int,
    use_triton: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    if use_triton:
        return _triton().forward(hidden, weight, bias, targets, ignore_index)
    logp = hidden.new_empty(hidden.shape[0])
    lse = hidden.new_empty(hidden.shape[0])
    _C.linear_logprobs_forward(hidden, weight, bias, targets, ignore_index, logp, lse, threads())
    return logp, lse


@_linear_logprobs.register_fake
def _(hidden, weight, bias, targets, ignore_index, use_triton):
    out = torch.float32 if use_triton else hidden.dtype  # the triton kernel: float32 for every dtype
    return hidden.new_empty(hidden.shape[0], dtype=out), hidden.new_empty(hidden.shape[0], dtype=out)


@torch.library.custom_op("facecore::linear_logprobs_backward", mutates_args=())
def _linear_logprobs_backward(
    grad_logp: torch.Tensor,
    lse: torch.Tensor,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    ignore_index: int,
    use_triton: bool,
    need_hidden: bool,
    need_weight: bool,
    need_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if use_triton:
        return _triton().backward(
            grad_logp, lse, hidden, weight, bias, targets, ignore_index, need_hidden, need_weight, need_bias
        )
    gh = torch.empty_like(hidden) if need_hidden else None
    gw = torch.empty_like(weight) if need_weight else None
    gb = torch.empty_like(bias) if need_bias and bias is not None else None
    _C.linear_logprobs_backward(
        hidden, weight, bias, targets, ignore_index, grad_logp.contiguous(), lse, gh, gw, gb, threads()
    )
    # custom ops cannot return None: empty tensors (distinct: outputs may not alias) mean "not requested"
    return (
        gh if gh is not None else hidden.new_empty(0),
        gw if gw is not None else hidden.new_empty(0),
        gb if gb is not None else hidden.new_empty(0),
    )


@_linear_logprobs_backward.register_fake
def _(
    grad_logp,
    lse,
    hidden,
    weight,
    bias,
    targets,
    ignore_index,
    use_triton,
    need_hidden,
    need_weight,
    need_bias,
):
    return (
        torch.empty_like(hidden) if need_hidden else hidden.new_empty(0),
        torch.empty_like(weight) if need_weight else hidden.new_empty(0),
        torch.empty_like(bias) if need_bias and bias is not None else hidden.new_empty(0),
    )


def _setup(ctx, inputs, output):
    hidden, weight, bias, targets, ignore_index, use_triton = inputs
    ctx.save_for_backward(hidden, weight, bias, targets, output[1])
    ctx.ignore_index, ctx.use_triton = ignore_index, use_triton


def _backward(ctx, grad_logp, grad_lse):
    hidden, weight, bias, targets, lse = ctx.saved_tensors
    need = ctx.needs_input_grad
    gh, gw, gb = torch.ops.facecore.linear_logprobs_backward(
        grad_logp,
        lse,
        hidden,
        weight,
        bias,
        targets,
        ctx.ignore_index,
        ctx.use_triton,
        need[0],
        need[1],
        bool(need[2] and bias is not None),
    )
    return (
        gh if need[0] else None,
        gw if need[1] else None,
        gb if need[2] and bias is not None else None,
        None,
        None,
        None,
    )


torch.library.register_autograd("facecore::linear_logprobs", _backward, setup_context=_setup)


def linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Per-row log-probability of ``targets`` under ``softmax(hidden @ weight.T + bias)``: ``[N]``.

    ``hidden`` ``[N, H]`` (or ``[..., H]`` with ``targets`` ``[...]``; the result then has targets'
    shape), ``weight`` ``[V, H]``, ``bias`` ``[V]`` or None, integer ``targets`` in ``[0, V)`` or
    ``ignore_index`` (those rows give 0 and no gradient; any other value raises ValueError).
    Differentiable in hidden, weight and bias. CPU: float32/float64, float16/bfloat16 computed in
    float32; Triton: float32/float16/bfloat16 (softmax statistics in float32). The result is float32
    for half-precision inputs (float64 for float64), gradients have the inputs' dtypes.
    """
    op = "linear_logprobs"
    check_tensor(op, "hidden", hidden, dtypes=_CPU_FLOATS + _GPU_FLOATS[1:])
    check_tensor(op, "weight", weight, ndim=2, spec="[V, H]")
    check_tensor(op, "targets", targets, dtypes=(torch.int64, torch.int32, torch.int16, torch.uint8))
    if hidden.dim() < 1 or tuple(targets.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"{op}: targets must have the shape of hidden without its last dim "
            f"{list(hidden.shape[:-1])}, got {list(targets.shape)}"
        )
    H = hidden.shape[-1]
    if weight.shape[1] != H:
        raise ValueError(
            f"{op}: weight must have shape [V, H] = [V, {H}] (H from hidden), got {list(weight.shape)}"
        )
    if weight.shape[0] == 0:
        raise ValueError(f"{op}: weight must have at least one row (V >= 1)")
    if weight.dtype != hidden.dtype:
        raise TypeError(
            f"{op}: weight has dtype {weight.dtype} but hidden has {hidden.dtype}; they must match"
        )
    if bias is not None:
        check_tensor(op, "bias", bias, ndim=1, spec="[V]")
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"{op}: bias must have shape [V] = [{weight.shape[0]}], got {list(bias.shape)}")
        if bias.dtype != hidden.dtype:
            raise TypeError(
                f"{op}: bias has dtype {bias.dtype} but hidden has {hidden.dtype}; they must match"
            )
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise TypeError(f"{op}: ignore_index must be an int, got {type(ignore_index).__name__}")
    device = check_same_device(op, hidden=hidden, weight=weight, targets=targets, bias=bias)
    backend = choose_backend(op, backend, device, has_triton=True, has_cuda=False)
    out_shape = targets.shape
    h2 = hidden.reshape(-1, H)
    t1 = targets.reshape(-1).to(torch.int64)
    V = weight.shape[0]
    # The CPU kernel checks targets itself; elsewhere check here (eager only: it syncs on GPU).
    if backend != "cpu" and not torch.compiler.is_compiling() and t1.numel():
        bad = (t1 != ignore_index) & ((t1 < 0) | (t1 >= V))
        if bool(bad.any()):
            n = int(bad.nonzero()[0])
            raise ValueError(
                f"{op}: targets[{n}] = {int(t1[n])} is outside [0, V={V}) and is not "
                f"ignore_index={ignore_index}"
            )
    if backend == "reference":
        return ref.linear_logprobs(h2, weight, t1, bias, ignore_index).reshape(out_shape)
    if backend == "cpu" and hidden.dtype not in _CPU_FLOATS:
        # the C++ kernel is float32/float64: upcast (autograd casts the gradients back)
        h2, weight = h2.float(), weight.float()
        bias = None if bias is None else bias.float()
    if backend == "triton" and hidden.dtype == torch.float64:
        raise TypeError(f"{op}: the triton backend takes float32, float16 or bfloat16, got float64")
    logp, _ = torch.ops.facecore.linear_logprobs(
        h2.contiguous(),
        weight.contiguous(),
        None if bias is None else bias.contiguous(),
        t1.contiguous(),
        ignore_index,
        backend == "triton",
    )
    return logp.reshape(out_shape)
