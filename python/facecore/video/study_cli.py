"""``facecore video study --config study.yaml -o DIR``: the synthetic-data study (:mod:`.study`).

``register(app)`` adds the command to the ``facecore video`` Typer app; the command only reads the
config into a :class:`~facecore.video.study.StudyConfig` (``--set key=value`` overrides, values parsed
as YAML) and calls :func:`~facecore.video.study.run_study`. Re-running with the same ``-o`` resumes:
finished runs are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_support import user_errors


def _overrides(items: list[str] | None) -> dict:
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--set expects key=value, got {item!r}", param_hint="--set")
        out[key.strip()] = yaml.safe_load(value)
    return out


def study_main(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="study YAML/JSON (StudyConfig fields); omitted: the defaults")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (resumable)")] = Path("video_study"),
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: key=value (YAML value)")]
    = None,
) -> None:
    """Run or resume the synthetic-data study (a sim-to-real proxy): judges, every run and seed, tables
    and plots per question, MP4 grids."""
    from .study import StudyConfig, run_study

    with user_errors():  # bad config, bad files or a folder holding another study
        base = {} if config is None else StudyConfig.load(config).to_dict()
        cfg = StudyConfig.from_dict({**base, **_overrides(set_)}, source=str(config or "--set"))
        result = run_study(cfg, out, log=typer.echo)
    typer.echo(f"report: {result['report']}")


def register(app: typer.Typer) -> None:
    """Add ``study`` to the ``facecore video`` app."""
    app.command("study")(study_main)
