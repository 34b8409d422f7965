"""Reproduce the tables of issue 14 ("What it must show") for preference rounds with SIMULATED annotators.

    python tools/prefer_experiment.py --init /work/runs/est-pseudo/estimator.safetensors -o runs/prefer-exp
    python tools/prefer_experiment.py --init CKPT -o runs/prefer-small --small     # < 10 min on a CPU

Runs (each a `facecore.prefer.run_rounds` folder under OUT):

* ``reward/``   -- ``--rounds`` rounds, region-wise judgments, reward model in the loop;
* ``no-reward/`` -- the same without the reward model;
* ``budget-<P>/`` -- one round with P judged pairs, for MAE against the number of judgments;
* ``face/``     -- one round of whole-face judgments with twice the pairs of ``reward/`` round 1 (the
  same number of judgments as region-wise at one round).

Writes ``OUT/results.md`` (one table per run and round: per-region MAE, dead-channel AUC, calibration
slope, the evaluation pool's win rate against round 0 with Wilson 95 % intervals) and ``OUT/results.json``.
Every judgment is by simulated annotators; nothing here is a human result.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from facecore.prefer import RoundConfig, format_rounds, run_rounds

SMALL = dict(images=64, eval_images=64, pairs=200, relabel_pairs=200, steps=20, reward_steps=150)
FULL = dict(images=256, eval_images=128, pairs=1000, relabel_pairs=1000, steps=100, reward_steps=300)


def _run(base: dict, out: Path, **kw) -> dict:
    cfg = RoundConfig(**{**base, **kw, "out": str(out)})
    t = time.perf_counter()
    res = run_rounds(cfg, log=print)
    res["seconds"] = time.perf_counter() - t
    res["config"] = cfg.to_dict()
    return res


def _budget_table(rows: list[tuple[int, dict]]) -> str:
    lines = ["| judgments | MAE bs | MAE upper | MAE lower | AUC tongue | AUC puff | win upper | win lower |",
             "|---|---|---|---|---|---|---|---|"]
    for n, r in rows:
        m, w = r["eval"]["metrics"], r["eval"]["win_rate_vs_round0"]
        nan = float("nan")
        lines.append(f"| {n} | {m['mae_blendshapes']:.4f} | {m['mae_upper']:.4f} | {m['mae_lower']:.4f} | "
                     f"{m.get('auc_TongueOut', nan):.3f} | {m.get('auc_CheekPuff', nan):.3f} | "
                     + " | ".join(f"{w[k]['rate']:.3f} [{w[k]['lo']:.3f}, {w[k]['hi']:.3f}]"
                                  for k in ("upper", "lower") if k in w) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="round-0 estimator checkpoint")
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="the < 10 min CPU size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    size = SMALL if args.small else FULL
    base = dict(init=args.init, rounds=args.rounds, seed=args.seed, **size)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    runs = {"reward": _run(base, out / "reward"), "no-reward": _run(base, out / "no-reward", reward=False)}
    budgets = [size["pairs"] // 4, size["pairs"] // 2]
    for p in budgets:
        runs[f"budget-{p}"] = _run(base, out / f"budget-{p}", rounds=1, pairs=p, relabel_pairs=p)
    runs["face"] = _run(base, out / "face", rounds=1, mode="face", pairs=2 * size["pairs"],
                        relabel_pairs=2 * size["pairs"])

    md = ["# Preference rounds on exact truth (simulated annotators)", "",
          "All judgments are by SIMULATED annotator pools (facecore.prefer.AnnotatorPool), never people; the",
          "win rates are judged by the evaluation pool, disjoint from the training pool.", "",
          f"Size: {'small' if args.small else 'full'} {json.dumps(size)}; init `{args.init}`.", ""]
    for name in ("reward", "no-reward"):
        md += [f"## {name} ({runs[name]['seconds']:.0f} s)", "", format_rounds(runs[name]["rounds"])]
    rows = [(2 * p, runs[f"budget-{p}"]["rounds"][1]) for p in budgets]
    rows += [(r["train"]["n_judgments"] * i, r) for i, r in enumerate(runs["reward"]["rounds"][1:2], 1)]
    md += ["## MAE against the number of judgments (one round, region-wise, reward model on)", "",
           _budget_table(rows)]
    face_r1 = runs["face"]["rounds"][1]
    reg_r1 = runs["reward"]["rounds"][1]
    md += ["## Region-wise against whole-face judgments at the same budget (round 1)", "",
           "| judging | judgments | MAE bs | MAE upper | MAE lower | AUC tongue | AUC puff |",
           "|---|---|---|---|---|---|---|"]
    for label, r in (("region-wise", reg_r1), ("whole face", face_r1)):
        m = r["eval"]["metrics"]
        md.append(f"| {label} | {r['train']['n_judgments']} | {m['mae_blendshapes']:.4f} | "
                  f"{m['mae_upper']:.4f} | {m['mae_lower']:.4f} | "
                  f"{m.get('auc_TongueOut', math.nan):.3f} | {m.get('auc_CheekPuff', math.nan):.3f} |")
    (out / "results.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(runs, indent=2, default=float), encoding="utf-8")
    print((out / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
