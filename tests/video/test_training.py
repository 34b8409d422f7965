"""Video training: a tiny overfit, exact resume, the files a run writes, domain mixes and the config's
checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facecore.video.model import VideoDiffusion
from facecore.video.training import VideoTrainConfig, load_checkpoint, render_clip, train

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(image_size=16, frames=4, patch_size=4, dim=32, depth=1, heads=2, guider_channels=8)


def _cfg(out, **kw) -> VideoTrainConfig:
    base = dict(out=str(out), steps=4, batch_size=2, frames=4, n=3, model=TINY, warmup_steps=1,
                deterministic=True, device="cpu", checkpoint_every=2, domains={"clean": 1.0})
    return VideoTrainConfig(**{**base, **kw})


def _toy_clips(n: int = 2) -> list[dict]:
    """Hand-made sample dicts: a bright square moving one pixel a frame, its motion maps the square's
    mask, the reference the first frame (learnable in a few dozen steps)."""
    clips = []
    for c in range(n):
        frames = np.zeros((4, 16, 16, 3), np.uint8)
        maps = np.zeros((4, 16, 16, 4), np.float32)
        for f in range(4):
            y, x = 2 + f + c * 4, 3 + 2 * f
            frames[f, y:y + 5, x:x + 5] = (200, 120 + 40 * c, 60)
            maps[f, y:y + 5, x:x + 5] = (0.0, 0.0, 1.0, 0.5)
        clips.append({"frames": frames, "reference": frames[0], "params": np.zeros((4, 61), np.float32),
                      "motion_maps": maps, "domain": "toy", "identity": c, "clip_id": f"toy-{c}"})
    return clips


def _eval_loss(model: VideoDiffusion, clips: list[dict]) -> float:
    """The loss at fixed timesteps and noise (training's own draws are too noisy to compare)."""
    batch = model.batch(clips)
    with torch.no_grad():
        return float(np.mean([float(model.loss(batch, torch.Generator().manual_seed(s), 0.0, 0.0))
                              for s in range(8)]))


def test_loss_decreases_on_a_tiny_overfit_set(tmp_path):
    clips = _toy_clips()
    r = train(_cfg(tmp_path / "run", dataset=clips, steps=100, lr=3e-3, warmup_steps=5,
                   checkpoint_every=100, drop_reference=0.0, drop_motion=0.0, ema_decay=0.9))
    assert len(r["losses"]) == 100 and all(np.isfinite(r["losses"]))
    before = _eval_loss(VideoDiffusion(TINY), clips)  # the zero-output init: the target's variance
    after = _eval_loss(r["model"], clips)
    assert 0.8 < before < 1.2 and after < 0.6 * before  # measured: 0.95 -> 0.47


def test_run_files_and_the_exported_model(tmp_path):
    r = train(_cfg(tmp_path / "run", steps=2))
    out = tmp_path / "run"
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert {"loss", "grad_norm", "lr", "data_s", "step_s", "samples", "domains"} <= set(rows[0])
    assert rows[-1]["domains"] == {"clean": 2} and rows[-1]["samples"] == 4
    ck = load_checkpoint(out / "checkpoint.pt")
    assert {"model", "optimizer", "scheduler", "ema", "rng"} <= set(ck) and ck["step"] == 2
    assert json.loads((out / "config.json").read_text())["model"] == TINY
    model = VideoDiffusion.load(out)
    assert isinstance(r["model"], VideoDiffusion) and model.config.image_size == 16
    assert not list(out.glob(".*partial"))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    whole = train(_cfg(tmp_path / "a"))
    first = train(_cfg(tmp_path / "b", stop_after=2))
    assert first["step"] == 2 and not (tmp_path / "b" / "video.safetensors").exists()
    rest = train(_cfg(tmp_path / "b"))
    assert first["losses"] + rest["losses"] == whole["losses"]
    a, b = whole["model"].state_dict(), rest["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    logged = [json.loads(ln)["loss"] for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert logged == whole["losses"]
    with pytest.raises(ValueError, match="different settings.*lr"):
        train(_cfg(tmp_path / "b", lr=0.5))
    with pytest.raises(ValueError, match="resume"):
        train(_cfg(tmp_path / "b", resume=False))


def test_sequence_dataset_and_clip_dataset_domains(tmp_path):
    clips = _toy_clips(3)
    r = train(_cfg(tmp_path / "seq", dataset=clips, steps=2, batch_size=3))
    assert sorted(r["last_clip_ids"]) == ["toy-0", "toy-1", "toy-2"]  # one shuffled epoch per step
    pytest.importorskip("facecore.video.data")
    r = train(_cfg(tmp_path / "mix", steps=1, batch_size=3, n=2,
                   domains={"real_proxy": 0.5, "synthetic": 0.5, "clean": 0.0}))
    assert set(r["metrics"]["domains"]) <= {"real_proxy", "synthetic"}


def test_params_motion_model_trains(tmp_path):
    r = train(_cfg(tmp_path / "p", dataset=_toy_clips(), steps=2, model={**TINY, "motion": "params"}))
    assert r["model"].config.motion == "params" and len(r["losses"]) == 2


def test_render_clip_sample_dict():
    s = render_clip("studio", 3, frames=4, size=16, seed=1)
    assert s["frames"].shape == (4, 16, 16, 3) and s["frames"].dtype == np.uint8
    assert s["reference"].shape == (16, 16, 3) and s["params"].shape == (4, 61)
    assert s["motion_maps"].shape == (4, 16, 16, 4) and s["motion_maps"].dtype == np.float32
    assert s["clip_id"] == "studio-1-3" and s["domain"] == "studio"
    again = render_clip("studio", 3, frames=4, size=16, seed=1)
    assert np.array_equal(s["frames"], again["frames"])


def test_bad_configs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown domains"):
        _cfg(tmp_path, domains={"mars": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        _cfg(tmp_path, domains={"clean": 0.0})
    with pytest.raises(ValueError, match="dataset must be a sequence"):
        _cfg(tmp_path, dataset="clips/")
    with pytest.raises(ValueError, match="unknown keys"):
        VideoTrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="motion must be one of"):
        _cfg(tmp_path, model={"motion": "audio"})
    with pytest.raises(ValueError, match="bf16"):
        train(_cfg(tmp_path / "amp", amp="bf16"))
    with pytest.raises(ValueError, match="ran out of samples"):
        train(_cfg(tmp_path / "short", dataset=iter(_toy_clips(3)), steps=3))
    bad = _toy_clips(1)
    bad[0]["frames"] = bad[0]["frames"][:, :8]
    with pytest.raises(ValueError, match="sample 0: frames"):
        train(_cfg(tmp_path / "bad", dataset=bad, steps=1, batch_size=1))
    (tmp_path / "cfg.txt").write_text("steps: 3")
    with pytest.raises(ValueError, match=".json, .yaml or .yml"):
        VideoTrainConfig.from_file(tmp_path / "cfg.txt")
