"""`facecore semantic ...`: ARKit <-> structured FACS analysis, and the model that reads faces.

Text-side commands live here (``describe``, ``to-csv``); the model commands are added by
:mod:`.cli_model`'s ``register(app)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

app = typer.Typer(no_args_is_help=True, help="SemanticFace: structured analyses and the face-reading LM.")


def _params_from_json(path: Path) -> np.ndarray:
    """A params JSON -> float32 [N, 61]: one ``{channel: value}`` object, a list of them, one list
    of 61 numbers, a list of such lists, or a SemanticFace answer (its ``arkit`` object)."""
    from .. import arkit
    from ..io import FormatError, parse_semanticface
    from ..io.errors import read_text

    text = read_text(path, encoding="utf-8")
    try:
        obj: Any = json.loads(text)
    except json.JSONDecodeError:
        obj = None
    if obj is None or (isinstance(obj, dict) and "arkit" in obj):
        try:
            return parse_semanticface(text, strict=False)[1][None]
        except FormatError as e:
            raise FormatError(e.reason, path=path, line=e.line) from None
    rows = obj if isinstance(obj, list) and obj and not isinstance(obj[0], (int, float)) else [obj]
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            out.append(arkit.to_vector(row, missing="zero"))
        elif isinstance(row, list) and len(row) == arkit.NUM_CHANNELS:
            out.append(np.asarray(row, dtype=np.float32))
        else:
            raise FormatError(f"entry {i}: expected an object of channel values or a list of "
                              f"{arkit.NUM_CHANNELS} numbers, got {type(row).__name__}"
                              + (f" of length {len(row)}" if isinstance(row, list) else ""), path=path)
    return np.stack(out)


def _read_params(src: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``src`` -> (params [N, 61], times [N] or None)."""
    from ..io import read_csv

    if not src.is_file():
        raise FileNotFoundError(f"input not found: {src}")
    suffix = src.suffix.lower()
    if suffix == ".csv":
        track = read_csv(src)
        return track.params, track.times
    if suffix == ".json":
        return _params_from_json(src), None
    raise ValueError(f"input {src.name}: expected a Live Link Face .csv or a params .json")


@app.command("describe")
def describe_cmd(
    src: Annotated[Path, typer.Argument(help="a Live Link Face .csv (one analysis per frame) or a params "
                                             ".json ({channel: value}, a list of them, or lists of 61 "
                                             "numbers)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="write JSON Lines here (default: stdout)")] = None,
    form: str = typer.Option("json", help="json: one {\"analysis\", \"arkit\"} object per line; markdown: "
                                          "{\"response\": <released-style answer>} records"),
) -> None:
    """Stage 1: describe ARKit parameters as structured FACS analyses (deterministic)."""
    from ..cli_support import echo_warnings, user_errors
    from . import answer_text, describe, quantize

    with user_errors():
        if form not in ("json", "markdown"):
            raise ValueError(f"--form must be 'json' or 'markdown', got {form!r}")
        with echo_warnings():
            params, times = _read_params(src)
        lines = []
        for i, p in enumerate(params):
            q = quantize(p)
            if form == "markdown":
                rec: dict[str, Any] = {"response": answer_text(q, form="markdown")}
            else:
                rec = json.loads(answer_text(q, form="json"))
                rec["analysis"]["muscle_movements"] = describe(q)["muscle_movements"]  # regions kept
            rec["frame"] = i
            if times is not None:
                rec["time"] = round(float(times[i]), 6)
            lines.append(json.dumps(rec, ensure_ascii=False))
        text = "\n".join(lines) + "\n"
        if out is None:
            typer.echo(text, nl=False)
            return
        out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out} ({len(lines)} analyses)", err=True)


@app.command("to-csv")
def to_csv_cmd(
    answers: Annotated[Path, typer.Argument(help="answers: JSON Lines of inference records "
                                                 "({\"response\": …} per line, as the released inference "
                                                 "writes), of {\"analysis\", \"arkit\"} objects, or one "
                                                 "answer")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output Live Link Face .csv")],
    strict: bool = typer.Option(False, "--strict/--skip-bad", help="strict: fail on the first answer that "
                                                                   "does not parse (default: skip it, warn)"),
) -> None:
    """Convert SemanticFace answers to a Live Link Face CSV, as the released jsonl2csv does
    (1 frame per second, BlendshapeCount 61, missing channels 0)."""
    from ..cli_support import echo_warnings, user_errors
    from ..io import semanticface_to_csv

    with user_errors():
        if not answers.is_file():
            raise FileNotFoundError(f"input not found: {answers}")
        if out.is_dir():
            raise IsADirectoryError(f"output {out} is a folder; give a file name")
        with echo_warnings():
            n = semanticface_to_csv(answers, out, on_error="raise" if strict else "skip")
    typer.echo(f"wrote {out} ({n} frames)", err=True)


# The model commands (train, predict, eval) live beside the model code.
from .cli_model import register  # noqa: E402

register(app)
