"""evaluate / auc / format_table on answers known in advance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facecore import arkit
from facecore.estimator import PseudoLabeler, auc, evaluate, format_table


@pytest.fixture(scope="module")
def data():
    from facecore.synth import render_batch, sample_params

    p = sample_params(12, seed=2)
    return render_batch(p, "stylized", "clean", 32, seed=2)


class Oracle:
    """A 'model' that returns the truth it was given, for known-answer tests."""

    def __init__(self, truth):
        self.truth, self.calls = np.asarray(truth), 0

    def predict(self, images):
        out = self.truth[self.calls:self.calls + len(images)]
        self.calls += len(images)
        return out


def test_auc_rank_statistic():
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auc([0.5, 0.5, 0.5], [0, 1, 1]) == 0.5  # ties count half (a dead channel)
    assert math.isnan(auc([0.1, 0.2], [1, 1]))  # one class
    rng = np.random.default_rng(0)
    assert abs(auc(rng.random(4000), rng.random(4000) > 0.7) - 0.5) < 0.03
    # against the O(n^2) definition
    s, y = rng.integers(0, 5, 60).astype(float), rng.random(60) > 0.5
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
    assert auc(s, y) == pytest.approx(np.mean(pairs))


def test_perfect_predictions(data):
    truth = data["params"].numpy()
    r = evaluate(Oracle(truth), data, batch=5)  # batch 5 regroups 12 samples as 5 + 5 + 2
    for k in ("mae_blendshapes", "mae_pose", "mae_mouth", "mae_tongue", "asymmetry_error"):
        assert r[k] == 0.0, k
    assert r["vertex_error_mm"] < 1e-4 and r["landmark_nme"] < 1e-5
    assert r["calibration_slope"] == pytest.approx(1.0)
    for name in ("TongueOut", "JawLeft", "JawRight", "CheekPuff"):
        v = r[f"auc_{name}"]
        assert math.isnan(v) or v == 1.0
    assert r["n"] == 12 and set(r["mae_channel"]) == set(arkit.NAMES)


def test_known_errors_and_single_samples(data):
    truth = data["params"].numpy().astype(np.float64)
    pred = truth.copy()
    pred[:, arkit.INDEX["JawOpen"]] = np.clip(pred[:, arkit.INDEX["JawOpen"]] + 0.2, 0, 1)
    # single-sample dicts, as facecore.synth.Dataset yields them
    samples = [{"image": data["image"][i], "params": data["params"][i], "rig": "stylized",
                "identity": data["identity"][i],
                "camera": {"projection": data["camera"]["projection"][i]}} for i in range(12)]
    r = evaluate(pred, samples)
    err = np.abs(pred - truth)[:, arkit.INDEX["JawOpen"]].mean()
    assert r["mae_channel"]["JawOpen"] == pytest.approx(err)
    assert r["mae_jaw"] == pytest.approx(err / 4)
    assert r["mae_blendshapes"] == pytest.approx(err / 52)
    assert r["vertex_error_mm"] > 0.1 and r["landmark_nme"] > 0.0


def test_half_scaled_slope_and_dead_channel_auc():
    n = 400
    rng = np.random.default_rng(1)
    truth = np.zeros((n, 61))
    truth[:, :52] = rng.random((n, 52))
    images = np.zeros((n, 4, 4, 3), np.uint8)
    half = truth * 0.5
    r = evaluate(half, {"image": images, "params": truth})
    assert r["calibration_slope"] == pytest.approx(0.5)
    assert "vertex_error_mm" not in r  # no rig: geometric metrics left out
    dead = PseudoLabeler()(torch.from_numpy(truth)).numpy()
    r = evaluate(dead, {"image": images, "params": truth})
    assert r["auc_TongueOut"] == 0.5 and r["auc_CheekPuff"] == 0.5
    random = rng.random((n, 61))
    r = evaluate(random, {"image": images, "params": truth})
    assert abs(r["auc_JawLeft"] - 0.5) < 0.1 and abs(r["calibration_slope"]) < 0.1


def test_format_table():
    t = format_table({"truth": {"mae_blendshapes": 0.0, "auc_TongueOut": 1.0, "vertex_error_mm": 0.0},
                      "pseudo": {"mae_blendshapes": 0.123456, "auc_TongueOut": float("nan")}})
    lines = t.strip().splitlines()
    assert lines[0].startswith("| method | MAE bs | AUC tongue | vertex mm |")
    assert lines[2] == "| truth | 0.000 | 1.000 | 0.000 |"
    assert lines[3] == "| pseudo | 0.123 | n/a | n/a |"
    with pytest.raises(ValueError):
        format_table({})


def test_bad_input(data):
    with pytest.raises(ValueError, match=r"\[N, 61\]"):
        evaluate(np.zeros((12, 60)), data)
    with pytest.raises(ValueError, match="rows"):
        evaluate(np.zeros((5, 61)), data)
    with pytest.raises(ValueError, match="predict"):
        evaluate(object(), data)
    with pytest.raises(ValueError, match="image"):
        evaluate(np.zeros((1, 61)), [{"params": np.zeros(61)}])
