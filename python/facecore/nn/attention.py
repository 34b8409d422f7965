"""Attention and Transformer blocks built on :func:`facecore.ops.attention`.

The learned relative-position biases are small tables expanded to a ``[H, Lq, Lk]`` bias that the fused
kernel adds to the scores; the kernel's bias gradient (summed over the batch) flows back into the table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.attention import attention


class RelativePositionBias1d(nn.Module):
    """Learned per-head bias ``b[h, clip(j - pos(i))]`` for 1-D sequences (T5/Transformer-XL style,
    without buckets): one value per head and relative offset in ``[-(max_distance-1), max_distance-1]``;
    larger offsets share the value of the largest.

    Positions are aligned bottom-right like causal masking: with ``Lq < Lk`` (a KV cache) query ``i``
    sits at position ``i + Lk - Lq``. Initialised to zero (no positional preference).
    """

    def __init__(self, num_heads: int, max_distance: int = 128):
        super().__init__()
        if num_heads < 1 or max_distance < 1:
            raise ValueError(f"RelativePositionBias1d: num_heads and max_distance must be >= 1, got "
                             f"{num_heads} and {max_distance}")
        self.num_heads, self.max_distance = num_heads, max_distance
        self.table = nn.Parameter(torch.zeros(num_heads, 2 * max_distance - 1))

    def forward(self, Lq: int, Lk: int) -> torch.Tensor:
        """Bias ``[H, Lq, Lk]``."""
        i = torch.arange(Lq, device=self.table.device)[:, None] + (Lk - Lq)
        j = torch.arange(Lk, device=self.table.device)[None, :]
        rel = (j - i).clamp(-(self.max_distance - 1), self.max_distance - 1) + (self.max_distance - 1)
        return self.table[:, rel]


class RelativePositionBias2d(nn.Module):
    """Learned per-head bias for a ``grid = (gh, gw)`` of patches (Swin style): one value per head and
    2-D offset ``(dy, dx)`` between two patches, ``(2 gh - 1) (2 gw - 1)`` values per head.

    Tokens are ``num_prefix_tokens`` extra tokens (e.g. a class token) followed by the patches in
    row-major order; pairs involving a prefix token get a learned per-head constant per direction
    (prefix -> patch, patch -> prefix, prefix -> prefix).
    """

    def __init__(self, num_heads: int, grid: tuple[int, int], num_prefix_tokens: int = 0):
        super().__init__()
        gh, gw = grid
        if num_heads < 1 or gh < 1 or gw < 1 or num_prefix_tokens < 0:
            raise ValueError(f"RelativePositionBias2d: need num_heads >= 1, a grid of positive sizes and "
                             f"num_prefix_tokens >= 0, got {num_heads}, {grid}, {num_prefix_tokens}")
        self.num_heads, self.grid, self.num_prefix_tokens = num_heads, (gh, gw), num_prefix_tokens
        self.table = nn.Parameter(torch.zeros(num_heads, (2 * gh - 1) * (2 * gw - 1)))
        self.prefix = nn.Parameter(torch.zeros(num_heads, 3))  # to patch, from patch, among prefix tokens
        y, x = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        y, x = y.reshape(-1), x.reshape(-1)
        dy = y[:, None] - y[None, :] + gh - 1
        dx = x[:, None] - x[None, :] + gw - 1
        self.register_buffer("index", dy * (2 * gw - 1) + dx, persistent=False)

    def forward(self) -> torch.Tensor:
        """Bias ``[H, N, N]`` with ``N = num_prefix_tokens + gh * gw``."""
        bias = self.table[:, self.index]
        p = self.num_prefix_tokens
        if p:
            H, n = self.num_heads, bias.shape[-1]
            top = torch.cat([self.prefix[:, 2, None, None].expand(H, p, p),
                             self.prefix[:, 0, None, None].expand(H, p, n)], -1)
            bottom = torch.cat([self.prefix[:, 1, None, None].expand(H, n, p), bias], -1)
            bias = torch.cat([top, bottom], 1)
        return bias


class Attention(nn.Module):
    """Multi-head attention with grouped-query heads and an optional learned relative-position bias.

    ``x [B, Lq, dim]`` attends to itself or to ``context [B, Lk, context_dim]`` (cross-attention).
    ``num_kv_heads`` (default ``num_heads``) must divide ``num_heads``. ``rel_pos`` is ``None``, ``"1d"``
    (needs ``max_distance``) or ``"2d"`` (needs ``grid``, self-attention over ``prefix + gh * gw`` tokens).
    ``causal`` uses the kernel's bottom-right alignment. ``forward`` also takes an extra additive
    ``bias`` (broadcastable to ``[B, H, Lq, Lk]``) and a ``key_padding_mask [B, Lk]`` (True = padding).
    """

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int | None = None, head_dim: int | None = None,
                 qkv_bias: bool = False, causal: bool = False, context_dim: int | None = None,
                 rel_pos: str | None = None, max_distance: int = 128, grid: tuple[int, int] | None = None,
                 num_prefix_tokens: int = 0, backend: str = "auto"):
        super().__init__()
        num_kv_heads = num_kv_heads or num_heads
        if num_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"Attention: num_heads={num_heads} must be a positive multiple of "
                             f"num_kv_heads={num_kv_heads}")
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"Attention: dim={dim} is not divisible by num_heads={num_heads}; "
                                 "pass head_dim")
            head_dim = dim // num_heads
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.causal, self.backend = causal, backend
        context_dim = context_dim or dim
        self.q = nn.Linear(dim, num_heads * head_dim, bias=qkv_bias)
        self.kv = nn.Linear(context_dim, 2 * num_kv_heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(num_heads * head_dim, dim)
        if rel_pos is None:
            self.rel_bias = None
        elif rel_pos == "1d":
            self.rel_bias = RelativePositionBias1d(num_heads, max_distance)
        elif rel_pos == "2d":
            if grid is None:
                raise ValueError("Attention: rel_pos='2d' needs grid=(gh, gw)")
            self.rel_bias = RelativePositionBias2d(num_heads, grid, num_prefix_tokens)
        else:
            raise ValueError(f"Attention: rel_pos must be None, '1d' or '2d', got {rel_pos!r}")

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        B, Lq, _ = x.shape
        src = x if context is None else context
        Lk = src.shape[1]
        q = self.q(x).view(B, Lq, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(src).view(B, Lk, 2, self.num_kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if isinstance(self.rel_bias, RelativePositionBias1d):
            rel = self.rel_bias(Lq, Lk)
        elif isinstance(self.rel_bias, RelativePositionBias2d):
            rel = self.rel_bias()
            if rel.shape[-1] != Lk or rel.shape[-2] != Lq:
                raise ValueError(f"Attention: the 2-D relative bias covers {rel.shape[-1]} tokens "
                                 f"(prefix + grid), got Lq={Lq}, Lk={Lk}")
        else:
            rel = None
        if rel is not None:
            rel = rel.to(q.dtype)
            bias = rel if bias is None else bias + rel
        out = attention(q, k, v, bias, self.causal, key_padding_mask, backend=self.backend)
        return self.proj(out.transpose(1, 2).reshape(B, Lq, self.num_heads * self.head_dim))


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))`` (GELU MLP).

    Keyword arguments not listed go to :class:`Attention` (``num_kv_heads``, ``causal``, ``rel_pos``,
    ``max_distance``, ``grid``, ``num_prefix_tokens``, ``qkv_bias``, ``backend``, ...).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6, **attn_kwargs):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, **attn_kwargs)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_padding_mask=key_padding_mask, bias=bias)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
