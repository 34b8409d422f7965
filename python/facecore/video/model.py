"""``VideoDiffusion``: a small pixel-space video transformer for controllable face video diffusion.

Input per frame: the noisy frame concatenated on channels with the reference frame (appearance by
channel concat), cut into ``patch_size`` patches (``[T, gh, gw]`` tokens). Each block (DiT-style,
adaLN-Zero from the timestep embedding) runs

* spatial attention inside each frame, the keys extended with the reference frame's patch tokens
  (appearance by reference tokens, as in ReferenceNet-style spatial attention), with a learned
  :class:`facecore.nn.RelativePositionBias2d` bias (frame -> frame and frame -> reference share the
  table; reference keys get an extra learned per-head offset);
* temporal attention across frames at each token position, with a learned
  :class:`facecore.nn.RelativePositionBias1d` bias;
* a GELU MLP.

Motion (``motion=``):

* ``"maps"``: the driving motion's facecore renders (normals + depth, ``[T, H, W, C]``) go through a
  *guider*, a small conv stem whose last layer is zero-initialised, added to the patch tokens. At
  initialisation the guider outputs exactly zero, so the model starts as an appearance-only model and
  learns to use motion (ControlNet's zero-convolution argument);
* ``"params"``: the 61 ARKit channels of each frame become one prefix token per frame (a learned null
  token plus a zero-initialised MLP of the parameters): again exactly motion-blind at initialisation.

Classifier-free guidance on both conditions: training drops the reference (``drop_reference``) and the
motion (``drop_motion``) independently per sample; a dropped reference is a zero image plus learned
null reference tokens, dropped motion is the guider's / MLP's output multiplied by zero (the
initial, motion-blind state). Sampling combines three predictions (InstructPix2Pix's two-scale rule):
``p(0, 0) + s_ref (p(ref, 0) - p(0, 0)) + s_motion (p(ref, motion) - p(ref, 0))``.

``attention="facecore"|"sdpa"|"eager"`` picks how the biased attention is computed:
:func:`facecore.ops.attention` (fused, bias gradient inside the kernel), PyTorch's
``scaled_dot_product_attention`` with the bias as an additive float mask, or plain
``softmax(q k^T / sqrt(d) + bias) v``. All three compute the same function (tests compare values and
gradients); the benchmark compares their speed.

The file format (:meth:`VideoDiffusion.save`): one safetensors file, the state dict as float32 and
the metadata ``{"facecore_video": JSON}`` with ``format``, ``version`` and ``config``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config_files import config_from_dict
from ..nn import RelativePositionBias1d, RelativePositionBias2d
from ..ops.attention import attention as facecore_attention
from ..training_utils import atomic_write, read_safetensors
from .schedule import NoiseSchedule

MOTIONS = ("maps", "params")
ATTENTIONS = ("facecore", "sdpa", "eager")
NUM_PARAMS = 61
FORMAT, FORMAT_VERSION, _META_KEY = "facecore.video.diffusion", 1, "facecore_video"


@dataclasses.dataclass
class VideoDiffusionConfig:
    """Architecture and noise schedule. ``image_size`` (square frames, a multiple of ``patch_size``),
    ``frames`` (the clip length trained on; the temporal bias covers offsets up to it), ``dim``,
    ``depth`` (blocks), ``heads``, ``mlp_ratio``, ``motion`` ("maps" or "params"), ``motion_channels``
    (channels of the motion maps: 3 normals + 1 depth), ``guider_channels`` (the guider's width),
    ``reference_tokens`` (extend spatial keys with reference tokens; the channel concat is always on),
    ``attention`` ("facecore", "sdpa", "eager"), schedule: ``num_train_timesteps``, ``beta_schedule``,
    ``prediction`` ("v_prediction" or "epsilon" with DDPM noise and DDIM sampling, or "flow":
    rectified-flow matching with an Euler sampler; :mod:`facecore.video.schedule`)."""

    image_size: int = 32
    frames: int = 8
    patch_size: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    motion: str = "maps"
    motion_channels: int = 4
    guider_channels: int = 32
    reference_tokens: bool = True
    attention: str = "facecore"
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction: str = "v_prediction"

    def __post_init__(self) -> None:
        for name in ("image_size", "frames", "patch_size", "dim", "depth", "heads", "motion_channels",
                     "guider_channels", "num_train_timesteps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"VideoDiffusionConfig.{name} must be a positive integer, got {v!r}")
            setattr(self, name, int(v))
        if self.image_size % self.patch_size:
            raise ValueError(f"VideoDiffusionConfig.image_size={self.image_size} must be a multiple of "
                             f"patch_size={self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"VideoDiffusionConfig.dim={self.dim} must be divisible by heads={self.heads}")
        r = self.mlp_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (math.isfinite(r) and r > 0):
            raise ValueError(f"VideoDiffusionConfig.mlp_ratio must be a positive number, got {r!r}")
        if self.motion not in MOTIONS:
            raise ValueError(f"VideoDiffusionConfig.motion must be one of {MOTIONS}, got {self.motion!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"VideoDiffusionConfig.attention must be one of {ATTENTIONS}, "
                             f"got {self.attention!r}")
        if not isinstance(self.reference_tokens, bool):
            raise ValueError(f"VideoDiffusionConfig.reference_tokens must be a bool, "
                             f"got {self.reference_tokens!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoDiffusionConfig:
        if isinstance(d, VideoDiffusionConfig):
            return d
        return config_from_dict(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def grid(self) -> tuple[int, int]:
        g = self.image_size // self.patch_size
        return g, g


# ---------------------------------------------------------------------------------------------------
# Attention with a bias, three ways
# ---------------------------------------------------------------------------------------------------
def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                     backend: str = "facecore") -> torch.Tensor:
    """``softmax(q k^T / sqrt(D) + bias) v`` for ``q [B, H, Lq, D]``, ``k, v [B, H, Lk, D]`` and a
    per-head ``bias [H, Lq, Lk]`` shared by the batch, through ``backend`` (:data:`ATTENTIONS`)."""
    bias = bias.to(q.dtype)[None]
    if backend == "facecore":
        return facecore_attention(q, k, v, bias)
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    if backend == "eager":
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1])) + bias
        return torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {backend!r}")


class _Attention(nn.Module):
    """Multi-head self-attention over ``x [B, L, D]``, optionally with extra key/value tokens
    ``context [B, Lc, D]`` appended to the keys; the caller supplies the ``[H, L, L + Lc]`` bias."""

    def __init__(self, dim: int, heads: int, backend: str):
        super().__init__()
        self.heads, self.backend = heads, backend
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, context: torch.Tensor | None = None
                ) -> torch.Tensor:
        B, L, D = x.shape
        src = x if context is None else torch.cat([x, context], 1)
        h = self.heads
        q = self.q(x).view(B, L, h, D // h).transpose(1, 2)
        k, v = self.kv(src).view(B, src.shape[1], 2, h, D // h).permute(2, 0, 3, 1, 4)
        out = biased_attention(q, k, v, bias, self.backend)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class _Block(nn.Module):
    """Factorised video block: spatial attention (+ reference keys), temporal attention, MLP; each
    pre-norm, modulated and gated by the timestep (adaLN-Zero: the gates start at zero)."""

    def __init__(self, cfg: VideoDiffusionConfig, prefix: int):
        super().__init__()
        D, H = cfg.dim, cfg.heads
        self.prefix = prefix
        self.norm_s = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn_s = _Attention(D, H, cfg.attention)
        self.rel_s = RelativePositionBias2d(H, cfg.grid, num_prefix_tokens=prefix)
        if not prefix:  # the prefix-token constants are unused: keep them out of DDP's gradient buckets
            self.rel_s.prefix.requires_grad_(False)
        self.ref_norm = nn.LayerNorm(D, eps=1e-6) if cfg.reference_tokens else None
        self.ref_offset = nn.Parameter(torch.zeros(H)) if cfg.reference_tokens else None
        self.norm_t = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn_t = _Attention(D, H, cfg.attention)
        self.rel_t = RelativePositionBias1d(H, max_distance=cfg.frames)
        self.norm_m = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        hidden = int(D * cfg.mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(D, hidden), nn.Linear(hidden, D)
        self.ada = nn.Linear(D, 9 * D)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None, c: torch.Tensor) -> torch.Tensor:
        """``x [B, T, L, D]`` (L = prefix + patches), ``ref [B, N, D]`` reference tokens, ``c [B, D]``."""
        B, T, L, D = x.shape
        mods = self.ada(F.silu(c))[:, None, None].chunk(9, dim=-1)  # each [B, 1, 1, D]
        # spatial: every frame attends to its own tokens and to the reference tokens
        h = _modulate(self.norm_s(x), mods[0], mods[1]).reshape(B * T, L, D)
        bias = self.rel_s()  # [H, L, L]
        ctx = None
        if self.ref_norm is not None and ref is not None:
            ctx = self.ref_norm(ref)[:, None].expand(B, T, *ref.shape[1:]).reshape(B * T, *ref.shape[1:])
            bias = torch.cat([bias, bias[:, :, self.prefix:] + self.ref_offset[:, None, None]], -1)
        x = x + mods[2] * self.attn_s(h, bias, ctx).view(B, T, L, D)
        # temporal: every token position attends across the frames
        h = _modulate(self.norm_t(x), mods[3], mods[4]).permute(0, 2, 1, 3).reshape(B * L, T, D)
        x = x + mods[5] * self.attn_t(h, self.rel_t(T, T)).view(B, L, T, D).permute(0, 2, 1, 3)
        h = _modulate(self.norm_m(x), mods[6], mods[7])
        return x + mods[8] * self.fc2(F.gelu(self.fc1(h)))


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return F.pad(emb, (0, dim % 2))


class MotionGuider(nn.Module):
    """Motion maps ``[N, C, H, W]`` -> patch-token offsets ``[N, D, gh, gw]``; the last conv is zero
    initialised, so an untrained guider contributes exactly nothing."""

    def __init__(self, in_channels: int, hidden: int, dim: int, patch: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU())
        self.out = nn.Conv2d(hidden, dim, patch, stride=patch)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.out(self.stem(maps))


class ParamsEncoder(nn.Module):
    """ARKit parameters ``[N, 61]`` -> one motion token ``[N, D]``: a learned null token plus a
    zero-initialised MLP of the parameters (motion-blind at initialisation)."""

    def __init__(self, dim: int):
        super().__init__()
        self.null = nn.Parameter(torch.randn(dim) * 0.02)
        self.fc1, self.fc2 = nn.Linear(NUM_PARAMS, dim), nn.Linear(dim, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, params: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.null + keep[:, None] * self.fc2(F.silu(self.fc1(params)))


# ---------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------
_ROWS_PER_PASS = 16  # clip windows per model pass when sampling a long motion


def _window_starts(T: int, frames: int, overlap: int | None) -> list[int]:
    """First frames of the windows of ``frames`` frames covering ``T``, ``overlap`` frames shared by
    neighbours (default ``frames // 2``), the last one ending at ``T``; ``[0]`` when ``T <= frames``."""
    if overlap is None:
        overlap = frames // 2
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < frames:
        raise ValueError(f"overlap must be an int in [0, frames={frames}), got {overlap!r}")
    if T <= frames:
        return [0]
    starts = list(range(0, T - frames + 1, frames - overlap))
    if starts[-1] != T - frames:
        starts.append(T - frames)
    return starts


class VideoDiffusion(nn.Module):
    """The controllable video diffusion model (see the module docstring).

    ``VideoDiffusion(config=None, **fields)``: a :class:`VideoDiffusionConfig` (or dict) and/or its
    fields. :meth:`forward` is the denoiser on normalised tensors; :meth:`loss` the training loss on a
    batch of sample dicts; :meth:`sample` generates uint8 frames; :meth:`save` / :meth:`load`.
    """

    def __init__(self, config: VideoDiffusionConfig | Mapping[str, Any] | None = None, **fields: Any):
        super().__init__()
        base = {} if config is None else VideoDiffusionConfig.from_dict(config).to_dict()
        cfg = VideoDiffusionConfig.from_dict({**base, **fields})
        self.config = cfg
        D, p = cfg.dim, cfg.patch_size
        self.schedule = NoiseSchedule(cfg.num_train_timesteps, cfg.beta_schedule, cfg.prediction)
        self.prefix = 1 if cfg.motion == "params" else 0
        self.patch = nn.Conv2d(6, D, p, stride=p)  # noisy frame + reference, channel concat
        n_tokens = cfg.grid[0] * cfg.grid[1]
        if cfg.reference_tokens:
            self.ref_patch = nn.Conv2d(3, D, p, stride=p)
            self.null_ref = nn.Parameter(torch.randn(n_tokens, D) * 0.02)
        if cfg.motion == "maps":
            self.guider = MotionGuider(cfg.motion_channels, cfg.guider_channels, D, p)
        else:
            self.params_encoder = ParamsEncoder(D)
        self.time = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.blocks = nn.ModuleList(_Block(cfg, self.prefix) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(D, 2 * D)
        self.out = nn.Linear(D, p * p * 3)
        for layer in (self.ada_out, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # -- attention backend ------------------------------------------------------------------------
    def set_attention(self, backend: str) -> VideoDiffusion:
        """Switch every attention layer to ``backend`` (:data:`ATTENTIONS`); the weights are unchanged."""
        if backend not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {backend!r}")
        self.config.attention = backend
        for m in self.modules():
            if isinstance(m, _Attention):
                m.backend = backend
        return self

    # -- the denoiser -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, reference: torch.Tensor, motion: torch.Tensor,
                keep_reference: torch.Tensor | None = None, keep_motion: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Prediction (v or epsilon) ``[B, T, S, S, 3]`` for noisy frames ``x [B, T, S, S, 3]`` in
        [-1, 1] units, integer timesteps ``t [B]``, ``reference [B, S, S, 3]`` in [-1, 1], ``motion``
        ``[B, T, S, S, C]`` (maps, see :meth:`normalize_maps`) or ``[B, T, 61]`` (params);
        ``keep_reference`` / ``keep_motion`` ``[B]`` in {0, 1} (0 = condition dropped, default 1)."""
        cfg = self.config
        B, T, S, _, _ = x.shape
        p, (gh, gw), D = cfg.patch_size, cfg.grid, cfg.dim
        ones = x.new_ones(B)
        keep_ref = ones if keep_reference is None else keep_reference.to(x.dtype)
        keep_mot = ones if keep_motion is None else keep_motion.to(x.dtype)
        ref = reference * keep_ref[:, None, None, None]
        frames = torch.cat([x, ref[:, None].expand(B, T, S, S, 3)], -1)  # [B, T, S, S, 6]
        tok = self.patch(frames.reshape(B * T, S, S, 6).permute(0, 3, 1, 2))  # [BT, D, gh, gw]
        if cfg.motion == "maps":
            maps = motion.reshape(B * T, S, S, -1).permute(0, 3, 1, 2)
            tok = tok + self.guider(maps) * keep_mot.repeat_interleave(T)[:, None, None, None]
        tok = tok.flatten(2).transpose(1, 2).reshape(B, T, gh * gw, D)
        if cfg.motion == "params":
            mt = self.params_encoder(motion.reshape(B * T, NUM_PARAMS), keep_mot.repeat_interleave(T))
            tok = torch.cat([mt.view(B, T, 1, D), tok], 2)
        ref_tok = None
        if cfg.reference_tokens:
            ref_tok = self.ref_patch(reference.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)  # [B, N, D]
            k = keep_ref[:, None, None]
            ref_tok = k * ref_tok + (1 - k) * self.null_ref.to(ref_tok.dtype)
        c = self.time(_timestep_embedding(t, D).to(x.dtype))
        for block in self.blocks:
            tok = block(tok, ref_tok, c)
        shift, scale = self.ada_out(F.silu(c))[:, None, None].chunk(2, -1)
        out = self.out(_modulate(self.norm_out(tok[:, :, self.prefix:]), shift, scale))  # [B, T, N, p*p*3]
        out = out.view(B, T, gh, gw, p, p, 3).permute(0, 1, 2, 4, 3, 5, 6)
        return out.reshape(B, T, S, S, 3)

    # -- inputs -----------------------------------------------------------------------------------
    @staticmethod
    def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 1]) images -> float32 in [-1, 1]."""
        frames = torch.as_tensor(frames)
        if frames.dtype == torch.uint8:
            return frames.float() / 127.5 - 1.0
        return frames.float() * 2.0 - 1.0

    @staticmethod
    def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
        """Motion maps as :func:`facecore.video.data.motion_maps` renders them (channels 0-2 unit
        normals in [-1, 1], channel 3 depth ``(far - z) / (far - near)`` in (0, 1), 0 on the
        background) are already in the model's units: float32, NaN/inf refused."""
        maps = torch.as_tensor(maps).float()
        if not bool(torch.isfinite(maps).all()):
            raise ValueError("motion maps contain NaN or infinite values")
        return maps

    def _check_motion(self, motion: Any, T: int | None, where: str) -> torch.Tensor:
        cfg = self.config
        m = torch.as_tensor(np.asarray(motion) if not isinstance(motion, torch.Tensor) else motion)
        if cfg.motion == "maps":
            S, C = cfg.image_size, cfg.motion_channels
            if m.dim() != 4 or tuple(m.shape[1:]) != (S, S, C) or (T is not None and m.shape[0] != T):
                raise ValueError(f"{where}: this model (motion='maps') takes motion maps [T, {S}, {S}, {C}] "
                                 f"(normals + depth; facecore.video.data.motion_maps renders them from "
                                 f"ARKit parameters){'' if T is None else f' with T={T}'}, "
                                 f"got {list(m.shape)}")
            return self.normalize_maps(m)
        if m.dim() != 2 or m.shape[1] != NUM_PARAMS or (T is not None and m.shape[0] != T):
            raise ValueError(f"{where}: this model (motion='params') takes ARKit parameters [T, 61]"
                             f"{'' if T is None else f' with T={T}'}, got {list(m.shape)}")
        return m.float()

    def _check_image(self, image: Any, where: str, ndim: int) -> torch.Tensor:
        S = self.config.image_size
        im = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
        shape = "[T, H, W, 3]" if ndim == 4 else "[H, W, 3]"
        if im.dim() != ndim or tuple(im.shape[-3:]) != (S, S, 3):
            raise ValueError(f"{where} must be an image {shape} with H = W = image_size = {S}, "
                             f"got {list(im.shape)}")
        if im.dtype != torch.uint8 and not im.is_floating_point():
            raise ValueError(f"{where} must be uint8 (or float in [0, 1]), got {im.dtype}")
        return self.normalize_frames(im)

    def batch(self, samples: Sequence[Mapping[str, Any]], device: torch.device | str | None = None
              ) -> dict[str, torch.Tensor]:
        """Sample dicts (keys ``frames`` uint8 ``[T, S, S, 3]``, ``reference`` ``[S, S, 3]``, and
        ``motion_maps`` ``[T, S, S, C]`` or ``params`` ``[T, 61]`` as ``config.motion`` needs) ->
        ``{"x0", "reference", "motion"}`` normalised tensors on ``device``."""
        if not samples:
            raise ValueError("batch: expected at least one sample dict")
        key = "motion_maps" if self.config.motion == "maps" else "params"
        x0, refs, motion = [], [], []
        for i, s in enumerate(samples):
            if not isinstance(s, Mapping):
                raise ValueError(f"sample {i}: expected a dict with frames, reference and {key}, "
                                 f"got {type(s).__name__}")
            missing = [k for k in ("frames", "reference", key) if k not in s]
            if missing:
                raise ValueError(f"sample {i} ({s.get('clip_id', '?')}): missing keys {missing}")
            f = self._check_image(s["frames"], f"sample {i}: frames", 4)
            x0.append(f)
            refs.append(self._check_image(s["reference"], f"sample {i}: reference", 3))
            motion.append(self._check_motion(s[key], f.shape[0], f"sample {i}: {key}"))
        if len({f.shape[0] for f in x0}) != 1:
            raise ValueError(f"batch: clips of different lengths {sorted({f.shape[0] for f in x0})}")
        device = device if device is not None else next(self.parameters()).device
        return {"x0": torch.stack(x0).to(device), "reference": torch.stack(refs).to(device),
                "motion": torch.stack(motion).to(device)}

    # -- training ---------------------------------------------------------------------------------
    def training_inputs(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator,
                        drop_reference: float = 0.1, drop_motion: float = 0.1
                        ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """``(forward arguments, target)`` for one training step on a :meth:`batch`: timesteps, noise and
        the condition dropout drawn from ``generator`` (a CPU generator: the same draws on any device).
        The training loop calls the (DDP-wrapped) model on the arguments itself."""
        x0, ref, motion = batch["x0"], batch["reference"], batch["motion"]
        B, dev = x0.shape[0], x0.device
        t = self.schedule.sample_timesteps(B, generator)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        keep_ref = (torch.rand(B, generator=generator) >= drop_reference).float().to(dev)
        keep_mot = (torch.rand(B, generator=generator) >= drop_motion).float().to(dev)
        t = t.to(dev)
        xt = self.schedule.add_noise(x0, noise, t)
        return (xt, t, ref, motion, keep_ref, keep_mot), self.schedule.target(x0, noise, t)

    def loss(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator,
             drop_reference: float = 0.1, drop_motion: float = 0.1) -> torch.Tensor:
        """The diffusion loss (MSE to the v / epsilon target) on a :meth:`batch`."""
        args, target = self.training_inputs(batch, generator, drop_reference, drop_motion)
        return F.mse_loss(self(*args).float(), target.float())

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, reference: Any, motion: Any, steps: int = 25,
               guidance: float | tuple[float, float] = (2.0, 2.0), seed: int = 0, eta: float = 0.0,
               overlap: int | None = None) -> np.ndarray:
        """Generate frames: ``reference`` uint8 ``[S, S, 3]`` (or ``[B, S, S, 3]``), ``motion`` maps
        ``[T, S, S, C]`` / params ``[T, 61]`` (or with a leading ``B``) -> uint8 ``[T, S, S, 3]`` (or
        ``[B, T, S, S, 3]``). DDIM with ``steps`` steps (``eta`` 0: deterministic given ``seed``; a
        ``prediction="flow"`` model: Euler steps, deterministic, no ``eta``);
        ``guidance`` = ``(reference scale, motion scale)`` or one number for both (1 = no guidance).

        A motion longer than the trained clip length ``config.frames`` is generated in windows of that
        length, ``overlap`` frames apart from the next (default ``frames // 2``), **denoised together**:
        at every step each frame's prediction is the mean over the windows holding it (MultiDiffusion,
        Bar-Tal et al. 2023), so neighbouring windows agree where they meet instead of jumping there."""
        cfg = self.config
        ref = reference if isinstance(reference, torch.Tensor) else torch.as_tensor(np.asarray(reference))
        batched = ref.dim() == 4
        refs = ref if batched else ref[None]
        mot = motion if isinstance(motion, torch.Tensor) else torch.as_tensor(np.asarray(motion))
        mots = mot if batched else mot[None]
        if mots.shape[0] != refs.shape[0]:
            raise ValueError(f"sample: {refs.shape[0]} references but motion for {mots.shape[0]} clips")
        if isinstance(guidance, (int, float)) and not isinstance(guidance, bool):
            guidance = (float(guidance), float(guidance))
        if not (isinstance(guidance, (tuple, list)) and len(guidance) == 2
                and all(isinstance(g, (int, float)) and math.isfinite(g) for g in guidance)):
            raise ValueError(f"guidance must be a number or (reference scale, motion scale), "
                             f"got {guidance!r}")
        if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):
            raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
        if eta and cfg.prediction == "flow":
            raise ValueError(f"eta={eta!r}: a flow-matching model samples deterministically (eta is DDIM's)")
        s_ref, s_mot = float(guidance[0]), float(guidance[1])
        dev = next(self.parameters()).device
        r = torch.stack([self._check_image(x, "reference", 3) for x in refs]).to(dev)
        m = torch.stack([self._check_motion(x, None, "motion") for x in mots]).to(dev)
        B, T, S = r.shape[0], m.shape[1], cfg.image_size
        starts = _window_starts(T, cfg.frames, overlap)
        W = min(T, cfg.frames)
        sampler = self.schedule.sampler(steps)
        g = torch.Generator().manual_seed(int(seed))
        x = torch.randn((B, T, S, S, 3), generator=g).to(dev)
        guided = (s_ref, s_mot) != (1.0, 1.0)
        # windows run through the model a few at a time (bounded memory for any motion length), each
        # window of each clip one row of the batch
        per_pass = max(1, _ROWS_PER_PASS // B)
        chunks = [starts[i:i + per_pass] for i in range(0, len(starts), per_pass)]
        held = torch.zeros(T, device=dev)  # how many windows hold each frame
        for s0 in starts:
            held[s0:s0 + W] += 1
        was_training = self.training
        self.eval()
        try:
            for t in sampler.timesteps:
                pred = torch.zeros_like(x)
                for chunk in chunks:
                    pw = self._guided(torch.cat([x[:, s0:s0 + W] for s0 in chunk]), int(t),
                                      r.repeat(len(chunk), 1, 1, 1),
                                      torch.cat([m[:, s0:s0 + W] for s0 in chunk]), s_ref, s_mot, guided)
                    for i, s0 in enumerate(chunk):
                        pred[:, s0:s0 + W] += pw[i * B:(i + 1) * B]
                pred = pred / held.view(1, T, 1, 1, 1)  # one window: exactly the prediction
                x = sampler.step(pred, t, x, eta=eta, generator=g if eta > 0 else None).prev_sample
        finally:
            self.train(was_training)
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
        return frames if batched else frames[0]

    def _guided(self, x: torch.Tensor, t: int, r: torch.Tensor, m: torch.Tensor, s_ref: float, s_mot: float,
                guided: bool) -> torch.Tensor:
        """The model's prediction for ``x`` at timestep ``t``, with two-scale classifier-free guidance."""
        n = x.shape[0]
        tt = torch.full((n,), t, device=x.device, dtype=torch.long)
        if not guided:
            return self(x, tt, r, m)
        # one pass over 3n: (ref, motion), (ref, no motion), (no ref, no motion)
        one, zero = torch.ones(n, device=x.device), torch.zeros(n, device=x.device)
        p = self(x.repeat(3, 1, 1, 1, 1), tt.repeat(3), r.repeat(3, 1, 1, 1),
                 m.repeat(3, *([1] * (m.dim() - 1))), torch.cat([one, one, zero]),
                 torch.cat([one, zero, zero]))
        full, ref_only, none = p.chunk(3)
        return none + s_ref * (ref_only - none) + s_mot * (full - ref_only)

    # -- file format ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the weights and config to one safetensors file, atomically."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.state_dict().items()}
        header = {"format": FORMAT, "version": FORMAT_VERSION, "config": self.config.to_dict()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: json.dumps(header)}))

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu",
             attention: str | None = None) -> VideoDiffusion:
        """Read a file written by :meth:`save` (a folder: its ``video.safetensors``). ``attention``
        overrides the saved backend. FileNotFoundError when absent, FormatError when not a model."""

        from ..io.errors import FormatError, excerpt

        path = Path(path)
        if path.is_dir():
            path = path / "video.safetensors"
        tensors, header = read_safetensors(path, _META_KEY, "facecore video model")
        try:
            if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
                raise ValueError(f"format {header.get('format')!r} version {header.get('version')!r}, "
                                 f"expected {FORMAT!r} version {FORMAT_VERSION}")
            cfg = dict(header["config"])
            if attention is not None:
                cfg["attention"] = attention
            model = cls(cfg)
            model.load_state_dict(tensors, strict=True)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise FormatError(f"not a valid video model: {excerpt(msg, 200)}", path=path) from None
        return model.to(device).eval()
