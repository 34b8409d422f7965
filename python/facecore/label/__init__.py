"""facecore.label: the pairwise preference labeling web app (SuperFace, part 2).

People (or simulated annotators, over the same HTTP API) compare two renders of candidate ARKit
parameters beside the input photo and say which looks more like it, per face region.

Public names:
- ``create_app(db_path, admin_token=None, ...) -> fastapi.FastAPI``: the app on a SQLite file.
- ``LabelClient(base_url, token)``: the HTTP API from Python (``next_task``, ``judge``, ``undo``,
  ``me``, admin ``add_annotator``, ``load_tasks``, ``export``, ``stats``); ``LabelError``.
- ``Database``: the store (used by the CLI for offline load/export/import/stats).
- ``export_rows``, ``read_jsonl``, ``import_jsonl``: the Pick-a-Pic-shaped JSONL export and its import.

The HTTP contract and the commands are documented in docs/label.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Database", "LabelClient", "LabelError", "create_app", "export_rows", "import_jsonl", "read_jsonl"]


def __getattr__(name: str) -> Any:
    # lazy: `facecore --help` must not import FastAPI
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("LabelClient", "LabelError"):
        from . import client

        return getattr(client, name)
    if name == "Database":
        from .db import Database

        return Database
    if name in ("export_rows", "import_jsonl", "read_jsonl"):
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module 'facecore.label' has no attribute {name!r}")
