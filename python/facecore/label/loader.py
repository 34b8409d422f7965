"""Task files (JSONL, one ``POST /api/v1/tasks`` task per line) and the mixing of gold and repeated
pairs into a batch, for ``facecore label load``."""

from __future__ import annotations

import os
import random
from typing import Any

from pydantic import ValidationError

from ..io.errors import FormatError, iter_jsonl
from .db import Database, Invalid
from .render import ParamsRenderer
from .schemas import TaskIn, to_new_tasks


def read_tasks(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a task JSONL file; each line must be a task object (checked later, with its line number)."""
    path = os.fspath(path)
    out = []
    for line_no, task in iter_jsonl(path):
        if not isinstance(task, dict):
            raise FormatError(f"expected a task object, got {type(task).__name__}", path=path, line=line_no)
        out.append({**task, "_line": (path, line_no)})
    return out


def mix(tasks: list[dict[str, Any]], gold: list[dict[str, Any]] = (), *, gold_every: int = 0,
        repeat_every: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """Interleave ``gold`` tasks (one after every ``gold_every`` tasks, cycling) and repeats.

    A repeat (after every ``repeat_every`` tasks) copies a random earlier regular task, marked
    ``meta.kind = "repeat"`` with ``meta.repeat_of = "#<index in the mixed batch>"``, which
    :meth:`Database.add_tasks` resolves to the stored id. Each task is repeated at most once.
    """
    for name, value in (("gold_every", gold_every), ("repeat_every", repeat_every)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    if gold_every and not gold:
        raise ValueError("gold_every: needs gold tasks (meta.kind='gold', meta.gold='a'|'b')")
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    regular: list[int] = []
    for count, task in enumerate(tasks, 1):
        regular.append(len(out))
        out.append(task)
        if gold_every and count % gold_every == 0:
            g = gold[(count // gold_every - 1) % len(gold)]
            out.append({**g, "meta": {**g.get("meta", {}), "kind": "gold"}})
        if repeat_every and count % repeat_every == 0 and regular:
            index = regular.pop(rng.randrange(len(regular)))
            orig = out[index]
            out.append({**orig, "meta": {**orig.get("meta", {}), "kind": "repeat", "repeat_of": f"#{index}"}})
    return out


def _located(raw: dict[str, Any], index: int, exc: Exception) -> ValueError:
    where = raw.get("_line")
    message = str(exc).replace("\n", " ")
    if where:
        return FormatError(message, path=where[0], line=where[1])
    return ValueError(message if message.startswith("tasks[") else f"tasks[{index}]: {message}")


def load(db: Database, tasks: list[dict[str, Any]], *, render: bool = True) -> list[str]:
    """Validate every task (errors name the file and line when known), render params-only candidates
    (``render``; False refuses them) and store the batch in one transaction."""
    parsed = []
    for index, raw in enumerate(tasks):
        try:
            parsed.append(TaskIn.model_validate({k: v for k, v in raw.items() if k != "_line"}))
        except ValidationError as exc:
            raise _located(raw, index, exc) from None
    try:
        new = to_new_tasks(parsed, ParamsRenderer() if render else None)
    except Invalid as exc:
        index = getattr(exc, "index", 0)
        raise _located(tasks[index], index, exc) from None
    return db.add_tasks(new)
