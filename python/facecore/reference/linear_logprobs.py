"""Plain-torch linear log-probs: materialise ``logits = hidden @ weight.T + bias`` ``[N, V]``,
``log_softmax`` and gather. The oracle for :mod:`facecore.ops.linear_logprobs` (which never builds
``[N, V]``).
"""

from __future__ import annotations

import torch


def linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """``log softmax(hidden @ weight.T + bias)[n, targets[n]]`` per row ``[N]``; 0 where ignored.

    Half-precision inputs are upcast to float32 before the product (the kernels accumulate the logits
    in float32) and the result stays float32. Ignored rows are replaced by zeros *before* the product
    (a select, not a multiply by a 0 mask): their hidden may be huge, and inf logits would make the
    log-softmax backward NaN for them and, through ``dweight``, for every row.
    """
    if hidden.dtype in (torch.float16, torch.bfloat16):
        hidden, weight = hidden.float(), weight.float()
        bias = None if bias is None else bias.float()
    valid = targets != ignore_index
    hidden = torch.where(valid[:, None], hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device))
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(1, torch.where(valid, targets, 0).long()[:, None])[:, 0]
    return torch.where(valid, picked, torch.zeros_like(picked))


def sequence_logprobs(token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Per-sequence sum (or mean) of token log-probs ``[B, T]`` over ``mask`` ``[B, T]``.

    Accumulated and returned in float32 at least (float64 stays float64): a half-precision sum of a
    -2000 sequence log-prob is off by several units. Masked tokens are selected away, not multiplied.
    """
    token_logps = token_logps.to(torch.promote_types(token_logps.dtype, torch.float32))
    mask = mask.bool()
    s = torch.where(mask, token_logps, torch.zeros_like(token_logps)).sum(-1)
    return s / mask.sum(-1).clamp(min=1).to(s.dtype) if average else s
