"""Does an estimator's frozen trunk see a rare action? A linear probe on the pooled features its head reads.

    python tools/estimator_feature_probe.py runs/est-pseudo-6k/estimator.safetensors \\
        python/facecore/estimator/data/estimator.safetensors

For each checkpoint: ridge regression (lambda 10, standardised features) from the head's input to
``truth > 0.1`` for TongueOut, CheekPuff and JawOpen, fit on 1,024 faces (data seed 500) and scored by
ROC-AUC on 512 others (seed 600), faces made as the preference rounds make them
(:func:`facecore.prefer.data.make_images`, the ``wild`` preset's prior). A high AUC with a dead output
means the information is there and only the read-out is missing (docs/prefer.md).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from facecore import arkit
from facecore.estimator import Estimator
from facecore.estimator.metrics import auc
from facecore.prefer.data import make_images

CHANNELS = ("TongueOut", "CheekPuff", "JawOpen")


def pooled_features(model: Estimator, crops: torch.Tensor, batch: int = 128) -> np.ndarray:
    """The head's input ``[N, dim]`` (float64) for ``crops``."""
    feats: list[torch.Tensor] = []
    hook = model.head.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].detach()))
    try:
        with torch.no_grad():
            for i in range(0, crops.shape[0], batch):
                model(model.normalize(crops[i:i + batch]))
    finally:
        hook.remove()
    return torch.cat(feats).double().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    a = ap.parse_args()
    print("| checkpoint | " + " | ".join(f"{c} AUC" for c in CHANNELS) + " |")
    print("|---|" + "---|" * len(CHANNELS))
    for path in a.checkpoints:
        model = Estimator.load(path).eval()
        kw = dict(image_size=model.config.image_size, crop_scale=model.config.crop_scale)
        train, test = make_images(1024, 500, **kw), make_images(512, 600, **kw)
        f_tr, f_te = pooled_features(model, train["crops"]), pooled_features(model, test["crops"])
        mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
        x_tr = np.hstack([(f_tr - mu) / sd, np.ones((len(f_tr), 1))])
        x_te = np.hstack([(f_te - mu) / sd, np.ones((len(f_te), 1))])
        cells = []
        for name in CHANNELS:
            c = arkit.index(name)
            y = (train["params"][:, c] > 0.1).astype(np.float64)
            w = np.linalg.solve(x_tr.T @ x_tr + 10.0 * np.eye(x_tr.shape[1]), x_tr.T @ y)
            cells.append(f"{auc(x_te @ w, test['params'][:, c] > 0.1):.3f}")
        print(f"| {path} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
