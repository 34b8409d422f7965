"""Video diffusion model speed (issue 16): one training step and sampling, per attention backend.

    pytest benchmarks/test_video_step.py --benchmark-only --benchmark-group-by=group

* ``step``: forward + backward of :class:`facecore.video.VideoDiffusion`'s loss at the study's size
  (32^2 frames, 8 frames, batch 4, the default model: dim 128, depth 4, 4 heads) with patch 4 (the
  default: 64 tokens a frame; spatial attention 64 queries x 128 keys with the reference tokens,
  temporal 8 x 8) and patch 2 (the fine grid: 256 tokens a frame, spatial 256 x 512), with
  the learned relative-position biases through ``attention="facecore"`` (the fused op, bias gradient
  in the kernel), ``"sdpa"`` (``scaled_dot_product_attention`` with the bias as an additive float mask
  that requires grad) and ``"eager"`` (softmax(q k^T + bias) v). Issue goal: facecore >= 1.3x faster
  than SDPA-with-bias on CPU. Memory: ``saved_mib`` is the size of the tensors autograd saves for the
  backward (exact, from ``saved_tensors_hooks``), ``peak_rss_mib`` the resident-set growth during one
  step sampled every millisecond (coarse: the allocator may reuse memory).
* ``attention``: each of a block's two attention calls alone at the step's shapes (fwd + bwd).
* ``sample``: ``VideoDiffusion.sample`` with 10 DDIM steps and two-scale guidance (3 passes a step),
  ``frames_per_s`` = generated frames / median seconds.
* GPU rows (bf16 autocast; facecore's attention is its Triton kernel there) skip without CUDA.
"""

from __future__ import annotations

import pytest
import torch

from facecore.video.model import VideoDiffusion

from .conftest import HAS_CUDA, record_rate
from .memory import peak_rss

B, T, S = 4, 8, 32
BACKENDS = ("facecore", "sdpa", "eager")


def _model(backend: str, device: str = "cpu", patch: int = 4) -> VideoDiffusion:
    torch.manual_seed(0)
    model = VideoDiffusion(image_size=S, frames=T, patch_size=patch, attention=backend).to(device)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained-like weights: the zero inits would skip most of the work's numerics
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g).to(device) * 0.02)
    return model


def _batch(model: VideoDiffusion) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    clips = [{"frames": torch.randint(0, 256, (T, S, S, 3), generator=g, dtype=torch.uint8),
              "reference": torch.randint(0, 256, (S, S, 3), generator=g, dtype=torch.uint8),
              "motion_maps": torch.rand(T, S, S, 4, generator=g)} for _ in range(B)]
    return model.batch(clips)


def _saved_mib(fn) -> float:
    total = [0]

    def pack(t: torch.Tensor):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0] / 2**20


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("patch", [4, 2])
def test_train_step_cpu(benchmark, patch, backend):
    model = _model(backend, patch=patch)
    batch = _batch(model)

    def step():
        model.zero_grad(set_to_none=True)
        model.loss(batch, torch.Generator().manual_seed(3), 0.1, 0.1).backward()

    benchmark.group = f"video train step cpu {torch.get_num_threads()}t B{B} T{T} {S}px patch {patch}"
    step()  # warm-up
    benchmark.extra_info.update(device="cpu", threads=torch.get_num_threads(), batch=B, frames=T, size=S,
                                patch=patch,
                                saved_mib=round(_saved_mib(lambda: model.loss(
                                    batch, torch.Generator().manual_seed(3), 0.1, 0.1)), 1),
                                peak_rss_mib=round(peak_rss(step)[0], 1))
    benchmark.pedantic(step, rounds=5 if patch == 4 else 3, iterations=1, warmup_rounds=0)


# The two attention calls of one block at the step's size: (batch, heads, queries, keys, head dim).
LAYERS = {"spatial-p4": (B * T, 4, 64, 128, 32), "temporal-p4": (B * 64, 4, T, T, 32),
          "spatial-p2": (B * T, 4, 256, 512, 32), "temporal-p2": (B * 256, 4, T, T, 32)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_attention_layer_cpu(benchmark, layer, backend):
    """One attention call of the model alone (forward + backward, bias gradient included): how much of
    the step's difference the attention itself explains."""
    from facecore.video.model import biased_attention

    Bq, H, Lq, Lk, D = LAYERS[layer]
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(Bq, H, L, D, generator=g).requires_grad_() for L in (Lq, Lk, Lk))
    bias = (0.5 * torch.randn(H, Lq, Lk, generator=g)).requires_grad_()
    up = torch.randn(Bq, H, Lq, D, generator=g)

    def step():
        torch.autograd.grad(biased_attention(q, k, v, bias, backend), (q, k, v, bias), up)

    benchmark.group = f"video attention {layer} cpu {torch.get_num_threads()}t {list(LAYERS[layer])}"
    benchmark.extra_info.update(device="cpu", threads=torch.get_num_threads())
    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("backend", ("facecore", "sdpa"))
def test_sample_cpu(benchmark, backend):
    model = _model(backend).eval()
    g = torch.Generator().manual_seed(4)
    ref = torch.randint(0, 256, (B, S, S, 3), generator=g, dtype=torch.uint8)
    motion = torch.rand(B, T, S, S, 4, generator=g)
    benchmark.group = f"video sample cpu {torch.get_num_threads()}t B{B} T{T} {S}px 10 steps cfg"
    benchmark.pedantic(lambda: model.sample(ref, motion, steps=10, guidance=(2.0, 2.0)), rounds=3,
                       iterations=1, warmup_rounds=1)
    benchmark.extra_info["device"] = "cpu"
    record_rate(benchmark, "frames_per_s", B * T)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_step_gpu(benchmark, backend):
    model = _model(backend, "cuda")
    batch = {k: v.cuda() for k, v in _batch(model).items()}

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(batch, torch.Generator().manual_seed(3), 0.1, 0.1)
        loss.backward()
        torch.cuda.synchronize()

    benchmark.group = f"video train step gpu bf16 B{B} T{T} {S}px"
    step()
    torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=3)
    benchmark.extra_info.update(device=torch.cuda.get_device_name(),
                                peak_mem_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1))
