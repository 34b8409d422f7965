"""Preference losses on top of fused linear log-probs: the ``[N, V]`` logits of the LM head never exist.

``sequence_logprobs`` turns final hidden states ``[B, T, H]`` and the LM head into per-sequence
log-probs; ``fused_linear_preference_loss`` does that for the chosen and rejected answers in one
kernel call and applies :func:`facecore.losses.preference_loss`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..ops.linear_logprobs import linear_logprobs
from .preference import _NO_REFERENCE, KINDS, preference_loss


def _masked_targets(
    op: str, targets: torch.Tensor, mask: torch.Tensor | None, ignore_index: int
) -> torch.Tensor:
    if mask is None:
        return targets
    if not isinstance(mask, torch.Tensor) or mask.shape != targets.shape:
        raise ValueError(
            f"{op}: mask must be a tensor of the targets' shape {list(targets.shape)}, got "
            f"{list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}"
        )
    return torch.where(mask.bool(), targets, torch.full_like(targets, ignore_index))


def _reduce(
    token_logps: torch.Tensor, targets: torch.Tensor, ignore_index: int, average: bool
) -> torch.Tensor:
    total = token_logps.sum(-1)  # ignored tokens are exactly 0
    if not average:
        return total
    return total / (targets != ignore_index).sum(-1).clamp(min=1).to(total.dtype)


def sequence_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    mask: torch.Tensor | None = None,
    ignore_index: int = -100,
    average: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Per-sequence ``Σ_t log p(targets[b, t])`` (``average=True``: mean over counted tokens): ``[B]``.

    ``hidden`` ``[B, T, H]``, ``targets`` ``[B, T]`` (already shifted: targets[b, t] is predicted from
    hidden[b, t]); tokens with ``targets == ignore_index`` or ``mask == False`` are not counted.
    float32 for float16/bfloat16 inputs (the token log-probs are float32 already; a half-precision sum
    of a -2000 sequence would drown an O(1) preference margin).
    """
    op = "sequence_logprobs"
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        raise ValueError(f"{op}: hidden must be a [B, T, H] tensor")
    t = _masked_targets(op, targets, mask, ignore_index)
    tok = linear_logprobs(hidden, weight, t, bias, ignore_index, backend=backend)
    return _reduce(tok, t, ignore_index, average)


def fused_linear_preference_loss(
    hidden_chosen: torch.Tensor,
    hidden_rejected: torch.Tensor,
    weight: torch.Tensor,
    targets_chosen: torch.Tensor,
    targets_rejected: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    ref_chosen: torch.Tensor | None = None,
    ref_rejected: torch.Tensor | None = None,
    ref_weight: torch.Tensor | None = None,
    ref_bias: torch.Tensor | None = None,
    ref_hidden_chosen: torch.Tensor | None = None,
    ref_hidden_rejected: torch.Tensor | None = None,
    beta: float = 0.1,
    kind: str = "sigmoid",
    label_smoothing: float = 0.0,
    gamma: float = 0.5,
    labels: torch.Tensor | None = None,
    average: bool | None = None,
    ignore_index: int = -100,
    backend: str = "auto",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Preference loss of ``kind`` straight from the policy's final hidden states and LM head.

    ``hidden_chosen`` ``[B, Tc, H]`` / ``hidden_rejected`` ``[B, Tr, H]`` with targets ``[B, Tc]`` /
    ``[B, Tr]`` (``ignore_index`` marks prompt and padding tokens), LM head ``weight`` ``[V, H]`` and
    optional ``bias``. The reference model enters either as precomputed per-sequence log-probs
    (``ref_chosen``/``ref_rejected`` ``[B]``) or as its LM head ``ref_weight``/``ref_bias`` applied
    (without gradient) to ``ref_hidden_*`` (default: the policy's hidden states, i.e. a reference that
    differs only in its head). ``average`` (default: True for simpo/orpo) length-normalises the
    sequence log-probs. Returns ``(loss, info)`` as :func:`preference_loss`, plus ``chosen_logps`` and
    ``rejected_logps``.
    """
    op = "fused_linear_preference_loss"
    if kind not in KINDS:
        raise ValueError(f"{op}: kind must be one of {KINDS}, got {kind!r}")
    for name, h, t in (
        ("chosen", hidden_chosen, targets_chosen),
        ("rejected", hidden_rejected, targets_rejected),
    ):
        if not isinstance(h, torch.Tensor) or h.dim() != 3:
            raise ValueError(f"{op}: hidden_{name} must be a [B, T, H] tensor")
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(h.shape[:2]):
            raise ValueError(
                f"{op}: targets_{name} must have shape [B, T] = {list(h.shape[:2])}, got "
                f"{list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
            )
    if hidden_chosen.shape[0] != hidden_rejected.shape[0]:
        raise ValueError(
            f"{op}: hidden_chosen has {hidden_chosen.shape[0]} sequences but hidden_rejected has "
            f"{hidden_rejected.shape[0]}; they must be pairs"
        )
    if average is None:
        average = kind in _NO_REFERENCE
    B = hidden_chosen.shape[0]
    Tc, Tr = hidden_chosen.shape[1], hidden_rejected.shape[1]

    def both(hc, hr, w, b):
        # one kernel call over the chosen and rejected rows together (one pass over the head)
        rows = torch.cat([hc.reshape(-1, hc.shape[-1]), hr.reshape(-1, hr.shape[-1])])
        tgt = torch.cat([targets_chosen.reshape(-1), targets_rejected.reshape(-1)])
        tok = linear_logprobs(rows, w, tgt, b, ignore_index, backend=backend)
        c = _reduce(tok[: B * Tc].reshape(B, Tc), targets_chosen, ignore_index, average)
        r = _reduce(tok[B * Tc :].reshape(B, Tr), targets_rejected, ignore_index, average)
        return c, r

    chosen, rejected = both(hidden_chosen, hidden_rejected, weight, bias)
    if kind not in _NO_REFERENCE and (ref_chosen is None or ref_rejected is None):
        if ref_weight is None:
            raise ValueError(
                f"{op}: kind={kind!r} needs the reference model: pass ref_chosen/ref_rejected "
                "log-probs or ref_weight (its LM head)"
            )
        with torch.no_grad():
            ref_hc = hidden_chosen if ref_hidden_chosen is None else ref_hidden_chosen
            ref_hr = hidden_rejected if ref_hidden_rejected is None else ref_hidden_rejected
            ref_chosen, ref_rejected = both(
                ref_hc.detach(),
                ref_hr.detach(),
                ref_weight.detach(),
                None if ref_bias is None else ref_bias.detach(),
            )
    loss, info = preference_loss(
        chosen,
        rejected,
        ref_chosen,
        ref_rejected,
        beta=beta,
        kind=kind,
        label_smoothing=label_smoothing,
        gamma=gamma,
        labels=labels,
    )
    info["chosen_logps"], info["rejected_logps"] = chosen.detach(), rejected.detach()
    return loss, info
