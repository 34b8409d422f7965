"""The estimator network: a face crop -> a diagonal Gaussian over the 61 ARKit channels.

Architecture (sized for real time on a laptop CPU: ~1.9 M parameters, ~7 MB float32 at the default
config): a conv stem of four stride-2 stages (``image_size / 16`` per side at the end, 6 x 6 for the
default 96 x 96 input), each a strided 3 x 3 conv and one residual 3 x 3 conv (GroupNorm + GELU), then
``depth`` pre-norm :class:`facecore.nn.TransformerBlock` s over the patch grid with a learned 2-D
relative-position bias (facecore's fused attention), mean pooling and a linear head.

The head gives ``(mean, log_std)``: ``mean`` is the linear output clamped to each channel's valid range
(:data:`facecore.arkit.RANGES`: [0, 1] for the 52 blendshapes, [-1, 1] for the 9 pose channels) with a
straight-through gradient, so a channel that sits at 0 (most blendshapes, most of the time) still gets
the full gradient of the loss; a sigmoid there, as this head first had, passes only about 2% of it at
the prior's median and the sparse channels never left it (docs/estimator.md). ``log_std`` is softly
bounded to ``[min_log_std, max_log_std]`` so the Gaussian NLL can neither collapse nor blow up.
:meth:`Estimator.init_mean` starts the mean at a given vector (training uses the labels' median).
The Gaussian is what the preference stage reads as a policy (:func:`facecore.losses.gaussian_logprob`).

The file format (:meth:`Estimator.save`): one safetensors file, the state dict as float32 tensors and
the string metadata ``{"facecore_estimator": JSON}`` with ``format``, ``version`` and ``config``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import arkit
from ..config_files import config_from_dict
from ..nn import TransformerBlock, head_start, straight_through_clamp
from ..training_utils import atomic_write, read_safetensors

FORMAT = "facecore.estimator"
FORMAT_VERSION = 2  # 2: the mean head is a straight-through clamp (1 was a sigmoid)
_META_KEY = "facecore_estimator"
INIT_LOG_STD = -1.5


EDGE_GRADIENTS = ("straight_through", "inward")


class _ClampInward(torch.autograd.Function):
    """``clamp(x, low, high)`` whose gradient past an edge is kept only where a descent step moves ``x``
    back toward the range (below ``low``: a negative gradient; above ``high``: a positive one)."""

    @staticmethod
    def forward(ctx, x, low, high):
        ctx.save_for_backward(x, low, high)
        return torch.clamp(x, low, high)

    @staticmethod
    def backward(ctx, g):
        x, low, high = ctx.saved_tensors
        outward = ((x < low) & (g > 0)) | ((x > high) & (g < 0))
        return torch.where(outward, torch.zeros_like(g), g), None, None


@dataclasses.dataclass
class EstimatorConfig:
    """The network's shape and its input convention (all of it is stored in the checkpoint).

    ``image_size``: side of the square input crop (a multiple of 16). ``channels``: the four conv
    stages' widths. ``dim``/``depth``/``heads``/``mlp_ratio``: the Transformer over the
    ``image_size / 16`` squared patch grid. ``crop_scale``: the crop's side over the face box's
    larger side (predict and training crop the same way). ``pixel_mean``/``pixel_std``: input
    normalisation of sRGB values in [0, 1]. ``norm``: the conv stages' normalisation, ``"batch"``
    (BatchNorm; eval mode uses its running statistics, so predictions do not depend on the batch) or
    ``"group"`` (GroupNorm with ``groups``; it fitted far more slowly: a fixed batch of 32 faces
    reached MSE 0.026 in 100 Adam steps against 0.0000 with BatchNorm, see docs/estimator.md).
    """

    image_size: int = 96
    channels: tuple[int, int, int, int] = (32, 64, 96, 160)
    dim: int = 160
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    groups: int = 8
    norm: str = "batch"
    min_log_std: float = -7.0
    max_log_std: float = 1.0
    crop_scale: float = 1.25
    pixel_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pixel_std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.pixel_mean = tuple(float(c) for c in self.pixel_mean)
        self.pixel_std = tuple(float(c) for c in self.pixel_std)
        if not isinstance(self.image_size, int) or self.image_size < 16 or self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 (>= 16), got {self.image_size!r}")
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"channels must be four positive widths, got {self.channels!r}")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"EstimatorConfig: norm must be 'batch' or 'group', got {self.norm!r}")
        if any(c % self.groups for c in self.channels):
            raise ValueError(f"every entry of channels {self.channels} must be divisible by "
                             f"groups={self.groups}")
        if self.dim < 1 or self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be a positive multiple of heads={self.heads}")
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0, got {self.depth}")
        if not self.min_log_std < self.max_log_std:
            raise ValueError(f"min_log_std ({self.min_log_std}) must be below max_log_std "
                             f"({self.max_log_std})")
        if not self.crop_scale > 0:
            raise ValueError(f"crop_scale must be > 0, got {self.crop_scale}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError("pixel_mean and pixel_std must be 3 values each, pixel_std positive")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EstimatorConfig:
        return config_from_dict(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class _Stage(nn.Module):
    """Strided 3 x 3 conv (halves the side) + one residual 3 x 3 conv."""

    def __init__(self, c_in: int, c_out: int, groups: int, norm: str = "batch"):
        super().__init__()
        make = (lambda c: nn.BatchNorm2d(c)) if norm == "batch" else (lambda c: nn.GroupNorm(groups, c))
        self.down = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
        self.norm1 = make(c_out)
        self.conv = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = make(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.down(x)))
        return x + F.gelu(self.norm2(self.conv(x)))


class Estimator(nn.Module):
    """Image -> Gaussian over the 61 ARKit channels (see the module docstring).

    ``forward(images [B, 3, S, S] normalised float) -> (mean [B, 61], log_std [B, 61])`` with
    ``S = config.image_size``. :meth:`predict` takes uint8 images of any size and does the cropping
    and normalisation itself.
    """

    def __init__(self, config: EstimatorConfig | dict[str, Any] | None = None, **overrides: Any):
        super().__init__()
        if config is None:
            config = EstimatorConfig(**overrides)
        elif isinstance(config, dict):
            config = EstimatorConfig.from_dict({**config, **overrides})
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        c = config
        widths = (3, *c.channels)
        self.stem = nn.Sequential(*[_Stage(widths[i], widths[i + 1], c.groups if i else 1, c.norm)
                                    for i in range(4)])
        self.grid = (c.image_size // 16, c.image_size // 16)
        self.proj = nn.Conv2d(c.channels[-1], c.dim, 1)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.dim, c.heads, mlp_ratio=c.mlp_ratio, rel_pos="2d", grid=self.grid)
            for _ in range(c.depth))
        for block in self.blocks:  # no prefix (class) tokens: their bias constants never get a gradient,
            block.attn.rel_bias.prefix.requires_grad_(False)  # which DDP would take for an unused parameter
        # No LayerNorm on the pooled features and a head init of std 0.02 (not the default scaled by
        # 0.1): with either, a fixed batch of 32 faces fitted 4-15x worse in 100 steps (docs/estimator.md).
        self.head = nn.Linear(c.dim, 2 * arkit.NUM_CHANNELS)
        with torch.no_grad():  # start at the neutral face (see init_mean) with a broad, equal uncertainty
            nn.init.normal_(self.head.weight, std=0.02)
            self.head.bias.zero_()
        # The head starts at log_std = INIT_LOG_STD (sigma ~ 0.2, the spread of typical labels): a
        # tiny start would make the first NLL steps huge.
        frac = (INIT_LOG_STD - c.min_log_std) / (c.max_log_std - c.min_log_std)
        self._std_offset = float(np.log(frac / (1 - frac))) if 0 < frac < 1 else 0.0
        self.register_buffer("low", torch.as_tensor(arkit.LOW.copy()), persistent=False)
        self.register_buffer("high", torch.as_tensor(arkit.HIGH.copy()), persistent=False)
        self.register_buffer("pixel_mean", torch.tensor(c.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, images: torch.Tensor, edge_gradient: str = "straight_through"
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)`` ``[B, 61]`` each: the head's mean clamped into each channel's range. Its
        gradient past a range's edge (:data:`EDGE_GRADIENTS`): ``"straight_through"`` (supervised
        training) passes it on unchanged, so a channel pushed past its edge can come back;
        ``"inward"`` (preference rounds) passes only the part that moves the raw value back toward the
        range, so an output already at its edge is not pushed further out."""
        raw_mean, raw_std = self.head_outputs(images).chunk(2, dim=-1)
        if edge_gradient == "straight_through":
            mean = straight_through_clamp(raw_mean, self.low, self.high)
        elif edge_gradient == "inward":
            mean = _ClampInward.apply(raw_mean, self.low, self.high)
        else:
            raise ValueError(f"Estimator.forward: edge_gradient must be one of {', '.join(EDGE_GRADIENTS)}, "
                             f"got {edge_gradient!r}")
        c = self.config
        log_std = c.min_log_std + (c.max_log_std - c.min_log_std) * torch.sigmoid(raw_std + self._std_offset)
        return mean, log_std

    def head_outputs(self, images: torch.Tensor) -> torch.Tensor:
        """The head's raw float32 output ``[B, 122]`` (the unclamped mean, then the unbounded log-std) for
        normalised ``images [B, 3, S, S]``; :meth:`forward` maps it into the channels' ranges."""
        S = self.config.image_size
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError("Estimator.forward: images must be a float tensor [B, 3, H, W] (normalised); "
                            "use predict() for uint8 images")
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (S, S):
            raise ValueError(f"Estimator.forward: images must have shape [B, 3, {S}, {S}], "
                             f"got {list(images.shape)}")
        x = self.proj(self.stem(images))  # [B, dim, gh, gw]
        x = x.flatten(2).transpose(1, 2)  # [B, gh * gw, dim], row-major like the relative bias
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1)).float()

    @torch.no_grad()
    def init_mean(self, mean: torch.Tensor) -> None:
        """Start the head at ``mean [61]`` for every input (its bias; the head's weights stay small)."""
        self.head.bias[:arkit.NUM_CHANNELS] = head_start(mean, self.low, self.high)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 1]) ``[B, S, S, 3]`` crops -> the network's input ``[B, 3, S, S]``."""
        x = images.permute(0, 3, 1, 2).to(self.pixel_mean.device, torch.float32)
        if not images.is_floating_point():
            x = x / 255.0
        return (x - self.pixel_mean) / self.pixel_std

    @torch.no_grad()
    def predict(self, images: Any, boxes: Any = None, *, assume_cropped: bool = False, batch_size: int = 64,
                detector: Any = None, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """uint8 images -> ``np.ndarray [B, 61]`` float32 (the Gaussian's mean, in valid ranges).

        ``images``: ``[B, H, W, 3]`` uint8 (numpy or torch), one ``[H, W, 3]`` image, or a list of
        images of different sizes. The face is cropped from ``boxes`` (``[B, 4]`` pixel boxes
        ``x0, y0, x1, y1``), from the whole image with ``assume_cropped=True``, and otherwise found by
        ``detector`` (default :class:`facecore.estimator.predict.FaceDetector`, the LBP cascade of
        scikit-image; raises :class:`~facecore.estimator.predict.NoFaceError` naming the image when
        none is found). ``return_std=True`` also returns ``exp(log_std)``. Runs in eval mode, in
        batches of ``batch_size``, without gradients; the module's training mode is restored.
        """
        from .predict import crop_faces, face_boxes, to_image_list

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        imgs = to_image_list(images)
        if boxes is None and not assume_cropped:
            boxes = face_boxes(imgs, detector)
        was_training = self.training
        self.eval()
        means, stds = [], []
        try:
            for i in range(0, len(imgs), batch_size):
                part = imgs[i:i + batch_size]
                box = None if boxes is None else boxes[i:i + batch_size]
                crops = crop_faces(part, box, self.config.image_size, self.config.crop_scale)
                mean, log_std = self(self.normalize(crops))
                means.append(mean.cpu())
                stds.append(log_std.exp().cpu())
        finally:
            self.train(was_training)
        mean = torch.cat(means).numpy() if means else np.zeros((0, arkit.NUM_CHANNELS), np.float32)
        if return_std:
            std = torch.cat(stds).numpy() if stds else np.zeros((0, arkit.NUM_CHANNELS), np.float32)
            return mean, std
        return mean

    # -- file format --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the weights and config to one safetensors file, atomically (a temporary file beside
        ``path`` renamed into place, so a reader never sees half a checkpoint)."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.state_dict().items()}
        header = {"format": FORMAT, "version": FORMAT_VERSION, "config": self.config.to_dict()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: json.dumps(header)}))

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> Estimator:
        """Read a file written by :meth:`save` (FileNotFoundError when absent; FormatError naming the
        file when it is not an estimator checkpoint). Returns the model in eval mode."""

        from ..io.errors import FormatError, excerpt

        tensors, header = read_safetensors(
            path, _META_KEY, "facecore estimator",
            "a training checkpoint is read with facecore.estimator.training, not Estimator.load")
        try:
            if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
                raise ValueError(f"format {header.get('format')!r} version {header.get('version')!r}, "
                                 f"expected {FORMAT!r} version {FORMAT_VERSION}")
            model = cls(EstimatorConfig.from_dict(header["config"]))
            model.load_state_dict(tensors, strict=True)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise FormatError(f"not a valid estimator checkpoint: {excerpt(msg, 200)}", path=path) from None
        return model.to(device).eval()
