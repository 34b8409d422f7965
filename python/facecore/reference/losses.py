"""Plain-torch preference losses: the oracle for :mod:`facecore.losses`.

Written as directly from the papers' formulas as possible (float64-capable, differentiable by autograd);
no input validation. ``labels`` is the probability that the *chosen* answer is preferred (1 = chosen,
0 = rejected, 0.5 = tie). Sources: DPO (Rafailov et al. 2023), IPO (Azar et al. 2023), robust DPO
(Chowdhury et al. 2024), SimPO (Meng et al. 2024), ORPO (Hong et al. 2024), BCO (Jung et al. 2024),
KTO (Ethayarajh et al. 2024), TRL's DPOTrainer/RewardTrainer for the exact conventions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _ls(x: torch.Tensor) -> torch.Tensor:
    return F.logsigmoid(x)


def preference_losses(
    policy_chosen,
    policy_rejected,
    ref_chosen=None,
    ref_rejected=None,
    *,
    beta=0.1,
    kind="sigmoid",
    label_smoothing=0.0,
    gamma=0.5,
    labels=None,
    delta=None,
):
    """Per-pair losses ``[B]`` and the (chosen, rejected) rewards for one preference-loss kind."""
    y = torch.ones_like(policy_chosen) if labels is None else labels.to(policy_chosen.dtype)
    eps = label_smoothing
    if kind in ("simpo", "orpo"):
        cr, rr = beta * policy_chosen, beta * policy_rejected
    else:
        cr, rr = beta * (policy_chosen - ref_chosen), beta * (policy_rejected - ref_rejected)
    d = (cr - rr) / beta  # Δ = (c - c_ref) - (r - r_ref)
    if kind == "sigmoid":
        # soft label y smoothed towards 1/2 by eps: y' = y (1 - eps) + (1 - y) eps
        ys = y * (1 - eps) + (1 - y) * eps
        loss = -ys * _ls(beta * d) - (1 - ys) * _ls(-beta * d)
    elif kind == "hinge":
        s = 2 * y - 1
        loss = torch.relu(1 - s * beta * d)
    elif kind == "ipo":
        loss = (d - (y - 0.5) / beta) ** 2
    elif kind == "robust":
        s = 2 * y - 1
        loss = (-(1 - eps) * _ls(s * beta * d) + eps * _ls(-s * beta * d)) / (1 - 2 * eps)
    elif kind == "simpo":
        s = 2 * y - 1
        z = beta * s * (policy_chosen - policy_rejected) - gamma
        loss = -(1 - eps) * _ls(z) - eps * _ls(-z)
    elif kind == "orpo":

        def log_odds(lp):
            return lp - torch.log(1 - torch.exp(lp))

        s = 2 * y - 1
        loss = -beta * _ls(s * (log_odds(policy_chosen) - log_odds(policy_rejected)))
    elif kind == "bco_pair":
        if delta is None:
            delta = torch.cat([cr, rr]).mean().detach()
        s = 2 * y - 1
        c, r = torch.where(s > 0, cr, rr), torch.where(s > 0, rr, cr)
        loss = -_ls(c - delta) - _ls(-(r - delta))
    elif kind == "kto":
        s = 2 * y - 1
        c, r = torch.where(s > 0, cr, rr), torch.where(s > 0, rr, cr)
        kl_c = (c / beta).mean().clamp(min=0).detach()
        kl_r = (r / beta).mean().clamp(min=0).detach()
        loss = 0.5 * ((1 - torch.sigmoid(c - beta * kl_r)) + (1 - torch.sigmoid(beta * kl_c - r)))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return loss, cr, rr


def preference_loss(
    policy_chosen,
    policy_rejected,
    ref_chosen=None,
    ref_rejected=None,
    beta=0.1,
    kind="sigmoid",
    label_smoothing=0.0,
    gamma=0.5,
    *,
    labels=None,
    delta=None,
):
    """Batch-mean loss and the info dict, like :func:`facecore.losses.preference_loss`."""
    loss, cr, rr = preference_losses(
        policy_chosen,
        policy_rejected,
        ref_chosen,
        ref_rejected,
        beta=beta,
        kind=kind,
        label_smoothing=label_smoothing,
        gamma=gamma,
        labels=labels,
        delta=delta,
    )
    y = torch.ones_like(cr) if labels is None else labels.to(cr.dtype)
    decisive = y != 0.5
    correct = ((cr - rr) > 0) == (y > 0.5)
    acc = correct[decisive].to(cr.dtype).mean() if bool(decisive.any()) else cr.new_tensor(float("nan"))
    return loss.mean(), {
        "chosen_rewards": cr.detach(),
        "rejected_rewards": rr.detach(),
        "accuracy": acc,
        "losses": loss.detach(),
    }


def kto_loss(
    policy_logps, ref_logps, desirable, beta=0.1, kl=None, desirable_weight=1.0, undesirable_weight=1.0
):
    """Unpaired KTO: 1 - σ(β(r - z)) for desirable samples, 1 - σ(β(z - r)) for undesirable ones."""
    r = policy_logps - ref_logps
    z = r.mean().clamp(min=0).detach() if kl is None else torch.as_tensor(kl, dtype=r.dtype)
    loss = torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (r - z))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z - r))),
    )
    return loss.mean()


def bradley_terry_loss(reward_chosen, reward_rejected, margin=None, center_coef=0.0, labels=None):
    """-y log σ(d - m) - (1 - y) log σ(-d - m) with d = r_c - r_r, plus center_coef * mean((r_c + r_r)^2)."""
    d = reward_chosen - reward_rejected
    m = 0.0 if margin is None else margin
    y = torch.ones_like(d) if labels is None else labels.to(d.dtype)
    loss = (-y * _ls(d - m) - (1 - y) * _ls(-d - m)).mean()
    if center_coef:
        loss = loss + center_coef * ((reward_chosen + reward_rejected) ** 2).mean()
    return loss


def gaussian_logprob(mean, log_std, action, channel_mask=None):
    """Σ_c mask_c log N(action_c; mean_c, exp(log_std_c)^2) over the last dim."""
    log_std = torch.as_tensor(log_std, dtype=mean.dtype).expand_as(mean)
    var = torch.exp(2 * log_std)
    lp = -((action - mean) ** 2) / (2 * var) - log_std - 0.5 * math.log(2 * math.pi)
    if channel_mask is not None:
        lp = lp * channel_mask.to(lp.dtype)
    return lp.sum(-1)
