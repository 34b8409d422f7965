"""The face-reading models: a LLaVA-style VLM built from transformers configs, and the regression control.

:func:`build_vlm` composes transformers' own classes, randomly initialised, nothing downloaded:
``LlavaForConditionalGeneration`` with a ``SiglipVisionConfig`` tower (patch embeddings + a few
bidirectional layers, no pooling head: LLaVA reads the patch features), LLaVA's two-layer GELU projector,
and a ``LlamaConfig`` decoder (grouped-query attention, RoPE, untied LM head). Every patch feature is one
``<image>`` token of the prompt (``vision_feature_select_strategy="full"``: SigLIP has no class token).

:class:`RegressionModel` (variants R and R+S) is the same vision tower with a mean-pooled MLP head that
outputs the 61 coefficients directly, clamped into their ranges with a straight-through gradient (R+S
adds a linear alignment head).

The helpers work for any HF VLM whose ``*ForConditionalGeneration`` keeps its base model in ``.model``
and its head in ``.lm_head`` (LLaVA, Qwen2-VL, … and peft-wrapped ones): :func:`decoder_hidden` runs the
base model only, so the training loss never forms ``[N, vocab]`` logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import arkit
from ..nn import head_start, straight_through_clamp
from .hf_attention import check_implementation
from .tokenizer import image_token_id


@dataclasses.dataclass
class VLMConfig:
    """Sizes of the tiny VLM (the defaults: ~2.5M parameters at a 2k vocabulary)."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 96
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    mlp_ratio: float = 2.75
    max_positions: int = 2048
    attn_implementation: str = "facecore"

    def __post_init__(self) -> None:
        for f in ("image_size", "patch_size", "vision_hidden", "vision_layers", "vision_heads", "text_hidden",
                  "text_layers", "text_heads", "text_kv_heads", "max_positions"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"VLMConfig.{f} must be an integer >= 1, got {v!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"VLMConfig.image_size={self.image_size} must be a multiple of "
                             f"patch_size={self.patch_size}")
        if self.vision_hidden % self.vision_heads or self.text_hidden % self.text_heads:
            raise ValueError("VLMConfig: vision_hidden / text_hidden must be multiples of their head counts")
        if self.text_heads % self.text_kv_heads:
            raise ValueError(f"VLMConfig.text_heads={self.text_heads} must be a multiple of "
                             f"text_kv_heads={self.text_kv_heads}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"VLMConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        check_implementation(self.attn_implementation)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> VLMConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown VLMConfig fields {unknown}; known: "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**d)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _vision_config(cfg: VLMConfig):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=cfg.vision_hidden, intermediate_size=int(cfg.vision_hidden * cfg.mlp_ratio),
        num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads, image_size=cfg.image_size,
        patch_size=cfg.patch_size, vision_use_head=False, attention_dropout=0.0)


def build_vlm(cfg: VLMConfig, tokenizer) -> nn.Module:
    """A randomly initialised ``LlavaForConditionalGeneration`` (SigLIP tower + Llama decoder) for
    ``tokenizer`` (its vocabulary size, pad/bos/eos and ``<image>`` ids)."""
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden,
        intermediate_size=int(cfg.text_hidden * cfg.mlp_ratio), num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads, num_key_value_heads=cfg.text_kv_heads,
        max_position_embeddings=cfg.max_positions, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
        attention_dropout=0.0)
    config = LlavaConfig(
        vision_config=_vision_config(cfg), text_config=text, image_token_index=image_token_id(tokenizer),
        image_seq_length=cfg.num_patches, vision_feature_select_strategy="full", vision_feature_layer=-1,
        projector_hidden_act="gelu", tie_word_embeddings=False)
    config.facecore = {"vlm": dataclasses.asdict(cfg)}
    return set_attn_implementation(LlavaForConditionalGeneration(config), cfg.attn_implementation)


def set_attn_implementation(model: nn.Module, impl: str) -> nn.Module:
    """Switch every attention layer of an HF model (and its sub-models) to ``impl``: "facecore", "sdpa"
    or "eager"."""
    check_implementation(impl)
    base = getattr(model, "get_base_model", lambda: model)()
    base.set_attn_implementation(impl)
    return model


REGRESSION_HEAD = "clamp"  # R/R+S exports before this had a sigmoid/tanh head; load refuses them


class RegressionModel(nn.Module):
    """Variant R: the VLM's vision tower, mean-pooled, and an MLP to the 61 coefficients, clamped into their
    ranges with a straight-through gradient (:func:`facecore.nn.straight_through_clamp`, the estimator's
    head: a sigmoid starves the sparse channels, docs/estimator.md);
    :meth:`init_mean` starts it at a given vector. With ``align_dim`` > 0 (variant R+S) a linear map of
    the same pooled features into a sentence-embedding space, unit-normed, for the auxiliary alignment
    loss."""

    def __init__(self, cfg: VLMConfig, head_hidden: int = 256, align_dim: int = 0):
        super().__init__()
        from transformers import SiglipVisionModel

        self.config = cfg
        vc = _vision_config(cfg)
        vc._attn_implementation = cfg.attn_implementation
        self.vision = SiglipVisionModel(vc)
        self.vision.set_attn_implementation(cfg.attn_implementation)
        self.head = nn.Sequential(nn.LayerNorm(cfg.vision_hidden), nn.Linear(cfg.vision_hidden, head_hidden),
                                  nn.GELU(), nn.Linear(head_hidden, arkit.NUM_CHANNELS))
        self.align = nn.Linear(cfg.vision_hidden, align_dim) if align_dim > 0 else None
        self.register_buffer("low", torch.as_tensor(arkit.LOW.copy()), persistent=False)
        self.register_buffer("high", torch.as_tensor(arkit.HIGH.copy()), persistent=False)

    @torch.no_grad()
    def init_mean(self, mean: torch.Tensor) -> None:
        """Start the head at ``mean [61]`` (the last layer's bias; its weights stay as initialised)."""
        self.head[-1].bias.copy_(head_start(mean, self.low, self.high))

    def forward(self, pixel_values: torch.Tensor, with_alignment: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """-> coefficients ``[B, 61]``; with ``with_alignment``, also the unit-norm ``[B, align_dim]``
        embedding of the same features."""
        feats = self.vision(pixel_values=pixel_values).last_hidden_state.mean(1)
        params = straight_through_clamp(self.head(feats), self.low, self.high)
        if not with_alignment:
            return params
        if self.align is None:
            raise ValueError("this RegressionModel has no alignment head (built with align_dim=0)")
        return params, torch.nn.functional.normalize(self.align(feats), dim=-1)


def inner_model(model: nn.Module) -> nn.Module:
    """The HF ``*ForConditionalGeneration`` inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_hidden(model: nn.Module, input_ids: torch.Tensor, pixel_values: torch.Tensor | None,
                   **kwargs: Any) -> torch.Tensor:
    """The decoder's final (normed) hidden states ``[B, L, H]``: the base model only, no LM head."""
    base = inner_model(model)
    if not hasattr(base, "model"):
        raise TypeError(f"{type(base).__name__} keeps no base model in .model; facecore's semantic training "
                        "needs an HF *ForConditionalGeneration VLM (LLaVA, Qwen2-VL, ...)")
    out = base.model(input_ids=input_ids, pixel_values=pixel_values, use_cache=False, **kwargs)
    return out.last_hidden_state


def lm_head(model: nn.Module) -> nn.Linear:
    head = inner_model(model).get_output_embeddings()
    if head is None:
        raise TypeError("the model has no output embeddings (LM head)")
    return head


def num_image_tokens(model: nn.Module, image_size: int) -> int:
    """How many ``<image>`` placeholders one image needs: the length of its projected features."""
    base = inner_model(model)
    p = next(base.parameters())
    with torch.no_grad():
        x = torch.zeros(1, 3, image_size, image_size, dtype=p.dtype, device=p.device)
        feats = base.model.get_image_features(pixel_values=x)
    feats = getattr(feats, "pooler_output", feats)
    return int(feats[0].shape[0]) if isinstance(feats, (list, tuple)) else int(feats.shape[1])


def pixel_values(images: Any, size: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images (uint8 ``[B, H, W, 3]`` / ``[H, W, 3]`` array or tensor, or a list of them, RGB or RGBA or
    grey) -> ``[B, 3, size, size]`` in ``[-1, 1]`` (SigLIP's normalisation), resized with antialiasing."""
    if isinstance(images, (list, tuple)):
        return torch.cat([pixel_values(im, size, device, dtype) for im in images]) if images else \
            torch.empty(0, 3, size, size, dtype=dtype, device=device)
    x = images.cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))  # a copy
    if x.dim() == 2:
        x = x[..., None]
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images must be [B, H, W, C] or [H, W, C] with C in (1, 3, 4), got {list(x.shape)}")
    x = x[..., :3] if x.shape[-1] != 1 else x.expand(*x.shape[:-1], 3)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)
    return (x * 2 - 1).clamp(-1, 1).to(device=device, dtype=dtype)
