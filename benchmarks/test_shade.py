"""Shading: the fused CPU kernel against the plain-torch reference (what Lights.shade computed before
the kernel, and what a user writes), on the pixel counts the data engine shades: 64 images of 128²
with ~40 % face coverage. Forward only (data generation); the op's backward is the reference's."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref


def _rows(N: int, B: int, L: int, sh: bool):
    g = torch.Generator().manual_seed(0)
    return dict(
        albedo=torch.rand(N, 3, generator=g), normal=torch.randn(N, 3, generator=g),
        view=torch.randn(N, 3, generator=g), batch=torch.sort(torch.randint(0, B, (N,), generator=g))[0],
        ambient=torch.rand(B, 3, generator=g),
        directions=torch.nn.functional.normalize(torch.randn(B, L, 3, generator=g), dim=-1),
        colors=torch.rand(B, L, 3, generator=g), sh=torch.randn(B, 9, 3, generator=g) * 0.3 if sh else None,
        specular=torch.rand(B, generator=g), shininess=torch.rand(B, generator=g) * 60 + 2,
    )


@pytest.mark.parametrize("impl", ["facecore", "reference"])
@pytest.mark.parametrize("model, sh", [("lambert", False), ("blinn_phong", True), ("toon", True)])
def test_shade_cpu(benchmark, impl, model, sh):
    B, N = 64, int(64 * 128 * 128 * 0.4)
    x = _rows(N, B, 2, sh)
    f = ops.shade if impl == "facecore" else ref.shade
    benchmark.group = f"shade cpu N={N} B={B} L=2 {model}{' +SH' if sh else ''}"
    benchmark.extra_info.update(N=N, B=B, threads=torch.get_num_threads())
    with torch.no_grad():
        benchmark(lambda: f(**x, model=model))
