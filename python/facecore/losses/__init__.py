"""Preference and reward losses: the DPO family, Bradley–Terry, Gaussian-policy (region-wise) DPO for
continuous outputs, and fused linear log-probs that never materialise ``[N, V]`` logits.
"""

from ..ops.linear_logprobs import linear_logprobs
from .bradley_terry import bradley_terry_loss
from .fused import fused_linear_preference_loss, sequence_logprobs
from .gaussian import gaussian_logprob, region_dpo_loss, region_masks
from .preference import KINDS, kto_loss, preference_loss

__all__ = [
    "KINDS",
    "bradley_terry_loss",
    "fused_linear_preference_loss",
    "gaussian_logprob",
    "kto_loss",
    "linear_logprobs",
    "preference_loss",
    "region_dpo_loss",
    "region_masks",
    "sequence_logprobs",
]
