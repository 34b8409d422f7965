"""facecore's fused attention as a transformers attention implementation (``attn_implementation="facecore"``).

:func:`register` adds ``"facecore"`` to ``transformers.AttentionInterface`` (the function every HF attention
layer calls with ``query [B, Hq, Lq, D]``, ``key``/``value [B, Hkv, Lk, D]`` and a prepared mask) and to
``transformers.masking_utils.AttentionMaskInterface`` (the mask builder; the SDPA one: a boolean
``[B, 1, Lq, Lk]`` mask, True = attend, or ``None`` when plain causal/bidirectional attention suffices).

The mask becomes facecore's arguments without an ``[Lq, Lk]`` buffer in the common cases:

* ``None`` -> ``causal = module.is_causal`` (facecore aligns causal bottom-right, which is what a KV cache
  needs: the ``Lq`` new queries sit at the end of the ``Lk`` keys);
* boolean -> an additive bias (0 / the dtype's minimum, as transformers' eager path adds); float -> the
  bias as given. Then ``causal=False``: the mask already holds the causal pattern.

Grouped-query heads go to the kernel as they are (no ``repeat_kv`` copy). Switch per model with
``model.set_attn_implementation("facecore" | "sdpa" | "eager")`` or ``attn_implementation=`` at build time.
"""

from __future__ import annotations

import torch

from ..ops.attention import attention

NAME = "facecore"
IMPLEMENTATIONS = ("facecore", "sdpa", "eager")


def facecore_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The ``AttentionInterface`` function: returns ``(out [B, Lq, Hq, D], None)`` like the SDPA one."""
    if dropout and module.training:
        raise ValueError("attn_implementation='facecore' has no attention dropout; set the model config's "
                         f"attention_dropout to 0 (got {dropout}) or use 'sdpa'/'eager'")
    if kwargs.get("softcap") is not None or kwargs.get("sliding_window") is not None:
        raise ValueError("attn_implementation='facecore' supports neither softcap nor sliding windows; "
                         "use 'sdpa' or 'eager' for this model")
    bias = None
    if attention_mask is None:
        causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    else:
        causal = False
        mask = attention_mask[:, :, :, : key.shape[-2]]
        if mask.dtype == torch.bool:
            bias = torch.zeros(mask.shape, dtype=query.dtype, device=query.device)
            bias.masked_fill_(~mask, torch.finfo(query.dtype).min)
        else:
            bias = mask.to(query.dtype)
    out = attention(query, key, value, bias, causal, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register ``"facecore"`` with transformers (idempotent); returns the name to pass as
    ``attn_implementation``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, facecore_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def check_implementation(name: str) -> str:
    """``name`` if it is one of :data:`IMPLEMENTATIONS` (registering facecore's when asked); else
    ValueError."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation must be one of {IMPLEMENTATIONS}, got {name!r}")
    if name == NAME:
        register()
    return name
