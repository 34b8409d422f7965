"""Training: a few steps on on-the-fly data, exact resume, pseudo labels in the data path only,
written shards, the config's checks."""

from __future__ import annotations

import contextlib
import importlib
import json

import pytest
import torch

from facecore.estimator import model as model_mod
from facecore.estimator.training import TrainConfig, load_checkpoint, lr_factor, train
from tests.estimator.conftest import TINY


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out=str(out), steps=3, batch_size=4, resolution=24, model=TINY, warmup_steps=1,
                deterministic=True, tensorboard=False, checkpoint_every=3)
    return TrainConfig(**{**base, **kw})


def test_three_steps_on_the_fly(tmp_path):
    r = train(_cfg(tmp_path / "run", labels="truth", loss="nll"))
    assert r["step"] == 3 and len(r["losses"]) == 3
    assert all(torch.isfinite(torch.tensor(r["losses"])))
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert {"loss", "nll", "l1", "lr", "grad_norm", "data_s", "step_s"} <= set(rows[0])
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert {"model", "optimizer", "scheduler", "ema", "rng", "data"} <= set(ck) and ck["step"] == 3
    assert ck["data"]["samples_per_rank"] == 12
    exported = model_mod.Estimator.load(tmp_path / "run" / "estimator.safetensors")
    blank = torch.zeros(2, 30, 30, 3, dtype=torch.uint8)
    assert exported.predict(blank, assume_cropped=True).shape == (2, 61)
    assert not list((tmp_path / "run").glob(".*partial"))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    kw = dict(steps=6, checkpoint_every=3, labels="pseudo", n=10)  # n=10: the sample set wraps around
    whole = train(_cfg(tmp_path / "a", **kw))
    first = train(_cfg(tmp_path / "b", stop_after=3, **kw))
    assert first["step"] == 3 and not (tmp_path / "b" / "estimator.safetensors").exists()
    rest = train(_cfg(tmp_path / "b", **kw))
    assert first["losses"] + rest["losses"] == whole["losses"]
    a, b = whole["model"].state_dict(), rest["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    def logged(d):
        return [json.loads(ln)["loss"] for ln in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]

    assert logged("a") == logged("b") == whole["losses"]
    # a different config is refused, and so is a fresh start over a finished run
    with pytest.raises(ValueError, match="different settings.*lr"):
        train(_cfg(tmp_path / "b", lr=0.5, **kw))
    with pytest.raises(ValueError, match="resume"):
        train(_cfg(tmp_path / "b", resume=False, **kw))


def test_pseudo_labels_replace_the_truth_in_the_data_path(tmp_path, monkeypatch):
    train_mod = importlib.import_module("facecore.estimator.training")  # the module, not the function

    seen = []
    real = train_mod._loss
    monkeypatch.setattr(train_mod, "_loss", lambda m, s, t, c: (seen.append(t.clone()), real(m, s, t, c))[1])
    for labels in ("truth", "pseudo"):
        train(_cfg(tmp_path / labels, steps=1, labels=labels, augment=False))
    truth, pseudo = seen
    assert not torch.equal(truth, pseudo)  # the loop got corrupted labels, not the truth
    tongue = model_mod.arkit.index("TongueOut")
    assert float(pseudo[:, tongue].abs().max()) == 0.0  # a dead channel of the livelink profile


def test_written_shards(tmp_path):
    from facecore import synth

    synth.write_dataset(tmp_path / "data", 10, resolution=24, samples_per_shard=5)
    r = train(_cfg(tmp_path / "run", data=str(tmp_path / "data"), steps=3, shuffle_buffer=4))
    assert r["step"] == 3 and len(set(r["last_indices"])) == 4


def test_default_loss_keeps_the_nll_off_the_mean():
    train_mod = importlib.import_module("facecore.estimator.training")
    g = torch.Generator().manual_seed(0)
    target = torch.rand(8, 61, generator=g)
    log_std = torch.randn(8, 61, generator=g).requires_grad_()
    grads = {}
    for loss in ("l1+mse", "nll+l1"):
        mean = torch.rand(8, 61, generator=g.manual_seed(1)).requires_grad_()
        total, nll, l1 = train_mod._loss(mean, log_std, target, TrainConfig(loss=loss))
        assert torch.isfinite(total) and nll.requires_grad
        grads[loss] = torch.autograd.grad(total, mean)[0]
    # l1+mse: the mean's gradient is that of L1 + MSE alone; the NLL only trains log_std
    m = mean.detach().requires_grad_()
    F = torch.nn.functional
    want = torch.autograd.grad(F.l1_loss(m, target) + F.mse_loss(m, target), m)[0]
    assert torch.allclose(grads["l1+mse"], want)
    assert not torch.allclose(grads["nll+l1"], want)


def test_head_starts_at_the_label_median_and_bf16_runs_on_cpu(tmp_path):
    train_mod = importlib.import_module("facecore.estimator.training")
    from facecore import synth

    cfg = _cfg(tmp_path / "run", steps=1, lr=0.0, amp="bf16", labels="pseudo")
    # Where bfloat16 is emulated (an AVX2-only CPU) the run still works and says it will be slow.
    native = train_mod._cpu_has_bf16()
    slow = contextlib.nullcontext() if native else pytest.warns(UserWarning, match="emulated")
    with slow:
        r = train(cfg)
    assert all(torch.isfinite(torch.tensor(r["losses"])))
    median = train_mod.label_median(synth.Dataset({"n": 1, "rig": "ict", "domain": "clean",
                                                   "resolution": 24, "seed": 0}).spec, "default",
                                    train_mod._Labels(cfg))
    assert median[model_mod.arkit.index("TongueOut")] == 0.0 and median.max() > 0  # pseudo labels' median
    assert torch.allclose(r["model"].head.bias[:61], median)


def test_config_checks(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        TrainConfig(labels="noisy")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="image_size"):
        TrainConfig(model={"image_size": 33})
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"steps": 7, "lr": 0.01}))
    cfg = TrainConfig.from_file(p, out="x")
    assert cfg.steps == 7 and cfg.lr == 0.01 and cfg.out == "x"
    with pytest.raises(ValueError, match="domain"):
        train(_cfg(tmp_path / "r", domain="moon"))


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    f = [lr_factor(s, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] >= 0.1
