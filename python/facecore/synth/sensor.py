"""Backgrounds and sensor effects, batched and reproducible per sample (stream ``STREAM_SENSOR``).

Backgrounds (linear RGB ``[B, H, W, 3]``): ``solid`` (one colour), ``gradient`` (two colours along a
random direction), ``noise`` (value noise: three octaves of random 4/8/16-cell grids, bilinearly
upsampled), ``image`` (a random square crop, 50-100 % of the short side, of a PNG/JPEG from a folder,
sRGB-decoded). Colours: a grey ``brightness`` level, tinted by up to ``saturation``.

Sensor (in this order): exposure gain and white-balance gains; saturation about the luminance;
Gaussian blur (:func:`facecore.ops.gaussian_blur`, per-sample sigma); Gaussian read noise (per-sample
s.d.) and quantisation to sRGB uint8 in one pass (:func:`facecore.ops.srgb_uint8`); JPEG compression
(Pillow) with probability ``jpeg``. All per-pixel arithmetic is elementwise in a fixed order (the blur
uses each sample's own radius), so a sample's image does not depend on its batch. The read noise comes from a
per-sample ``torch.Generator`` seeded from ``SeedSequence([seed, index, STREAM_SENSOR])`` on the image's
device (the same bytes on every run of one device type; CPU and CUDA generators differ).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import ops
from .prior import STREAM_SENSOR, sample_rngs, sample_uniforms

BACKGROUNDS = ("solid", "gradient", "noise", "image")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRIDS = (4, 8, 16)
_K_BG = 16 + 3 * sum(g * g for g in _GRIDS)
_K_SENSOR = 12


def sensor_uniforms(seed: int, indices) -> np.ndarray:
    """``[B, _K_BG + _K_SENSOR]``: background columns first, then the sensor's."""
    return sample_uniforms(seed, indices, STREAM_SENSOR, _K_BG + _K_SENSOR)


def _colour(level: np.ndarray, sat: float, u3: np.ndarray) -> np.ndarray:
    return np.clip(level[:, None] * (1 + sat * 2 * (u3 - 0.5)), 0, 1)


@functools.lru_cache(maxsize=64)
def _image_list(folder: str) -> tuple[Path, ...]:
    p = Path(folder)
    if not p.is_dir():
        raise FileNotFoundError(f"background.image_dir: no such folder: {p}")
    files = tuple(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"background.image_dir: no PNG or JPEG images in {p}")
    return files


@functools.lru_cache(maxsize=32)
def _load_image(path: Path) -> torch.Tensor:
    """``[3, h, w]`` linear float32 (decoded once per process)."""
    import imageio.v3 as iio

    from ..render.color import srgb_to_linear

    try:
        a = np.asarray(iio.imread(path))
    except Exception as e:  # noqa: BLE001 - imageio raises many types
        raise ValueError(f"background image {path}: cannot decode ({e})") from None
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    a = a[..., :3].astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0)
    return srgb_to_linear(torch.from_numpy(np.ascontiguousarray(a))).permute(2, 0, 1).contiguous()


def make_backgrounds(
    spec, u: np.ndarray, resolution: tuple[int, int], device, dtype=torch.float32
) -> tuple[torch.Tensor, list[str]]:
    """Backgrounds ``[B, H, W, 3]`` (linear) and the kind of each, from uniforms ``u [B, _K_BG]``."""
    H, W = resolution
    B = u.shape[0]
    kinds = [k for k in BACKGROUNDS if spec.kinds.get(k, 0) > 0 and (k != "image" or spec.image_dir)]
    if not kinds:
        kinds = ["solid"]
    w = np.array([spec.kinds.get(k, 1.0) for k in kinds], np.float64)
    cdf = np.cumsum(w / w.sum())
    pick = np.minimum(np.searchsorted(cdf, u[:, 0], side="right"), len(kinds) - 1)
    names = [kinds[i] for i in pick]
    lo, hi = spec.brightness
    level1 = lo + (hi - lo) * u[:, 1]
    level2 = lo + (hi - lo) * u[:, 2]
    c1 = _colour(level1, spec.saturation, u[:, 3:6])
    c2 = _colour(level2, spec.saturation, u[:, 6:9])
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
    out = t(c1)[:, None, None, :].expand(B, H, W, 3).clone()
    is_kind = lambda k: [i for i, n in enumerate(names) if n == k]  # noqa: E731
    grad = is_kind("gradient")
    if grad:
        ang = t(2 * np.pi * u[grad, 9])
        ys = (torch.arange(H, device=device, dtype=dtype) + 0.5) / H - 0.5
        xs = (torch.arange(W, device=device, dtype=dtype) + 0.5) / W - 0.5
        s = (
            xs[None, None, :] * torch.cos(ang)[:, None, None]
            + ys[None, :, None] * torch.sin(ang)[:, None, None]
        )
        s = (s / 0.7071 + 0.5).clamp(0, 1).unsqueeze(-1)  # [b, H, W, 1]
        out[grad] = t(c1[grad])[:, None, None] * (1 - s) + t(c2[grad])[:, None, None] * s
    noise = is_kind("noise")
    if noise:
        acc = torch.zeros(len(noise), 3, H, W, dtype=dtype, device=device)
        col, amp = 16, 0.5
        for g in _GRIDS:
            grid = t(u[noise, col : col + 3 * g * g].reshape(len(noise), 3, g, g))
            acc = acc + amp * (F.interpolate(grid, size=(H, W), mode="bilinear", align_corners=False) - 0.5)
            col += 3 * g * g
            amp *= 0.5
        base = t(c1[noise] * 0.5 + c2[noise] * 0.5)[:, :, None, None]
        out[noise] = (base * (1 + 1.6 * acc)).clamp(0, 1).permute(0, 2, 3, 1)
    imgs = is_kind("image")
    if imgs:
        files = _image_list(str(spec.image_dir))
        for i in imgs:
            img = _load_image(files[min(int(u[i, 10] * len(files)), len(files) - 1)])
            h, w_ = img.shape[1:]
            side = max(1, int(min(h, w_) * (0.5 + 0.5 * u[i, 11])))
            y0 = int((h - side) * u[i, 12])
            x0 = int((w_ - side) * u[i, 13])
            crop = img[:, y0 : y0 + side, x0 : x0 + side].unsqueeze(0)
            crop = F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
            out[i] = crop[0].permute(1, 2, 0).to(device=device, dtype=dtype)
    return out, names


def apply_sensor(img: torch.Tensor, spec, u: np.ndarray, seed: int, indices) -> tuple[torch.Tensor, dict]:
    """Linear ``img [B, H, W, 3]`` -> sRGB uint8 ``[B, H, W, 3]`` through the sensor (module docstring),
    with the per-sample effect parameters (a dict of ``[B]`` / ``[B, 3]`` tensors)."""
    dev, dt = img.device, img.dtype
    lerp = lambda r, x: r[0] + (r[1] - r[0]) * x  # noqa: E731
    exposure = lerp(spec.exposure, u[:, 0])
    wb = 1 + spec.white_balance * 2 * (u[:, 1:4] - 0.5)
    sat = lerp(spec.saturation, u[:, 4])
    blur = lerp(spec.blur, u[:, 5])
    noise = lerp(spec.noise, u[:, 6])
    jpeg = u[:, 7] < spec.jpeg
    quality = np.round(lerp(spec.jpeg_quality, u[:, 8])).astype(int)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)  # noqa: E731
    x = img * (t(exposure)[:, None] * t(wb))[:, None, None, :]
    if spec.saturation != (1.0, 1.0):
        lum = (x * t([0.2126, 0.7152, 0.0722])).sum(-1, keepdim=True)
        x.sub_(lum).mul_(t(sat)[:, None, None, None]).add_(lum)  # lum + sat (x - lum), in place
    x = ops.gaussian_blur(x.contiguous(), t(blur))  # per-sample radius: the same alone or in a batch
    eps = None
    if float(noise.max()) > 0:
        eps = torch.empty_like(x)
        for b, rng in enumerate(sample_rngs(seed, indices, STREAM_SENSOR + 100)):
            g = torch.Generator(device=dev).manual_seed(int(rng.integers(0, 2**62)))
            torch.randn(x.shape[1:], generator=g, out=eps[b])
    # x + noise * eps, quantised to sRGB uint8, in one pass
    out = ops.srgb_uint8(x, eps, None if eps is None else t(noise))
    if jpeg.any():
        out = _jpeg(out, jpeg, quality)
    info = {
        "exposure": t(exposure),
        "white_balance": t(wb),
        "saturation": t(sat),
        "blur": t(blur),
        "noise": t(noise),
        "jpeg_quality": torch.as_tensor(np.where(jpeg, quality, 0), device=dev),
    }
    return out, info


def _jpeg(img: torch.Tensor, which: np.ndarray, quality: np.ndarray) -> torch.Tensor:
    from PIL import Image

    cpu = img.cpu().numpy()
    for b in np.flatnonzero(which):
        buf = io.BytesIO()
        Image.fromarray(cpu[b]).save(buf, format="JPEG", quality=int(quality[b]))
        buf.seek(0)
        cpu[b] = np.asarray(Image.open(buf).convert("RGB"))
    return torch.from_numpy(cpu).to(img.device)
