"""Per-image Gaussian blur (the data engine's sensor blur): the CPU kernel against the batched plain-torch
reference (what facecore.synth ran before the kernel) and against what a user would otherwise write with
PyTorch's own convolution: one depthwise ``F.conv2d`` call per pass (``groups = B * C``, each image's taps
zero-padded to the batch's largest radius, reflect padding). 64 images of 128² RGB, sigma uniform in
[0, 1.2] pixels (the "wild" preset's range), torch at 2 threads; forward, and forward + backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import facecore.ops as ops
import facecore.reference as ref
from benchmarks.threads import torch_threads

B, H, W, C = 64, 128, 128, 3


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.rand(B, H, W, C, generator=g), torch.rand(B, generator=g) * 1.2


def conv2d_blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The peer: separable per-image blur as two grouped convolutions over ``[1, B * C, H, W]``."""
    r = max(1, int(torch.ceil(3 * sigma.max())))
    k = torch.arange(-r, r + 1, dtype=img.dtype)[None]
    s = sigma.clamp_min(1e-6)[:, None]
    w = torch.where(k.abs() <= torch.ceil(3 * s), torch.exp(-0.5 * (k / s) ** 2), torch.zeros_like(k))
    w = torch.where(sigma[:, None] > 0, w / w.sum(1, keepdim=True), (k == 0).to(img.dtype))
    w = w.repeat_interleave(C, 0)  # [B * C, 2r + 1]
    x = img.permute(0, 3, 1, 2).reshape(1, B * C, H, W)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), w[:, None, :, None], groups=B * C)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), w[:, None, None, :], groups=B * C)
    return x.reshape(B, C, H, W).permute(0, 2, 3, 1)


IMPLS = {"facecore": ops.gaussian_blur, "reference": ref.gaussian_blur, "torch-conv2d": conv2d_blur}


def test_peer_computes_the_same_blur():
    img, sigma = _inputs()
    torch.testing.assert_close(conv2d_blur(img, sigma), ops.gaussian_blur(img, sigma), atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_blur_forward_cpu(benchmark, impl):
    img, sigma = _inputs()
    f = IMPLS[impl]
    benchmark.group = f"gaussian_blur cpu forward B={B} {H}x{W}x{C}"
    benchmark.extra_info.update(threads=2)
    with torch_threads(2), torch.no_grad():
        benchmark(lambda: f(img, sigma))


@pytest.mark.parametrize("impl", list(IMPLS))
def test_blur_backward_cpu(benchmark, impl):
    img, sigma = _inputs()
    f = IMPLS[impl]
    up = torch.rand(B, H, W, C)
    x = img.clone().requires_grad_(True)

    def step():
        x.grad = None
        (f(x, sigma) * up).sum().backward()

    benchmark.group = f"gaussian_blur cpu forward+backward B={B} {H}x{W}x{C}"
    benchmark.extra_info.update(threads=2)
    with torch_threads(2):
        benchmark(step)
