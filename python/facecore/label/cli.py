"""`facecore label ...`: the pairwise labeling web app's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..cli_support import fail

app = typer.Typer(no_args_is_help=True, help="The pairwise preference labeling web app.")

DbOpt = Annotated[Path, typer.Option("--db", help="The SQLite database file (created when missing).")]


def _db(path: Path):
    from .db import Database

    try:
        return Database(path)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(exc) from None


@app.command("serve")
def serve_cmd(
    db: DbOpt,
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1: local only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8765,
    admin_token: Annotated[str | None, typer.Option(
        "--admin-token", envvar="FACECORE_LABEL_ADMIN_TOKEN",
        help="The admin's bearer token; generated and printed once when omitted.")] = None,
    judgments_per_task: Annotated[int | None, typer.Option(
        min=1, help="Stop serving a task after this many answers.")] = None,
    break_every_trials: Annotated[int, typer.Option(min=1, help="Break reminder every N trials.")] = 100,
    break_every_minutes: Annotated[float, typer.Option(min=0.1, help="... or every N minutes.")] = 20.0,
) -> None:
    """Serve the labeling page and the /api/v1 HTTP API."""
    from .server import serve

    try:
        serve(db, host=host, port=port, admin_token=admin_token, judgments_per_task=judgments_per_task,
              break_every_trials=break_every_trials, break_every_minutes=break_every_minutes)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(exc) from None


@app.command("add-annotator")
def add_annotator_cmd(name: Annotated[str, typer.Argument(help="The annotator's display name.")],
                      db: DbOpt) -> None:
    """Create an annotator account; prints its id and token (the token is shown only this once)."""
    from .db import Invalid

    try:
        out = _db(db).add_annotator(name)
    except Invalid as exc:
        raise fail(exc) from None
    typer.echo(f"annotator_id: {out['annotator_id']}\ntoken: {out['token']}")


@app.command("load")
def load_cmd(
    tasks: Annotated[Path, typer.Argument(
        help="Task JSONL: one {image, candidate_a, candidate_b, region, meta} per line.")],
    db: DbOpt,
    gold: Annotated[Path | None, typer.Option(help="Gold tasks JSONL (meta.gold = 'a'|'b').")] = None,
    gold_every: Annotated[int, typer.Option(min=0, help="One gold task after every N tasks.")] = 0,
    repeat_every: Annotated[int, typer.Option(min=0, help="Repeat a random earlier task every N tasks.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed for choosing the repeated tasks.")] = 0,
) -> None:
    """Load a batch of tasks (all or nothing), mixing in gold and repeated pairs."""
    from . import loader

    store = _db(db)
    try:
        batch = loader.read_tasks(tasks)
        gold_tasks = loader.read_tasks(gold) if gold else []
        if gold_tasks and not gold_every:
            gold_every = max(1, len(batch) // len(gold_tasks))  # spread the gold set over the batch
        mixed = loader.mix(batch, gold_tasks, gold_every=gold_every, repeat_every=repeat_every, seed=seed)
        ids = loader.load(store, mixed)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(exc) from None
    kinds = [t.get("meta", {}).get("kind", "pair") for t in mixed]
    typer.echo(f"loaded {len(ids)} tasks ({kinds.count('gold')} gold, {kinds.count('repeat')} repeats)")


@app.command("export")
def export_cmd(
    db: DbOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output JSONL.")],
    include_skip: Annotated[bool, typer.Option(help="Also write can't-tell answers (null labels).")] = False,
) -> None:
    """Export judgments as Pick-a-Pic-shaped JSONL."""
    from .export import write_jsonl

    n = write_jsonl(_db(db), out, include_skip=include_skip)
    typer.echo(f"wrote {n} judgments to {out}")


@app.command("import")
def import_cmd(file: Annotated[Path, typer.Argument(help="A JSONL file written by `facecore label export`.")],
               db: DbOpt) -> None:
    """Import exported judgments (idempotent: client ids already present are skipped)."""
    from .export import import_jsonl

    store = _db(db)
    try:
        counts = import_jsonl(store, file)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(exc) from None
    typer.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


@app.command("stats")
def stats_cmd(db: DbOpt, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
              ) -> None:
    """Per-annotator quality: answers, gold accuracy, repeat consistency, median response time."""
    stats = _db(db).stats()
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"tasks: {stats['tasks']}  judgments: {stats['judgments']}  undone: {stats['undone']}")
    typer.echo(f"{'annotator':<16}{'name':<16}{'count':>7}{'gold':>14}{'repeat':>14}{'median ms':>11}")
    for a in stats["annotators"]:
        med = "-" if a["median_response_ms"] is None else f"{a['median_response_ms']:.0f}"
        typer.echo(f"{a['annotator_id']:<16}{(a['name'] or '?')[:15]:<16}{a['count']:>7}"
                   f"{_pct(a['gold_accuracy']) + ' /' + str(a['gold_n']):>14}"
                   f"{_pct(a['repeat_consistency']) + ' /' + str(a['repeat_n']):>14}{med:>11}")
