"""Fused attention (issue 6): facecore.ops.attention against torch's scaled_dot_product_attention.

CPU (float32, B=4, H=8): facecore's C++ kernel, SDPA as dispatched by torch (its fused CPU kernel),
SDPA forced to the math backend, and facecore.reference (L <= 1024), each without a bias and with a
learnable bias ``[1, H, L, L]`` (given to SDPA as ``attn_mask``; forward+backward includes its
gradient). GPU (bf16, skipped without CUDA): facecore's Triton kernel against SDPA's flash
(no bias) and memory-efficient (bias) backends. ``extra_info["tflops"]`` holds the throughput
(forward 4 B H L^2 D flops, backward 2.5x that).

Default grid L in {256, 1024}, D in {64, 128} (CPU) so that a run fits a shared 2-core machine;
FACECORE_BENCH_FULL=1 adds L = 4096 (and 16384 on GPU), the issue's full grid.
    pytest benchmarks/test_attention.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import facecore.ops as ops
import facecore.reference as ref

from .conftest import HAS_CUDA, record_rate

FULL = os.environ.get("FACECORE_BENCH_FULL") == "1"
B, H = 4, 8
CPU_L = (256, 1024, 4096) if FULL else (256, 1024)
GPU_L = (256, 1024, 4096, 16384) if FULL else (1024, 4096)
DS = (64, 128)


def _inputs(L, D, bias, dtype=torch.float32, device="cpu", grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, D, generator=g).to(device, dtype).requires_grad_(grad) for _ in range(3))
    b = (0.5 * torch.randn(1, H, L, L, generator=g)).to(device, dtype).requires_grad_(grad) if bias else None
    return q, k, v, b


def _facecore(q, k, v, b):
    return ops.attention(q, k, v, b)


def _sdpa(q, k, v, b):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=b)


def _sdpa_math(q, k, v, b):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=b)


def _reference(q, k, v, b):
    return ref.attention(q, k, v, b)


def _group(dev, L, D, bias, backward):
    return f"attention-{dev}-{'fwdbwd' if backward else 'fwd'}-L{L}-D{D}-{'bias' if bias else 'nobias'}"


CPU_IMPLS = {"facecore": _facecore, "sdpa": _sdpa, "sdpa-math": _sdpa_math, "reference": _reference}


def _run(benchmark, fn, L, D, bias, backward, dtype, device, rounds):
    q, k, v, b = _inputs(L, D, bias, dtype, device, grad=backward)
    inputs = [t for t in (q, k, v, b) if t is not None]
    g = torch.randn_like(q) if backward else None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        if backward:
            out = fn(q, k, v, b)
            torch.autograd.grad(out, inputs, g)
        else:
            with torch.no_grad():
                fn(q, k, v, b)
        sync()

    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=1)
    flops = 4 * B * H * L * L * D * (3.5 if backward else 1.0)
    record_rate(benchmark, "tflops", flops / 1e12)
    benchmark.extra_info["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"


@pytest.mark.parametrize("impl", list(CPU_IMPLS))
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("D", DS)
@pytest.mark.parametrize("L", CPU_L)
def test_attention_cpu(benchmark, L, D, bias, backward, impl):
    if impl == "reference" and L > 1024:
        pytest.skip("the reference materialises [B, H, L, L] several times")
    benchmark.group = _group("cpu", L, D, bias, backward)
    rounds = 3 if L <= 1024 else 1
    _run(benchmark, CPU_IMPLS[impl], L, D, bias, backward, torch.float32, "cpu", rounds)


def _sdpa_backend(backend):
    def fn(q, k, v, b):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=b)
    return fn


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("impl", ["facecore-triton", "sdpa-flash", "sdpa-efficient"])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("D", DS)
@pytest.mark.parametrize("L", GPU_L)
def test_attention_gpu(benchmark, L, D, bias, backward, impl):
    if impl == "sdpa-flash" and bias:
        pytest.skip("SDPA's flash backend takes no additive bias")
    fn = {"facecore-triton": _facecore, "sdpa-flash": _sdpa_backend(SDPBackend.FLASH_ATTENTION),
          "sdpa-efficient": _sdpa_backend(SDPBackend.EFFICIENT_ATTENTION)}[impl]
    benchmark.group = _group("gpu", L, D, bias, backward)
    torch.cuda.reset_peak_memory_stats()
    _run(benchmark, fn, L, D, bias, backward, torch.bfloat16, "cuda", 10)
    benchmark.extra_info["peak_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    # FACECORE_TRITON_AUTOTUNE=0 (tools/gpu_check.sh's default) times one pinned tile configuration
    benchmark.extra_info["autotuned"] = os.environ.get("FACECORE_TRITON_AUTOTUNE", "1") != "0"
