"""Gaussian-policy log-likelihood and region-wise DPO for continuous outputs (ARKit parameters).

A regression head that outputs ``mean[B, C]`` is read as the policy ``π(a | x) = N(mean, diag(σ²))``,
so DPO applies to it: for two candidate parameter vectors ``a``, ``b`` of one image and a reference
head ``mean_ref``, ``log π(a) - log π_ref(a)`` is a closed form. A face region (upper face, mouth,
eyes, …) is a set of channels; each pair carries one preference per region, and each region's DPO term
only sees its own channels' log-likelihood, so a rater can prefer ``a``'s mouth and ``b``'s eyes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .preference import KINDS, preference_loss

_LOG_2PI = math.log(2 * math.pi)


def _float_tensor(op: str, name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
    return t


def gaussian_logprob(
    mean: torch.Tensor,
    log_std: float | torch.Tensor,
    action: torch.Tensor,
    channel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Σ_c mask_c · log N(action_c; mean_c, exp(log_std_c)²)`` per row: ``[B, C] -> [B]``.

    ``log_std`` is a float, ``[C]`` or ``[B, C]``; ``channel_mask`` ``[C]`` or ``[B, C]`` (bool or
    float weights). Formula: ``-(a - μ)² / (2σ²) - log σ - ½ log 2π``.
    """
    op = "gaussian_logprob"
    _float_tensor(op, "mean", mean)
    _float_tensor(op, "action", action)
    if mean.dim() != 2:
        raise ValueError(f"{op}: mean must have shape [B, C], got {list(mean.shape)}")
    if action.shape != mean.shape:
        raise ValueError(
            f"{op}: action must have the shape of mean {list(mean.shape)}, got {list(action.shape)}"
        )
    if isinstance(log_std, torch.Tensor):
        _float_tensor(op, "log_std", log_std)
        if log_std.shape not in (torch.Size([]), mean.shape[-1:], mean.shape):
            raise ValueError(
                f"{op}: log_std must be a scalar, [C] = [{mean.shape[1]}] or [B, C] = "
                f"{list(mean.shape)}, got {list(log_std.shape)}"
            )
    else:
        log_std = torch.tensor(float(log_std), dtype=mean.dtype, device=mean.device)
    z = (action - mean) * torch.exp(-log_std)
    lp = -0.5 * z * z - log_std - 0.5 * _LOG_2PI
    if channel_mask is not None:
        if not isinstance(channel_mask, torch.Tensor):
            raise TypeError(f"{op}: channel_mask must be a torch.Tensor, got {type(channel_mask).__name__}")
        if channel_mask.shape not in (mean.shape[-1:], mean.shape):
            raise ValueError(
                f"{op}: channel_mask must have shape [C] = [{mean.shape[1]}] or [B, C] = "
                f"{list(mean.shape)}, got {list(channel_mask.shape)}"
            )
        lp = lp * channel_mask.to(lp.dtype)
    return lp.sum(-1)


def region_masks(
    regions: Mapping[str, Sequence[int] | str] | Sequence[Sequence[int] | str] | torch.Tensor,
    num_channels: int,
    *,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Regions -> a float mask ``[R, C]`` and their names.

    ``regions``: a ``[R, C]`` bool/0-1 tensor, a list of channel-index lists or facecore.arkit group
    names (``"mouth"``, ``"upper_face"``, …), or a dict name -> index list / group name.
    """
    op = "region_masks"
    if isinstance(regions, torch.Tensor):
        if regions.dim() != 2 or regions.shape[1] != num_channels:
            raise ValueError(
                f"{op}: a region mask tensor must have shape [R, C={num_channels}], got {list(regions.shape)}"
            )
        return regions.to(device=device, dtype=torch.float32), [f"region{i}" for i in range(regions.shape[0])]
    if isinstance(regions, Mapping):
        names, specs = list(regions.keys()), list(regions.values())
    else:
        specs = list(regions)
        names = [s if isinstance(s, str) else f"region{i}" for i, s in enumerate(specs)]
    if not specs:
        raise ValueError(f"{op}: regions must name at least one region")
    mask = torch.zeros(len(specs), num_channels, dtype=torch.float32)
    for i, spec in enumerate(specs):
        if isinstance(spec, str):
            from .. import arkit  # group names are the 61-channel schema's

            if num_channels != arkit.NUM_CHANNELS:
                raise ValueError(
                    f"{op}: group name {spec!r} needs C = {arkit.NUM_CHANNELS} ARKit channels, "
                    f"got C = {num_channels}"
                )
            idx = [int(j) for j in arkit.group(spec)]
        else:
            idx = [int(j) for j in spec]
        if not idx:
            raise ValueError(f"{op}: region {names[i]!r} has no channels")
        bad = [j for j in idx if not 0 <= j < num_channels]
        if bad:
            raise ValueError(
                f"{op}: region {names[i]!r} has channel indices {bad} outside [0, {num_channels})"
            )
        mask[i, idx] = 1.0
    return mask.to(device), [str(n) for n in names]


def region_dpo_loss(
    mean: torch.Tensor,
    ref_mean: torch.Tensor,
    action_a: torch.Tensor,
    action_b: torch.Tensor,
    preference: torch.Tensor,
    regions,
    *,
    log_std: float | torch.Tensor = 0.0,
    ref_log_std: float | torch.Tensor | None = None,
    beta: float = 0.1,
    kind: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Region-wise DPO for a Gaussian policy over ``C`` continuous channels.

    ``mean``/``ref_mean`` ``[B, C]`` are the policy and (frozen) reference heads' outputs for the pair's
    input; ``action_a``/``action_b`` ``[B, C]`` the two rated candidates; ``preference`` ``[B, R]``:
    1 = ``a`` preferred in that region, 0 = ``b`` preferred, 0.5 = tie (kinds sigmoid/ipo), NaN = not
    rated (ignored). Per rated (pair, region) the region-restricted log-likelihoods enter
    :func:`preference_loss` with ``a`` as "chosen" and the preference as label; the loss is the mean
    over rated (pair, region) entries. ``info``: ``accuracy`` and ``region_accuracy`` ``[R]``,
    ``region_names``, ``chosen_rewards``/``rejected_rewards`` ``[B, R]`` (rewards of ``a``/``b``; NaN
    where unrated).
    """
    op = "region_dpo_loss"
    if kind not in KINDS or kind in ("simpo", "orpo"):
        raise ValueError(
            f"{op}: kind must be a reference-based preference kind "
            f"{tuple(k for k in KINDS if k not in ('simpo', 'orpo'))}, got {kind!r}"
        )
    for name, t in (("mean", mean), ("ref_mean", ref_mean), ("action_a", action_a), ("action_b", action_b)):
        _float_tensor(op, name, t)
        if t.dim() != 2 or t.shape != mean.shape:
            raise ValueError(f"{op}: {name} must have shape [B, C] = {list(mean.shape)}, got {list(t.shape)}")
    B, C = mean.shape
    mask, names = region_masks(regions, C, device=mean.device)
    R = mask.shape[0]
    _float_tensor(op, "preference", preference)
    if preference.shape != (B, R):
        raise ValueError(
            f"{op}: preference must have shape [B, R] = [{B}, {R}] (one per pair and region), "
            f"got {list(preference.shape)}"
        )
    ref_log_std = log_std if ref_log_std is None else ref_log_std
    mask = mask.to(mean.dtype)

    def region_logps(mu, ls, act):  # [B, R]: one masked Gaussian log-likelihood per region
        return _per_channel(mu, ls, act) @ mask.T

    with torch.no_grad():
        ref_a = region_logps(ref_mean, ref_log_std, action_a)
        ref_b = region_logps(ref_mean, ref_log_std, action_b)
    pol_a = region_logps(mean, log_std, action_a)
    pol_b = region_logps(mean, log_std, action_b)
    rated = ~torch.isnan(preference)
    if not bool(rated.any()):
        raise ValueError(f"{op}: preference has no rated (non-NaN) entries")
    loss, info = preference_loss(
        pol_a[rated],
        pol_b[rated],
        ref_a[rated],
        ref_b[rated],
        beta=beta,
        kind=kind,
        label_smoothing=label_smoothing,
        labels=preference[rated],
    )
    nan = torch.full((B, R), float("nan"), dtype=mean.dtype, device=mean.device)
    cr = nan.masked_scatter(rated, info["chosen_rewards"])
    rr = nan.clone().masked_scatter(rated, info["rejected_rewards"])
    decisive = rated & (preference != 0.5)
    hits = (((cr - rr) > 0) == (preference > 0.5)) & decisive
    region_acc = hits.sum(0).to(mean.dtype) / decisive.sum(0).clamp(min=1)
    region_acc = torch.where(decisive.sum(0) > 0, region_acc, torch.full_like(region_acc, float("nan")))
    return loss, {
        "accuracy": info["accuracy"],
        "region_accuracy": region_acc,
        "region_names": names,
        "chosen_rewards": cr,
        "rejected_rewards": rr,
    }


def _per_channel(mu: torch.Tensor, log_std: float | torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Per-channel Gaussian log-likelihood ``[B, C]`` (the summand of :func:`gaussian_logprob`)."""
    ls = (
        log_std
        if isinstance(log_std, torch.Tensor)
        else torch.tensor(float(log_std), dtype=mu.dtype, device=mu.device)
    )
    z = (act - mu) * torch.exp(-ls)
    return -0.5 * z * z - ls - 0.5 * _LOG_2PI
