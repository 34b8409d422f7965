"""`facecore prefer ...`: preference-optimisation rounds.

``facecore prefer run --rounds 3 --pool sim:9 --init CKPT -o DIR [--app URL --app-token T]`` runs the
loop of :mod:`facecore.prefer.rounds` (rerun it to resume); ``facecore prefer eval DIR`` prints the
per-round table of a run. Both only parse options into a :class:`~facecore.prefer.RoundConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..cli_support import user_errors

app = typer.Typer(no_args_is_help=True, help="Preference optimisation rounds (simulated or human judgments).")


@app.command("run")
def run_main(
    out: Annotated[Path, typer.Option("-o", "--out", help="run folder (round_NN/ per round, state.json)")],
    init: Annotated[Path, typer.Option(help="round-0 estimator checkpoint (estimator.safetensors)")] = None,
    config: Annotated[Path, typer.Option(help="a RoundConfig .json/.yaml; options given here override it")]
    = None,
    rounds: Annotated[int, typer.Option(help="number of rounds")] = None,
    pool: Annotated[str, typer.Option(help="training raters: sim:N (N simulated annotators, 5-13)")] = None,
    eval_pool: Annotated[str, typer.Option("--eval-pool", help="held-out raters for win rates: sim:N")] \
    = None,
    app_url: Annotated[str, typer.Option("--app", help="labeling app URL: judgments go through its /api/v1 "
                                         "(the simulated pool answers as clients); default in-process")] \
    = None,
    app_token: Annotated[str, typer.Option("--app-token", help="the labeling app's admin token")] = None,
    mode: Annotated[str, typer.Option(help="regionwise (upper and lower face) or face (whole face)")] = None,
    images: Annotated[int, typer.Option(help="fresh synthetic images per round")] = None,
    eval_images: Annotated[int, typer.Option("--eval-images", help="held-out images")] = None,
    pairs: Annotated[int, typer.Option(help="judged pairs per round (x regions = judgments)")] = None,
    rare_share: Annotated[float, typer.Option("--rare-share", help="the share of --pairs spent on rare-"
                                              "channel probes (the mean vs the mean with TongueOut or "
                                              "CheekPuff switched), in [0, 1)")] = None,
    k: Annotated[int, typer.Option("-k", help="candidates per image")] = None,
    steps: Annotated[int, typer.Option(help="DPO steps per round")] = None,
    lr: Annotated[float, typer.Option(help="DPO learning rate (AdamW)")] = None,
    beta: Annotated[float, typer.Option(help="DPO beta")] = None,
    reward: Annotated[bool, typer.Option("--reward/--no-reward", help="fit a reward model and relabel pairs")]
    = None,
    reference: Annotated[str, typer.Option(help="previous (last round) or ema")] = None,
    seed: Annotated[int, typer.Option(help="seed of every random draw")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="continue OUT's run if any")] = None,
) -> dict[str, Any]:
    """Run preference rounds: candidates from the estimator's Gaussian + exploration, judgments by a
    (simulated) pool, a per-region reward model, region-wise DPO; one folder per round, resumable."""
    from .rounds import RoundConfig, run_rounds

    with user_errors():
        given = {"init": None if init is None else str(init), "rounds": rounds, "pool": pool,
                 "eval_pool": eval_pool, "app": app_url, "app_token": app_token, "mode": mode,
                 "images": images, "eval_images": eval_images, "pairs": pairs, "rare_share": rare_share,
                 "k": k, "steps": steps,
                 "lr": lr, "beta": beta, "reward": reward, "reference": reference, "seed": seed,
                 "resume": resume}
        given = {key: v for key, v in given.items() if v is not None}
        given["out"] = str(out)
        cfg = RoundConfig.from_file(config, **given) if config is not None else RoundConfig.from_dict(given)
        factory = None
        if cfg.app is not None:
            from .judging import http_judge

            factory = http_judge
        result = run_rounds(cfg, log=typer.echo, judge_factory=factory)
    typer.echo((Path(result["out"]) / "results.md").read_text(encoding="utf-8"))
    return result


@app.command("eval")
def eval_main(
    run: Annotated[Path, typer.Argument(help="a folder written by `facecore prefer run`")],
    as_json: Annotated[bool, typer.Option("--json", help="print the per-round metrics as JSON")] = False,
) -> list[dict]:
    """Print the per-round table (held-out metrics, win rate vs round 0) of a preference run."""
    from .rounds import format_rounds

    with user_errors():
        if not (run / "round_00" / "metrics.json").is_file():
            raise FileNotFoundError(f"{run}: no round_00/metrics.json (not a `facecore prefer run` folder)")
        results = []
        for d in sorted(run.glob("round_[0-9][0-9]")):
            f = d / "metrics.json"
            if f.is_file():
                results.append(json.loads(f.read_text(encoding="utf-8")))
    typer.echo(json.dumps(results, indent=2) if as_json else format_rounds(results))
    return results
