"""`facecore.nn.straight_through_clamp`: the clamp forward, the identity backward, on fresh random input."""

from __future__ import annotations

import torch

from facecore import arkit
from facecore.nn import straight_through_clamp


def test_forward_is_the_clamp_and_backward_the_identity():
    g = torch.Generator().manual_seed(7)
    low, high = torch.tensor(arkit.LOW), torch.tensor(arkit.HIGH)
    x = (torch.randn(9, arkit.NUM_CHANNELS, generator=g) * 2).requires_grad_()
    y = straight_through_clamp(x, low, high)
    assert torch.equal(y, torch.clamp(x.detach(), low, high))
    assert (x.detach() < low).any() and (x.detach() > high).any()  # both edges are exercised
    upstream = torch.randn(y.shape, generator=g)
    y.backward(upstream)
    assert torch.equal(x.grad, upstream)
