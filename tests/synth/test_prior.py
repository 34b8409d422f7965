"""The parameter prior: ranges, documented rates of rare actions, physical constraints, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore.arkit import NAMES
from facecore.synth import PRIORS, Prior, sample_params, sample_trajectory
from facecore.synth.prior import RARE

IDX = {n: i for i, n in enumerate(NAMES)}
N = 4000


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    return sample_params(N, 7).numpy()


def test_shape_dtype_and_ranges(draws):
    p = sample_params(5, 0)
    assert p.shape == (5, 61) and p.dtype == torch.float32
    assert draws[:, :52].min() >= 0 and draws[:, :52].max() <= 1
    assert np.abs(draws[:, 52:]).max() <= 1
    assert (draws[:, [IDX["LeftEyeRoll"], IDX["RightEyeRoll"]]] == 0).all()
    # sparse: most blendshapes are zero in a typical sample
    assert 3 < (draws[:, :52] > 0.05).sum(1).mean() < 20


def test_reproducible_from_seed_and_index():
    a = sample_params(10, 123)
    assert torch.equal(a, sample_params(10, 123))
    assert torch.equal(a[6:9], sample_params(3, 123, index0=6))  # sample i alone == sample i in a batch
    assert not torch.equal(a, sample_params(10, 124))


@pytest.mark.parametrize("name", ["TongueOut", "CheekPuff", "JawForward", "JawLeft", "JawRight"])
def test_rare_actions_at_the_documented_rate(draws, name):
    prior = PRIORS["default"]
    rate = (draws[:, IDX[name]] >= prior.rare_range[0]).mean()
    sd = np.sqrt(prior.p_rare * (1 - prior.p_rare) / N)
    assert abs(rate - prior.p_rare) < 5 * sd, (name, rate)


@pytest.mark.parametrize("name", [r for r in RARE if r.startswith(("EyeWide", "MouthDimple", "NoseSneer"))])
def test_rare_actions_driven_by_emotions_too_are_at_least_that_common(draws, name):
    prior = PRIORS["default"]
    rate = (draws[:, IDX[name]] >= prior.rare_range[0]).mean()
    assert rate > prior.p_rare - 5 * np.sqrt(prior.p_rare * (1 - prior.p_rare) / N)


def test_rare_actions_are_over_represented(draws):
    rare = np.mean([(draws[:, IDX[r]] > 0.3).mean() for r in ("TongueOut", "CheekPuff", "JawForward")])
    common = np.mean(
        [(draws[:, IDX[c]] > 0.3).mean() for c in ("MouthFunnel", "MouthRollLower", "MouthShrugUpper")]
    )
    assert rare > 1.5 * common


def test_physical_constraints(draws):
    for side in ("Left", "Right"):
        blink, wide = draws[:, IDX["EyeBlink" + side]], draws[:, IDX["EyeWide" + side]]
        assert not ((blink > 0.5) & (wide > 0.5)).any()
        assert (blink + wide <= 1 + 1e-6).all()
        assert (draws[:, IDX["MouthSmile" + side]] + draws[:, IDX["MouthFrown" + side]] <= 1 + 1e-6).all()
        assert not ((draws[:, IDX["EyeLookIn" + side]] > 0) & (draws[:, IDX["EyeLookOut" + side]] > 0)).any()
    assert (draws[:, IDX["MouthClose"]] <= draws[:, IDX["JawOpen"]] + 1e-6).all()
    assert not ((draws[:, IDX["JawLeft"]] > 0.3) & (draws[:, IDX["JawRight"]] > 0.3)).any()
    tongue = draws[:, IDX["TongueOut"]] > 0
    assert (draws[tongue, IDX["JawOpen"]] >= 0.25).all()
    # the constraints bind: blink and wide both occur, just never together at high values
    assert (draws[:, IDX["EyeBlinkLeft"]] > 0.5).any() and (draws[:, IDX["EyeWideLeft"]] > 0.5).any()


def test_pose_and_gaze(draws):
    prior = PRIORS["default"]
    yaw = draws[:, IDX["HeadYaw"]]
    assert abs(yaw.std() - prior.head_sd[0]) < 0.03
    assert np.abs(yaw).max() <= prior.head_max[0] + 0.5  # plus what an emotion adds (none turns the head)
    gaze = draws[:, IDX["LeftEyeYaw"]]
    assert abs(draws[:, IDX["RightEyeYaw"]] - gaze).max() < 0.2  # both eyes look the same way (vergence)
    # look shapes follow the eye rotation as the animator keeps them (1.6 per unit yaw)
    out_left = np.minimum(1.6 * np.maximum(gaze, 0), 1)
    assert np.allclose(draws[:, IDX["EyeLookOutLeft"]], out_left, atol=1e-5)


def test_named_priors_differ():
    front = sample_params(2000, 1, "frontal").numpy()
    wide = sample_params(2000, 1, "expressive").numpy()
    assert front[:, IDX["HeadYaw"]].std() < 0.5 * wide[:, IDX["HeadYaw"]].std()
    custom = Prior(p_rare=0.0, p_active=0.0, p_emotion=0.0, p_blink=0.0, p_wink=0.0)
    q = sample_params(200, 1, custom).numpy()
    assert (q[:, IDX["TongueOut"]] == 0).all() and (q[:, IDX["MouthSmileLeft"]] == 0).all()


def test_bad_input():
    with pytest.raises(ValueError, match="prior"):
        sample_params(3, 0, "nope")
    with pytest.raises(ValueError, match="n must"):
        sample_params(-1, 0)
    with pytest.raises(ValueError, match="seed"):
        sample_params(3, -5)
    with pytest.raises(ValueError, match="p_rare"):
        Prior(p_rare=1.5)
    with pytest.raises(ValueError, match="frames"):
        sample_trajectory(0, 0)


def test_trajectory_is_smooth_and_reproducible():
    t = sample_trajectory(90, 5, index=2)
    assert t.shape == (90, 61) and t.dtype == torch.float32
    assert torch.equal(t, sample_trajectory(90, 5, index=2))
    assert not torch.equal(t, sample_trajectory(90, 5, index=3))
    smooth = sample_trajectory(90, 5, index=2, secondary=False)
    assert float((smooth[1:] - smooth[:-1]).abs().max()) < 0.25  # no jumps between frames at 30 fps
    assert float((smooth.max(0).values - smooth.min(0).values).max()) > 0.2  # and it does move
    assert t[:, :52].min() >= 0 and t[:, :52].max() <= 1


def test_trajectory_from_an_animator_script():
    script = {
        "keyframes": [
            {"text": "a broad smile", "duration": 1.0},
            {"text": "raises both eyebrows", "duration": 1.0},
        ]
    }
    t = sample_trajectory(45, 0, script=script)
    assert t.shape == (45, 61)
    assert float(t[:, IDX["MouthSmileLeft"]].max()) > 0.3
