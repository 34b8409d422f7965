"""`facecore.semantic.evaluation`: the coefficient metrics against a hand computation, per-face values for
paired comparisons, and the splits' faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore import arkit
from facecore.semantic import data as sd
from facecore.semantic.evaluation import REGIONS, evaluate, evaluate_split

SPEC = sd.RenderSpec(resolution=32, identity_pool=2)


class Constant:
    """An image-blind model answering one fixed vector (random per test, so nothing is tuned to it)."""

    variant = "R"

    def __init__(self, params: np.ndarray):
        self.params = params.astype(np.float32)
        self.calls = 0

    def predict(self, images, **_):
        self.calls += 1
        return [({}, self.params.copy()) for _ in range(len(images))]


def _random_params(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (arkit.LOW + rng.random(arkit.NUM_CHANNELS) * (arkit.HIGH - arkit.LOW)).astype(np.float32)


def test_coefficient_errors_match_a_hand_computation():
    params = _random_params(1)
    n = 5
    m = evaluate_split(Constant(params), SPEC, n=n, batch=2, per_face=True)
    truth = sd.render(SPEC, 0, n)["params"].clamp(torch.tensor(arkit.LOW), torch.tensor(arkit.HIGH)).numpy()
    err = np.abs(params[None] - truth)
    np.testing.assert_allclose(m["per_face"]["mae"], err.mean(1), rtol=1e-6)
    assert m["mae"]["mean"] == pytest.approx(err.mean(), rel=1e-6)
    assert m["mae_blendshapes"]["mean"] == pytest.approx(err[:, : arkit.NUM_BLENDSHAPES].mean(), rel=1e-6)
    assert m["mae_pose"]["mean"] == pytest.approx(err[:, arkit.NUM_BLENDSHAPES:].mean(), rel=1e-6)
    for region, idx in REGIONS.items():
        assert m[f"mae_{region}"]["mean"] == pytest.approx(err[:, idx].mean(), rel=1e-6)
    half = 1.96 * err.mean(1).std(ddof=1) / np.sqrt(n)
    assert m["mae"]["ci95"] == pytest.approx(half, rel=1e-6)
    assert m["n"] == n and m["parse_rate"]["mean"] == 1.0
    assert np.all(np.asarray(m["per_face"]["vertex_error"]) > 0)  # a random answer moves the mesh


def test_per_face_values_are_only_returned_when_asked_and_splits_share_expressions():
    model = Constant(_random_params(2))
    res = evaluate(model, SPEC, n=3, splits=("seen", "toon"))
    assert set(res) == {"seen", "toon"} and all("per_face" not in m for m in res.values())
    # seen and toon render the same expressions (only the domain differs), so an image-blind model
    # scores the same coefficient error on both: the splits are paired
    assert res["seen"]["mae"]["mean"] == pytest.approx(res["toon"]["mae"]["mean"], rel=1e-6)
    with pytest.raises(ValueError, match="split"):
        evaluate(model, SPEC, n=1, splits=("nope",))
