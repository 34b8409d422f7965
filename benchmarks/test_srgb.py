"""Linear float -> sRGB uint8 (every PNG, video frame and synthetic sample goes through it): the CPU
kernel against its float64 reference and against the float32 torch code a user writes (and facecore ran
before the kernel: nan_to_num, clamp, the piecewise curve with ``torch.pow``, ``floor(255 v + 0.5)``). 64
images of 256² RGB (12.6 M values), torch at 2 threads; with and without the sensor's noise term."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref
from benchmarks.threads import torch_threads
from facecore.render.color import linear_to_srgb

SHAPE = (64, 256, 256, 3)


def torch_float32(x, noise=None, scale=None):
    if noise is not None:
        x = x + scale[:, None, None, None] * noise
    v = torch.nan_to_num(x, nan=0.0).clamp(0.0, 1.0)
    return torch.floor(linear_to_srgb(v) * 255.0 + 0.5).to(torch.uint8)


IMPLS = {"facecore": ops.srgb_uint8, "reference-float64": ref.srgb_uint8, "torch-float32": torch_float32}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("noise", [False, True], ids=["plain", "noise"])
def test_srgb_uint8_cpu(benchmark, impl, noise):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(SHAPE, generator=g)
    args = (torch.randn(SHAPE, generator=g), torch.rand(SHAPE[0], generator=g) * 0.03) if noise else ()
    benchmark.group = f"srgb_uint8 cpu {'x'.join(map(str, SHAPE))}{' + noise' if noise else ''}"
    benchmark.extra_info.update(threads=2, values=x.numel())
    with torch_threads(2):
        benchmark(lambda: IMPLS[impl](x, *args))
