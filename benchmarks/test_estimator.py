"""Estimator speed (issue 13): ``predict`` throughput on face crops and ``refine`` time per image.

    pytest benchmarks/test_estimator.py --benchmark-only --benchmark-group-by=group

* ``predict``: ``Estimator.predict(uint8 [B, 128, 128, 3], boxes)`` -- crop + resize + normalise + the
  network, in eval mode without gradients, at batch 64 and batch 1, torch at 2 threads, for the default
  configuration (96^2 input, untrained) and the shipped network (64^2 input). Images/s = B / median. The face detector is timed on its own
  (``detect``: scikit-image's LBP cascade on one 128^2 image), since video input detects on keyframes
  only.
* ``refine``: 50 iterations of :func:`facecore.estimator.refine` on B = 8 synthetic 128^2 images of the
  ``ict`` rig (true camera, lights and identity given); seconds per image = median / 8.
* GPU rows skip without CUDA.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.threads import torch_threads
from facecore.estimator import Estimator, load_pretrained, refine
from facecore.estimator.predict import boxes_from_landmarks
from facecore.synth import load_preset, render_batch, sample_params


@pytest.fixture(scope="module")
def faces():
    p = sample_params(64, 7)
    out = render_batch(p, "ict", load_preset("clean"), resolution=128, seed=7)
    out["boxes"] = boxes_from_landmarks(out["landmarks2d"], out["landmarks_visible"], out["mask"]).numpy()
    return out


@pytest.mark.parametrize("net", ["default96", "shipped64"])
@pytest.mark.parametrize("B", [64, 1])
def test_predict_cpu(benchmark, faces, B, net):
    torch.manual_seed(0)
    model = Estimator() if net == "default96" else load_pretrained()
    images, boxes = faces["image"][:B].numpy(), faces["boxes"][:B]
    benchmark.group = f"estimator predict cpu 2t B={B}"
    benchmark.extra_info.update(batch=B, input=model.config.image_size)
    with torch_threads(2):
        model.predict(images, boxes)
        benchmark.pedantic(model.predict, args=(images, boxes), rounds=10 if B > 1 else 50, warmup_rounds=2)


def test_detect_cpu(benchmark, faces):
    pytest.importorskip("skimage")
    from facecore.estimator.predict import FaceDetector

    det = FaceDetector()
    img = faces["image"][0].numpy()
    benchmark.group = "estimator detect cpu (one 128^2 image)"
    with torch_threads(2):
        benchmark.pedantic(det, args=(img,), rounds=10, warmup_rounds=1)


def test_refine_cpu(benchmark, faces):
    B = 8
    torch.manual_seed(0)
    sub = {k: (v[:B] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == 64 else v)
           for k, v in faces.items()}
    cam = {k: v[:B] for k, v in faces["camera"].items() if isinstance(v, torch.Tensor)}
    lights = faces["lights"]
    init = (sub["params"] + 0.1 * torch.randn(B, 61)).clamp(0, 1)
    init[:, 52:] = sub["params"][:, 52:]
    benchmark.group = "estimator refine cpu 2t 50 iters 128^2 B=8"
    benchmark.extra_info.update(batch=B)

    def run():
        return refine(sub["image"], init, "ict", camera=cam, lights=_take(lights, B),
                      identity=sub["identity"], iters=50)

    with torch_threads(2):
        benchmark.pedantic(run, rounds=3, warmup_rounds=0)


def _take(d, B):
    if isinstance(d, dict):
        return {k: _take(v, B) for k, v in d.items()}
    if isinstance(d, torch.Tensor) and d.dim() and d.shape[0] == 64:
        return d[:B]
    return d


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_predict_gpu(benchmark, faces):
    model = Estimator().cuda()
    x = torch.randn(1024, 3, 96, 96, device="cuda")

    def run():
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
            model(x)
        torch.cuda.synchronize()

    benchmark.group = "estimator forward gpu B=1024 (bf16)"
    benchmark.extra_info.update(batch=1024)
    benchmark.pedantic(run, rounds=20, warmup_rounds=3)
