"""Reference scaled-dot-product attention with an additive bias: the specification of facecore.ops.attention.

    S = scale * Q K^T + bias            (scale defaults to 1/sqrt(D))
    S[..., i, j] = -inf  where key j is masked (causal, or key_padding_mask[b, j] is True)
    P = softmax(S, -1),  O = P V,  lse = logsumexp(S, -1)

Conventions (shared by every backend):
- ``q [B, Hq, Lq, D]``, ``k``/``v [B, Hkv, Lk, D]``; ``Hq`` a multiple of ``Hkv`` (grouped-query attention):
  query head ``h`` reads key/value head ``h // (Hq // Hkv)``.
- ``bias`` broadcastable to ``[B, Hq, Lq, Lk]``; its gradient has the bias's own shape (summed over the
  broadcast dimensions).
- ``causal`` is aligned bottom-right as in FlashAttention >= 2.1: query ``i`` sees keys ``j <= i + Lk - Lq``
  (the last query sees every key; what KV-cache decoding needs). PyTorch's ``is_causal`` aligns top-left;
  the two agree only when ``Lq == Lk``.
- ``key_padding_mask [B, Lk]`` bool, True marks a padding key that no query may attend to (the
  ``torch.nn.MultiheadAttention`` convention). Padding keys routinely hold garbage: their rows of ``k``
  and ``v`` are replaced by zeros (masked_fill, so they get exactly zero gradient) and masked scores are
  overwritten, never added to, so NaN/inf at a padding key or in its bias never reaches a real row.
- A query row whose keys are all masked outputs zeros, has ``lse = -inf`` and gets zero gradients.
- Non-finite inputs otherwise follow IEEE arithmetic: a NaN query gives a NaN row (``out`` and ``lse``)
  of its own and leaves the other rows alone.
"""

from __future__ import annotations

import math

import torch


def attention_mask(Lq: int, Lk: int, causal: bool, key_padding_mask: torch.Tensor | None,
                   device: torch.device) -> torch.Tensor | None:
    """Boolean "may attend" mask broadcastable to ``[B, 1, Lq, Lk]`` (None when nothing is masked)."""
    allowed = None
    if causal:
        i = torch.arange(Lq, device=device)[:, None]
        j = torch.arange(Lk, device=device)[None, :]
        allowed = (j <= i + (Lk - Lq))[None, None]
    if key_padding_mask is not None:
        keep = ~key_padding_mask.bool()[:, None, None, :]
        allowed = keep if allowed is None else allowed & keep
    return allowed


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None,
              causal: bool = False, key_padding_mask: torch.Tensor | None = None, scale: float | None = None,
              return_lse: bool = False):
    """``O [B, Hq, Lq, D]`` (and ``lse [B, Hq, Lq]`` when ``return_lse``); see the module docstring."""
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    if key_padding_mask is not None:
        pad = key_padding_mask.bool()[:, None, :, None]
        k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)  # 0 * garbage would be NaN below
    g = Hq // Hkv
    if g > 1:
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
    s = scale * (q @ k.transpose(-1, -2))
    if bias is not None:
        s = s + bias
    allowed = attention_mask(Lq, Lk, causal, key_padding_mask, q.device)
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    # Softmax written out so that fully masked rows give P = 0 (not NaN) and zero gradients.
    m = s.detach().amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)
    den = e.sum(-1, keepdim=True)   # 0 for a fully masked row, NaN for a NaN row
    masked = den == 0
    p = e / torch.where(masked, torch.ones_like(den), den)
    out = p @ v
    if not return_lse:
        return out
    # fully masked rows: lse = -inf, and no inf * 0 in the gradient of log
    lse = torch.where(masked, float("-inf"), m + torch.log(torch.where(masked, torch.ones_like(den), den)))
    return out, lse.squeeze(-1)
