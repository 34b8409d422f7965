"""run_round / run_rounds on a tiny estimator: DPO loss falls, resume is exact, the CLI runs end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facecore.estimator import Estimator
from facecore.prefer import RoundConfig, run_round, run_rounds

from .conftest import tiny_config


def test_run_round_lowers_dpo_loss(tmp_path, tiny_checkpoint, avatar):
    cfg = tiny_config(tmp_path / "run", tiny_checkpoint, steps=15)
    policy = Estimator.load(tiny_checkpoint)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    res = run_round(policy, cfg, 1, avatar=avatar, out_dir=tmp_path / "r1")
    m = res.metrics
    assert m["n_judgments"] == cfg.pairs * 2 and m["n_pairs"] == cfg.pairs
    assert m["dpo_loss_after"] < m["dpo_loss_before"]
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())  # input untouched
    for name in ("judgments.jsonl", "candidates.npz", "reward.safetensors", "policy.safetensors"):
        assert (tmp_path / "r1" / name).is_file()
    rows = [json.loads(line) for line in (tmp_path / "r1" / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == m["n_judgments"]
    assert {r["region"] for r in rows} == {"upper", "lower"}
    assert all(r["label_0"] + r["label_1"] == 1.0 and r["simulated"] for r in rows)
    assert set(m["timing"]) >= {"images", "render", "judge", "reward", "dpo"}


def test_resume_gives_identical_results(tmp_path, tiny_checkpoint):
    full = run_rounds(tiny_config(tmp_path / "full", tiny_checkpoint), log=None)
    part = tmp_path / "part"
    run_rounds(tiny_config(part, tiny_checkpoint, rounds=1), log=None)  # "killed" after round 1
    resumed = run_rounds(tiny_config(part, tiny_checkpoint), log=None)
    for a, b in zip(full["rounds"], resumed["rounds"]):
        assert a["eval"] == b["eval"]
    w1 = Estimator.load(tmp_path / "full" / "round_02" / "policy.safetensors").state_dict()
    w2 = Estimator.load(part / "round_02" / "policy.safetensors").state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # A round folder left half-written (no state entry) is redone the same way.
    shutil.rmtree(part / "round_02")
    state = json.loads((part / "state.json").read_text())
    state["completed"] = 1
    (part / "state.json").write_text(json.dumps(state))
    again = run_rounds(tiny_config(part, tiny_checkpoint), log=None)
    assert again["rounds"][2]["eval"] == full["rounds"][2]["eval"]


def test_config_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="RoundConfig.pairs"):
        RoundConfig(pairs=0)
    with pytest.raises(ValueError, match="mode must be"):
        RoundConfig(mode="eyes")
    with pytest.raises(ValueError, match="sim:N"):
        RoundConfig(pool="humans")
    with pytest.raises(ValueError, match="unknown keys"):
        RoundConfig.from_dict({"rounds": 1, "bogus": 2})
    with pytest.raises(ValueError, match="bogus"):
        RoundConfig(prior="bogus")
    with pytest.raises(ValueError, match="init"):
        run_rounds(RoundConfig(out=str(tmp_path / "x")), log=None)
    run_rounds(tiny_config(tmp_path / "y", tiny_checkpoint, rounds=1), log=None)
    with pytest.raises(ValueError, match="different config"):
        run_rounds(tiny_config(tmp_path / "y", tiny_checkpoint, rounds=1, k=3), log=None)


def test_face_mode_and_ema_reference(tmp_path, tiny_checkpoint):
    res = run_rounds(tiny_config(tmp_path / "f", tiny_checkpoint, mode="face", reference="ema", reward=False,
                                 rounds=1), log=None)
    r1 = res["rounds"][1]
    assert r1["train"]["n_judgments"] == 30 and r1["train"]["n_relabelled"] == 0
    assert list(r1["eval"]["win_rate_vs_round0"]) == ["face"]
    assert (tmp_path / "f" / "round_01" / "ema.safetensors").is_file()
    assert not (tmp_path / "f" / "round_01" / "reward.safetensors").exists()


def test_cli_prefer_run_and_eval(tmp_path, tiny_checkpoint):
    from facecore.cli import app

    cfg = tiny_config(tmp_path / "cli", tiny_checkpoint, rounds=1).to_dict()
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({k: v for k, v in cfg.items() if k not in ("out", "init")}))
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["prefer", "run", "--config", str(cfg_path), "--init", str(tiny_checkpoint),
                              "--rounds", "1", "--pool", "sim:5", "--rare-share", "0.2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "simulated annotators" in res.output and (out / "round_01" / "policy.safetensors").is_file()
    assert json.loads((out / "state.json").read_text())["config"]["rare_share"] == 0.2
    res = runner.invoke(app, ["prefer", "eval", str(out)])
    assert res.exit_code == 0 and "| 1 |" in res.output
    res = runner.invoke(app, ["prefer", "run", "--init", str(tmp_path / "none.safetensors"), "-o",
                              str(tmp_path / "bad"), "--pool", "sim:5", "--eval-pool", "sim:5"])
    assert res.exit_code == 1 and "not found" in res.output
    res = runner.invoke(app, ["prefer", "run", "--init", str(tiny_checkpoint), "-o", str(tmp_path / "bad"),
                              "--pool", "sim:99"])
    assert res.exit_code == 1 and "[5, 13]" in res.output


def test_candidates_explore_dead_channels():
    from facecore import arkit
    from facecore.prefer import sample_candidates, sample_pairs

    mean = torch.full((200, 61), 0.05)
    mean[:, 52:] = 0.0
    cand, kind, where = sample_candidates(mean, torch.full((200, 61), -6.0), 6,
                                          rng=np.random.default_rng(0))
    assert cand.shape == (200, 6, 61) and (cand[:, 0] == mean.numpy()).all()
    tongue = cand[:, :, arkit.index("TongueOut")]
    assert (tongue > 0.3).sum() > 20  # a channel the policy never activates still gets sampled
    assert (cand >= arkit.LOW).all() and (cand <= arkit.HIGH).all()
    pairs = sample_pairs(200, 6, 500, np.random.default_rng(1))
    assert (pairs[:, 1] != pairs[:, 2]).all() and np.bincount(pairs[:, 0]).min() >= 2


def test_round_faces_follow_the_domain_presets_prior():
    """The faces a round shows are drawn from the prior the estimator's training shards of that domain
    hold (wild: ``expressive``), not the engine's default prior, unless ``prior`` says otherwise."""
    from facecore.prefer.data import make_images
    from facecore.synth import load_preset, sample_params

    data = make_images(3, 7, image_size=32, resolution=48, domain="wild")
    want = sample_params(3, 7, load_preset("wild").prior).numpy()
    assert load_preset("wild").prior != "default"
    np.testing.assert_array_equal(data["params"], want)
    assert data["prior"] == load_preset("wild").prior
    other = make_images(3, 7, image_size=32, resolution=48, domain="wild", prior="default")
    np.testing.assert_array_equal(other["params"], sample_params(3, 7, "default").numpy())
    assert not np.array_equal(other["params"], want)
