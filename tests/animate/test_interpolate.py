"""Interpolation: PCHIP matches scipy, easing and holds behave, nothing ever overshoots."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facecore.animate import interpolate
from facecore.animate.interpolate import eval_knots, pchip_slopes
from facecore.io import Track


def test_pchip_matches_scipy():
    scipy = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.uniform(0.1, 1.0, 9))
    y = rng.uniform(-1, 1, (9, 5))
    t = np.linspace(x[0], x[-1], 301)
    ref = scipy.PchipInterpolator(x, y, axis=0)
    np.testing.assert_allclose(pchip_slopes(x, y), ref.derivative()(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(eval_knots(x, y, t, ease=0.0), ref(t), rtol=1e-12, atol=1e-12)


def test_passes_through_keyframes_and_holds():
    rng = np.random.default_rng(1)
    keys = rng.uniform(0, 1, (4, 61)).astype(np.float32)
    keys[:, 52:] = rng.uniform(-1, 1, (4, 9))
    times = np.array([0.0, 1.0, 2.5, 3.0])
    holds = np.array([0.5, 0.0, 0.2, 1.0])
    tr = interpolate(times, keys, fps=20, holds=holds)
    assert isinstance(tr, Track) and tr.fps == 20
    assert len(tr) == int(round(4.0 * 20)) + 1 and tr.times[0] == 0 and tr.times[-1] == pytest.approx(4.0)
    for k, t in enumerate(times):
        np.testing.assert_allclose(tr.params[int(round(t * 20))], keys[k], atol=1e-6)
    # Inside a hold the pose does not move.
    np.testing.assert_allclose(tr.params[:11], np.repeat(keys[:1], 11, 0), atol=1e-6)


def test_ease_has_zero_velocity_at_knots():
    times, keys = np.array([0.0, 1.0, 2.0]), np.zeros((3, 61))
    keys[:, 17] = [0.0, 0.5, 1.0]  # JawOpen rising steadily
    fast = interpolate(times, keys, fps=1000, ease=0.0).params[:, 17]
    eased = interpolate(times, keys, fps=1000, ease=1.0).params[:, 17]
    v_fast = np.diff(fast)[995:1005].mean() * 1000
    v_eased = np.diff(eased)[995:1005].mean() * 1000
    assert v_fast == pytest.approx(0.5, abs=0.02) and abs(v_eased) < 0.02


def test_single_keyframe_and_bad_input():
    tr = interpolate([0.0], np.full((1, 61), 0.3), fps=10, end=1.0)
    assert len(tr) == 11 and np.allclose(tr.params, 0.3)
    with pytest.raises(ValueError, match="strictly increasing"):
        interpolate([0.0, 0.0], np.zeros((2, 61)), fps=10)
    with pytest.raises(ValueError, match="keyframes must have shape"):
        interpolate([0.0, 1.0], np.zeros((2, 60)), fps=10)
    with pytest.raises(ValueError, match="fps"):
        interpolate([0.0, 1.0], np.zeros((2, 61)), fps=0)
    with pytest.raises(ValueError, match="holds"):
        interpolate([0.0, 1.0], np.zeros((2, 61)), fps=10, holds=[1.0, 0.0])
    with pytest.raises(ValueError, match="ease"):
        interpolate([0.0, 1.0], np.zeros((2, 61)), fps=10, ease=2)


keyframe_rows = st.lists(st.floats(0.0, 1.0), min_size=61, max_size=61)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.floats(0.05, 2.0), min_size=1, max_size=7),
    data=st.data(),
    fps=st.sampled_from([7.0, 24.0, 29.97, 30.0, 60.0, 120.0]),
    ease=st.floats(0.0, 1.0),
)
def test_never_overshoots(gaps, data, fps, ease):
    k = len(gaps) + 1
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    u = np.array(data.draw(st.lists(keyframe_rows, min_size=k, max_size=k)))
    keys = u.copy()
    keys[:, 52:] = 2 * u[:, 52:] - 1  # pose in [-1, 1]
    holds = np.array([data.draw(st.floats(0.0, 0.9)) * g for g in gaps] + [0.3])
    tr = interpolate(times, keys, fps=fps, holds=holds, ease=ease)
    p = tr.params
    assert (p[:, :52] >= 0).all() and (p[:, :52] <= 1).all()
    assert (p[:, 52:] >= -1).all() and (p[:, 52:] <= 1).all()
    # Stronger: every frame lies within the two keyframes around it (shape preserving).
    idx = np.clip(np.searchsorted(times, tr.times, side="right") - 1, 0, k - 1)
    nxt = np.minimum(idx + 1, k - 1)
    lo = np.minimum(keys[idx], keys[nxt]) - 1e-6
    hi = np.maximum(keys[idx], keys[nxt]) + 1e-6
    assert ((p >= lo) & (p <= hi)).all()


@settings(max_examples=80, deadline=None, derandomize=True)
@given(gaps=st.lists(st.floats(1e-3, 10.0), min_size=1, max_size=8), data=st.data())
def test_pchip_matches_scipy_everywhere_the_formulations_coincide(gaps, data):
    # ease=0 between the first and last knot: facecore's PCHIP is scipy's PchipInterpolator (same
    # Fritsch-Carlson slopes and one-sided end rule), two knots (a line), flats and extrema included.
    scipy = pytest.importorskip("scipy.interpolate")
    x = np.concatenate([[0.0], np.cumsum(gaps)])
    levels = st.sampled_from([0.0, 0.25, 1.0]) | st.integers(-10**6, 10**6).map(lambda i: i / 10**6)
    y = np.array(data.draw(st.lists(st.lists(levels, min_size=3, max_size=3), min_size=len(x),
                                    max_size=len(x))))
    t = np.linspace(x[0], x[-1], 97)
    ref = scipy.PchipInterpolator(x, y, axis=0)
    np.testing.assert_allclose(pchip_slopes(x, y), ref.derivative()(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(eval_knots(x, y, t, ease=0.0), ref(t), rtol=1e-12, atol=1e-12)


def test_blocked_evaluation_matches_scipy_across_blocks():
    scipy = pytest.importorskip("scipy.interpolate")
    from facecore.animate.interpolate import _BLOCK

    x, y = np.array([0.0, 1.0, 1.5, 4.0]), np.random.default_rng(3).uniform(0, 1, (4, 61))
    t = np.linspace(0.0, 4.0, 2 * _BLOCK + 123)  # three blocks, the last one partial
    np.testing.assert_allclose(eval_knots(x, y, t, ease=0.0), scipy.PchipInterpolator(x, y)(t),
                               rtol=1e-12, atol=1e-12)


def test_frame_count_is_bounded_before_allocating():
    # A day at 1000 fps (or a duration of 1e12 s) used to go straight to np.arange: a 273 GiB request.
    for times, fps in (([0.0, 1e12], 30.0), ([0.0, 86400.0], 1000.0)):
        with pytest.raises(ValueError, match="frames; at most 1000000"):
            interpolate(times, np.zeros((2, 61)), fps=fps)
    with pytest.raises(ValueError, match="at most"):
        interpolate([0.0], np.zeros((1, 61)), fps=30.0, end=float("inf"))
    assert len(interpolate([0.0, 1000.0], np.zeros((2, 61)), fps=240.0)) == 240_001
