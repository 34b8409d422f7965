"""Colour encoding at the output edge: linear light inside, sRGB in every 8-bit image and video.

facecore shades in linear light: rig colours (``FaceRig.colors``) are linear albedo, as glTF's
``COLOR_0`` is, and light adds up linearly. Displays, PNG viewers, browsers and H.264 players
expect sRGB-encoded values, so every place that turns a float image into uint8 (PNG, MP4, contact
sheets) goes through :func:`to_uint8`, which encodes with the sRGB transfer curve. Nothing inside
the pipeline (renderer, losses, synth labels) is encoded: float images stay linear.

The curve is the exact piecewise one of IEC 61966-2-1:1999 (sRGB), section 5.2:

    encode  s = 12.92 l                    for l <= 0.0031308
            s = 1.055 l^(1/2.4) - 0.055    otherwise
    decode  l = s / 12.92                  for s <= 0.04045
            l = ((s + 0.055) / 1.055)^2.4  otherwise

(0.04045 = 12.92 * 0.0031308 up to rounding; mid-grey 0.5 linear encodes to 0.7354,
0.2140 linear encodes to 0.5.) Values below zero follow the linear segment (and stay negative),
values above one follow the power segment; :func:`to_uint8` clamps to [0, 1] before encoding.
Both torch tensors (differentiable, any device) and numpy arrays are accepted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["SRGB_KNEE", "linear_to_srgb", "srgb_to_linear", "to_uint8"]

SRGB_KNEE = 0.0031308
"""Linear value where the sRGB curve switches from the linear segment to the power law."""
_SRGB_KNEE_ENCODED = 0.04045  # the same knee on the encoded side (IEC 61966-2-1)


def _float_array(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{what}: expected a float array or tensor, got dtype {a.dtype}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{what}: expected float values in [0, 1], got integer dtype {a.dtype} "
                        "(already quantised?)")
    return a.astype(np.promote_types(a.dtype, np.float32), copy=False)


def _check_float_tensor(x: Any, what: str) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{what}: expected a float tensor with values in [0, 1], got {x.dtype}")


def linear_to_srgb(x: Any) -> Any:
    """Encode linear-light values with the sRGB curve (same type, shape and device as ``x``)."""
    if isinstance(x, torch.Tensor):
        _check_float_tensor(x, "linear_to_srgb")
        # clamp_min inside the power: no NaN (or NaN gradient) from the branch torch.where discards
        power = 1.055 * x.clamp_min(SRGB_KNEE) ** (1 / 2.4) - 0.055
        return torch.where(x <= SRGB_KNEE, 12.92 * x, power)
    a = _float_array(x, "linear_to_srgb")
    power = 1.055 * np.maximum(a, SRGB_KNEE) ** (1 / 2.4) - 0.055
    return np.where(a <= SRGB_KNEE, 12.92 * a, power).astype(a.dtype, copy=False)


def srgb_to_linear(x: Any) -> Any:
    """Decode sRGB-encoded values to linear light (the inverse of :func:`linear_to_srgb`)."""
    if isinstance(x, torch.Tensor):
        _check_float_tensor(x, "srgb_to_linear")
        power = ((x.clamp_min(_SRGB_KNEE_ENCODED) + 0.055) / 1.055) ** 2.4
        return torch.where(x <= _SRGB_KNEE_ENCODED, x / 12.92, power)
    a = _float_array(x, "srgb_to_linear")
    power = ((np.maximum(a, _SRGB_KNEE_ENCODED) + 0.055) / 1.055) ** 2.4
    return np.where(a <= _SRGB_KNEE_ENCODED, a / 12.92, power).astype(a.dtype, copy=False)


def to_uint8(x: Any, srgb: bool = True) -> Any:
    """Float image values in [0, 1] -> uint8: clamp, sRGB-encode (``srgb=True``; pass False for
    alpha, masks and data that is not colour), scale by 255 and round half up.

    A torch tensor gives a uint8 tensor on the same device (detached), through
    :func:`facecore.ops.srgb_uint8` (the curve and the rounding in float64); anything else a numpy array.
    NaN becomes 0. Integer inputs raise TypeError: they are already quantised.
    """
    if isinstance(x, torch.Tensor):
        from .. import ops

        _check_float_tensor(x, "to_uint8")
        v = x.detach()
        if v.dtype not in (torch.float32, torch.float64):
            v = v.float()
        return ops.srgb_uint8(v.reshape(1, -1), srgb=srgb).view(x.shape)
    a = np.nan_to_num(_float_array(x, "to_uint8"), nan=0.0)
    v = np.clip(a, 0.0, 1.0)
    if srgb:
        v = linear_to_srgb(v)
    return np.floor(v * 255.0 + 0.5).astype(np.uint8)
