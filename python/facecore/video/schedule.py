"""Noise schedule of the video diffusion model: diffusers' DDPM for training, DDIM for sampling.

Primary choice (documented in docs/video.md): discrete-time DDPM noise (``squaredcos_cap_v2`` betas,
1000 steps) with **v-prediction**; sampling with the deterministic DDIM sampler (``eta=0``) on a
``trailing`` grid of ``steps`` timesteps. Both schedulers are diffusers' own, built from one shared
config, so the training noise and the sampler always agree. v-prediction keeps the target's scale
constant across timesteps (unlike epsilon at high noise), which matters at 32 pixels where the
cosine schedule spends many steps near pure noise.
"""

from __future__ import annotations

from typing import Any

import torch

PREDICTIONS = ("v_prediction", "epsilon")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")


class NoiseSchedule:
    """Training noise (``add_noise``, ``target``) and DDIM sampling (``timesteps``, ``step``)."""

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
        """Uniform integer timesteps ``[n]`` in ``[0, num_train_timesteps)``."""
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise`` for any ``x0 [B, ...]`` and ``t [B]``."""
        return self.ddpm.add_noise(x0, noise, t.to(x0.device))

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network regresses: the noise (epsilon) or the velocity
        ``sqrt(a) noise - sqrt(1 - a) x0``."""
        if self.prediction == "epsilon":
            return noise
        return self.ddpm.get_velocity(x0, noise, t.to(x0.device))

    # -- sampling -------------------------------------------------------------------------------
    def sampler(self, steps: int):
        """A fresh diffusers ``DDIMScheduler`` set to ``steps`` timesteps (trailing spacing: the first
        step starts at the last training timestep, so sampling starts from pure noise)."""
        if isinstance(steps, bool) or not isinstance(steps, int) \
                or not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be an integer in 1..{self.num_train_timesteps}, got {steps!r}")
        from diffusers import DDIMScheduler

        ddim = DDIMScheduler(**self.config, timestep_spacing="trailing", set_alpha_to_one=False)
        ddim.set_timesteps(steps)
        return ddim
