"""select(): each selector picks what it should on a constructed case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore.video.select import k_center_greedy, select


def _clip(rng, textured: bool, T=3, S=12):
    if textured:  # noisy, coloured, varying: what the "real" set looks like here
        f = rng.integers(0, 256, (T, S, S, 3))
    else:  # flat grey: the "synthetic-looking" candidates
        f = np.full((T, S, S, 3), 120) + rng.integers(0, 3, (T, 1, 1, 1))
    return {"frames": f.astype(np.uint8), "params": np.zeros((T, 61), np.float32)}


def test_domain_selector_prefers_real_looking_clips():
    rng = np.random.default_rng(0)
    real = [_clip(rng, True) for _ in range(6)]
    kinds = [False, True, False, False, True, False, True, False, True, False]
    cands = [_clip(rng, t) for t in kinds]
    picks, scores = select(cands, real, 4, "domain", return_scores=True)
    assert sorted(picks) == [i for i, t in enumerate(kinds) if t]
    assert scores[picks].min() > max(s for i, s in enumerate(scores) if not kinds[i])


def test_gradient_selector_normalises_per_timestep():
    e = torch.eye(3, dtype=torch.float64)
    # real gradients: direction e0 at t=0 (scale 1), e1 at t=1 (scale 1000)
    grads = {
        ("real", 0): e[0], ("real", 1): 1000 * e[1],
        ("a", 0): e[0], ("a", 1): 5 * e[1],  # aligned at both timesteps
        ("b", 0): -e[0], ("b", 1): 1e4 * e[1],  # huge and aligned at t=1 only, opposed at t=0
        ("c", 0): 1e-3 * e[0], ("c", 1): e[2],  # tiny and aligned at t=0, orthogonal at t=1
    }
    real = [{"clip_id": "real", "frames": None}]
    cands = [{"clip_id": c} for c in ("b", "c", "a")]
    picks, scores = select(cands, real, 3, "gradient", grad_fn=lambda s, t: grads[(s["clip_id"], t)],
                           timesteps=(0, 1), return_scores=True)
    # per-timestep unit gradients: a = (1 + 1) / 2, c = (1 + 0) / 2, b = (-1 + 1) / 2
    np.testing.assert_allclose(scores, [0.0, 0.5, 1.0], atol=1e-12)
    assert picks == [2, 1, 0]
    with pytest.raises(ValueError, match="grad_fn"):
        select(cands, real, 1, "gradient")


def test_coverage_picks_the_motions_real_data_lacks():
    def traj(channel=None, value=0.0, T=8):
        p = np.zeros((T, 61), np.float32)
        if channel is not None:
            p[:, channel] = value
        return {"params": p, "frames": np.zeros((T, 4, 4, 3), np.uint8)}

    real = [traj(), traj(0, 0.05)]
    cands = [traj(0, 0.02), traj(17, 0.9), traj(0, 0.04), traj(24, 0.5), traj(17, 0.85)]
    picks = select(cands, real, 2, "coverage")
    assert picks == [1, 3]  # the farthest first, then the farthest from it and the real set
    assert select(cands, real, 3, "coverage")[:2] == [1, 3]
    # without real centres the first pick is the candidate farthest from the mean
    pts = np.array([[0.0], [1.0], [10.0]])
    assert k_center_greedy(pts, 2) == [2, 0]


def test_random_selector_is_seeded():
    cands = [{"frames": None, "params": None}] * 10
    a = select(cands, [], 4, "random", seed=3)
    assert a == select(cands, [], 4, "random", seed=3)
    assert len(set(a)) == 4 and all(0 <= i < 10 for i in a)
    assert a != select(cands, [], 4, "random", seed=4)


def test_bad_arguments():
    cands = [{"frames": np.zeros((2, 8, 8, 3), np.uint8), "params": np.zeros((2, 61))}] * 3
    with pytest.raises(ValueError, match="method"):
        select(cands, cands, 1, "loss")
    with pytest.raises(ValueError, match="k must"):
        select(cands, cands, 4, "random")
    with pytest.raises(ValueError, match="real_val"):
        select(cands, [], 1, "domain")


def test_public_name_is_callable_after_the_submodule_import():
    import facecore.video
    import facecore.video.select  # binds the module on the package; it must stay callable

    cands = [{"frames": None, "params": None}] * 5
    assert facecore.video.select(cands, [], 2, "random", seed=1) == select(cands, [], 2, "random", seed=1)
