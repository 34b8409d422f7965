"""Bradley–Terry loss for reward models trained on human pairwise choices (with ties).

``d = r_chosen - r_rejected``; per pair ``-y log σ(d - m) - (1 - y) log σ(-d - m)`` where ``y`` is the
probability that the chosen item won (1 by default, 0.5 = tie) and ``m`` an optional margin (Llama-2
reward model: a larger required gap for more decisive human ratings). For a tie both directions are
penalised symmetrically, so the optimum is ``d = 0``. ``center_coef`` adds ``center_coef ·
mean((r_c + r_r)^2)`` to keep rewards centred (Eisenstein et al. 2023, TRL's
``center_rewards_coefficient``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .preference import _check_labels, _check_logps


def bradley_terry_loss(
    reward_chosen: torch.Tensor,
    reward_rejected: torch.Tensor,
    margin: float | torch.Tensor | None = None,
    center_coef: float = 0.0,
    *,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Batch-mean Bradley–Terry loss over rewards ``[B]``; returns ``(loss, info)``.

    ``margin`` is a float or a ``[B]`` tensor; ``labels`` ``[B]`` in [0, 1] (0.5 = tie).
    ``info``: ``accuracy`` (decisive pairs ranked as labelled), ``margins`` ``[B]`` = ``d``, ``losses``.
    """
    op = "bradley_terry_loss"
    batch = _check_logps(
        op,
        reward_chosen=reward_chosen,
        reward_rejected=reward_rejected,
        margin=margin if isinstance(margin, torch.Tensor) else None,
    )
    _check_labels(op, labels, batch, "sigmoid")
    if center_coef < 0:
        raise ValueError(f"{op}: center_coef must be >= 0, got {center_coef!r}")
    d = reward_chosen - reward_rejected
    m = 0.0 if margin is None else margin
    if labels is None:
        loss = -F.logsigmoid(d - m)
        acc = (d.detach() > 0).to(d.dtype).mean()
    else:
        y = labels.to(d.dtype)
        loss = -y * F.logsigmoid(d - m) - (1 - y) * F.logsigmoid(-d - m)
        decisive = labels != 0.5
        n = decisive.sum()
        hits = (((d.detach() > 0) == (labels > 0.5)) & decisive).sum().to(d.dtype)
        acc = torch.where(n > 0, hits / n.clamp(min=1), d.new_tensor(float("nan")))
    total = loss.mean()
    if center_coef:
        total = total + center_coef * ((reward_chosen + reward_rejected) ** 2).mean()
    return total, {"accuracy": acc, "margins": d.detach(), "losses": loss.detach()}
