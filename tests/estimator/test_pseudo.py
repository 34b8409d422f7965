"""PseudoLabeler: the documented corruption terms are measurable, deterministic, and never leak truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore import arkit
from facecore.estimator import PROFILES, Profile, PseudoLabeler

IDX = arkit.INDEX
LOW = torch.tensor(arkit.LOW)
HIGH = torch.tensor(arkit.HIGH)


def _random(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return LOW + (HIGH - LOW) * torch.rand(n, 61, generator=g)


def test_dead_channels_exactly_zero_and_ranges():
    x = _random(300)
    y = PseudoLabeler()(x)
    for name in ("TongueOut", "CheekPuff", "JawForward", "MouthDimpleLeft", "MouthDimpleRight"):
        assert bool((y[:, IDX[name]] == 0).all()), name
    assert bool((y >= LOW).all()) and bool((y <= HIGH).all())
    assert y.shape == x.shape and y.dtype == x.dtype


def test_suppression_and_gain():
    x = torch.zeros(400, 61)
    x[:, :52] = 0.4 + 0.5 * torch.rand(400, 52, generator=torch.Generator().manual_seed(1))
    y = PseudoLabeler(seed=3)(x)
    ratio = y.mean(0) / x.mean(0)
    for name in ("EyeWideLeft", "EyeWideRight", "NoseSneerLeft", "NoseSneerRight"):
        assert ratio[IDX[name]] < 0.4, (name, float(ratio[IDX[name]]))  # barely rise
    for name in ("MouthFrownLeft", "BrowDownRight", "JawLeft"):
        assert 0.35 < ratio[IDX[name]] < 0.85, (name, float(ratio[IDX[name]]))  # under-reported
    assert ratio[IDX["EyeBlinkLeft"]] > 1.05  # over-reported
    assert ratio[IDX["EyeBlinkLeft"]] < 1.0 / x[:, IDX["EyeBlinkLeft"]].mean()  # saturates at the range


def test_crosstalk_and_side_averaging():
    x = torch.zeros(64, 61)
    x[:, IDX["EyeBlinkLeft"]] = 0.9
    x[:, IDX["MouthSmileRight"]] = 0.8
    y = PseudoLabeler("livelink", seed=0)(x)
    assert y[:, IDX["EyeLookDownLeft"]].mean() > 0.15  # blink leaks into look-down
    # a one-sided smile comes out more symmetric than performed
    assert (y[:, IDX["MouthSmileRight"]] - y[:, IDX["MouthSmileLeft"]]).mean() < 0.7
    assert y[:, IDX["MouthSmileLeft"]].mean() > 0.1


def test_deterministic_batch_independent_and_seeded():
    x = _random(20, seed=4)
    a, b = PseudoLabeler(seed=7)(x), PseudoLabeler(seed=7)(x)
    assert torch.equal(a, b)
    assert torch.equal(PseudoLabeler(seed=7)(x[5:6]), a[5:6])  # same row alone or in a batch
    assert not torch.equal(PseudoLabeler(seed=8)(x), a)
    assert not torch.equal(a, x)
    n = PseudoLabeler(seed=7)(x.numpy())
    assert isinstance(n, np.ndarray) and np.allclose(n, a.numpy(), atol=1e-6)


def test_ideal_profile_is_identity_and_no_truth_leaks():
    x = _random(10)
    y = PseudoLabeler("ideal")(x)
    assert torch.allclose(y, x, atol=1e-6)
    out = PseudoLabeler()(x)
    assert type(out) is torch.Tensor and out is not x and not out.requires_grad
    assert not hasattr(out, "truth")


def test_clip_lag_is_measurable():
    T = 90
    x = torch.zeros(T, 61)
    x[30:, IDX["JawOpen"]] = 0.7  # a step at frame 30
    lab = PseudoLabeler(PROFILES["livelink"].with_channels("JawOpen", noise=0.0, drift=0.0), seed=1)
    y = lab(x, clip=True)[:, IDX["JawOpen"]]
    settled = float(y[-10:].mean())
    assert settled > 0.5
    # EMA with tau = 50 ms at 60 fps: one frame after the step it has covered < 40 % of the way
    assert float(y[30]) < 0.4 * settled
    half = int(torch.nonzero(y > 0.5 * settled)[0])
    assert 31 <= half <= 36
    # frames vs a single independent-frame labelling: no lag there
    single = lab(x[30:31])[0, IDX["JawOpen"]]
    assert float(single) > 0.9 * settled
    # times: irregular frame times are accepted; a slower frame rate means less lag per frame
    y30 = lab(x, times=np.arange(T) / 30.0)[:, IDX["JawOpen"]]
    assert float(y30[30]) > float(y[30])


def test_bad_input():
    with pytest.raises(ValueError, match="61"):
        PseudoLabeler()(torch.zeros(3, 60))
    with pytest.raises(ValueError, match="NaN"):
        PseudoLabeler()(torch.full((2, 61), float("nan")))
    with pytest.raises(ValueError, match="profile"):
        PseudoLabeler("iphone99")
    with pytest.raises(ValueError, match="times"):
        PseudoLabeler()(torch.zeros(5, 61), times=[0, 1, 2])
    with pytest.raises(ValueError, match="gain"):
        Profile(**{**PROFILES["ideal"].__dict__, "gain": np.ones(60)})
