"""Pair design, pose handling and dead-channel revival: the fixes for the head-pose drift and the dead
channels measured in docs/prefer.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore import arkit
from facecore.estimator import Estimator
from facecore.losses import region_dpo_loss
from facecore.prefer import RoundConfig, run_round, sample_candidates, sample_pairs
from facecore.prefer.candidates import KIND_PROBE, RARE, add_rare_probes, sample_probe_pairs
from facecore.prefer.regions import REGION_CHANNELS, channel_mask
from facecore.prefer.rounds import revive_saturated

from .conftest import tiny_config

HEAD = list(arkit.GROUP_INDICES["pose"])  # head and eye pose


def _policy(n=64):
    mean = torch.full((n, 61), 0.2)
    mean[:, 52:] = 0.1
    return mean, torch.full((n, 61), float(np.log(0.2)))


def test_region_design_pairs_differ_only_in_one_region_each():
    mean, log_std = _policy()
    cand, kind, where = sample_candidates(mean, log_std, 6, rng=np.random.default_rng(0), design="region",
                                          keep_pose=True)
    m = mean.numpy()
    assert (where[:, 0] == -1).all() and set(np.unique(where[:, 1:])) <= {0, 1}
    for i in range(cand.shape[0]):
        for j in range(1, 6):
            moved = np.nonzero(np.abs(cand[i, j] - m[i]) > 1e-7)[0]
            own = REGION_CHANNELS[("upper", "lower")[where[i, j]]]
            assert set(moved) <= set(own) - set(HEAD)  # one region, never the head pose
    assert (np.abs(cand[:, 1:, :52] - m[:, None, :52]) > 1e-3).any(-1).mean() > 0.9  # they do move


def test_region_design_gives_zero_dpo_gradient_on_channels_a_pair_does_not_vary():
    mean, log_std = _policy(40)
    cand, _, where = sample_candidates(mean, log_std, 4, rng=np.random.default_rng(1), design="region",
                                       keep_pose=True)
    pairs = sample_pairs(40, 4, 80, np.random.default_rng(2))
    a = torch.from_numpy(cand[pairs[:, 0], pairs[:, 1]])
    b = torch.from_numpy(cand[pairs[:, 0], pairs[:, 2]])
    pref = torch.from_numpy(np.random.default_rng(3).integers(0, 2, (80, 2)).astype(np.float32))
    mu = mean[pairs[:, 0]].clone().requires_grad_(True)
    loss, _ = region_dpo_loss(mu, mean[pairs[:, 0]] + 0.01, a, b, pref, channel_mask(("upper", "lower")),
                              log_std=float(np.log(0.25)), beta=0.1)
    loss.backward()
    same = (a == b).numpy()
    assert (mu.grad.numpy()[same] == 0).all()  # exactly zero where the pair is identical
    assert (mu.grad[:, HEAD] == 0).all()
    assert (mu.grad.abs().numpy()[~same] > 0).mean() > 0.5
    # The independent design moves the head pose with every pair (the drift this design removes).
    cand_i, _, _ = sample_candidates(mean, log_std, 4, rng=np.random.default_rng(1))
    ai = torch.from_numpy(cand_i[pairs[:, 0], pairs[:, 1]])
    bi = torch.from_numpy(cand_i[pairs[:, 0], pairs[:, 2]])
    mu.grad = None
    loss, _ = region_dpo_loss(mu, mean[pairs[:, 0]] + 0.01, ai, bi, pref, channel_mask(("upper", "lower")),
                              log_std=float(np.log(0.25)), beta=0.1)
    loss.backward()
    assert (mu.grad[:, HEAD].abs() > 0).float().mean() > 0.5


def test_keep_pose_independent_design_and_bad_design():
    mean, log_std = _policy()
    cand, _, _ = sample_candidates(mean, log_std, 5, rng=np.random.default_rng(0), keep_pose=True)
    assert (cand[:, :, HEAD] == mean.numpy()[:, None, HEAD]).all()
    assert (np.abs(cand[:, 1:, :52] - mean.numpy()[:, None, :52]) > 1e-3).mean() > 0.9
    with pytest.raises(ValueError, match="design must be one of"):
        sample_candidates(mean, log_std, 5, rng=np.random.default_rng(0), design="pose")
    with pytest.raises(ValueError, match="perturbs 'upper' or 'lower'"):
        sample_candidates(mean, log_std, 5, rng=np.random.default_rng(0), design="region", regions=("face",))
    with pytest.raises(ValueError, match="pair_design"):
        RoundConfig(pair_design="pose")
    with pytest.raises(ValueError, match="anchor_weight"):
        RoundConfig(anchor_weight=-1.0)
    with pytest.raises(ValueError, match="revive"):
        RoundConfig(revive=0.7)


def test_frontal_avatar_ignores_head_pose():
    from facecore.prefer import CanonicalAvatar, region_distances

    p = torch.zeros(2, 61)
    p[1, 52:55] = torch.tensor([0.1, -0.05, 0.05])  # head pose
    front = CanonicalAvatar("ict", 24, frontal=True)
    r = front.render(p)
    assert torch.equal(r["image"][0], r["image"][1])
    posed = CanonicalAvatar("ict", 24).render(p)
    one = lambda rr, i: {k: v[i:i + 1] for k, v in rr.items()}  # noqa: E731
    assert float(region_distances(one(posed, 1), one(posed, 0)).min()) > 0.01
    p[1, arkit.index("JawOpen")] = 1.0  # an expression still shows
    r = front.render(p)
    assert float(region_distances(one(r, 1), one(r, 0))[0, 1]) > 0.05
    with pytest.raises(ValueError, match="frontal"):
        CanonicalAvatar("ict", 24, frontal=1)


def test_revive_saturated_unsticks_a_dead_channel(tiny_checkpoint):
    policy = Estimator.load(tiny_checkpoint)
    c = arkit.index("TongueOut")
    with torch.no_grad():
        policy.head.bias[c] = -3.0  # far below the range: the mean is 0 on every crop
    crops = torch.rand(6, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    revived, names = revive_saturated(policy, crops, 0.05)
    assert "TongueOut" in names and revived is not policy
    with torch.no_grad():
        before = policy(policy.normalize(crops))[0]
        after = revived(revived.normalize(crops))[0]
    assert float(before[:, c].max()) == 0.0 and float(after[:, c].median()) == pytest.approx(0.05, abs=1e-5)
    others = [i for i in range(61) if arkit.NAMES[i] not in names]
    assert torch.equal(before[:, others], after[:, others])
    same, none = revive_saturated(revived, crops, 0.05)
    assert same is revived and none == []
    with pytest.raises(ValueError, match="level"):
        revive_saturated(policy, crops, 0.0)


def test_round_with_region_design_keeps_head_pose(tmp_path, tiny_checkpoint, avatar):
    cfg = tiny_config(tmp_path / "run", tiny_checkpoint, steps=6, pair_design="region", keep_pose=True,
                      kl_weight=0.0, anchor_weight=10.0, revive=0.05, reward=False, head_lr=1e-2)
    policy = Estimator.load(tiny_checkpoint)
    res = run_round(policy, cfg, 1, avatar=avatar)
    crops = torch.rand(4, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        m0 = policy(policy.normalize(crops))[0]
        m1 = res.policy(res.policy.normalize(crops))[0]
    assert res.metrics["dpo_loss_after"] <= res.metrics["dpo_loss_before"] + 1e-6
    assert isinstance(res.metrics["revived"], list)
    assert float((m1[:, :52] - m0[:, :52]).abs().max()) > float((m1[:, HEAD] - m0[:, HEAD]).abs().max())
    # keep_pose holds the head-pose read-out rows exactly; the other rows move (head_lr).
    assert torch.equal(res.policy.head.weight[HEAD], policy.head.weight[HEAD])
    assert torch.equal(res.policy.head.bias[HEAD], policy.head.bias[HEAD])
    assert not torch.equal(res.policy.head.weight[:52], policy.head.weight[:52])


def test_rare_probes_switch_one_rare_channel_of_the_mean():
    mean, log_std = _policy(20)
    mean[:5, arkit.index("TongueOut")] = 0.8  # already on: its probe switches it off
    cand, kind, where = sample_candidates(mean, log_std, 4, rng=np.random.default_rng(0), design="region",
                                          keep_pose=True)
    cand2, kind2, where2 = add_rare_probes(cand, kind, where, rng=np.random.default_rng(1))
    assert cand2.shape == (20, 4 + len(RARE), 61) and np.array_equal(cand2[:, :4], cand)
    assert (kind2[:, 4:] == KIND_PROBE).all() and (where2[:, 4:] == 1).all()  # both rare channels: lower
    for j, name in enumerate(RARE):
        c = arkit.index(name)
        diff = cand2[:, 4 + j] - cand2[:, 0]
        assert (np.abs(np.delete(diff, c, axis=1)) == 0).all()  # nothing but the one channel moves
        was = cand2[:, 0, c]
        assert ((was < 0.5) == (cand2[:, 4 + j, c] >= 0.3)).all()
        assert (cand2[was >= 0.5, 4 + j, c] == 0).all() and (cand2[:, 4 + j, c] <= 1).all()
    assert (cand2[:5, 4 + RARE.index("TongueOut"), arkit.index("TongueOut")] == 0).all()
    with pytest.raises(ValueError, match="add_rare_probes"):
        add_rare_probes(cand[0], kind, where, rng=np.random.default_rng(1))


def test_probe_pairs_cover_every_image_and_probe_then_cycle():
    pairs = sample_probe_pairs(10, 6, 2, 25, np.random.default_rng(0))
    assert pairs.shape == (25, 3) and (pairs[:, 1] == 0).all() and set(pairs[:, 2]) == {6, 7}
    first = {(int(i), int(j)) for i, _, j in pairs[:20]}
    assert len(first) == 20  # every (image, probe) once before any repeats
    assert sample_probe_pairs(10, 6, 2, 0, np.random.default_rng(0)).shape == (0, 3)
    with pytest.raises(ValueError, match="sample_probe_pairs"):
        sample_probe_pairs(0, 6, 2, 5, np.random.default_rng(0))


def test_round_with_rare_share_spends_part_of_the_budget_on_probes(tmp_path, tiny_checkpoint, avatar):
    cfg = tiny_config(tmp_path / "run", tiny_checkpoint, steps=2, reward=False, rare_share=1 / 3)
    res = run_round(Estimator.load(tiny_checkpoint), cfg, 1, avatar=avatar)
    pairs = res.judgments.pairs
    assert pairs.shape[0] == cfg.pairs and res.candidates.shape[1] == cfg.k + len(RARE)
    probe = pairs[:, 2] >= cfg.k
    assert probe.sum() == 10 and (pairs[probe, 1] == 0).all() and (pairs[~probe, 1:] < cfg.k).all()
    a, b = res.candidates[pairs[probe, 0], 0], res.candidates[pairs[probe, 0], pairs[probe, 2]]
    moved = {int(c) for c in np.nonzero(np.abs(a - b) > 0)[1]}
    assert moved and moved <= {arkit.index(n) for n in RARE}
    assert res.metrics["n_probe_pairs"] == 10
    with pytest.raises(ValueError, match="rare_share"):
        tiny_config(tmp_path / "bad", tiny_checkpoint, rare_share=1.0)


def test_keep_gaze_leaves_the_eight_eyelook_blendshapes_at_the_mean():
    mean, log_std = _policy(40)
    gaze = [i for i, n in enumerate(arkit.NAMES) if n.startswith("EyeLook")]
    assert len(gaze) == 8
    cand, kind, _ = sample_candidates(mean, log_std, 6, rng=np.random.default_rng(0), design="region",
                                      keep_pose=True, keep_gaze=True, explore=1.0)
    assert (kind[:, 1:] == 2).all()  # every draw explored, and still the gaze stays
    assert (cand[..., gaze] == mean.numpy()[:, None, gaze]).all()
    upper_other = np.setdiff1d(REGION_CHANNELS["upper"][REGION_CHANNELS["upper"] < 52], gaze)
    assert (np.abs(cand[:, 1:, upper_other] - mean.numpy()[:, None, upper_other]) > 1e-3).any()
    loose, _, _ = sample_candidates(mean, log_std, 6, rng=np.random.default_rng(0), design="region",
                                    keep_pose=True, keep_gaze=False)
    assert (np.abs(loose[..., gaze] - mean.numpy()[:, None, gaze]) > 1e-3).any()


def test_dpo_stops_pushing_an_output_already_at_its_range_edge(tiny_checkpoint):
    """Through the straight-through clamp, "less TongueOut" judgments on faces already predicted at 0
    kept lowering the raw output with no visible change until the channel was 0 everywhere; the DPO
    step's inward clamp gradient gives such an output no push further out, and "more TongueOut" still
    lifts it."""
    from facecore.prefer.rounds import _dpo_loss

    policy = Estimator.load(tiny_checkpoint)
    t = arkit.index("TongueOut")
    with torch.no_grad():
        policy.head.weight[t] = 0.0
        policy.head.bias[t] = -0.5  # below the range on every face: output 0
    crops = torch.rand(6, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean, log_std = policy(policy.normalize(crops))
    a, b = mean.clone(), mean.clone()
    b[:, t] = 0.6  # every pair: the face with the tongue out loses
    pref = torch.ones(6, 2)
    cfg = RoundConfig(kl_weight=0.1)
    loss, _ = _dpo_loss(policy, crops, mean, log_std, torch.arange(6), a, b, pref,
                        channel_mask(("upper", "lower")), cfg)
    loss.backward()
    assert policy.head.bias.grad[t] == 0 and bool((policy.head.weight.grad[t] == 0).all())
    policy.zero_grad()  # the opposite judgments (the tongue wins) do lift it from below the range
    loss, _ = _dpo_loss(policy, crops, mean, log_std, torch.arange(6), a, b, 1 - pref,
                        channel_mask(("upper", "lower")), cfg)
    loss.backward()
    assert policy.head.bias.grad[t] < 0
    with torch.no_grad():  # inside the range the same judgments do push it down
        policy.head.bias[t] = 0.3
        mean, log_std = policy(policy.normalize(crops))
    policy.zero_grad()
    a[:, t] = mean[:, t]
    loss, _ = _dpo_loss(policy, crops, mean, log_std, torch.arange(6), a, b, pref,
                        channel_mask(("upper", "lower")), cfg)
    loss.backward()
    assert policy.head.bias.grad[t] > 0  # gradient descent lowers the bias
