"""Fused linear log-probs (and fused linear DPO) against the materialised-logits torch reference.

Implementations, per shape, forward and forward+backward:
- ``facecore``: ``facecore.losses.linear_logprobs`` (C++ kernel, never builds [N, V]);
- ``reference``: ``logits = h @ W.T; log_softmax; gather`` (facecore.reference.linear_logprobs);
- ``torch_chunked``: the usual plain-torch workaround, row chunks of 256 under
  ``torch.utils.checkpoint`` (bounded memory, logits recomputed in the backward);
- ``dpo_*``: a whole DPO step (chosen + rejected sequences -> loss -> backward) fused vs materialised.
GPU rows (bf16, fwd+bwd, skipped without CUDA): the Triton kernel against the materialised torch form
and the reference, time and peak CUDA memory, up to N = 8192, H = 1024, V = 128000.

Memory: ``extra_info["peak_rss_mib"]`` is the peak resident-set growth during one call, sampled every
millisecond by a thread (torch's CPU allocations are invisible to tracemalloc; large blocks are
mmap-ed and returned on free, so RSS tracks the live tensors); ``extra_info["logits_mib"]`` is the
size of one [N, V] float32 buffer, for scale. Issue-7 targets: peak memory <= 25% of the reference,
time <= 1.2x the reference on CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.checkpoint import checkpoint

import facecore.reference as ref
from facecore.losses import fused_linear_preference_loss, linear_logprobs

from .memory import peak_rss

SHAPES = {"small": (512, 256, 8000), "N2048-H512-V32000": (2048, 512, 32000)}
GPU_SHAPES = {"N2048-H1024-V32000": (2048, 1024, 32000), "N8192-H1024-V128000": (8192, 1024, 128000)}
IMPLS = ("facecore", "reference", "torch_chunked")
HAS_CUDA = torch.cuda.is_available()


def _chunked(h, w, t, chunk=256):
    def part(hc, tc):
        return ref.linear_logprobs(hc, w, tc)

    return torch.cat(
        [
            checkpoint(part, h[i : i + chunk], t[i : i + chunk], use_reentrant=False)
            for i in range(0, h.shape[0], chunk)
        ]
    )


FNS = {
    "facecore": lambda h, w, t: linear_logprobs(h, w, t, backend="cpu"),
    "reference": lambda h, w, t: ref.linear_logprobs(h, w, t),
    "torch_chunked": _chunked,
}


def _inputs(N, H, V, grad, device="cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(N + H + V)
    h = torch.randn(N, H, generator=g).to(device, dtype).requires_grad_(grad)
    w = (torch.randn(V, H, generator=g) / H**0.5).to(device, dtype).requires_grad_(grad)
    t = torch.randint(0, V, (N,), generator=g).to(device)
    return h, w, t


def _torch_materialised(h, w, t):
    """What plain torch code does: bf16 logits [N, V] from one GEMM, float32 log-softmax, gather."""
    return torch.log_softmax((h @ w.T).float(), dim=-1).gather(1, t[:, None])[:, 0]


@pytest.mark.skipif(not HAS_CUDA, reason="GPU rows need a CUDA device")
@pytest.mark.parametrize("shape", list(GPU_SHAPES))
@pytest.mark.parametrize("impl", ["triton", "torch_materialised", "reference"])
def test_linear_logprobs_gpu_bf16(benchmark, impl, shape):
    """fwd+bwd in bfloat16 on the GPU; extra_info["peak_mib"] from torch.cuda.max_memory_allocated.
    ``torch_materialised`` keeps the GEMM in bf16; ``reference`` (the tests' oracle) upcasts to float32
    before it."""
    N, H, V = GPU_SHAPES[shape]
    h, w, t = _inputs(N, H, V, True, "cuda", torch.bfloat16)
    fn = {
        "triton": lambda: linear_logprobs(h, w, t, backend="triton"),
        "torch_materialised": lambda: _torch_materialised(h, w, t),
        "reference": lambda: ref.linear_logprobs(h, w, t),
    }[impl]

    def run():
        fn().float().sum().backward()
        h.grad = w.grad = None
        torch.cuda.synchronize()

    run()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    benchmark.group = f"linear_logprobs GPU bf16 fwd+bwd {shape}"
    benchmark.extra_info.update(
        peak_mib=round((torch.cuda.max_memory_allocated() - base) / 2**20, 1),
        logits_mib=round(N * V * 4 / 2**20, 1),
        device=torch.cuda.get_device_name(),
    )
    benchmark.pedantic(run, rounds=5, iterations=1)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("mode", ["forward", "fwd+bwd"])
@pytest.mark.parametrize("impl", IMPLS)
def test_linear_logprobs(benchmark, impl, mode, shape):
    N, H, V = SHAPES[shape]
    grad = mode == "fwd+bwd"
    h, w, t = _inputs(N, H, V, grad)
    fn = FNS[impl]

    def run():
        if grad:
            fn(h, w, t).sum().backward()
            h.grad = w.grad = None
        else:
            with torch.no_grad():
                fn(h, w, t)

    run()  # warm-up (first custom-op call imports torch._dynamo)
    benchmark.group = f"linear_logprobs {mode} {shape}"
    rss, cpu = peak_rss(run)
    benchmark.extra_info.update(
        peak_rss_mib=round(rss, 1),
        cpu_s=round(cpu, 3),
        logits_mib=round(N * V * 4 / 2**20, 1),
        threads=torch.get_num_threads(),
    )
    benchmark.pedantic(run, rounds=3 if shape == "small" else 2, iterations=1)


@pytest.mark.parametrize("impl", ["dpo_facecore", "dpo_reference"])
def test_fused_dpo_step(benchmark, impl):
    """One DPO step: 2 pairs x 512 tokens each side (N = 2048 rows), H = 512, V = 32000."""
    Bp, T, H, V = 2, 512, 512, 32000
    g = torch.Generator().manual_seed(7)
    hc = torch.randn(Bp, T, H, generator=g).requires_grad_()
    hr = torch.randn(Bp, T, H, generator=g).requires_grad_()
    w = (torch.randn(V, H, generator=g) / H**0.5).requires_grad_()
    tc, tr = torch.randint(0, V, (Bp, T), generator=g), torch.randint(0, V, (Bp, T), generator=g)
    tc[:, :64] = tr[:, :64] = -100  # prompt tokens
    ref_c, ref_r = -torch.rand(Bp) * 1000 - 4000, -torch.rand(Bp) * 1000 - 4000

    def fused():
        loss, _ = fused_linear_preference_loss(
            hc, hr, w, tc, tr, ref_chosen=ref_c, ref_rejected=ref_r, backend="cpu"
        )
        loss.backward()

    def materialised():
        def seq(h, t):
            tok = ref.linear_logprobs(h.reshape(-1, H), w, t.reshape(-1)).reshape(t.shape)
            return ref.sequence_logprobs(tok, t != -100)

        loss, _ = ref.losses.preference_loss(seq(hc, tc), seq(hr, tr), ref_c, ref_r)
        loss.backward()

    run = fused if impl == "dpo_facecore" else materialised

    def step():
        run()
        hc.grad = hr.grad = w.grad = None

    step()
    benchmark.group = "fused linear DPO step N2048-H512-V32000"
    rss, cpu = peak_rss(step)
    benchmark.extra_info.update(
        peak_rss_mib=round(rss, 1),
        cpu_s=round(cpu, 3),
        logits_mib=round(2 * Bp * T * V * 4 / 2**20, 1),
        threads=torch.get_num_threads(),
    )
    benchmark.pedantic(step, rounds=2, iterations=1)
