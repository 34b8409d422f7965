"""Output heads into the ARKit channels' ranges, shared by the estimator and the semantic regression
control.

A sigmoid (or tanh) into [0, 1] / [-1, 1] starves the sparse channels: most blendshapes are 0 on most
faces, L1 pulls a sigmoid there, and its slope at that point passes about 2 % of the loss's gradient, so
those channels never leave 0 (docs/estimator.md). :func:`straight_through_clamp` clamps the linear output
instead and passes the gradient on unchanged, so a channel at its edge still learns.
:func:`head_start` checks and clamps the vector such a head starts at (its bias: the labels' median).
"""

from __future__ import annotations

import torch

from .. import arkit


def straight_through_clamp(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``clamp(x, low, high)`` in the forward pass, the identity in the backward pass."""
    return x + (torch.clamp(x, low, high) - x).detach()


def head_start(mean, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``mean [61]`` as a float32 tensor clamped into ``[low, high]``, for a head's ``init_mean``; a clear
    error unless it holds 61 finite values."""
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
    if mean.numel() != arkit.NUM_CHANNELS or not bool(torch.isfinite(mean).all()):
        raise ValueError(f"init_mean: mean must be {arkit.NUM_CHANNELS} finite values, got shape "
                         f"{list(mean.shape)}")
    return torch.clamp(mean.to(low), low, high)
