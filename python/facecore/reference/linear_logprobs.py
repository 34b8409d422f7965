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

    Half-precision inputs are upcast to float32 for the softmax (as the kernels do).
    """
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    valid = targets != ignore_index
    picked = logp.gather(1, torch.where(valid, targets, 0).long()[:, None])[:, 0]
    return torch.where(valid, picked, torch.zeros_like(picked)).to(hidden.dtype)


def sequence_logprobs(token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Per-sequence sum (or mean) of token log-probs ``[B, T]`` over ``mask`` ``[B, T]``."""
    m = mask.to(token_logps.dtype)
    s = (token_logps * m).sum(-1)
    return s / m.sum(-1).clamp(min=1) if average else s
