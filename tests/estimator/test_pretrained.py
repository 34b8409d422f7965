"""The checkpoint that ships inside the package: small, with its training log, and it reads faces it has
never seen better than the best image-blind constant does (docs/estimator.md has the full table)."""

from __future__ import annotations

import json

import numpy as np
import torch

from facecore import arkit
from facecore.estimator import load_pretrained
from facecore.estimator.predict import boxes_from_landmarks
from facecore.estimator.pretrained import pretrained_path
from facecore.synth import render_batch, sample_params


def test_shipped_checkpoint_is_small_and_keeps_its_training_log():
    path = pretrained_path()
    assert path.is_file() and path.stat().st_size <= 10 * 2**20
    rows = [json.loads(ln) for ln in (path.parent / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 16000 and len(rows) == 16000  # the documented command's whole run


def test_shipped_checkpoint_beats_the_constant_on_fresh_faces():
    truth = sample_params(64, 4242)  # data seed 4242: neither the training (0) nor the docs' test set (1000)
    data = render_batch(truth, "ict", "clean", 112, 4242)
    boxes = boxes_from_landmarks(data["landmarks2d"], data["landmarks_visible"], data["mask"])
    pred = torch.as_tensor(load_pretrained().predict(data["image"].numpy(), boxes.numpy()))
    constant = sample_params(4096, 4243).median(0).values.expand_as(truth)  # best constant under MAE

    def mae(x, channels):
        return float((x[:, channels] - truth[:, channels]).abs().mean())

    blend, pose = slice(0, arkit.NUM_BLENDSHAPES), slice(arkit.NUM_BLENDSHAPES, arkit.NUM_CHANNELS)
    # measured: 0.063 against 0.073, and 0.042 against 0.101
    assert mae(pred, blend) < 0.9 * mae(constant, blend)
    assert mae(pred, pose) < 0.5 * mae(constant, pose)

    def corr(name):
        k = arkit.index(name)
        return float(np.corrcoef(pred[:, k], truth[:, k])[0, 1])

    assert corr("JawOpen") > 0.8 and corr("EyeBlinkLeft") > 0.7 and corr("HeadYaw") > 0.9
