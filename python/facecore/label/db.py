"""The labeling app's SQLite store: schema, durable writes, and every query the routes need.

SQLite runs in WAL mode with ``synchronous=FULL``, so a commit that returned has reached the disk
and survives a SIGKILL of the server (or a power loss). Each call opens its own short-lived
connection, which makes the store safe to use from any thread (uvicorn's worker threads, tests);
writers take ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of deadlocking
on a read-to-write upgrade.

Identifiers are random strings (``t_…`` tasks, ``an_…`` annotators) so that judgments exported from
one machine and imported into another never collide with local rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import statistics
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotators (
  annotator_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, png BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT NOT NULL UNIQUE,
  region TEXT NOT NULL,
  kind TEXT NOT NULL,
  image_sha TEXT NOT NULL REFERENCES blobs(sha256),
  a_sha TEXT NOT NULL REFERENCES blobs(sha256),
  b_sha TEXT NOT NULL REFERENCES blobs(sha256),
  a_params TEXT,
  b_params TEXT,
  meta TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
  client_id TEXT PRIMARY KEY,
  task_id TEXT NOT NULL,
  annotator_id TEXT NOT NULL,
  region TEXT NOT NULL,
  choice TEXT NOT NULL,
  shown_left TEXT NOT NULL,
  response_ms INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  image_uid TEXT NOT NULL,
  candidate_0 TEXT NOT NULL,
  candidate_1 TEXT NOT NULL,
  round INTEGER,
  imported INTEGER NOT NULL DEFAULT 0,
  UNIQUE (task_id, annotator_id)
);
CREATE INDEX IF NOT EXISTS judgments_by_annotator ON judgments (annotator_id, created_at);
-- Undone answers are kept (audit trail) and their client ids stay spent, so a late retry of an
-- undone submit cannot silently bring it back.
CREATE TABLE IF NOT EXISTS undone (
  client_id TEXT PRIMARY KEY,
  row TEXT NOT NULL,
  undone_at TEXT NOT NULL
);
"""

REGIONS = ("upper", "lower", "face")
CHOICES = ("a", "b", "tie", "skip")
JUDGMENT_FIELDS = ("client_id", "task_id", "annotator_id", "region", "choice", "shown_left",
                   "response_ms", "created_at")


class Conflict(Exception):
    """A write that contradicts a stored row (HTTP 409)."""


class NotFound(Exception):
    """A referenced row that does not exist (HTTP 404)."""


class Invalid(ValueError):
    """A request that is well-formed but semantically wrong (HTTP 422)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewTask:
    """One validated task ready to store (PNG bytes already checked)."""

    region: str
    image_png: bytes
    a_png: bytes
    b_png: bytes
    meta: dict[str, Any]
    a_params: list[float] | None = None
    b_params: list[float] | None = None


class Database:
    """The store behind one labeling app. Thread-safe: every method opens its own connection."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"db_path: expected a SQLite file, got the directory {self.path}")
        if not self.path.parent.exists():
            raise FileNotFoundError(f"db_path: folder {self.path.parent} does not exist")
        self.busy_timeout_s = busy_timeout_s
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            con.execute("INSERT OR IGNORE INTO settings VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("INSERT OR IGNORE INTO settings VALUES ('side_salt', ?)", (secrets.token_hex(16),))
            salt = con.execute("SELECT value FROM settings WHERE key='side_salt'").fetchone()[0]
            self._salt = salt.encode()

    # -- connections ---------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                              check_same_thread=False)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA synchronous=FULL")  # durability: fsync the WAL on every commit
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- annotators ----------------------------------------------------------------------------
    def add_annotator(self, name: str) -> dict[str, str]:
        """Create an annotator; returns ``{annotator_id, name, token}`` (the token is shown only once)."""
        return self.add_annotators([name])[0]

    def add_annotators(self, names: Iterable[str]) -> list[dict[str, str]]:
        """Create several annotators in one transaction (a simulated pool); see :meth:`add_annotator`."""
        made = []
        for name in names:
            if not isinstance(name, str) or not name.strip() or len(name) > 100:
                raise Invalid("name: expected a non-empty string of at most 100 characters")
            made.append({"annotator_id": "an_" + secrets.token_hex(6), "name": name.strip(),
                         "token": "lt_" + secrets.token_urlsafe(24)})
        with self._write() as con:
            con.executemany("INSERT INTO annotators VALUES (?, ?, ?, ?)",
                            [(m["annotator_id"], m["name"], token_hash(m["token"]), now_iso()) for m in made])
        return made

    def annotator_for_token(self, token: str) -> dict[str, str] | None:
        with self._connect() as con:
            row = con.execute("SELECT annotator_id, name FROM annotators WHERE token_hash=?",
                              (token_hash(token),)).fetchone()
        return dict(row) if row else None

    # -- tasks ---------------------------------------------------------------------------------
    def add_tasks(self, tasks: Iterable[NewTask]) -> list[str]:
        """Store tasks in one transaction (all or none); returns their ids in order.

        ``meta["repeat_of"]`` may name a stored task or one earlier in the same batch given as
        ``"#<index>"`` (the loader uses that to mix repeats into a batch before ids exist).
        """
        ids: list[str] = []
        with self._write() as con:
            for index, task in enumerate(tasks):
                meta = dict(task.meta)
                repeat_of = meta.get("repeat_of")
                if isinstance(repeat_of, str) and repeat_of.startswith("#"):
                    ref = int(repeat_of[1:])
                    if not 0 <= ref < index:
                        raise Invalid(f"tasks[{index}].meta.repeat_of: {repeat_of} is not an earlier task")
                    meta["repeat_of"] = ids[ref]
                if meta.get("kind") == "repeat":
                    exists = con.execute("SELECT 1 FROM tasks WHERE task_id=?", (meta.get("repeat_of"),))
                    if exists.fetchone() is None:
                        raise Invalid(f"tasks[{index}].meta.repeat_of: no task {meta.get('repeat_of')!r}")
                shas = [self._put_blob(con, png) for png in (task.image_png, task.a_png, task.b_png)]
                task_id = "t_" + secrets.token_hex(8)
                con.execute(
                    "INSERT INTO tasks (task_id, region, kind, image_sha, a_sha, b_sha, a_params, b_params,"
                    " meta, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (task_id, task.region, meta.get("kind", "pair"), *shas,
                     None if task.a_params is None else json.dumps(task.a_params),
                     None if task.b_params is None else json.dumps(task.b_params),
                     json.dumps(meta), now_iso()),
                )
                ids.append(task_id)
        return ids

    @staticmethod
    def _put_blob(con: sqlite3.Connection, png: bytes) -> str:
        sha = hashlib.sha256(png).hexdigest()
        con.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (sha, png))
        return sha

    def task(self, task_id: str) -> dict[str, Any] | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        return self._task_dict(row) if row else None

    @staticmethod
    def _task_dict(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["meta"] = json.loads(out["meta"])
        return out

    def shown_left(self, annotator_id: str, task_id: str) -> str:
        """Which candidate this annotator sees on the left of this task: random, but stable across reloads."""
        digest = hmac.new(self._salt, f"{annotator_id}|{task_id}".encode(), hashlib.sha256).digest()
        return "a" if digest[0] & 1 == 0 else "b"

    def next_task(self, annotator_id: str, judgments_per_task: int | None = None) -> dict[str, Any] | None:
        """The earliest task this annotator has not answered (and, with a cap, not yet fully judged)."""
        cap = "" if judgments_per_task is None else \
            "AND (SELECT COUNT(*) FROM judgments c WHERE c.task_id = t.task_id) < :cap"
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM judgments j"
                f" WHERE j.task_id = t.task_id AND j.annotator_id = :ann) {cap} ORDER BY seq LIMIT 1",
                {"ann": annotator_id, "cap": judgments_per_task},
            ).fetchone()
        return self._task_dict(row) if row else None

    def blob(self, sha: str) -> bytes | None:
        with self._connect() as con:
            row = con.execute("SELECT png FROM blobs WHERE sha256=?", (sha,)).fetchone()
        return bytes(row[0]) if row else None

    def progress(self, annotator_id: str) -> dict[str, int]:
        with self._connect() as con:
            answered = con.execute("SELECT COUNT(*) FROM judgments WHERE annotator_id=?",
                                   (annotator_id,)).fetchone()[0]
            total = con.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
            local = con.execute("SELECT COUNT(*) FROM judgments j JOIN tasks t ON t.task_id=j.task_id"
                                " WHERE j.annotator_id=?", (annotator_id,)).fetchone()[0]
        return {"answered": answered, "total": total, "remaining": max(total - local, 0)}

    # -- judgments -----------------------------------------------------------------------------
    def submit(self, annotator_id: str, task_id: str, region: str, choice: str, client_id: str,
               response_ms: int) -> tuple[dict[str, Any], bool]:
        """Store one answer; returns ``(judgment, created)``. Idempotent by ``client_id``.

        A repeat of the same ``client_id`` with the same content returns the stored row
        (``created=False``); the same id with other content, an undone id, or a second answer to the
        same task by the same annotator raise :class:`Conflict`.
        """
        with self._write() as con:
            row = con.execute("SELECT * FROM judgments WHERE client_id=?", (client_id,)).fetchone()
            if row is not None:
                stored = self._judgment_dict(row)
                same = (stored["annotator_id"], stored["task_id"], stored["region"], stored["choice"],
                        stored["response_ms"]) == (annotator_id, task_id, region, choice, response_ms)
                if not same:
                    raise Conflict(f"client_id {client_id!r} was already used for a different judgment")
                return stored, False
            if con.execute("SELECT 1 FROM undone WHERE client_id=?", (client_id,)).fetchone():
                raise Conflict(f"client_id {client_id!r} belongs to an answer that was undone; "
                               "send the new answer with a new client_id")
            task = con.execute("SELECT * FROM tasks WHERE task_id=?", (task_id,)).fetchone()
            if task is None:
                raise NotFound(f"task_id: no task {task_id!r}")
            if task["region"] != region:
                raise Invalid(f"region: task {task_id} asks about {task['region']!r}, got {region!r}")
            prior = con.execute("SELECT client_id FROM judgments WHERE task_id=? AND annotator_id=?",
                                (task_id, annotator_id)).fetchone()
            if prior is not None:
                raise Conflict(f"task {task_id} was already answered by this annotator "
                               f"(client_id {prior[0]!r}); undo that answer to change it")
            meta = json.loads(task["meta"])
            judgment = {
                "client_id": client_id, "task_id": task_id, "annotator_id": annotator_id, "region": region,
                "choice": choice, "shown_left": self.shown_left(annotator_id, task_id),
                "response_ms": response_ms, "created_at": now_iso(),
                "image_uid": str(meta.get("image_uid") or task["image_sha"]),
                "candidate_0": str(meta.get("candidate_a") or task["a_sha"]),
                "candidate_1": str(meta.get("candidate_b") or task["b_sha"]),
                "round": _int_or_none(meta.get("round")), "imported": 0,
            }
            self._insert_judgment(con, judgment)
        return self._public(judgment), True

    @staticmethod
    def _insert_judgment(con: sqlite3.Connection, j: dict[str, Any]) -> None:
        con.execute(
            "INSERT INTO judgments (client_id, task_id, annotator_id, region, choice, shown_left,"
            " response_ms, created_at, image_uid, candidate_0, candidate_1, round, imported) VALUES"
            " (:client_id, :task_id, :annotator_id, :region, :choice, :shown_left, :response_ms, :created_at,"
            " :image_uid, :candidate_0, :candidate_1, :round, :imported)", j)

    @staticmethod
    def _public(j: dict[str, Any]) -> dict[str, Any]:
        return {k: j[k] for k in JUDGMENT_FIELDS}

    def _judgment_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        return self._public(dict(row))

    def undo_last(self, annotator_id: str) -> dict[str, Any] | None:
        """Remove this annotator's most recent answer (kept in the audit table); None when there is none."""
        with self._write() as con:
            row = con.execute("SELECT * FROM judgments WHERE annotator_id=? AND imported=0"
                              " ORDER BY created_at DESC, rowid DESC LIMIT 1", (annotator_id,)).fetchone()
            if row is None:
                return None
            con.execute("INSERT INTO undone VALUES (?, ?, ?)",
                        (row["client_id"], json.dumps(dict(row)), now_iso()))
            con.execute("DELETE FROM judgments WHERE client_id=?", (row["client_id"],))
        return self._judgment_dict(row)

    def judgments(self, annotator_id: str | None = None) -> list[dict[str, Any]]:
        """Every stored judgment (all columns), oldest first; one annotator's only when given."""
        where, args = ("WHERE annotator_id=?", (annotator_id,)) if annotator_id else ("", ())
        with self._connect() as con:
            rows = con.execute(f"SELECT * FROM judgments {where} ORDER BY created_at, rowid", args).fetchall()
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._connect() as con:
            return {name: con.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
                    for name in ("annotators", "tasks", "judgments", "undone")}

    # -- export / import -----------------------------------------------------------------------
    def import_rows(self, rows: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Insert exported judgments (already validated); idempotent by ``client_id``.

        Returns ``{"inserted", "existing", "conflicts"}``: an existing client id is skipped; a row
        for a (task, annotator) pair that already has another answer is a conflict and skipped.
        """
        counts = {"inserted": 0, "existing": 0, "conflicts": 0}
        with self._write() as con:
            for j in rows:
                if con.execute("SELECT 1 FROM judgments WHERE client_id=?", (j["client_id"],)).fetchone():
                    counts["existing"] += 1
                    continue
                try:
                    self._insert_judgment(con, {**j, "imported": 1})
                except sqlite3.IntegrityError:
                    counts["conflicts"] += 1
                    continue
                counts["inserted"] += 1
        return counts

    # -- quality -------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-annotator quality: count, gold accuracy, repeat consistency, median response time."""
        with self._connect() as con:
            names = {r[0]: r[1] for r in con.execute("SELECT annotator_id, name FROM annotators")}
            tasks = {r["task_id"]: (r["kind"], json.loads(r["meta"]), r["a_sha"], r["b_sha"])
                     for r in con.execute("SELECT task_id, kind, meta, a_sha, b_sha FROM tasks")}
            rows = con.execute("SELECT annotator_id, task_id, choice, response_ms FROM judgments").fetchall()
        per: dict[str, list[sqlite3.Row]] = {aid: [] for aid in names}
        for r in rows:
            per.setdefault(r["annotator_id"], []).append(r)
        out = []
        for aid, answers in per.items():
            by_task = {r["task_id"]: r["choice"] for r in answers}
            gold_n = gold_ok = rep_n = rep_ok = 0
            for r in answers:
                kind, meta, a_sha, b_sha = tasks.get(r["task_id"], ("pair", {}, None, None))
                if kind == "gold" and r["choice"] != "skip":
                    gold_n += 1
                    gold_ok += r["choice"] == meta.get("gold")
                elif kind == "repeat" and r["choice"] != "skip":
                    orig = meta.get("repeat_of")
                    first = by_task.get(orig)
                    if first is None or first == "skip" or orig not in tasks:
                        continue
                    rep_n += 1
                    # compare the chosen picture, so a repeat that swaps a and b still matches
                    _, _, oa, ob = tasks[orig]
                    picked = {"a": a_sha, "b": b_sha}.get(r["choice"], "tie")
                    picked_first = {"a": oa, "b": ob}.get(first, "tie")
                    rep_ok += picked == picked_first
            times = [r["response_ms"] for r in answers]
            out.append({
                "annotator_id": aid, "name": names.get(aid), "count": len(answers),
                "skips": sum(r["choice"] == "skip" for r in answers),
                "ties": sum(r["choice"] == "tie" for r in answers),
                "gold_n": gold_n, "gold_accuracy": gold_ok / gold_n if gold_n else None,
                "repeat_n": rep_n, "repeat_consistency": rep_ok / rep_n if rep_n else None,
                "median_response_ms": statistics.median(times) if times else None,
            })
        counts = self.counts()
        return {"annotators": out, "tasks": counts["tasks"], "judgments": counts["judgments"],
                "undone": counts["undone"]}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
