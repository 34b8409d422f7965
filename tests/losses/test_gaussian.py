"""Gaussian-policy log-likelihood and region-wise DPO against hand-written formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import facecore.reference as ref
from facecore import arkit
from facecore.losses import gaussian_logprob, region_dpo_loss, region_masks


@pytest.mark.parametrize("std_shape", ["scalar", "channel", "full"])
def test_gaussian_logprob_matches_torch_normal(std_shape, gen):
    B, C = 5, 9
    mean = torch.randn(B, C, generator=gen, dtype=torch.float64).requires_grad_()
    action = torch.randn(B, C, generator=gen, dtype=torch.float64)
    log_std = {
        "scalar": -0.7,
        "channel": 0.3 * torch.randn(C, generator=gen, dtype=torch.float64),
        "full": 0.3 * torch.randn(B, C, generator=gen, dtype=torch.float64),
    }[std_shape]
    if isinstance(log_std, torch.Tensor):
        log_std.requires_grad_()
    mask = torch.rand(C, generator=gen) > 0.4
    got = gaussian_logprob(mean, log_std, action, mask)
    std = torch.exp(torch.as_tensor(log_std, dtype=torch.float64)).expand(B, C)
    want = (torch.distributions.Normal(mean, std).log_prob(action) * mask).sum(-1)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(got, ref.losses.gaussian_logprob(mean, log_std, action, mask))
    params = [mean] + ([log_std] if isinstance(log_std, torch.Tensor) else [])
    g = torch.randn(B, generator=gen, dtype=torch.float64)
    for x, y in zip(torch.autograd.grad(got, params, g), torch.autograd.grad(want, params, g)):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-12)


def _region_inputs(gen, B=6, C=61):
    mean = (0.5 + 0.2 * torch.randn(B, C, generator=gen, dtype=torch.float64)).requires_grad_()
    ref_mean = 0.5 + 0.2 * torch.randn(B, C, generator=gen, dtype=torch.float64)
    a = 0.5 + 0.2 * torch.randn(B, C, generator=gen, dtype=torch.float64)
    b = 0.5 + 0.2 * torch.randn(B, C, generator=gen, dtype=torch.float64)
    return mean, ref_mean, a, b


def test_region_dpo_matches_hand_written(gen):
    mean, ref_mean, a, b = _region_inputs(gen)
    regions = {"mouth": "mouth", "eyes": arkit.group("eyes").tolist(), "pose": "head_pose"}
    pref = torch.tensor(
        [[1, 0, 0.5], [0, 1, float("nan")], [1, 1, 1], [0, 0.5, 0], [1, 0, 1], [0.5, 1, 0]],
        dtype=torch.float64,
    )
    sigma, beta = 0.1, 0.5
    loss, info = region_dpo_loss(mean, ref_mean, a, b, pref, regions, log_std=math.log(sigma), beta=beta)
    # by hand: Δ_r = [(-|a-μ|² + |a-μ_ref|²) - (-|b-μ|² + |b-μ_ref|²)] / (2σ²) over the region's channels
    terms = []
    for r, idx in enumerate(region_masks(regions, 61)[0].bool()):

        def sq(x, m, idx=idx):
            return ((x - m)[:, idx] ** 2).sum(-1)

        delta = (-sq(a, mean) + sq(a, ref_mean) + sq(b, mean) - sq(b, ref_mean)) / (2 * sigma**2)
        rated = ~torch.isnan(pref[:, r])
        y, delta = pref[rated, r], delta[rated]
        terms.append(-y * F.logsigmoid(beta * delta) - (1 - y) * F.logsigmoid(-beta * delta))
    want = torch.cat(terms).mean()
    # the loss averages the rated entries in row-major (pair, region) order; the mean is order-free
    torch.testing.assert_close(loss, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(
        torch.autograd.grad(loss, mean)[0], torch.autograd.grad(want, mean)[0], atol=1e-12, rtol=1e-12
    )
    assert info["region_names"] == ["mouth", "eyes", "pose"]
    assert info["chosen_rewards"].shape == (6, 3) and torch.isnan(info["chosen_rewards"][1, 2])
    assert info["region_accuracy"].shape == (3,)


def test_region_only_sees_its_channels(gen):
    """Changing channels outside every region does not change the loss or its gradient there."""
    mean, ref_mean, a, b = _region_inputs(gen, C=8)
    pref = torch.ones(6, 2, dtype=torch.float64)
    regions = [[0, 1, 2], [5]]
    loss1, _ = region_dpo_loss(mean, ref_mean, a, b, pref, regions)
    b2 = b.clone()
    b2[:, 3] += 10.0
    loss2, _ = region_dpo_loss(mean, ref_mean, a, b2, pref, regions)
    torch.testing.assert_close(loss1, loss2)
    g = torch.autograd.grad(loss1, mean)[0]
    assert bool((g[:, [3, 4, 6, 7]] == 0).all()) and bool((g[:, [0, 5]] != 0).any())


def test_region_bad_inputs(gen):
    mean, ref_mean, a, b = _region_inputs(gen, C=8)
    pref = torch.ones(6, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"outside \[0, 8\)"):
        region_dpo_loss(mean, ref_mean, a, b, pref, [[0, 8]])
    with pytest.raises(ValueError, match="needs C = 61"):
        region_dpo_loss(mean, ref_mean, a, b, pref, ["mouth"])
    with pytest.raises(ValueError, match=r"preference must have shape \[B, R\] = \[6, 2\]"):
        region_dpo_loss(mean, ref_mean, a, b, pref, [[0], [1]])
    with pytest.raises(ValueError, match="no rated"):
        region_dpo_loss(mean, ref_mean, a, b, torch.full((6, 1), float("nan"), dtype=torch.float64), [[0]])
    with pytest.raises(ValueError, match="action_b must have shape"):
        region_dpo_loss(mean, ref_mean, a, b[:, :3], pref, [[0]])
    with pytest.raises(ValueError, match="unknown group"):
        region_masks(["nostrils"], 61)
    with pytest.raises(ValueError, match="log_std must be"):
        gaussian_logprob(mean, torch.zeros(3, dtype=torch.float64), a)
    with pytest.raises(ValueError, match="channel_mask must have shape"):
        gaussian_logprob(mean, 0.0, a, torch.ones(3))
