"""The synthetic-data study (``facecore video study --config study.yaml -o DIR``): what do synthetic clips
contribute to controllable face video diffusion, how much of them, and which ones?

Everything is a **sim-to-real proxy** (:mod:`facecore.video.data`): "real" training clips are the
real-proxy domain; held-out real-proxy clips of other identities are the test set (self-reenactment:
reference frame + driving motion -> generated clip, the truth clip exists).

Stages, in order, each resumable (a finished stage leaves a ``done`` marker; a restart skips it):

1. ``DIR/judges/``: the frozen judges, trained before any run and never again -- the FVD-proxy 3D-CNN on
   real-proxy clips of their own seed (:func:`facecore.video.metrics.train_fvd_encoder`), the identity
   encoder on rendered ICT identities (:func:`~facecore.video.metrics.train_identity_encoder`), and the
   motion judge: ``estimator`` (a checkpoint path) or, when absent, a small estimator trained on the
   judges' real-proxy clips (:func:`~facecore.video.metrics.train_motion_estimator`).
2. ``DIR/runs/<run>/seed<s>/``: one training + evaluation per run and seed, every run with the **same
   compute** (the same ``train`` settings: steps and batch size), whatever its data size:

   * ``real`` -- the real-proxy training clips only; ``synthetic`` -- the synthetic pool only;
   * ``mix_r<r>`` -- real + the first ``round(r * real_train)`` clips of the synthetic pool;
   * ``select_<method>_k<k>`` -- real + the ``k`` pool clips chosen by
     :func:`facecore.video.select.select` (``domain``, ``gradient``, ``coverage``, and ``random`` with the
     run's seed as the baseline); ``gradient`` uses that seed's ``real`` model and its diffusion loss;
   * ``gap_g<g>`` -- real + ``real_train`` clips of a synthetic pool rendered at ``gap = g``;
   * ``real_motion_<m>`` -- the ``real`` run with the other motion input ``m`` (``motions``: the
     model's documented ablation, the driving renders through the guider vs the 61 parameters as
     tokens); ``real`` itself uses ``train.model.motion`` (default ``maps``).

   Each writes ``metrics.json`` (L1, PSNR, SSIM, FVD-proxy, motion MAE, identity cosine, warp error on
   the test set), ``grid.mp4`` (test clips as rows of reference | driving render | generated | truth)
   and then ``done``.
3. ``DIR/report.md`` plus one table ``DIR/<question>.md`` and one plot ``DIR/<question>.png`` per
   question (``synthetic_helps``, ``how_much``, ``which_selector``, ``gap``, ``motion_input``): the mean
   over seeds with a
   95 % Student-t interval (none with one seed), under two reference rows that need no training
   (``truth``: the judges' floor; ``copy_reference``: the reference frame repeated).

The model comes from :func:`facecore.video.training.train` and :meth:`VideoDiffusion.sample`;
:func:`run_study` takes a ``trainer`` (and ``grad_fn_factory``) so tests can drive the whole pipeline
with a stand-in model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config_files import config_from_dict, read_config_file
from . import metrics as M
from .data import ClipDataset, render_stills
from .select import METHODS, select

METRICS = ("l1", "psnr", "ssim", "fvd_proxy", "motion_mae", "identity_cos", "warp_error")
HIGHER_IS_BETTER = {"l1": False, "psnr": True, "ssim": True, "fvd_proxy": False, "motion_mae": False,
                    "identity_cos": True, "warp_error": False}
QUESTIONS = {
    "synthetic_helps": "Does synthetic data help? (real only vs synthetic only vs real + synthetic)",
    "how_much": "How much synthetic data? (real + synthetic at ratios to the real clips)",
    "which_selector": "Which synthetic clips? (real + top-k by each selector vs real + random k)",
    "gap": "How does the domain gap matter? (real + synthetic rendered at each gap)",
    "motion_input": "Which motion input? (driving renders through the guider vs the 61 parameters as tokens; "
                    "real clips only)",
}


@dataclasses.dataclass
class StudyConfig:
    """The study's knobs (YAML/JSON keys of ``facecore video study --config``).

    Data: ``frames``, ``size``, ``fps``; clip counts ``real_train``, ``real_val`` (the selectors' real
    set), ``test``, ``synthetic_pool`` (the candidates), ``judge_clips`` (the judges' real-proxy clips);
    ``gap`` (the synthetic pool's gap), ``synthetic_scene``, ``synthetic_rig``. Runs: ``ratios``,
    ``k``, ``selectors`` (of domain / gradient / coverage; random is always added), ``gaps`` (the gap
    sweep; empty: none), ``motions`` (the motion-input ablation: each of ``maps`` / ``params`` other than
    ``train.model.motion`` adds a ``real_motion_<m>`` run; empty: none), ``seeds``. ``train``: keyword
    arguments of H11's ``VideoTrainConfig`` shared by every run (same compute). ``sample``: keyword
    arguments of ``VideoDiffusion.sample``. Judges: ``estimator`` (checkpoint path or None: train a small
    one on ``judge_clips`` plus ``judge_stills`` single real-proxy frames), ``judge_steps`` (optimizer
    steps of each judge). ``grid_clips``: test clips in each MP4."""

    frames: int = 8
    size: int = 32
    fps: float = 15.0
    real_train: int = 16
    real_val: int = 8
    test: int = 8
    synthetic_pool: int = 48
    judge_clips: int = 32
    gap: float = 1.0
    synthetic_scene: str = "studio"
    synthetic_rig: str = "stylized"
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    k: int = 8
    selectors: tuple[str, ...] = ("domain", "gradient", "coverage")
    gaps: tuple[float, ...] = (0.25, 0.5, 1.0)
    motions: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    train: dict = dataclasses.field(default_factory=lambda: {"steps": 300, "batch_size": 4})
    sample: dict = dataclasses.field(default_factory=lambda: {"steps": 10})
    estimator: str | None = None
    judge_steps: int = 200
    judge_stills: int = 512
    grid_clips: int = 4
    data_seed: int = 0

    def __post_init__(self):
        for name in ("frames", "size", "real_train", "real_val", "test", "synthetic_pool", "judge_clips",
                     "k", "judge_steps", "judge_stills", "grid_clips", "data_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"StudyConfig.{name} must be a non-negative int, got {v!r}")
        for name in ("real_train", "test", "frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"StudyConfig.{name} must be >= 1")
        if self.test < 2 or self.judge_clips < 2:
            raise ValueError("StudyConfig.test and judge_clips must be >= 2 (the FVD-proxy fits covariances)")
        self.ratios = tuple(float(r) for r in self.ratios)
        self.gaps = tuple(float(g) for g in self.gaps)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.selectors = tuple(self.selectors)
        self.motions = tuple(self.motions)
        if any(r <= 0 for r in self.ratios):
            raise ValueError(f"StudyConfig.ratios must be positive, got {self.ratios}")
        if any(not 0 <= g <= 1 for g in self.gaps + (self.gap,)):
            raise ValueError("StudyConfig.gap and gaps must lie in [0, 1]")
        bad = [s for s in self.selectors if s not in METHODS or s == "random"]
        if bad:
            raise ValueError(f"StudyConfig.selectors: unknown {bad}; expected some of domain, gradient, "
                             "coverage")
        if not self.seeds:
            raise ValueError("StudyConfig.seeds must hold at least one seed")
        if self.k > self.synthetic_pool:
            raise ValueError(f"StudyConfig.k={self.k} exceeds synthetic_pool={self.synthetic_pool}")
        if not isinstance(self.train, dict) or not isinstance(self.sample, dict):
            raise ValueError("StudyConfig.train and sample must be mappings of keyword arguments")
        from .model import MOTIONS  # the model's motion inputs

        if any(m not in MOTIONS for m in self.motions):
            raise ValueError(f"StudyConfig.motions must hold some of {MOTIONS}, got {list(self.motions)}")
        if self.base_motion not in MOTIONS:
            raise ValueError(f"StudyConfig.train.model.motion must be one of {MOTIONS}, "
                             f"got {self.base_motion!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "study config") -> StudyConfig:
        return config_from_dict(cls, d, source)

    @classmethod
    def load(cls, path: str | Path) -> StudyConfig:
        """A YAML or JSON file of fields."""
        return cls.from_dict(read_config_file(path, "study config", "StudyConfig"), source=str(path))

    @property
    def base_motion(self) -> str:
        """The motion input of every run but ``real_motion_<m>``: ``train.model.motion``."""
        return str(dict(self.train.get("model") or {}).get("motion", "maps"))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# The model side (H11's facecore.video.training / VideoDiffusion), behind two small callables
# ---------------------------------------------------------------------------------------------
def default_trainer(dataset: list[dict], seed: int, run_dir: Path, train: Mapping[str, Any]):
    """Train with :func:`facecore.video.training.train` and return a model with ``sample(reference,
    motion, **kw)``: ``VideoTrainConfig(**train, dataset=dataset, seed=seed, out=run_dir / "train")``."""
    from .model import VideoDiffusion
    from .training import VideoTrainConfig
    from .training import train as train_video

    cfg = VideoTrainConfig(**{**dict(train), "dataset": dataset, "seed": seed, "out": str(run_dir / "train")})
    result = train_video(cfg)
    model = result.get("model") if isinstance(result, Mapping) else None
    if model is None:
        ckpt = result.get("checkpoint") if isinstance(result, Mapping) else None
        model = VideoDiffusion.load(ckpt if ckpt else run_dir / "train")
    return model


def default_grad_fn_factory(model) -> Callable:
    """``grad_fn(sample, t)`` for :func:`select`: the gradient of ``model``'s diffusion loss at timestep
    ``t`` (fixed noise seeded by ``t``, both conditions kept) with respect to its output layer's weights
    (last-layer gradients, the usual cheap stand-in for the full gradient)."""
    params = [p for n, p in model.named_parameters() if n.startswith("out.")] or list(model.parameters())[-2:]

    def grad_fn(sample: dict, t) -> torch.Tensor:
        batch = model.batch([sample])
        x0 = batch["x0"]
        g = torch.Generator().manual_seed(int(t))
        noise = torch.randn(x0.shape, generator=g).to(x0.device)
        tt = torch.full((1,), int(t), dtype=torch.long, device=x0.device)
        xt = model.schedule.add_noise(x0, noise, tt)
        one = torch.ones(1, device=x0.device)
        pred = model(xt, tt, batch["reference"], batch["motion"], one, one)
        loss = torch.nn.functional.mse_loss(pred.float(), model.schedule.target(x0, noise, tt).float())
        grads = torch.autograd.grad(loss, params)
        return torch.cat([gr.reshape(-1) for gr in grads]).detach().cpu()

    return grad_fn


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
def plan(cfg: StudyConfig) -> list[dict]:
    """Every (run, seed) of the study in order: ``{"name", "question": [...], "seed", "kind", ...}``."""
    runs: list[dict] = []
    for seed in cfg.seeds:
        runs.append({"name": "real", "kind": "real", "seed": seed, "questions": list(QUESTIONS)})
        runs.append({"name": "synthetic", "kind": "synthetic", "seed": seed,
                     "questions": ["synthetic_helps"]})
        for m in dict.fromkeys(cfg.motions):
            if m != cfg.base_motion:
                runs.append({"name": f"real_motion_{m}", "kind": "real", "motion": m, "seed": seed,
                             "questions": ["motion_input"]})
        for r in cfg.ratios:
            n = min(cfg.synthetic_pool, int(round(r * cfg.real_train)))
            q = ["how_much"] + (["synthetic_helps"] if r == 1.0 else [])
            runs.append({"name": f"mix_r{r:g}", "kind": "mix", "n": n, "seed": seed, "questions": q,
                         "ratio": r})
        for m in (*cfg.selectors, "random"):
            runs.append({"name": f"select_{m}_k{cfg.k}", "kind": "select", "method": m, "seed": seed,
                         "questions": ["which_selector"]})
        for g in cfg.gaps:
            runs.append({"name": f"gap_g{g:g}", "kind": "gap", "gap": g, "seed": seed, "questions": ["gap"]})
    return runs


class _Data:
    """The study's clip sets, rendered once and cached under ``DIR/data``."""

    def __init__(self, cfg: StudyConfig, out: Path):
        self.cfg, self.cache = cfg, out / "data"
        common = {"frames": cfg.frames, "size": cfg.size, "fps": cfg.fps, "cache_dir": self.cache}
        s = cfg.data_seed
        # distinct seeds per split: distinct identities, appearances and motions
        self.real_train = ClipDataset("real_proxy", cfg.real_train, seed=4 * s, **common)
        self.real_val = ClipDataset("real_proxy", cfg.real_val, seed=4 * s + 1, **common)
        self.test = ClipDataset("real_proxy", cfg.test, seed=4 * s + 2, **common)
        self.judge = ClipDataset("real_proxy", cfg.judge_clips, seed=4 * s + 3, **common)
        self._syn = {"frames": cfg.frames, "size": cfg.size, "fps": cfg.fps, "cache_dir": self.cache,
                     "synthetic_scene": cfg.synthetic_scene, "synthetic_rig": cfg.synthetic_rig, "seed": s}
        self.pool = self.synthetic(cfg.gap, cfg.synthetic_pool)

    def synthetic(self, gap: float, n: int) -> ClipDataset:
        return ClipDataset("synthetic", n, gap=gap, **self._syn)


def _motion_render(maps: np.ndarray) -> np.ndarray:
    """Driving maps ``[T, H, W, 4]`` as uint8 pictures: normals mapped to colours, background black."""
    n = maps[..., :3]
    face = np.abs(n).sum(-1, keepdims=True) > 0
    return np.where(face, np.clip((n + 1) * 127.5, 0, 255), 0).astype(np.uint8)


def write_grid(path: Path, test: Sequence[dict], generated: np.ndarray, fps: float, scale: int = 2) -> None:
    """MP4: one row per test clip, reference | driving render | generated | truth, ``scale`` x nearest."""
    from ..io.video import write_video

    rows = []
    for s, g in zip(test, generated, strict=True):
        T = s["frames"].shape[0]
        ref = np.repeat(s["reference"][None], T, 0)
        rows.append(np.concatenate([ref, _motion_render(s["motion_maps"]), g, s["frames"]], 2))
    video = np.concatenate(rows, 1)
    video = video.repeat(scale, 1).repeat(scale, 2)
    write_video(path, list(video), fps)


def evaluate_clips(generated: np.ndarray, test: Sequence[dict], judges: dict) -> dict:
    """The study's metrics of generated clips ``[N, T, H, W, 3]`` against the test sample dicts."""
    truth = np.stack([s["frames"] for s in test])
    out = {
        "l1": M.l1(generated, truth),
        "psnr": M.psnr(generated, truth),
        "ssim": M.ssim(generated, truth),
        "fvd_proxy": M.fvd_proxy(truth, generated, judges["fvd"]),
        "motion_mae": float(np.mean([M.motion_error(g, s["params"], judges["estimator"])
                                     for g, s in zip(generated, test, strict=True)])),
        "identity_cos": float(np.mean([M.identity_similarity(g, s["reference"], judges["identity"])
                                       for g, s in zip(generated, test, strict=True)])),
        "warp_error": float(np.mean([M.warp_error(g, s["frames"])
                                     for g, s in zip(generated, test, strict=True)])),
    }
    return out


def _baselines(test: Sequence[dict], judges: dict, out: Path) -> list[dict]:
    """Two reference rows of every table, no training: ``truth`` (the test clips themselves: the judges'
    floor, e.g. the motion judge's own error on real-proxy frames) and ``copy_reference`` (the reference
    frame repeated: what appearance alone scores). Stored in ``DIR/baselines.json``."""
    path = out / "baselines.json"
    if path.is_file():
        return json.loads(path.read_text())
    truth = np.stack([s["frames"] for s in test])
    copy = np.stack([np.repeat(s["reference"][None], s["frames"].shape[0], 0) for s in test])
    recs = [{"name": name, "seed": 0, "questions": list(QUESTIONS), "train_clips": 0, "baseline": True,
             "metrics": evaluate_clips(clips, test, judges)}
            for name, clips in (("truth", truth), ("copy_reference", copy))]
    path.write_text(json.dumps(recs, indent=1))
    return recs


def _train_judges(cfg: StudyConfig, data: _Data, out: Path, log: Callable) -> dict:
    d = out / "judges"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "done").is_file():
        t0 = time.time()
        judge_clips = list(data.judge)
        M.train_fvd_encoder(judge_clips, steps=cfg.judge_steps, seed=cfg.data_seed, out=d / "fvd.safetensors")
        M.train_identity_encoder(max(64, 8 * cfg.judge_clips), cfg.size, steps=cfg.judge_steps,
                                 seed=cfg.data_seed, out=d / "identity.safetensors")
        if cfg.estimator is None:
            # the judges' clips plus single real-proxy frames of many more identities and expressions
            extra = []
            if cfg.judge_stills:
                stills = render_stills("real_proxy", cfg.judge_stills, cfg.size, cfg.data_seed)
                extra = [{"frames": stills["frames"], "params": stills["params"]}]
            M.train_motion_estimator(judge_clips + extra, steps=cfg.judge_steps, seed=cfg.data_seed,
                                     out=d / "estimator.safetensors")
        (d / "done").write_text(json.dumps({"seconds": round(time.time() - t0, 1)}))
        log(f"judges trained in {time.time() - t0:.1f} s -> {d}")
    from ..estimator import Estimator

    est = cfg.estimator if cfg.estimator is not None else d / "estimator.safetensors"
    return {"fvd": M.FVDEncoder.load(d / "fvd.safetensors"),
            "identity": M.IdentityEncoder.load(d / "identity.safetensors"),
            "estimator": Estimator.load(est)}


def _run_dir(out: Path, run: dict) -> Path:
    return out / "runs" / run["name"] / f"seed{run['seed']}"


def _training_set(run: dict, cfg: StudyConfig, data: _Data, out: Path, trainer, grad_fn_factory,
                  real_models: dict, train_kwargs: dict) -> tuple[list, dict]:
    real = list(data.real_train)
    info: dict[str, Any] = {}
    if run["kind"] == "real":
        return real, info
    if run["kind"] == "synthetic":
        return list(data.pool), info
    if run["kind"] == "mix":
        return real + [data.pool[i] for i in range(run["n"])], {"synthetic": run["n"]}
    if run["kind"] == "gap":
        syn = data.synthetic(run["gap"], min(cfg.real_train, cfg.synthetic_pool))
        return real + list(syn), {"synthetic": len(syn)}
    pool = list(data.pool)
    grad_fn = None
    if run["method"] == "gradient":
        model = real_models.get(run["seed"])
        if model is None:  # resumed after the real run: train it again (same seed, same model)
            real_dir = _run_dir(out, {"name": "real", "seed": run["seed"]})
            model = trainer(real, run["seed"], real_dir / "gradient_model", train_kwargs)
        grad_fn = grad_fn_factory(model)
    picks = select(pool, list(data.real_val), cfg.k, run["method"], seed=run["seed"], grad_fn=grad_fn)
    return real + [pool[i] for i in picks], {"selected": [pool[i]["clip_id"] for i in picks]}


def run_study(config: StudyConfig | Mapping | str | Path, out: str | Path, *,
              trainer: Callable | None = None, grad_fn_factory: Callable | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the whole study into ``out``; returns ``{"runs": [...], "report": path}``.

    ``trainer(dataset, seed, run_dir, train_kwargs) -> model`` with ``model.sample(reference [B, H, W, 3],
    motion [B, T, H, W, C], **cfg.sample) -> uint8 [B, T, H, W, 3]`` (default :func:`default_trainer`);
    ``grad_fn_factory(model) -> grad_fn`` for the gradient selector (default
    :func:`default_grad_fn_factory`). A ``real_motion_params`` run's ``train_kwargs["model"]["motion"]`` is
    ``"params"`` and its model samples from the test clips' parameters ``[B, T, 61]`` instead of the maps."""
    if isinstance(config, (str, Path)):
        cfg = StudyConfig.load(config)
    elif isinstance(config, StudyConfig):
        cfg = config
    else:
        cfg = StudyConfig.from_dict(config)
    trainer = trainer or default_trainer
    grad_fn_factory = grad_fn_factory or default_grad_fn_factory
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    if saved.is_file() and json.loads(saved.read_text()) != cfg.to_dict():
        raise ValueError(f"{out} holds a study with another config ({saved}); use a new -o folder to "
                         "change it")
    saved.write_text(json.dumps(cfg.to_dict(), indent=1))
    data = _Data(cfg, out)
    # every run trains the same model on the same budget; the model is sized to the clips
    train_kwargs = {**cfg.train, "model": {"image_size": cfg.size, "frames": cfg.frames,
                                           **dict(cfg.train.get("model") or {})}}
    judges = _train_judges(cfg, data, out, log)
    test = list(data.test)
    refs = np.stack([s["reference"] for s in test])
    motion_inputs = {"maps": np.stack([s["motion_maps"] for s in test]),
                     "params": np.stack([s["params"] for s in test])}
    baselines = _baselines(test, judges, out)
    done: list[dict] = []
    real_models: dict[int, Any] = {}
    runs = plan(cfg)
    for i, run in enumerate(runs):
        d = _run_dir(out, run)
        tag = f"[{i + 1}/{len(runs)}] {run['name']} seed {run['seed']}"
        if (d / "done").is_file():
            done.append(json.loads((d / "metrics.json").read_text()))
            log(f"{tag}: done before, skipped")
            continue
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        train_set, info = _training_set(run, cfg, data, out, trainer, grad_fn_factory, real_models,
                                        train_kwargs)
        motion = run.get("motion", cfg.base_motion)
        run_kwargs = (train_kwargs if "motion" not in run
                      else {**train_kwargs, "model": {**train_kwargs["model"], "motion": motion}})
        model = trainer(train_set, run["seed"], d, run_kwargs)
        if run["kind"] == "real" and "motion" not in run:  # the gradient selector's model
            real_models[run["seed"]] = model
        generated = np.asarray(model.sample(refs, motion_inputs[motion],
                                            **{"seed": run["seed"], **cfg.sample}))
        if generated.shape != np.stack([s["frames"] for s in test]).shape or generated.dtype != np.uint8:
            raise ValueError(f"{tag}: model.sample returned {generated.dtype} {list(generated.shape)}, "
                             f"expected uint8 [N, T, H, W, 3] like the test clips")
        record = {"name": run["name"], "seed": run["seed"], "questions": run["questions"],
                  "train_clips": len(train_set), **info, "metrics": evaluate_clips(generated, test, judges),
                  "seconds": round(time.time() - t0, 2)}
        if "ratio" in run:
            record["ratio"] = run["ratio"]
        if "gap" in run:
            record["gap"] = run["gap"]
        if "motion" in run:
            record["motion"] = run["motion"]
        write_grid(d / "grid.mp4", test[: cfg.grid_clips], generated[: cfg.grid_clips], cfg.fps)
        (d / "metrics.json").write_text(json.dumps(record, indent=1))
        (d / "done").write_text("")  # last: a run killed before this line is redone on restart
        done.append(record)
        log(f"{tag}: {len(train_set)} clips, {record['seconds']} s, "
            + ", ".join(f"{k} {v:.3g}" for k, v in record["metrics"].items()))
    report = write_report(baselines + done, out)
    return {"runs": done, "baselines": baselines, "report": report}


# ---------------------------------------------------------------------------------------------
# Report: one table and one plot per question
# ---------------------------------------------------------------------------------------------
def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """``(mean, half-width)`` of a Student-t interval over seeds; half-width NaN with one value."""
    allv = np.asarray(values, np.float64)
    v = allv[np.isfinite(allv)]
    if len(v) == 0:
        return (math.inf if len(allv) and bool(np.all(allv == math.inf)) else math.nan), math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    from scipy.stats import t

    return float(v.mean()), float(t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def aggregate(records: Sequence[dict]) -> dict[str, dict]:
    """run name -> ``{"seeds": n, "train_clips": ..., metric: (mean, half-width), ...}`` (plan order)."""
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["name"], []).append(r)
    out = {}
    for name, rs in by.items():
        row: dict[str, Any] = {"seeds": len(rs), "train_clips": rs[0]["train_clips"],
                               "questions": rs[0]["questions"], "baseline": bool(rs[0].get("baseline"))}
        for m in METRICS:
            row[m] = interval([r["metrics"][m] for r in rs])
        out[name] = row
    return out


def _fmt(mean: float, hw: float) -> str:
    if not math.isfinite(mean):
        return "inf" if mean == math.inf else "n/a"
    digits = 3 if abs(mean) < 10 else 2
    return f"{mean:.{digits}f}" + ("" if not math.isfinite(hw) else f" ± {hw:.{digits}f}")


def format_table(rows: Mapping[str, dict]) -> str:
    """A markdown table: one row per run, mean ± 95 % half-width per metric."""
    arrows = {m: "↑" if HIGHER_IS_BETTER[m] else "↓" for m in METRICS}
    head = "| run | clips | seeds | " + " | ".join(f"{m} {arrows[m]}" for m in METRICS) + " |"
    sep = "|" + "---|" * (3 + len(METRICS))
    lines = [head, sep]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['train_clips']} | {r['seeds']} | "
                     + " | ".join(_fmt(*r[m]) for m in METRICS) + " |")
    return "\n".join(lines)


def plot_png(path: Path, rows: Mapping[str, dict], title: str) -> None:
    """One bar chart per metric (mean over seeds, 95 % interval whiskers), runs numbered as in the legend."""
    from PIL import Image, ImageDraw

    names = list(rows)
    pw, ph, pad = max(180, 30 + 26 * len(names)), 170, 24
    cols = 4
    nrow = math.ceil(len(METRICS) / cols)
    legend_h = 14 * (len(names) + 1)
    img = Image.new("RGB", (cols * pw, 22 + nrow * ph + legend_h), "white")
    draw = ImageDraw.Draw(img)
    draw.text((6, 4), title, fill="black")
    palette = [(66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188), (0, 172, 193),
               (255, 112, 67), (158, 157, 36), (92, 107, 192), (240, 98, 146)]
    for k, m in enumerate(METRICS):
        x0, y0 = (k % cols) * pw, 22 + (k // cols) * ph
        means = np.array([rows[n][m][0] for n in names], np.float64)
        hws = np.nan_to_num(np.array([rows[n][m][1] for n in names], np.float64), nan=0.0)
        finite = np.isfinite(means)
        lo = min(0.0, float(np.min((means - hws)[finite]))) if finite.any() else 0.0
        hi = float(np.max((means + hws)[finite])) if finite.any() else 1.0
        hi = hi if hi > lo else lo + 1.0
        top, bottom = y0 + pad, y0 + ph - pad

        def sy(v, lo=lo, hi=hi, top=top, bottom=bottom):
            return bottom - (v - lo) / (hi - lo) * (bottom - top)

        better = "higher" if HIGHER_IS_BETTER[m] else "lower"
        draw.text((x0 + 6, y0 + 4), f"{m} ({better} is better)", fill="black")
        zero = sy(0.0)  # bars start at 0 (lo <= 0 always)
        draw.line([(x0 + 20, zero), (x0 + pw - 6, zero)], fill="grey")
        draw.text((x0 + 2, top - 6), f"{hi:.3g}", fill="grey")
        draw.text((x0 + 2, bottom - 6), f"{lo:.3g}", fill="grey")
        for j in range(len(names)):
            bx = x0 + 26 + 26 * j
            if not finite[j]:
                draw.text((bx, bottom - 14), "inf", fill="black")
                continue
            colour = palette[j % len(palette)]
            draw.rectangle([bx, min(sy(means[j]), zero), bx + 16, max(sy(means[j]), zero)], fill=colour)
            if hws[j] > 0:
                c = bx + 8
                draw.line([(c, sy(means[j] - hws[j])), (c, sy(means[j] + hws[j]))], fill="black")
                for v in (means[j] - hws[j], means[j] + hws[j]):
                    draw.line([(c - 4, sy(v)), (c + 4, sy(v))], fill="black")
            draw.text((bx + 4, bottom + 3), str(j + 1), fill="black")
    ly = 22 + nrow * ph
    draw.text((6, ly), "runs (bars: mean over seeds, whiskers: 95 % t-interval):", fill="black")
    for j, n in enumerate(names):
        draw.rectangle([8, ly + 14 * (j + 1) + 2, 16, ly + 14 * (j + 1) + 10], fill=palette[j % len(palette)])
        label = f"{j + 1}: {n} ({rows[n]['train_clips']} clips, {rows[n]['seeds']} seeds)"
        draw.text((22, ly + 14 * (j + 1)), label, fill="black")
    tmp = path.with_name(path.stem + ".tmp.png")
    img.save(tmp)
    tmp.replace(path)


def write_report(records: Sequence[dict], out: Path) -> Path:
    """``<question>.md`` + ``<question>.png`` per question with runs, and ``report.md`` holding them all."""
    rows = aggregate(records)
    parts = ["# The synthetic-data study (a sim-to-real proxy)", "",
             "Test set: held-out real-proxy clips (self-reenactment). Mean over seeds ± 95 % Student-t "
             "half-width. FVD-proxy is the Fréchet distance in a small 3D-CNN trained on real-proxy clips "
             "only; it is not comparable with I3D FVD numbers. Reference rows without training: `truth` "
             "(the test clips themselves: each judge's floor) and `copy_reference` (the reference frame "
             "repeated: appearance without motion).", ""]
    for q, title in QUESTIONS.items():
        sub = {n: r for n, r in rows.items() if q in r["questions"]}
        if sum(not r["baseline"] for r in sub.values()) < 2:
            continue
        table = format_table(sub)
        (out / f"{q}.md").write_text(f"# {title}\n\n{table}\n")
        plot_png(out / f"{q}.png", sub, title)
        parts += [f"## {title}", "", table, "", f"![{q}]({q}.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path
