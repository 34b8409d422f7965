"""The model commands of ``facecore semantic``: ``train``, ``predict``, ``eval`` (added by :func:`register`).

They only parse arguments into :class:`facecore.semantic.training.SemanticConfig` / calls of
:func:`facecore.semantic.inference.load` and :func:`facecore.semantic.evaluation.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def train_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="run folder (checkpoint, metrics.jsonl, model/)")],
    config: Annotated[Path, typer.Option(help="a SemanticConfig .json/.yaml; options given here override it")]
    = None,
    variant: Annotated[str, typer.Option(help="T1 (analysis then coefficients), T0 (coefficients only), R "
                                              "(regression head) or R+S (R + analysis alignment)")] \
    = None,
    model: Annotated[Path, typer.Option(help="a local HF VLM folder to fine-tune with LoRA (default: "
                                             "facecore's tiny VLM, trained from scratch)")] = None,
    steps: Annotated[int, typer.Option(help="optimizer steps")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="faces per step and rank")] = None,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = None,
    align_weight: Annotated[float, typer.Option("--align-weight", help="R+S: weight of the alignment loss")] \
    = None,
    loss: Annotated[str, typer.Option(help="fused (facecore linear log-probs) or plain (logits + CE)")] \
    = None,
    attention: Annotated[str, typer.Option(help="facecore, sdpa or eager")] = None,
    domain: Annotated[str, typer.Option(help="scene preset of the training renders")] = None,
    rig: Annotated[str, typer.Option(help="built-in rig of the training renders")] = None,
    resolution: Annotated[int, typer.Option(help="rendered image side")] = None,
    seed: Annotated[int, typer.Option(help="initialisation and data seed")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="continue the run in --out")] = False,
    deterministic: Annotated[bool, typer.Option("--deterministic/--fast", help="deterministic algorithms")]
    = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
) -> None:
    """Stage 2: train the face-reading model (variants R, R+S, T0, T1) on synthetic renders."""
    from ..cli_support import progress_bar, user_errors
    from .training import SemanticConfig, train

    with user_errors():
        given = {"out": str(out), "variant": variant, "model": None if model is None else str(model),
                 "steps": steps, "batch_size": batch_size, "lr": lr, "align_weight": align_weight,
                 "loss": loss, "domain": domain, "rig": rig, "resolution": resolution, "seed": seed,
                 "device": device, "resume": resume, "deterministic": deterministic}
        given = {k: v for k, v in given.items() if v is not None}
        cfg = SemanticConfig.from_file(config, **given) if config else SemanticConfig.from_dict(given)
        if attention is not None:
            cfg.vlm = {**cfg.vlm, "attn_implementation": attention}
            cfg.__post_init__()
        with progress_bar(progress) as bar:
            result = train(cfg, progress=bar)
    if result["rank"] == 0:
        typer.echo(f"trained {cfg.variant} for {result['step']} steps; last loss "
                   f"{result['metrics'].get('loss', float('nan')):.4f}; files in {out}", err=True)


def predict_cmd(
    images: Annotated[list[Path], typer.Argument(help="image files (PNG/JPEG, any size)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output JSON Lines: one answer per image")],
    model: Annotated[Path, typer.Option(help="a model folder exported by `facecore semantic train` "
                                             "(<run>/model)")],
    max_analysis_tokens: Annotated[int, typer.Option(help="token budget of the analysis (T1)")] = 512,
    temperature: Annotated[float, typer.Option(help="0: greedy; above 0: sample the answer")] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", help="nucleus of the sampling (with --temperature)")]
    = 1.0,
    seed: Annotated[int, typer.Option(help="seed of the sampling (with --temperature)")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N")] = "cpu",
) -> None:
    """Read faces: one ``{"image", "response", "analysis", "arkit"}`` record per image."""
    import numpy as np
    from PIL import Image

    from .. import arkit
    from ..cli_support import user_errors
    from ..io.semanticface import parse_semanticface
    from ..training_utils import seed_of
    from .data import REGRESSION_VARIANTS
    from .decoding import check_sampling
    from .inference import load

    with user_errors():
        check_sampling(temperature, top_p)
        missing = [str(p) for p in images if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"image(s) not found: {', '.join(missing)}")
        m = load(model, device)
        lines = []
        for i, p in enumerate(images):
            try:
                img = np.asarray(Image.open(p).convert("RGB"))
            except OSError as e:
                raise ValueError(f"{p}: not a readable image ({e})") from None
            if m.variant in REGRESSION_VARIANTS:
                analysis, params = m.predict(img)[0]
                text = None
            else:
                d = m.generate(img, max_analysis_tokens=max_analysis_tokens, temperature=temperature,
                               top_p=top_p, seed=seed_of(seed, i))[0]
                text, params = d.text, d.params
                analysis = parse_semanticface(text, strict=False)[0] if m.variant == "T1" else {}
            rec = {"image": str(p), "response": text, "analysis": analysis,
                   "arkit": {n: round(float(v), 4) for n, v in zip(arkit.NAMES, params)}}
            lines.append(json.dumps(rec, ensure_ascii=False))
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    typer.echo(f"wrote {out} ({len(lines)} answers)", err=True)


def eval_cmd(
    model: Annotated[list[Path], typer.Argument(help="model folder(s) that `facecore semantic train` "
                                                    "exported")],
    n: Annotated[int, typer.Option(help="faces per split")] = 64,
    splits: Annotated[str, typer.Option(help="comma-separated: seen, heldout, other_rig, toon")]
    = "seen,heldout,other_rig,toon",
    out: Annotated[Path, typer.Option("-o", "--out", help="also write the metrics as JSON here")] = None,
    max_analysis_tokens: Annotated[int, typer.Option(help="token budget of the analysis (T1)")] = 512,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N")] = "cpu",
) -> None:
    """Evaluate models on synthetic splits; prints a Markdown table (mean ± 95 % interval)."""
    from ..cli_support import user_errors
    from .evaluation import evaluate, format_table
    from .inference import load
    from .training import SemanticConfig

    with user_errors():
        wanted = [s.strip() for s in splits.split(",") if s.strip()]
        results = {}
        for path in model:
            m = load(path, device)
            run_cfg = Path(path).parent / "config.json" if (Path(path).parent / "config.json").is_file() \
                else Path(path) / "config.json"
            spec = SemanticConfig.from_dict({k: v for k, v in json.loads(run_cfg.read_text()).items()
                                             if k != "model"}).render_spec if run_cfg.is_file() else None
            results[f"{m.variant}:{path}"] = evaluate(m, spec, n=n, splits=wanted,
                                                      max_analysis_tokens=max_analysis_tokens)
        typer.echo(format_table(results))
        if out is not None:
            out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    """Add ``train``, ``predict`` and ``eval`` to the ``facecore semantic`` app."""
    app.command("train")(train_cmd)
    app.command("predict")(predict_cmd)
    app.command("eval")(eval_cmd)
