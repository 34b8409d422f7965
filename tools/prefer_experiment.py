"""Reproduce the tables of issue 14 ("What it must show") for preference rounds with SIMULATED annotators.

    python tools/prefer_experiment.py --init /work/runs/est-pseudo/estimator.safetensors -o runs/prefer-exp
    python tools/prefer_experiment.py --init CKPT -o runs/prefer-small --small     # a few minutes on a CPU
    python tools/prefer_experiment.py --init CKPT -o runs/probe --runs no-reward --set rare_share=0.25

Runs (each a `facecore.prefer.run_rounds` folder under OUT, per seed ``sS``; every run uses the
:class:`facecore.prefer.RoundConfig` defaults except what is named here):

* ``reward-sS/``    -- ``--rounds`` rounds, region-wise judgments, reward model in the loop;
* ``no-reward-sS/`` -- the same without the reward model;
* ``budget-<P>-sS/`` -- one round with P judged pairs (2 P judgments), for MAE against the number of
  judgments (the reward run's round 1 is the point at ``--pairs``);
* ``face-sS/``      -- one round of whole-face judgments with twice the pairs of ``reward/`` round 1 (the
  same number of judgments as region-wise at one round).

Every round's policy is re-evaluated on the held-out faces to give, per estimator region (brows, eyes,
cheeks_nose, mouth, jaw, tongue, pose), the MAE difference to round 0 with a paired bootstrap 95 %
interval over the held-out images (a change is called significant when the interval excludes 0).

Writes ``OUT/results.md`` and ``OUT/results.json``. Every judgment is by simulated annotators; nothing
here is a human result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from facecore.estimator import Estimator
from facecore.estimator.metrics import REGIONS as EST_REGIONS
from facecore.prefer import RoundConfig, format_rounds, run_rounds
from facecore.prefer.data import make_images, policy_outputs

SMALL = dict(images=64, eval_images=64, pairs=200, relabel_pairs=200, steps=20, reward_steps=150)
FULL = dict(images=256, eval_images=128, pairs=1000, relabel_pairs=1000, steps=100, reward_steps=300)
MAE_REGIONS = ("brows", "eyes", "cheeks_nose", "mouth", "jaw", "tongue", "pose")


def _run(base: dict, out: Path, **kw) -> dict:
    cfg = RoundConfig(**{**base, **kw, "out": str(out)})
    t = time.perf_counter()
    res = run_rounds(cfg, log=print)
    res["seconds"] = time.perf_counter() - t
    res["config"] = cfg.to_dict()
    return res


def _region_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    err = np.abs(pred.astype(np.float64) - truth.astype(np.float64))
    return {r: err[:, EST_REGIONS[r]].mean(1) for r in MAE_REGIONS}  # [N] per region


def _paired(run: dict, eval_data: dict, n_boot: int = 2000) -> list[dict]:
    """Per round: for each region the MAE, and its difference to round 0 with a paired bootstrap 95 %
    interval over the held-out images."""
    out_dir = Path(run["out"])
    truth = eval_data["params"]
    rng = np.random.default_rng(0)
    n = truth.shape[0]
    boot = rng.integers(0, n, size=(n_boot, n))
    base = None
    rows = []
    for r in range(len(run["rounds"])):
        model = Estimator.load(out_dir / f"round_{r:02d}" / "policy.safetensors")
        e = _region_errors(policy_outputs(model, eval_data["crops"])[0].numpy(), truth)
        if base is None:
            base = e
        row = {}
        for k in MAE_REGIONS:
            d = e[k] - base[k]
            bd = d[boot].mean(1)
            row[k] = {"mae": float(e[k].mean()), "diff": float(d.mean()),
                      "lo": float(np.quantile(bd, 0.025)), "hi": float(np.quantile(bd, 0.975))}
        rows.append(row)
    return rows


def _paired_table(name: str, rows: list[dict]) -> str:
    head = ["round"] + [f"{k} (diff vs r0 [95% CI])" for k in MAE_REGIONS]
    lines = [f"Per-region MAE of `{name}` and its paired difference to round 0 (bootstrap over held-out "
             "images; * = interval excludes 0).", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r, row in enumerate(rows):
        cells = [str(r)]
        for k in MAE_REGIONS:
            c = row[k]
            if r == 0:
                cells.append(f"{c['mae']:.4f}")
            else:
                sig = "*" if c["lo"] > 0 or c["hi"] < 0 else ""
                cells.append(f"{c['mae']:.4f} ({c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]{sig})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _win(w: dict, k: str) -> str:
    return f"{w[k]['rate']:.3f} [{w[k]['lo']:.3f}, {w[k]['hi']:.3f}]" if k in w else "-"


def _baselines(eval_data: dict, init: str, upper: str | None) -> str:
    """Reference rows on the same held-out faces: round 0, a constant (the per-channel median of the
    prior the faces came from: no image at all, the best constant under L1) and, with ``--upper``, an
    estimator trained on the truth. A round that does not beat the constant has not learned to read
    faces."""
    from facecore.synth import sample_params

    truth = np.asarray(eval_data["params"], dtype=np.float64)
    median = np.median(sample_params(20_000, 987_654, eval_data["prior"]).numpy().astype(np.float64), 0)
    preds = {"round 0 (init)": init,
             "constant: the prior's median (no image)": np.broadcast_to(median, truth.shape)}
    if upper:
        preds["estimator trained on truth (--upper)"] = upper
    lines = ["| reference row | MAE bs | " + " | ".join(MAE_REGIONS) + " |",
             "|---|---|" + "---|" * len(MAE_REGIONS)]
    for name, pred in preds.items():
        if isinstance(pred, str):
            pred = policy_outputs(Estimator.load(pred), eval_data["crops"])[0].numpy()
        err = _region_errors(np.asarray(pred), truth)
        bs = float(np.abs(np.asarray(pred, np.float64) - truth)[:, :52].mean())
        cells = " | ".join(f"{err[r].mean():.4f}" for r in MAE_REGIONS)
        lines.append(f"| {name} | {bs:.4f} | {cells} |")
    return "\n".join(lines) + "\n"


def _budget_table(rows: list[tuple[int, int, dict]]) -> str:
    lines = ["| seed | judgments | MAE bs | MAE upper | MAE lower | AUC tongue | AUC puff | win upper | "
             "win lower |", "|---|---|---|---|---|---|---|---|---|"]
    nan = math.nan
    for seed, n, r in rows:
        m, w = r["eval"]["metrics"], r["eval"]["win_rate_vs_round0"]
        lines.append(f"| {seed} | {n} | {m['mae_blendshapes']:.4f} | {m['mae_upper']:.4f} | "
                     f"{m['mae_lower']:.4f} | {m.get('auc_TongueOut', nan):.3f} | "
                     f"{m.get('auc_CheekPuff', nan):.3f} | {_win(w, 'upper')} | {_win(w, 'lower')} |")
    return "\n".join(lines) + "\n"


def _seed_summary(runs: dict, seeds: list[int], name: str) -> str:
    """Mean and spread (min-max) over seeds of the main metrics, per round."""
    keys = ("mae_blendshapes", "mae_pose", "mae_upper", "mae_lower", "auc_TongueOut", "auc_CheekPuff",
            "calibration_slope", "vertex_error_mm")
    n_rounds = len(runs[f"{name}-s{seeds[0]}"]["rounds"])
    lines = [f"`{name}` over seeds {seeds}: mean (min-max).", "",
             "| round | " + " | ".join(keys) + " | win upper | win lower |", "|" + "---|" * (len(keys) + 3)]
    for r in range(n_rounds):
        cells = [str(r)]
        for k in keys:
            v = [runs[f"{name}-s{s}"]["rounds"][r]["eval"]["metrics"].get(k, math.nan) for s in seeds]
            cells.append(f"{np.mean(v):.4f} ({min(v):.4f}-{max(v):.4f})")
        for reg in ("upper", "lower"):
            v = [runs[f"{name}-s{s}"]["rounds"][r]["eval"]["win_rate_vs_round0"][reg]["rate"] for s in seeds]
            cells.append(f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="round-0 estimator checkpoint")
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="the small CPU size")
    ap.add_argument("--seeds", type=int, default=1, help="independent repeats (seed and training images)")
    ap.add_argument("--first-seed", type=int, default=0, help="the first of the --seeds seeds")
    ap.add_argument("--images", type=int, help="override the size's images per round")
    ap.add_argument("--eval-images", type=int, help="override the size's held-out images")
    ap.add_argument("--pairs", type=int, help="override the size's judged pairs per round")
    ap.add_argument("--steps", type=int, help="override the size's DPO steps per round")
    ap.add_argument("--upper", help="an estimator trained on the truth (the upper-bound row)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a RoundConfig field for every run (VALUE read as JSON, else as a string); "
                         "repeatable")
    ap.add_argument("--runs", default="reward,no-reward,budget,face",
                    help="which of the runs to make (comma-separated); the budget and face tables need "
                         "the reward run")
    ap.add_argument("--baselines-only", action="store_true",
                    help="print only the reference rows (round 0, constant, --upper) on the held-out faces")
    args = ap.parse_args()
    size = dict(SMALL if args.small else FULL)
    for k in ("images", "eval_images", "pairs", "steps"):
        if getattr(args, k) is not None:
            size[k] = getattr(args, k)
    size["relabel_pairs"] = size["pairs"]
    overrides = dict(_parse_set(item) for item in args.set)
    which = set(args.runs.split(","))
    if not which <= {"reward", "no-reward", "budget", "face"} or \
            ({"budget", "face"} & which and "reward" not in which):
        raise SystemExit(f"--runs: a comma-separated subset of reward,no-reward,budget,face (budget and face "
                         f"need reward), got {args.runs!r}")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.baselines_only:
        cfg = RoundConfig(init=args.init, **{**size, **overrides})
        est = Estimator.load(args.init)
        data = make_images(cfg.eval_images, cfg.eval_seed, image_size=est.config.image_size,
                           crop_scale=est.config.crop_scale, rig=cfg.rig, domain=cfg.domain,
                           resolution=cfg.resolution, prior=cfg.prior)
        table = _baselines(data, args.init, args.upper)
        (out / "baselines.md").write_text(table, encoding="utf-8")
        print(table)
        return
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    t_all = time.perf_counter()
    runs: dict[str, dict] = {}
    budgets = [size["pairs"] // 4, size["pairs"] // 2]
    for s in seeds:
        base = {**dict(init=args.init, rounds=args.rounds, seed=s, data_seed=100 * s), **size, **overrides}
        if "reward" in which:
            runs[f"reward-s{s}"] = _run(base, out / f"reward-s{s}")
        if "no-reward" in which:
            runs[f"no-reward-s{s}"] = _run(base, out / f"no-reward-s{s}", reward=False)
        if not {"budget", "face"} & which:
            continue
        for p in budgets:
            runs[f"budget-{p}-s{s}"] = _run(base, out / f"budget-{p}-s{s}", rounds=1, pairs=p,
                                            relabel_pairs=p)
        runs[f"face-s{s}"] = _run(base, out / f"face-s{s}", rounds=1, mode="face", pairs=2 * size["pairs"],
                                  relabel_pairs=2 * size["pairs"])
    cfg0 = next(iter(runs.values()))["config"]
    eval_data = make_images(cfg0["eval_images"], cfg0["eval_seed"], image_size=Estimator.load(args.init)
                            .config.image_size, crop_scale=Estimator.load(args.init).config.crop_scale,
                            rig=cfg0["rig"], domain=cfg0["domain"], resolution=cfg0["resolution"],
                            prior=cfg0["prior"])
    paired = {name: _paired(runs[name], eval_data) for name in runs}

    minutes = (time.perf_counter() - t_all) / 60
    md = ["# Preference rounds on exact truth (simulated annotators)", "",
          "All judgments are by SIMULATED annotator pools (facecore.prefer.AnnotatorPool), never people; the",
          "win rates are judged by the evaluation pool, disjoint from the training pool.", "",
          f"Size: {'small' if args.small else 'full'} {json.dumps(size)}; seeds {seeds}; init `{args.init}`;",
          f"{time.strftime('%Y-%m-%d')}, {platform.node()} ({torch.get_num_threads()} torch threads), "
          f"{minutes:.0f} min in all.", "",
          "Non-default settings: " + (json.dumps(overrides) if overrides else "none (RoundConfig defaults)")
          + "; the config of each run is in results.json.", ""]
    md += ["## Reference rows on the same held-out faces", "",
           _baselines(eval_data, args.init, args.upper)]
    for name in [n for n in ("reward", "no-reward") if n in which]:
        for s in seeds:
            key = f"{name}-s{s}"
            md += [f"## {key} ({runs[key]['seconds']:.0f} s)", "", format_rounds(runs[key]["rounds"]),
                   _paired_table(key, paired[key])]
        if len(seeds) > 1:
            md += [_seed_summary(runs, seeds, name)]
    if not {"budget", "face"} & which:
        _write_results(out, md, runs, paired)
        return
    rows = []
    for s in seeds:
        rows += [(s, 2 * p, runs[f"budget-{p}-s{s}"]["rounds"][1]) for p in budgets]
        r1 = runs[f"reward-s{s}"]["rounds"][1]
        rows.append((s, r1["train"]["n_judgments"], r1))
    md += ["## MAE against the number of judgments (one round, region-wise, reward model on)", "",
           _budget_table(rows)]
    md += ["## Region-wise against whole-face judgments at the same budget (round 1)", "",
           "| seed | judging | judgments | MAE bs | MAE upper | MAE lower | AUC tongue | AUC puff | "
           "win upper | win lower | win face |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in seeds:
        for label, key in (("region-wise", f"reward-s{s}"), ("whole face", f"face-s{s}")):
            r = runs[key]["rounds"][1]
            m, w = r["eval"]["metrics"], r["eval"]["win_rate_vs_round0"]
            md.append(f"| {s} | {label} | {r['train']['n_judgments']} | {m['mae_blendshapes']:.4f} | "
                      f"{m['mae_upper']:.4f} | {m['mae_lower']:.4f} | "
                      f"{m.get('auc_TongueOut', math.nan):.3f} | {m.get('auc_CheekPuff', math.nan):.3f} | "
                      f"{_win(w, 'upper')} | {_win(w, 'lower')} | {_win(w, 'face')} |")
    md += [""]
    for s in seeds:
        md += [_paired_table(f"face-s{s}", paired[f"face-s{s}"])]
    _write_results(out, md, runs, paired)


def _parse_set(item: str) -> tuple[str, object]:
    """``FIELD=VALUE`` -> ``(FIELD, VALUE as JSON or else the string)``; the field must be a RoundConfig's."""
    field, sep, value = item.partition("=")
    names = {f.name for f in dataclasses.fields(RoundConfig)}
    if not sep or field not in names:
        raise SystemExit(f"--set: expected FIELD=VALUE with FIELD a RoundConfig field, got {item!r}")
    try:
        return field, json.loads(value)
    except json.JSONDecodeError:
        return field, value


def _write_results(out: Path, md: list[str], runs: dict, paired: dict) -> None:
    (out / "results.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"runs": runs, "paired": paired}, indent=2, default=float),
                                      encoding="utf-8")
    print((out / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
