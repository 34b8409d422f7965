"""Noise schedule of the video diffusion model: diffusers' DDPM for training, DDIM for sampling, or
flow matching.

Primary choice (documented in docs/video.md): discrete-time DDPM noise (``squaredcos_cap_v2`` betas,
1000 steps) with **v-prediction**; sampling with the deterministic DDIM sampler (``eta=0``) on a
``trailing`` grid of ``steps`` timesteps. Both schedulers are diffusers' own, built from one shared
config, so the training noise and the sampler always agree. v-prediction keeps the target's scale
constant across timesteps (unlike epsilon at high noise), which matters at 32 pixels where the
cosine schedule spends many steps near pure noise.

``prediction="flow"``: rectified-flow matching (Lipman et al. 2023; Liu et al. 2023; the SD3 recipe
without its timestep shift). ``x_t = (1 - s) x0 + s noise`` with ``s = t / num_train_timesteps`` for
integer ``t`` in ``1..num_train_timesteps``, the network regresses the velocity ``noise - x0``, and
sampling integrates it with diffusers' ``FlowMatchEulerDiscreteScheduler`` from ``s = 1`` to 0 (no
``eta``: the sampler is deterministic). ``beta_schedule`` does not apply.
"""

from __future__ import annotations

from typing import Any

import torch

PREDICTIONS = ("v_prediction", "epsilon", "flow")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")


class NoiseSchedule:
    """Training noise (``add_noise``, ``target``) and sampling (``sampler(steps)``: ``timesteps`` and
    ``step(prediction, t, x, eta=, generator=).prev_sample``), DDIM or flow matching's Euler."""

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                 prediction: str = "v_prediction"):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) \
                or num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}")
        from diffusers import DDPMScheduler

        self.num_train_timesteps, self.prediction = num_train_timesteps, prediction
        self.config: dict[str, Any] = dict(num_train_timesteps=num_train_timesteps,
                                           beta_schedule=beta_schedule, prediction_type=prediction,
                                           clip_sample=False)
        self.ddpm = DDPMScheduler(**self.config)

    # -- training -------------------------------------------------------------------------------
    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Uniform integer timesteps ``[n]`` in ``[0, num_train_timesteps)`` (flow:
        ``1..num_train_timesteps``, so that every training input holds some noise)."""
        lo = 1 if self.prediction == "flow" else 0
        return torch.randint(lo, self.num_train_timesteps + lo, (n,), generator=generator)

    def _sigma(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Flow matching's noise level ``t / num_train_timesteps``, shaped to broadcast over ``like``."""
        s = t.to(like.device, torch.float32) / self.num_train_timesteps
        return s.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise`` (flow: ``(1 - s) x0 + s noise``) for any
        ``x0 [B, ...]`` and ``t [B]``."""
        if self.prediction == "flow":
            s = self._sigma(t, x0)
            return (1 - s) * x0 + s * noise
        return self.ddpm.add_noise(x0, noise, t.to(x0.device))

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network regresses: the noise (epsilon), the velocity ``sqrt(a) noise - sqrt(1 - a)
        x0`` (v) or flow matching's velocity ``noise - x0``."""
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "flow":
            return noise - x0
        return self.ddpm.get_velocity(x0, noise, t.to(x0.device))

    # -- sampling -------------------------------------------------------------------------------
    def sampler(self, steps: int):
        """A fresh diffusers ``DDIMScheduler`` set to ``steps`` timesteps (trailing spacing: the first
        step starts at the last training timestep, so sampling starts from pure noise); for flow
        matching a :class:`FlowSampler`."""
        if isinstance(steps, bool) or not isinstance(steps, int) \
                or not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be an integer in 1..{self.num_train_timesteps}, got {steps!r}")
        if self.prediction == "flow":
            return FlowSampler(steps, self.num_train_timesteps)
        from diffusers import DDIMScheduler

        ddim = DDIMScheduler(**self.config, timestep_spacing="trailing", set_alpha_to_one=False)
        ddim.set_timesteps(steps)
        return ddim


class FlowSampler:
    """diffusers' ``FlowMatchEulerDiscreteScheduler`` (no shift) behind the DDIM sampler's ``step``
    signature: ``timesteps`` from ``num_train_timesteps`` down, Euler steps of the predicted velocity
    to noise level 0."""

    def __init__(self, steps: int, num_train_timesteps: int):
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=1.0)
        self.scheduler.set_timesteps(steps)
        self.timesteps = self.scheduler.timesteps

    def step(self, prediction: torch.Tensor, t: Any, x: torch.Tensor, eta: float = 0.0,
             generator: torch.Generator | None = None):
        if eta:
            raise ValueError(f"eta={eta!r}: flow matching samples deterministically (eta applies to DDIM)")
        return self.scheduler.step(prediction, t, x)
