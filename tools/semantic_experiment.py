"""Issue 15's comparison: does writing the analysis (T1) beat writing the coefficients only (T0), direct
regression (R) and regression with the analysis as an auxiliary target (R+S)?

    python tools/semantic_experiment.py -o runs/semantic-exp --steps 1500 --seeds 0 1      # ~2 h, 2 CPUs
    python tools/semantic_experiment.py -o runs/semantic-small --steps 30 --seeds 0 --n 16   # a smoke run

Every variant trains with :class:`facecore.semantic.training.SemanticConfig`'s defaults (facecore's tiny
VLM or its SigLIP tower, ``ict`` rig, 64², batch 16, lr 1e-3) except ``steps``, ``domain`` (``--domain``,
default ``clean``) and, per seed S, ``seed = data_seed = S``. ``clean`` because at CPU budgets the
default ``wild`` domain teaches nothing: R after 2,000 steps on ``wild`` scored 0.0844 MAE against the
image-blind constant's 0.0839, while on ``clean`` it learns head pose within 1,000 steps.

Each run is a folder ``OUT/<variant>-sS`` (a finished one is reused, so the command resumes after an
interruption at run granularity). Every run is evaluated by
:func:`facecore.semantic.evaluation.evaluate` on the four splits (``seen``, ``heldout``, ``other_rig``,
``toon``) with ``--n`` faces each; within a seed every variant sees the same faces, so differences
between variants get a paired bootstrap 95 % interval over faces.

Reference rows in the same table, per split and seed:

* ``constant``: :func:`facecore.semantic.data.label_median` of the training spec (the best image-blind
  answer under MAE; R starts there): a model that beats it reads the image;
* ``one-decimal truth``: the truth rounded as an answer writes it (T0/T1's floor; R and R+S have none).

Writes ``OUT/NAME.md`` and ``OUT/NAME.json`` (``--name``, default ``results``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from facecore import arkit
from facecore.semantic import data as sd
from facecore.semantic.describe import quantize
from facecore.semantic.evaluation import evaluate
from facecore.semantic.inference import load
from facecore.semantic.training import SemanticConfig, train

KEYS = ("mae", "mae_blendshapes", "mae_pose", "vertex_error")
REGION_KEYS = ("mae_brows", "mae_eyes", "mae_cheeks_nose", "mae_mouth", "mae_jaw", "mae_tongue",
               "mae_head_pose", "mae_eye_pose")


class ConstantModel:
    """The image-blind reference: always answers ``params`` (a regression-like model for ``evaluate``)."""

    variant = "R"

    def __init__(self, params: np.ndarray):
        self.params = np.asarray(params, dtype=np.float32)

    def predict(self, images, **_) -> list[tuple[dict, np.ndarray]]:
        return [({}, self.params.copy()) for _ in range(len(images))]


def quantization_floor(spec: sd.RenderSpec, n: int) -> dict[str, float]:
    """MAE of the one-decimal truth against the truth on the ``n`` faces of ``spec``."""
    truth = sd.render(spec, 0, n)["params"].clamp(torch.tensor(arkit.LOW), torch.tensor(arkit.HIGH)).numpy()
    err = np.abs(np.stack([quantize(t) for t in truth]) - truth)
    return {"mae": float(err.mean()), "mae_blendshapes": float(err[:, : arkit.NUM_BLENDSHAPES].mean()),
            "mae_pose": float(err[:, arkit.NUM_BLENDSHAPES:].mean())}


def paired_interval(a: list[float], b: list[float], n_boot: int = 2000) -> tuple[float, float, float]:
    """Mean of ``a - b`` over faces and its bootstrap 95 % interval (the same faces in both)."""
    d = np.asarray(a) - np.asarray(b)
    idx = np.random.default_rng(0).integers(0, len(d), size=(n_boot, len(d)))
    boot = d[idx].mean(1)
    return float(d.mean()), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def run_variant(out: Path, variant: str, seed: int, steps: int, domain: str) -> tuple[Path, float]:
    run = out / f"{variant}-s{seed}"
    if (run / "model").is_dir():
        return run, json.loads((run / "train_seconds.json").read_text())["seconds"]
    t0 = time.time()
    train(SemanticConfig(out=str(run), variant=variant, steps=steps, seed=seed, data_seed=seed, domain=domain,
                         checkpoint_every=max(200, steps // 5), resume=(run / "checkpoint.pt").is_file()))
    seconds = time.time() - t0
    (run / "train_seconds.json").write_text(json.dumps({"seconds": seconds}))
    return run, seconds


def _fmt(vals: list[float]) -> str:
    m = float(np.mean(vals))
    return f"{m:.4f}" if len(vals) == 1 else f"{m:.4f} ({min(vals):.4f}–{max(vals):.4f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--domain", default="clean", help="scene preset of the training renders")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=list(sd.VARIANTS), choices=sd.VARIANTS)
    ap.add_argument("--n", type=int, default=64, help="evaluation faces per split")
    ap.add_argument("--max-analysis-tokens", type=int, default=512)
    ap.add_argument("--name", default="results", help="file name (no suffix) of the tables in OUT")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict = {"steps": args.steps, "seeds": args.seeds, "n": args.n, "domain": args.domain, "runs": {}}
    per_face: dict = {}  # (name, seed, split) -> {metric: [per face]}
    for seed in args.seeds:
        spec = SemanticConfig(seed=seed, data_seed=seed, domain=args.domain).render_spec
        const = ConstantModel(sd.label_median(spec).numpy())
        for name in ["constant", *args.variants]:
            if name == "constant":
                model, seconds = const, 0.0
            else:
                run, seconds = run_variant(args.out, name, seed, args.steps, args.domain)
                model = load(run)
            t0 = time.time()
            res = evaluate(model, spec, n=args.n, max_analysis_tokens=args.max_analysis_tokens, per_face=True)
            for split, m in res.items():
                per_face[(name, seed, split)] = m.pop("per_face")
            results["runs"][f"{name}-s{seed}"] = {"train_seconds": seconds, "eval_seconds": time.time() - t0,
                                                  "metrics": res}
            print(f"{name} seed {seed}: " + ", ".join(f"{s} {m['mae']['mean']:.4f}" for s, m in res.items()),
                  flush=True)
        for split in sd.SPLITS:
            results["runs"][f"floor-s{seed}-{split}"] = quantization_floor(sd.split_spec(spec, split), args.n)

    names = ["constant", *args.variants]
    lines = [f"# SemanticFace variants: {args.steps} steps x batch 16 on `{args.domain}`, "
             f"seeds {args.seeds}, {args.n} faces per split", "",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"commit {_commit()}.", "",
             "Mean over seeds (min–max across seeds); `one-decimal truth` is the floor of a written "
             "answer.", ""]
    for key in KEYS:
        lines += [f"## {key}", "", "| model | " + " | ".join(sd.SPLITS) + " |",
                  "|---|" + "---|" * len(sd.SPLITS)]
        for name in names:
            cells = [_fmt([results["runs"][f"{name}-s{s}"]["metrics"][sp][key]["mean"] for s in args.seeds])
                     for sp in sd.SPLITS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if key in ("mae", "mae_blendshapes", "mae_pose"):
            cells = [_fmt([results["runs"][f"floor-s{s}-{sp}"][key] for s in args.seeds]) for sp in sd.SPLITS]
            lines.append("| one-decimal truth | " + " | ".join(cells) + " |")
        lines.append("")

    lines += ["## Per region (seen split)", "", "| model | " + " | ".join(k[4:] for k in REGION_KEYS) + " |",
              "|---|" + "---|" * len(REGION_KEYS)]
    for name in names:
        cells = [_fmt([results["runs"][f"{name}-s{s}"]["metrics"]["seen"][k]["mean"] for s in args.seeds])
                 for k in REGION_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")

    text_keys = ("parse_rate", "category_acc", "symmetry_acc", "category_acc_coeffs", "symmetry_acc_coeffs",
                 "self_consistency")
    lines += ["## Text and description metrics (seen split)", "", "| model | " + " | ".join(text_keys) + " |",
              "|---|" + "---|" * len(text_keys)]
    for name in names:
        m = [results["runs"][f"{name}-s{s}"]["metrics"]["seen"] for s in args.seeds]
        cells = [_fmt([x[k]["mean"] for x in m]) if k in m[0] else "–" for k in text_keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")

    pairs = [(a, b) for a, b in (("T1", "T0"), ("T1", "R"), ("T0", "R"), ("R+S", "R"), ("R", "constant"),
                                 ("T0", "constant"), ("T1", "constant"), ("R+S", "constant"))
             if a in names and b in names]
    lines += ["## Paired differences in MAE (all 61), per seed: mean [bootstrap 95 % over faces]", "",
              "Negative: the first model is better. * = the interval excludes 0.", "",
              "| pair | seed | " + " | ".join(sd.SPLITS) + " |", "|---|---|" + "---|" * len(sd.SPLITS)]
    results["paired"] = {}
    for a, b in pairs:
        for s in args.seeds:
            cells = []
            for sp in sd.SPLITS:
                d, lo, hi = paired_interval(per_face[(a, s, sp)]["mae"], per_face[(b, s, sp)]["mae"])
                results["paired"][f"{a}-{b}-s{s}-{sp}"] = {"diff": d, "lo": lo, "hi": hi}
                star = "*" if lo > 0 or hi < 0 else ""
                cells.append(f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]{star}")
            lines.append(f"| {a} − {b} | {s} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += ["## Seconds (train / evaluate, all splits)", "", "| model | " +
              " | ".join(f"seed {s}" for s in args.seeds) + " |", "|---|" + "---|" * len(args.seeds)]
    for name in names:
        cells = [f"{results['runs'][f'{name}-s{s}']['train_seconds']:.0f} / "
                 f"{results['runs'][f'{name}-s{s}']['eval_seconds']:.0f}" for s in args.seeds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
