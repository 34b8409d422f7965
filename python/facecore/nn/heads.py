"""Output heads into the ARKit channels' ranges, shared by the estimator and the semantic regression
control.

A sigmoid (or tanh) into [0, 1] / [-1, 1] starves the sparse channels: most blendshapes are 0 on most
faces, L1 pulls a sigmoid there, and its slope at that point passes about 2 % of the loss's gradient, so
those channels never leave 0 (docs/estimator.md). :func:`straight_through_clamp` clamps the linear output
instead and passes the gradient on unchanged, so a channel at its edge still learns.
"""

from __future__ import annotations

import torch


def straight_through_clamp(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``clamp(x, low, high)`` in the forward pass, the identity in the backward pass."""
    return x + (torch.clamp(x, low, high) - x).detach()
