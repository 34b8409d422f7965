"""The study end to end at toy sizes: with a stand-in model (defined here) and resume after a kill, and once
with the real video model (facecore.video.training.train + VideoDiffusion.sample)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facecore.video.study import StudyConfig, aggregate, format_table, interval, plan, run_study

TINY = {"frames": 2, "size": 16, "real_train": 2, "real_val": 2, "test": 2, "synthetic_pool": 3,
        "judge_clips": 2, "ratios": [1.0], "k": 1, "selectors": ["domain", "gradient", "coverage"],
        "gaps": [0.5], "seeds": [0],
        "judge_steps": 1, "judge_stills": 4, "grid_clips": 1, "train": {"steps": 1}, "sample": {"steps": 1}}


class StandIn:
    """A 'model' whose output is the reference, tinted towards its training clips' mean colour."""

    def __init__(self, mean_colour: np.ndarray):
        self.mean_colour = mean_colour

    def sample(self, reference, motion, seed=0, steps=1):
        ref = np.asarray(reference, np.float64)  # [B, H, W, 3]
        T = np.asarray(motion).shape[1]
        out = 0.7 * ref + 0.3 * self.mean_colour
        return np.repeat(out[:, None], T, 1).round().clip(0, 255).astype(np.uint8)


class Killed(RuntimeError):
    pass


def make_trainer(calls: list, fail_after: int | None = None):
    def trainer(dataset, seed, run_dir, train):
        if fail_after is not None and len(calls) >= fail_after:
            raise Killed("simulated kill")
        calls.append(str(run_dir))
        assert train["steps"] == 1 and train["model"]["image_size"] == 16  # the same budget for every run
        return StandIn(np.mean([s["frames"].mean((0, 1, 2)) for s in dataset], 0))

    return trainer


def grad_fn_factory(model):
    return lambda sample, t: torch.as_tensor(sample["frames"].mean((0, 1, 2)) - model.mean_colour + t)


def test_plan_covers_every_question():
    runs = plan(StudyConfig.from_dict({**TINY, "seeds": [0, 1]}))
    names = [r["name"] for r in runs if r["seed"] == 0]
    assert names == ["real", "synthetic", "mix_r1", "select_domain_k1", "select_gradient_k1",
                     "select_coverage_k1", "select_random_k1", "gap_g0.5"]
    assert len(runs) == 16


def test_plan_adds_the_motion_ablation():
    runs = plan(StudyConfig.from_dict({**TINY, "motions": ["maps", "params"]}))
    ablation = [r for r in runs if "motion" in r]
    assert [(r["name"], r["kind"], r["motion"]) for r in ablation] == [
        ("real_motion_params", "real", "params")]
    params_first = {**TINY, "motions": ["maps"], "train": {"steps": 1, "model": {"motion": "params"}}}
    names = [r["name"] for r in plan(StudyConfig.from_dict(params_first)) if "motion" in r]
    assert names == ["real_motion_maps"]
    assert not any("motion" in r for r in plan(StudyConfig.from_dict(TINY)))


def test_motion_ablation_trains_and_samples_with_the_other_input(tmp_path):
    seen: dict[str, tuple] = {}

    class Recording(StandIn):
        def __init__(self, mean_colour, name):
            super().__init__(mean_colour)
            self.name = name

        def sample(self, reference, motion, seed=0, steps=1):
            seen[self.name] = (self.motion, np.asarray(motion).shape)
            return super().sample(reference, motion, seed, steps)

    def trainer(dataset, seed, run_dir, train):
        model = Recording(np.mean([s["frames"].mean((0, 1, 2)) for s in dataset], 0), run_dir.parent.name)
        model.motion = train["model"].get("motion", "maps")
        return model

    cfg = {**TINY, "selectors": [], "gaps": [], "ratios": [], "motions": ["params"]}
    result = run_study(cfg, tmp_path, trainer=trainer, grad_fn_factory=grad_fn_factory, log=lambda s: None)
    assert [r["name"] for r in result["runs"]] == ["real", "synthetic", "real_motion_params",
                                                   "select_random_k1"]
    T = TINY["frames"]
    assert seen["real"] == ("maps", (2, T, 16, 16, 4))
    assert seen["real_motion_params"] == ("params", (2, T, 61))
    rec = json.loads((tmp_path / "runs" / "real_motion_params" / "seed0" / "metrics.json").read_text())
    assert rec["motion"] == "params" and rec["train_clips"] == TINY["real_train"]
    table = (tmp_path / "motion_input.md").read_text()
    assert "| real |" in table and "| real_motion_params |" in table and "synthetic" not in table


def test_study_end_to_end_and_resume(tmp_path):
    calls: list[str] = []
    with pytest.raises(Killed):
        run_study(TINY, tmp_path, trainer=make_trainer(calls, fail_after=1),
                  grad_fn_factory=grad_fn_factory, log=lambda s: None)
    assert (tmp_path / "judges" / "done").is_file()
    assert (tmp_path / "runs" / "real" / "seed0" / "done").is_file()
    assert not (tmp_path / "runs" / "synthetic" / "seed0" / "done").exists()
    judge_mtime = (tmp_path / "judges" / "fvd.safetensors").stat().st_mtime_ns

    calls2: list[str] = []
    result = run_study(TINY, tmp_path, trainer=make_trainer(calls2), grad_fn_factory=grad_fn_factory,
                       log=lambda s: None)
    trained = {c.split("runs/")[1] for c in calls2}
    # everything but the finished first run; the gradient selector retrains seed 0's real model for its
    # gradients (it is not in memory after the restart) into its own folder
    assert "real/seed0" not in trained
    assert trained == {"synthetic/seed0", "mix_r1/seed0", "select_domain_k1/seed0",
                       "select_gradient_k1/seed0", "select_coverage_k1/seed0", "select_random_k1/seed0",
                       "gap_g0.5/seed0", "real/seed0/gradient_model"}
    assert (tmp_path / "judges" / "fvd.safetensors").stat().st_mtime_ns == judge_mtime  # frozen
    assert len(result["runs"]) == 8
    rec = json.loads((tmp_path / "runs" / "select_coverage_k1" / "seed0" / "metrics.json").read_text())
    assert rec["train_clips"] == 3 and len(rec["selected"]) == 1
    assert set(rec["metrics"]) == {"l1", "psnr", "ssim", "fvd_proxy", "motion_mae", "identity_cos",
                                   "warp_error"}
    assert rec["metrics"]["warp_error"] >= 0 and np.isfinite(rec["metrics"]["l1"])
    for q in ("synthetic_helps", "how_much", "which_selector", "gap"):
        assert (tmp_path / f"{q}.md").read_text().startswith("# ")
        assert (tmp_path / f"{q}.png").stat().st_size > 0
    assert "select_random_k1" in (tmp_path / "which_selector.md").read_text()
    from facecore.io.video import video_info

    info = video_info(tmp_path / "runs" / "real" / "seed0" / "grid.mp4")
    assert info["frames"] == 2 and info["width"] == 4 * 16 * 2  # reference | driving | generated | truth

    # a third start does nothing but rewrite the report
    calls3: list[str] = []
    run_study(TINY, tmp_path, trainer=make_trainer(calls3), grad_fn_factory=grad_fn_factory,
              log=lambda s: None)
    assert calls3 == []
    with pytest.raises(ValueError, match="another config"):
        run_study({**TINY, "k": 2}, tmp_path, trainer=make_trainer([]), log=lambda s: None)


def test_intervals_and_table():
    mean, hw = interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hw == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)  # t(0.975, 2)
    assert np.isnan(interval([5.0])[1])
    recs = [{"name": "real", "seed": s, "train_clips": 4, "questions": ["q"],
             "metrics": dict.fromkeys(("l1", "psnr", "ssim", "fvd_proxy", "motion_mae", "identity_cos",
                                       "warp_error"), float(s))} for s in (1, 2, 3)]
    table = format_table(aggregate(recs))
    assert "| real | 4 | 3 | 2.000 ± 2.484 |" in table


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        StudyConfig.from_dict({"ratio": 1})
    with pytest.raises(ValueError, match="selectors"):
        StudyConfig.from_dict({"selectors": ["loss"]})
    with pytest.raises(ValueError, match="k="):
        StudyConfig.from_dict({"k": 100, "synthetic_pool": 4})
    with pytest.raises(ValueError, match="motions must hold some of"):
        StudyConfig.from_dict({"motions": ["tokens"]})
    with pytest.raises(ValueError, match="train.model.motion must be one of"):
        StudyConfig.from_dict({"train": {"model": {"motion": "flow"}}})
    (tmp_path / "c.yaml").write_text("seeds: [0]\nk: 2\n")
    assert StudyConfig.load(tmp_path / "c.yaml").k == 2


def test_study_with_the_real_video_model(tmp_path):
    pytest.importorskip("facecore.video.training")
    cfg = {**TINY, "selectors": ["gradient"], "gaps": [], "ratios": [1.0], "motions": ["params"],
           "train": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 100, "device": "cpu",
                     "model": {"dim": 16, "depth": 1, "heads": 2, "guider_channels": 8}},
           "sample": {"steps": 2}}
    result = run_study(cfg, tmp_path, log=lambda s: None)
    names = [r["name"] for r in result["runs"]]
    assert names == ["real", "synthetic", "real_motion_params", "mix_r1", "select_gradient_k1",
                     "select_random_k1"]
    assert all(np.isfinite(r["metrics"]["ssim"]) for r in result["runs"])
    assert (tmp_path / "runs" / "real" / "seed0" / "train" / "video.safetensors").is_file()


def test_cli_study_command(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    import facecore.video.study as study_mod
    from facecore.video.study_cli import register

    calls: list[str] = []
    real_run = study_mod.run_study
    monkeypatch.setattr(study_mod, "run_study", lambda cfg, out, log: real_run(
        cfg, out, trainer=make_trainer(calls), grad_fn_factory=grad_fn_factory, log=log))
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps typer from collapsing the app into `study`
    def _noop() -> None:
        pass

    (tmp_path / "study.json").write_text(json.dumps({**TINY, "gaps": [], "selectors": ["coverage"]}))
    runner = CliRunner()
    res = runner.invoke(app, ["study", "--config", str(tmp_path / "study.json"), "-o", str(tmp_path / "out"),
                              "--set", "k=2"])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and (tmp_path / "out" / "which_selector.md").is_file()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["k"] == 2
    assert len(calls) == 5  # real, synthetic, mix_r1, select_coverage_k2, select_random_k2
    bad = runner.invoke(app, ["study", "--set", "nonsense=1", "-o", str(tmp_path / "o2")])
    assert bad.exit_code == 1 and "unknown keys" in bad.output
