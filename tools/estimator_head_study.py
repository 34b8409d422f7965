"""The estimator's mean head and loss, compared on fixed synthetic crops (docs/estimator.md, "Why the
first networks predicted a constant").

    python tools/estimator_head_study.py -o runs/estimator_head_study.md

Renders ``--n-train`` ``ict/wild`` faces (data seed 0) and 512 held-out ones (data seed 1000) once,
crops them from their landmark boxes at ``--size`` (64) and trains :class:`facecore.estimator.Estimator`
for ``--steps`` steps of batch 64 on each (head, loss) pair from the same seed: AdamW lr 2e-3, 50 warmup
steps then cosine, horizontal flips with mirrored labels, bf16 autocast on CPU. The mean head is either
the shipped straight-through clamp (``clamp``) or the sigmoid into each channel's range it replaced
(``sigmoid``, rebuilt here); both start at the training labels' median. Columns: held-out blendshape and
pose MAE and the correlation with the truth of JawOpen, EyeBlinkLeft and HeadYaw; the first row is the
training median as a constant, the image-blind baseline every row must beat.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = {
    "l1": lambda m, y: F.l1_loss(m, y),
    "mse": lambda m, y: F.mse_loss(m, y),
    "huber": lambda m, y: F.smooth_l1_loss(m, y, beta=0.05),
    "l1+mse": lambda m, y: F.l1_loss(m, y) + F.mse_loss(m, y),
}
RUNS = [("sigmoid", "l1"), ("sigmoid", "mse"), ("sigmoid", "huber"), ("clamp", "l1"), ("clamp", "huber"),
        ("clamp", "l1+mse")]


def crops(n: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from facecore import synth
    from facecore.estimator.predict import boxes_from_landmarks, crop_faces

    scene = synth.load_preset("wild")
    out_x, out_y = [], []
    for start in range(0, n, 256):
        k = min(256, n - start)
        p = synth.sample_params(k, seed, prior=getattr(scene, "prior", "default"), index0=start)
        r = synth.render_batch(p, "ict", scene, 112, seed, index0=start)
        boxes = boxes_from_landmarks(r["landmarks2d"].float(), mask=r["mask"])
        c = crop_faces(list(r["image"]), boxes, size, 1.25)
        out_x.append((c * 255).round().to(torch.uint8) if c.is_floating_point() else c)
        out_y.append(r["params"].float())
    return torch.cat(out_x), torch.cat(out_y)


def sigmoid_mean(model, median: torch.Tensor):
    """The replaced head: ``low + (high - low) * sigmoid(raw)``, its bias at the median's logit."""
    import types

    frac = ((median - model.low) / (model.high - model.low)).clamp(0.02, 0.98)
    with torch.no_grad():
        model.head.bias[:61] = torch.log(frac / (1 - frac))

    def forward(self, images):
        raw, raw_std = self.head_outputs(images).chunk(2, -1)
        return self.low + (self.high - self.low) * torch.sigmoid(raw), raw_std

    model.forward = types.MethodType(forward, model)


def run(head: str, loss: str, data: dict, steps: int) -> list[float]:
    from facecore import arkit
    from facecore.estimator import Estimator

    torch.manual_seed(0)
    xtr, ytr, xte, yte = data["xtr"], data["ytr"], data["xte"], data["yte"]
    model = Estimator(image_size=xtr.shape[1])
    median = ytr.median(0).values
    model.init_mean(median)
    if head == "sigmoid":
        sigmoid_mean(model, median)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        idx = torch.randint(len(xtr), (64,), generator=g)
        x, y = xtr[idx], ytr[idx]
        flip = torch.rand(64, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(2), x)
        y = torch.where(flip[:, None], arkit.mirror(y), y)
        lr = 2e-3 * min(1.0, (step + 1) / 50) * (0.02 + 0.49 * (1 + math.cos(math.pi * step / steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", torch.bfloat16):
            mean, _ = model(model.normalize(x))
        opt.zero_grad()
        LOSSES[loss](mean.float(), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        pred = torch.cat([model(model.normalize(xte[i:i + 256]))[0].float() for i in range(0, len(xte), 256)])
    return metrics(pred, yte)


def metrics(pred: torch.Tensor, truth: torch.Tensor) -> list[float]:
    from facecore import arkit

    def corr(name):
        k = arkit.index(name)
        if float(pred[:, k].std()) == 0:  # a constant answer has no correlation
            return float("nan")
        return float(np.corrcoef(pred[:, k], truth[:, k])[0, 1])

    err = (pred - truth).abs()
    return [float(err[:, :52].mean()), float(err[:, 52:].mean()), corr("JawOpen"), corr("EyeBlinkLeft"),
            corr("HeadYaw")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=8192)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    (xtr, ytr), (xte, yte) = crops(a.n_train, 0, a.size), crops(512, 1000, a.size)
    data = {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}
    med = ytr.median(0).values.expand_as(yte)
    lines = [f"{a.n_train} training crops, 512 held-out, {a.size}², {a.steps} steps of 64 (rendering "
             f"{time.perf_counter() - t0:.0f} s)", "",
             "| head | loss | blendshape MAE | pose MAE | corr JawOpen | corr EyeBlinkLeft | corr HeadYaw |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "–" if not np.isfinite(v) else f"{v:.3f}"
    m = metrics(med, yte)
    lines.append("| constant: training median | – | " + " | ".join(fmt(v) for v in m) + " |")
    print("\n".join(lines), flush=True)
    for head, loss in RUNS:
        t = time.perf_counter()
        m = run(head, loss, data, a.steps)
        lines.append(f"| {head} | {loss} | " + " | ".join(fmt(v) for v in m) + " |")
        print(lines[-1], f"({time.perf_counter() - t:.0f} s)", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
