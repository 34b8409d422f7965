"""The DPO family of pairwise preference losses over per-sample log-probabilities.

With the log-ratios ``c = policy_chosen - ref_chosen`` and ``r = policy_rejected - ref_rejected``,
``Δ = c - r`` and the rewards ``β c``, ``β r``, one loss per pair (then the batch mean):

=========  ===============================================================================  ===========
kind       per-pair loss (label y = P(chosen preferred); s = 2y - 1 for hard labels)          ties / ε
=========  ===============================================================================  ===========
sigmoid    -y' log σ(βΔ) - (1 - y') log σ(-βΔ),  y' = y(1 - ε) + (1 - y)ε  (DPO)             yes / yes
hinge      relu(1 - s βΔ)  (SLiC)                                                            no / no
ipo        (Δ - (y - 1/2)/β)^2   (y = 1: (Δ - 1/(2β))^2)                                     yes / no
robust     (-(1 - ε) log σ(s βΔ) + ε log σ(-s βΔ)) / (1 - 2ε)                                no / yes
simpo      -(1 - ε) log σ(z) - ε log σ(-z),  z = β s (c̄ - r̄) - γ,  length-normalised, no ref   no / yes
orpo       -β log σ(s (log odds(c̄) - log odds(r̄))),  log odds(p) = p - log(1 - e^p), no ref     no / no
bco_pair   -log σ(β c_w - δ) - log σ(-(β c_l - δ)),  δ = mean reward (or given)               no / no
kto        ½(1 - σ(β c_w - β z_l)) + ½(1 - σ(β z_w - β c_l)),  z = batch KL estimate, ≥ 0     no / no
=========  ===============================================================================  ===========

For simpo and orpo ``policy_chosen``/``policy_rejected`` are the average per-token log-probs and the
``ref_*`` arguments are ignored (may be None). Every log σ is ``F.logsigmoid`` (never log of σ), so
float32 stays finite for |βΔ| up to 1e4 and beyond. ``kto_loss`` is the unpaired KTO objective.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

KINDS = ("sigmoid", "hinge", "ipo", "robust", "simpo", "orpo", "bco_pair", "kto")
_TIES = ("sigmoid", "ipo")
_SMOOTHING = ("sigmoid", "robust", "simpo")
_NO_REFERENCE = ("simpo", "orpo")


def _check_logps(op: str, **tensors: torch.Tensor | None) -> tuple[int, ...]:
    shape = None
    first = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
        if t.dim() != 1:
            raise ValueError(f"{op}: {name} must have shape [B] (one value per pair), got {list(t.shape)}")
        if shape is None:
            shape, first = tuple(t.shape), name
        elif tuple(t.shape) != shape:
            raise ValueError(
                f"{op}: {name} has shape {list(t.shape)} but {first} has {list(shape)}; "
                "every per-pair tensor must have the same batch size"
            )
    return shape or (0,)


def _check_labels(op: str, labels: torch.Tensor | None, batch: tuple[int, ...], kind: str) -> None:
    if labels is None:
        return
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{op}: labels must be a torch.Tensor, got {type(labels).__name__}")
    if tuple(labels.shape) != batch:
        raise ValueError(
            f"{op}: labels must have shape {list(batch)} (one per pair), got {list(labels.shape)}"
        )
    y = labels.detach().double()
    if bool(((y < 0) | (y > 1) | torch.isnan(y)).any()):
        raise ValueError(f"{op}: labels must lie in [0, 1] (1 = chosen preferred, 0.5 = tie)")
    if kind not in _TIES and bool(((y != 0) & (y != 1)).any()):
        raise ValueError(
            f"{op}: kind={kind!r} needs hard labels 0 or 1; ties/soft labels are supported by kind in {_TIES}"
        )


def _check_scalars(op: str, beta: float, kind: str, label_smoothing: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"{op}: kind must be one of {KINDS}, got {kind!r}")
    if (
        not isinstance(beta, (int, float))
        or isinstance(beta, bool)
        or not beta > 0
        or not math.isfinite(beta)
    ):
        raise ValueError(f"{op}: beta must be a finite number > 0, got {beta!r}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"{op}: label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
    if label_smoothing and kind not in _SMOOTHING:
        raise ValueError(f"{op}: label_smoothing is used by kind in {_SMOOTHING}, not {kind!r}")


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - e^x) for x < 0 without cancellation (Mächler 2012)."""
    near = x > -math.log(2)
    # each branch sees only inputs valid for it, so the unused branch cannot put NaN into the gradient
    a = torch.log(-torch.expm1(torch.where(near, x, -1.0)))
    b = torch.log1p(-torch.exp(torch.where(near, -1.0, x)))
    return torch.where(near, a, b)


def _per_pair(
    policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, kind, eps, gamma, labels, delta
):
    if kind in _NO_REFERENCE:
        cr, rr = beta * policy_chosen, beta * policy_rejected
    else:
        cr, rr = beta * (policy_chosen - ref_chosen), beta * (policy_rejected - ref_rejected)
    bd = cr - rr  # βΔ, formed from the rewards so that the logging and the loss agree exactly
    y = None if labels is None else labels.to(bd.dtype)
    s = 1.0 if y is None else 2 * y - 1  # hard labels: +1 chosen preferred, -1 rejected preferred

    if kind == "sigmoid":
        ys = 1 - eps if y is None else y * (1 - eps) + (1 - y) * eps
        loss = -ys * F.logsigmoid(bd)
        if not isinstance(ys, float) or ys != 1:
            loss = loss - (1 - ys) * F.logsigmoid(-bd)
    elif kind == "hinge":
        loss = torch.relu(1 - s * bd)
    elif kind == "ipo":
        target = 0.5 if y is None else y - 0.5
        loss = (bd / beta - target / beta) ** 2
    elif kind == "robust":
        loss = (-(1 - eps) * F.logsigmoid(s * bd) + eps * F.logsigmoid(-s * bd)) / (1 - 2 * eps)
    elif kind == "simpo":
        z = s * bd - gamma
        loss = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
    elif kind == "orpo":
        log_odds = (policy_chosen - policy_rejected) - (_log1mexp(policy_chosen) - _log1mexp(policy_rejected))
        loss = -beta * F.logsigmoid(s * log_odds)
    else:
        # bco_pair and kto: winner/loser log-ratios per pair according to the hard label
        win = cr if y is None else torch.where(y > 0.5, cr, rr)
        lose = rr if y is None else torch.where(y > 0.5, rr, cr)
        if kind == "bco_pair":
            d = torch.cat([cr, rr]).mean().detach() if delta is None else delta
            loss = -F.logsigmoid(win - d) - F.logsigmoid(-(lose - d))
        else:  # kto: each side measured against the other side's batch KL estimate (detached, >= 0)
            kl_w = (win / beta).mean().clamp(min=0).detach()
            kl_l = (lose / beta).mean().clamp(min=0).detach()
            loss = 0.5 * ((1 - torch.sigmoid(win - beta * kl_l)) + (1 - torch.sigmoid(beta * kl_w - lose)))
    return loss, cr, rr


def preference_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor | None = None,
    ref_rejected: torch.Tensor | None = None,
    beta: float = 0.1,
    kind: str = "sigmoid",
    label_smoothing: float = 0.0,
    gamma: float = 0.5,
    *,
    labels: torch.Tensor | None = None,
    delta: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Batch-mean pairwise preference loss of ``kind`` (see the module table) and logging info.

    All log-prob arguments are ``[B]``. ``labels`` (optional ``[B]``, default all 1) is the probability
    that the chosen answer is preferred: 0 flips the pair, 0.5 is a tie (kinds sigmoid and ipo).
    ``gamma`` is SimPO's target margin, ``delta`` BCO's reward shift (default: the batch-mean reward).

    Returns ``(loss, info)`` with ``info = {"chosen_rewards": [B], "rejected_rewards": [B],
    "accuracy": scalar (fraction of decisive pairs ranked as labelled; NaN if every pair is a tie),
    "losses": [B] per-pair losses}`` (info tensors are detached).
    """
    op = "preference_loss"
    _check_scalars(op, beta, kind, label_smoothing)
    needs_ref = kind not in _NO_REFERENCE
    if needs_ref and (ref_chosen is None or ref_rejected is None):
        raise ValueError(f"{op}: kind={kind!r} needs ref_chosen and ref_rejected (reference-model log-probs)")
    batch = _check_logps(
        op,
        policy_chosen=policy_chosen,
        policy_rejected=policy_rejected,
        ref_chosen=ref_chosen if needs_ref else None,
        ref_rejected=ref_rejected if needs_ref else None,
    )
    _check_labels(op, labels, batch, kind)
    if (
        kind == "orpo"
        and not torch.compiler.is_compiling()
        and bool((policy_chosen.detach() >= 0).any() | (policy_rejected.detach() >= 0).any())
    ):
        raise ValueError(
            f"{op}: kind='orpo' needs average log-probs < 0 (log odds of probability 1 are infinite)"
        )
    loss, cr, rr = _per_pair(
        policy_chosen,
        policy_rejected,
        ref_chosen,
        ref_rejected,
        float(beta),
        kind,
        float(label_smoothing),
        float(gamma),
        labels,
        delta,
    )
    return loss.mean(), _info(cr, rr, labels, loss)


def _info(
    cr: torch.Tensor, rr: torch.Tensor, labels: torch.Tensor | None, loss: torch.Tensor
) -> dict[str, Any]:
    cr, rr = cr.detach(), rr.detach()
    right = (cr - rr) > 0
    if labels is None:
        acc = right.to(cr.dtype).mean()
    else:
        decisive = labels != 0.5
        hits = (right == (labels > 0.5)) & decisive
        n = decisive.sum()
        acc = torch.where(n > 0, hits.sum().to(cr.dtype) / n.clamp(min=1), cr.new_tensor(float("nan")))
    return {"chosen_rewards": cr, "rejected_rewards": rr, "accuracy": acc, "losses": loss.detach()}


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    beta: float = 0.1,
    kl: float | torch.Tensor | None = None,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Unpaired KTO (Ethayarajh et al. 2024) over single samples ``[B]`` with a bool ``desirable`` ``[B]``.

    ``r = policy - ref``; desirable: ``w_D (1 - σ(β(r - z)))``, undesirable: ``w_U (1 - σ(β(z - r)))``,
    with ``z`` the KL reference point (default: the detached batch mean of r, clamped at 0; pass the
    mismatched-pair estimate as ``kl`` to follow the paper exactly). Returns ``(loss, info)`` with
    ``rewards`` ``[B]`` and ``kl``.
    """
    op = "kto_loss"
    _check_scalars(op, beta, "kto", 0.0)
    _check_logps(op, policy_logps=policy_logps, ref_logps=ref_logps)
    if not isinstance(desirable, torch.Tensor) or desirable.dtype != torch.bool:
        raise TypeError(f"{op}: desirable must be a bool tensor [B]")
    if desirable.shape != policy_logps.shape:
        raise ValueError(
            f"{op}: desirable must have shape {list(policy_logps.shape)}, got {list(desirable.shape)}"
        )
    if desirable_weight < 0 or undesirable_weight < 0:
        raise ValueError(f"{op}: desirable_weight and undesirable_weight must be >= 0")
    r = policy_logps - ref_logps
    z = r.detach().mean().clamp(min=0) if kl is None else torch.as_tensor(kl, dtype=r.dtype, device=r.device)
    loss = torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (r - z))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z - r))),
    )
    return loss.mean(), {"rewards": (beta * r).detach(), "kl": z.detach(), "losses": loss.detach()}
