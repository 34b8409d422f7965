"""Estimator speed (issue 13): ``predict`` throughput on face crops and ``refine`` time per image.

    pytest benchmarks/test_estimator.py --benchmark-only --benchmark-group-by=group

* ``predict``: ``Estimator.predict(uint8 [B, 128, 128, 3], boxes)`` -- crop + resize + normalise + the
  network, in eval mode without gradients, at batch 64 and batch 1, torch at 2 threads, for the default
  configuration (96^2 input, untrained) and the shipped network (64^2 input). Images/s = B / median. The
  face detector is timed on its own (``detect``: scikit-image's LBP cascade on one 128^2 image), since
  video input detects on keyframes only.
* ``refine``: 50 iterations of :func:`facecore.estimator.refine` on B = 8 synthetic 128^2 images of the
  ``ict`` rig (true camera, lights and identity given); seconds per image = median / 8.
* ``train data vs step``: the training recipe of the shipped network (64^2 input, batch 64, float32, torch
  at 2 threads) for 24 steps of :func:`facecore.estimator.train`, its data from written shards (512 ``wild``
  faces at 112^2, pseudo labels; PNG decode + labels + crops + augmentation) or rendered on the fly (the
  same spec: render + labels + crops + augmentation). The trainer logs per step the data path's seconds
  (``data_s``) and the model step's (``step_s``: forward, loss, backward, clipping, AdamW, EMA);
  ``extra_info`` holds their medians over steps 5-24 (the benchmark's own time is the whole run). The data
  path keeps up when ``data_s <= step_s``.
* GPU rows skip without CUDA.
"""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from benchmarks.threads import torch_threads
from facecore.estimator import Estimator, load_pretrained, refine, train
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


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from facecore.synth import write_dataset

    out = tmp_path_factory.mktemp("train-shards") / "wild-112"
    with torch_threads(2):
        write_dataset(out, n=512, rig="ict", domain="wild", resolution=112, seed=0)
    return out


def _train_data_vs_step(benchmark, tmp_path, data: dict, device: str) -> None:
    cfg = {"out": str(tmp_path / "run"), "labels": "pseudo", "model": {"image_size": 64}, "steps": 24,
           "batch_size": 64, "lr": 2e-3, "warmup_steps": 5, "amp": "off", "device": device,
           "tensorboard": False, "checkpoint_every": 1000, "resume": False, **data}

    def run():
        import shutil

        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        train(cfg)

    benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][4:]
    data_s = statistics.median(r["data_s"] for r in rows)
    step_s = statistics.median(r["step_s"] for r in rows)
    benchmark.extra_info.update(data_s=round(data_s, 4), step_s=round(step_s, 4),
                                data_over_step=round(data_s / step_s, 2), batch=64, steps=len(rows))
    print(f"\n{benchmark.group}: data {data_s * 1e3:.0f} ms, step {step_s * 1e3:.0f} ms per batch of 64 "
          f"(data / step {data_s / step_s:.2f})")


@pytest.mark.parametrize("source", ["shards", "render"])
def test_train_data_vs_step_cpu(benchmark, tmp_path, request, source):
    data = {"data": str(request.getfixturevalue("shards"))} if source == "shards" else \
        {"data": None, "rig": "ict", "domain": "wild", "resolution": 112, "data_seed": 0}
    benchmark.group = f"estimator train data vs step cpu 2t ({source})"
    with torch_threads(2):
        _train_data_vs_step(benchmark, tmp_path, data, "cpu")


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_data_vs_step_gpu(benchmark, tmp_path):
    """On-the-fly data rendered on the GPU (the rig moves to the device), the step on the GPU."""
    benchmark.group = "estimator train data vs step gpu (render)"
    _train_data_vs_step(benchmark, tmp_path, {"data": None, "rig": "ict", "domain": "wild", "resolution": 112,
                                              "data_seed": 0}, "cuda")
