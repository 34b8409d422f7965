"""Blendshape evaluation: facecore (block-sparse and dense deltas) against plain torch and the reference.

Peers: ``torch.addmm`` on the flattened dense deltas (the fastest plain-torch formulation: one GEMM)
and ``neutral + einsum`` (how most research code writes it). Issue-4 targets (CPU, 2 threads, ICT rig):
>= 3x torch dense at B <= 16, >= 1.5x at B = 1024, exact sparsity. On a GPU, the blendshape and deform
rows carry ``extra_info["traffic_floor_ms"]``: bytes that must move over the measured copy bandwidth.
"""

from __future__ import annotations

import functools

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref

from .conftest import HAS_CUDA, load_rig

BATCHES = (1, 16, 256, 1024)
IMPLS = ("facecore_sparse", "facecore_dense", "torch_addmm", "torch_einsum", "reference")


def _inputs(rig_name: str, B: int, device: str):
    rig = load_rig(rig_name)
    neutral = rig.neutral.to(device)
    dense = rig.dense_deltas().to(device)
    sparse = ops.sparse_deltas(dense)
    weights = torch.rand(B, dense.shape[0], generator=torch.Generator().manual_seed(B)).to(device)
    return weights, neutral, dense, sparse


def _fn(impl: str, weights, neutral, dense, sparse, backend: str):
    K, V = dense.shape[0], neutral.shape[0]
    flat_d, flat_n = dense.reshape(K, V * 3), neutral.reshape(V * 3)
    return {
        "facecore_sparse": lambda w: ops.blendshape(w, neutral, sparse, backend=backend),
        "facecore_dense": lambda w: ops.blendshape(w, neutral, dense, backend=backend),
        "torch_addmm": lambda w: torch.addmm(flat_n, w, flat_d).view(-1, V, 3),
        "torch_einsum": lambda w: neutral + torch.einsum("bk,kvc->bvc", w, dense),
        "reference": lambda w: ref.blendshape(w, neutral, sparse),
    }[impl]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("rig_name", ["ict", "default"])
def test_blendshape_cpu(benchmark, rig_name, B, impl, mode):
    if impl == "reference" and B > 16:
        pytest.skip("the reference densifies SparseDeltas on every call; timed at small B only")
    weights, neutral, dense, sparse = _inputs(rig_name, B, "cpu")
    f = _fn(impl, weights, neutral, dense, sparse, "cpu")
    benchmark.group = f"blendshape cpu {rig_name} B={B} {mode}"
    benchmark.extra_info.update(V=neutral.shape[0], K=dense.shape[0], nnzb=sparse.values.shape[0])
    if mode == "forward":
        with torch.no_grad():
            benchmark(f, weights)
        return
    w = weights.clone().requires_grad_(True)
    grad = torch.randn(B, neutral.shape[0], 3)

    def step():
        w.grad = None
        f(w).backward(grad)

    benchmark(step)


@functools.cache
def copy_bandwidth() -> float:
    """Device-to-device copy rate in bytes/s (read + write), measured once per session on buffers of
    1 GiB (far beyond the L2) after a warm-up: the ceiling for the memory-traffic floors below."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    return 2 * src.numel() * 10 / (start.elapsed_time(end) / 1e3)


def _traffic_floor(benchmark, bytes_moved: int) -> None:
    bw = copy_bandwidth()
    benchmark.extra_info.update(
        traffic_floor_ms=round(bytes_moved / bw * 1e3, 4),
        copy_GBps=round(bw / 1e9, 1),
        bytes_moved=bytes_moved,
        device=torch.cuda.get_device_name(),
    )


def _gpu_step(f, x, grad):
    """forward (no grad) when grad is None, else forward + backward; synchronised, for wall timing."""
    if grad is None:
        def step():
            with torch.no_grad():
                f(x)
            _sync("cuda")
    else:
        x = x.clone().requires_grad_(True)

        def step():
            x.grad = None
            f(x).backward(grad)
            _sync("cuda")
    return step


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
@pytest.mark.parametrize("impl", ["cuda_sparse", "cuda_dense", "triton_sparse", "torch_addmm"])
@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("rig_name", ["ict", "default"])
def test_blendshape_gpu(benchmark, rig_name, B, impl, mode):
    weights, neutral, dense, sparse = _inputs(rig_name, B, "cuda")
    backend = impl.split("_")[0]
    name = {"cuda_sparse": "facecore_sparse", "cuda_dense": "facecore_dense",
            "triton_sparse": "facecore_sparse", "torch_addmm": "torch_addmm"}[impl]
    f = _fn(name, weights, neutral, dense, sparse, backend if backend != "torch" else "auto")
    benchmark.group = f"blendshape gpu {rig_name} B={B} {mode}"
    # Memory-traffic floor of the forward: read the stored deltas + neutral + weights, write [B, V, 3].
    V = neutral.shape[0]
    _traffic_floor(benchmark, 4 * (sparse.values.numel() + V * 3 + weights.numel() + B * V * 3))
    grad = None if mode == "forward" else torch.randn(B, V, 3, device="cuda")
    benchmark(_gpu_step(f, weights, grad))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
@pytest.mark.parametrize("impl", ["cuda", "triton", "reference"])
@pytest.mark.parametrize("B", (16, 1024))
@pytest.mark.parametrize("rig_name", ["ict", "default"])
def test_deform_gpu(benchmark, rig_name, B, impl, mode):
    """Full 61-parameter deformation on the GPU (block-sparse deltas, eye and head rotations) against
    the same memory-traffic floor as the blendshapes (the rotations add no traffic beyond [B, V, 3])."""
    rig = load_rig(rig_name).to("cuda")
    g = torch.Generator().manual_seed(B)
    params = torch.rand(B, 61, generator=g)
    params[:, 52:] = torch.rand(B, 9, generator=g) * 0.4 - 0.2
    params = params.cuda()
    V = rig.neutral.shape[0]
    sparse = rig.sparse_deltas()
    benchmark.group = f"deform gpu {rig_name} B={B} {mode}"
    _traffic_floor(benchmark, 4 * (sparse.values.numel() + V * 3 + params.numel() + B * V * 3))
    grad = None if mode == "forward" else torch.randn(B, V, 3, device="cuda")
    benchmark(_gpu_step(lambda p: ops.deform(p, rig, backend=impl), params, grad))


@pytest.mark.parametrize("impl", ["facecore", "reference"])
@pytest.mark.parametrize("B", (1, 256))
@pytest.mark.parametrize("rig_name", ["ict", "default"])
def test_deform_cpu(benchmark, rig_name, B, impl):
    """Full 61-parameter deformation (blendshapes + eye and head rotations), forward + backward."""
    rig = load_rig(rig_name)
    params = (torch.rand(B, 61, generator=torch.Generator().manual_seed(B)) * 2 - 1).clamp(0, 1)
    params[:, 52:] = torch.rand(B, 9) * 0.4 - 0.2
    params.requires_grad_(True)
    grad = torch.randn(B, rig.neutral.shape[0], 3)
    backend = "cpu" if impl == "facecore" else "reference"
    benchmark.group = f"deform cpu {rig_name} B={B} forward_backward"

    def step():
        params.grad = None
        ops.deform(params, rig, backend=backend).backward(grad)

    benchmark(step)
