"""Judgments as JSONL in the Pick-a-Pic shape, and the import of such a file into another store.

One line per judgment::

    {"image_uid", "candidate_0", "candidate_1", "label_0", "label_1",      # Pick-a-Pic columns
     "task_id", "client_id", "region", "choice", "shown_left", "round",
     "annotator_id", "response_ms", "created_at"}

``candidate_0`` is candidate a, ``candidate_1`` candidate b (their ids from the task's meta, else
the PNG's SHA-256); labels are 1/0 (a preferred), 0/1 (b), 0.5/0.5 (tie). "Can't tell" answers
(choice ``skip``) are left out unless asked for (``include_skip``), and then carry null labels.
Import is idempotent by ``client_id``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..io.errors import FormatError, iter_jsonl
from .db import CHOICES, REGIONS, Database

LABELS = {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5), "skip": (None, None)}
EXPORT_FIELDS = ("image_uid", "candidate_0", "candidate_1", "label_0", "label_1", "task_id", "client_id",
                 "region", "choice", "shown_left", "round", "annotator_id", "response_ms", "created_at")


def export_rows(db: Database, *, include_skip: bool = False) -> list[dict[str, Any]]:
    """Every judgment in ``db`` as an export row, oldest first."""
    out = []
    for j in db.judgments():
        if j["choice"] == "skip" and not include_skip:
            continue
        label_0, label_1 = LABELS[j["choice"]]
        row = {**{k: j[k] for k in EXPORT_FIELDS if k in j}, "label_0": label_0, "label_1": label_1}
        out.append({k: row[k] for k in EXPORT_FIELDS})
    return out


def to_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows).encode()


def write_jsonl(db: Database, path: str | os.PathLike, *, include_skip: bool = False) -> int:
    """Write the export to ``path`` atomically (a temporary file renamed); returns the row count."""
    rows = export_rows(db, include_skip=include_skip)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(to_jsonl(rows))
    os.replace(tmp, path)
    return len(rows)


def _choice_from_labels(label_0: Any, label_1: Any) -> str | None:
    for choice, labels in LABELS.items():
        if (label_0, label_1) == labels:
            return choice
    return None


def _check_row(row: Any, path: str, line: int) -> dict[str, Any]:
    def fail(message: str) -> FormatError:
        return FormatError(message, path=path, line=line)

    if not isinstance(row, dict):
        raise fail(f"expected a JSON object, got {type(row).__name__}")
    for key in ("image_uid", "candidate_0", "candidate_1", "task_id", "client_id", "annotator_id",
                "created_at"):
        if not isinstance(row.get(key), str) or not row[key] or len(row[key]) > 256:
            raise fail(f"{key}: expected a non-empty string")
    if row.get("region") not in REGIONS:
        raise fail(f"region: expected one of {', '.join(REGIONS)}, got {row.get('region')!r}")
    if row.get("shown_left") not in ("a", "b"):
        raise fail(f"shown_left: expected 'a' or 'b', got {row.get('shown_left')!r}")
    choice = _choice_from_labels(row.get("label_0"), row.get("label_1"))
    if choice is None:
        raise fail("label_0, label_1: expected 1/0, 0/1, 0.5/0.5 (or null/null with choice 'skip')")
    if "choice" in row and row["choice"] != choice:
        if row["choice"] not in CHOICES:
            raise fail(f"choice: expected one of {', '.join(CHOICES)}, got {row['choice']!r}")
        raise fail(f"choice {row['choice']!r} contradicts label_0/label_1 "
                   f"({row['label_0']}, {row['label_1']})")
    ms = row.get("response_ms")
    if not isinstance(ms, int | float) or isinstance(ms, bool) or not math.isfinite(ms) or ms < 0:
        raise fail(f"response_ms: expected a non-negative number, got {ms!r}")
    rnd = row.get("round")
    if rnd is not None and (not isinstance(rnd, int) or isinstance(rnd, bool)):
        raise fail(f"round: expected an integer or null, got {rnd!r}")
    return {"client_id": row["client_id"], "task_id": row["task_id"], "annotator_id": row["annotator_id"],
            "region": row["region"], "choice": choice, "shown_left": row["shown_left"],
            "response_ms": int(ms), "created_at": row["created_at"], "image_uid": row["image_uid"],
            "candidate_0": row["candidate_0"], "candidate_1": row["candidate_1"], "round": rnd}


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and check an export file; a bad line raises :class:`FormatError` naming file and line."""
    path = os.fspath(path)
    return [_check_row(row, path, line_no) for line_no, row in iter_jsonl(path)]


def import_jsonl(db: Database, path: str | os.PathLike) -> dict[str, int]:
    """Import an export file into ``db``; returns ``{"inserted", "existing", "conflicts"}``."""
    return db.import_rows(read_jsonl(path))
