"""SimulatedAnnotator and AnnotatorPool: the choice model's parts are each measurable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore import arkit
from facecore.prefer import AnnotatorPool, SimulatedAnnotator


def _distances(n, gap, seed=0):
    rng = np.random.default_rng(seed)
    d_a = rng.uniform(0.02, 0.2, n)
    return d_a, d_a + gap


def test_prefers_closer_candidate_sharp():
    ann = SimulatedAnnotator(tau=0.002, jnd=0.0, lapse=0.0)
    d_a, d_b = _distances(2000, 0.02)
    left = np.random.default_rng(1).random(2000) < 0.5
    pref = ann.judge(d_a, d_b, left, rng=np.random.default_rng(2))
    assert (pref == 1.0).mean() > 0.99
    pref = ann.judge(d_b, d_a, left, rng=np.random.default_rng(2))  # swapped: B is now closer
    assert (pref == 0.0).mean() > 0.99


def test_prefers_truth_closer_in_the_right_region(avatar):
    """A candidate wrong only in the mouth loses the lower face and ties the upper face (and vice versa):
    with a tie band of 0.05 the lower-face change (distance ~0.23) is decisive, and what it leaks into the
    upper-face pixels (~0.02: the cheeks move with the jaw) is not."""
    ann = SimulatedAnnotator(tau=0.002, jnd=0.05, lapse=0.0)
    n = 12
    truth = torch.zeros(n, 61)
    truth[:, arkit.index("JawOpen")] = torch.linspace(0.2, 0.6, n)
    good = truth.clone()
    bad_lower = truth.clone()
    bad_lower[:, arkit.index("JawOpen")] += 0.35
    bad_lower[:, arkit.index("MouthSmileLeft")] = 0.8
    left = np.arange(n) % 2 == 0
    lower = ann.judge_params(avatar, truth, good, bad_lower, "lower", left, np.random.default_rng(0))
    upper = ann.judge_params(avatar, truth, good, bad_lower, "upper", left, np.random.default_rng(0))
    assert (lower == 1.0).mean() > 0.9
    assert (upper == 0.5).mean() > 0.9
    bad_upper = truth.clone()
    bad_upper[:, arkit.index("EyeBlinkLeft")] = 1.0
    bad_upper[:, arkit.index("BrowInnerUp")] = 1.0
    upper = ann.judge_params(avatar, truth, bad_upper, good, "upper", left, np.random.default_rng(0))
    assert (upper == 0.0).mean() > 0.9


def test_tie_band():
    ann = SimulatedAnnotator(tau=0.01, jnd=0.01, lapse=0.0)
    d_a, d_b = _distances(500, 0.005)
    assert (ann.judge(d_a, d_b, np.ones(500, bool)) == 0.5).all()
    d_a, d_b = _distances(500, 0.05)
    assert (ann.judge(d_a, d_b, np.ones(500, bool)) == 0.5).sum() == 0


def test_left_bias_measurable():
    n = 4000
    d = np.full(n, 0.1)  # equal candidates: only the bias decides
    left = np.random.default_rng(0).random(n) < 0.5
    biased = SimulatedAnnotator(tau=0.01, jnd=0.0, lapse=0.0, left_bias=1.0)
    pref = biased.judge(d, d, left, rng=np.random.default_rng(1))
    chose_left = (pref == 1.0) == left
    assert chose_left.mean() > 0.68  # sigmoid(1) = 0.73
    fair = SimulatedAnnotator(tau=0.01, jnd=0.0, lapse=0.0)
    assert abs(((fair.judge(d, d, left, rng=np.random.default_rng(1)) == 1.0) == left).mean() - 0.5) < 0.04


def test_lapse_rate_measurable():
    ann = SimulatedAnnotator(tau=0.001, jnd=0.0, lapse=0.3)
    d_a, d_b = _distances(4000, 0.05)
    pref = ann.judge(d_a, d_b, np.zeros(4000, bool), rng=np.random.default_rng(3))
    wrong = (pref == 0.0).mean()  # only lapses pick the far candidate, half of them
    assert abs(wrong - 0.15) < 0.03


def test_expressive_bias():
    n = 4000
    d = np.full(n, 0.1)
    ann = SimulatedAnnotator(tau=0.01, jnd=0.0, lapse=0.0, expressive_bias=10.0)
    pref = ann.judge(d, d, np.random.default_rng(0).random(n) < 0.5, np.full(n, 0.3), np.full(n, 0.2),
                     rng=np.random.default_rng(1))
    assert (pref == 1.0).mean() > 0.68  # sigmoid(1)


def test_deterministic_with_seed():
    ann = SimulatedAnnotator(tau=0.02, jnd=0.001, lapse=0.1, seed=5)
    d_a, d_b = _distances(300, 0.01)
    left = np.arange(300) % 2 == 0
    np.testing.assert_array_equal(ann.judge(d_a, d_b, left), ann.judge(d_a, d_b, left))
    other = SimulatedAnnotator(tau=0.02, jnd=0.001, lapse=0.1, seed=6)
    assert not np.array_equal(ann.judge(d_a, d_b, left), other.judge(d_a, d_b, left))
    p1 = AnnotatorPool(7, seed=3)
    p2 = AnnotatorPool(7, seed=3)
    assert p1.describe() == p2.describe()
    np.testing.assert_array_equal(p1.judge(d_a, d_b, left, rng=np.random.default_rng(0))[0],
                                  p2.judge(d_a, d_b, left, rng=np.random.default_rng(0))[0])


def test_pools_disjoint_and_varied():
    train, ev = AnnotatorPool(9, seed=0, split="train"), AnnotatorPool(9, seed=0, split="eval")
    train.check_disjoint(ev)
    assert len({a.settings() for a in train}) == 9
    with pytest.raises(ValueError, match="not disjoint"):
        train.check_disjoint(AnnotatorPool(9, seed=0, split="train"))
    assert max(a.expressive_bias for a in ev) < min(a.expressive_bias for a in train)


@pytest.mark.parametrize("kw, match", [
    (dict(tau=0.0), "tau"), (dict(lapse=1.5), "lapse"), (dict(jnd=-1.0), "jnd"),
    (dict(tau=float("nan")), "tau"), (dict(seed=-1), "seed"), (dict(name=""), "name"),
])
def test_bad_settings_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        SimulatedAnnotator(**kw)


def test_bad_inputs_raise():
    ann = SimulatedAnnotator()
    with pytest.raises(ValueError, match="d_b must have shape"):
        ann.judge(np.zeros(3), np.zeros(4), np.zeros(3, bool))
    with pytest.raises(ValueError, match="a_left must be a bool"):
        ann.judge(np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=">= 0"):
        ann.judge(-np.ones(3), np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="NaN"):
        ann.judge(np.full(3, np.nan), np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match=r"n must be an integer in \[5, 13\]"):
        AnnotatorPool(3)
    with pytest.raises(ValueError, match="split"):
        AnnotatorPool(5, split="test")
    from facecore.prefer import parse_pool

    with pytest.raises(ValueError, match="sim:N"):
        parse_pool("people:5")
