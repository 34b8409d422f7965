"""Export/import round trip, the loader's gold/repeat mixing, and the `facecore label` commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from facecore.io.errors import FormatError
from facecore.label import Database, export_rows, import_jsonl, read_jsonl
from facecore.label.cli import app as cli
from facecore.label.export import write_jsonl

from .live import task_body

runner = CliRunner()


def answered_db(path, tasks=3):
    from facecore.label import loader

    db = Database(path)
    ids = loader.load(db, [task_body(meta={"round": 1, "image_uid": f"img{k}"}) for k in range(tasks)])
    ann = db.add_annotator("x")["annotator_id"]
    for k, (tid, choice) in enumerate(zip(ids, ["a", "tie", "skip", "b"])):
        db.submit(ann, tid, "upper", choice, f"c{k}", 100 + k)
    return db, ids


def test_export_import_round_trip(tmp_path):
    src, _ = answered_db(tmp_path / "src.sqlite")
    out = tmp_path / "out.jsonl"
    assert write_jsonl(src, out) == 2  # the skip is left out by default
    rows = read_jsonl(out)
    assert [r["choice"] for r in rows] == ["a", "tie"]
    with_skip = export_rows(src, include_skip=True)
    assert [(r["label_0"], r["label_1"]) for r in with_skip] == [(1.0, 0.0), (0.5, 0.5), (None, None)]
    write_jsonl(src, out, include_skip=True)

    dst = Database(tmp_path / "dst.sqlite")
    assert import_jsonl(dst, out) == {"inserted": 3, "existing": 0, "conflicts": 0}
    assert import_jsonl(dst, out) == {"inserted": 0, "existing": 3, "conflicts": 0}  # idempotent
    assert export_rows(dst, include_skip=True) == with_skip  # nothing lost or changed on the way
    stats = dst.stats()
    assert stats["judgments"] == 3 and stats["annotators"][0]["count"] == 3


def test_import_rejects_bad_files(tmp_path):
    src, _ = answered_db(tmp_path / "src.sqlite")
    good = json.dumps(export_rows(src)[0])
    cases = {
        "not json": "{oops",
        "labels": good.replace('"label_0": 1.0', '"label_0": 0.7'),
        "choice contradicts": good.replace('"choice": "a"', '"choice": "b"'),
        "region": good.replace('"region": "upper"', '"region": "nose"'),
        "missing client": json.dumps({k: v for k, v in json.loads(good).items() if k != "client_id"}),
        "response_ms": good.replace('"response_ms": 100', '"response_ms": -3'),
    }
    dst = Database(tmp_path / "dst.sqlite")
    for name, line in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(good.replace('"c0"', '"c-ok"') + "\n" + line + "\n")
        with pytest.raises(FormatError, match=r"\.jsonl:2: "):
            import_jsonl(dst, path)
    assert dst.counts()["judgments"] == 0  # a bad file imports nothing


def test_import_conflict_is_counted_not_stored(tmp_path):
    src, ids = answered_db(tmp_path / "src.sqlite")
    out = tmp_path / "out.jsonl"
    write_jsonl(src, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rows[1] = {**rows[0], "client_id": "other"}  # same task and annotator as row 0, another client id
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dst = Database(tmp_path / "dst.sqlite")
    assert import_jsonl(dst, out) == {"inserted": 1, "existing": 0, "conflicts": 1}


def test_loader_mixes_gold_and_repeats():
    from facecore.label import loader

    tasks = [task_body(meta={"image_uid": f"i{k}"}) for k in range(6)]
    gold = [task_body(meta={"kind": "gold", "gold": "a"})]
    mixed = loader.mix(tasks, gold, gold_every=2, repeat_every=3, seed=1)
    kinds = [t["meta"].get("kind", "pair") for t in mixed]
    assert kinds.count("gold") == 3 and kinds.count("repeat") == 2 and kinds.count("pair") == 6
    for k, t in enumerate(mixed):
        if t["meta"].get("kind") == "repeat":
            ref = int(t["meta"]["repeat_of"][1:])
            assert ref < k and mixed[ref]["meta"].get("kind", "pair") == "pair"
            assert mixed[ref]["meta"]["image_uid"] == t["meta"]["image_uid"]
    with pytest.raises(ValueError, match="gold_every"):
        loader.mix(tasks, [], gold_every=2)


def test_cli_commands(tmp_path):
    db = tmp_path / "cli.sqlite"
    tasks, gold = tmp_path / "tasks.jsonl", tmp_path / "gold.jsonl"
    tasks.write_text("".join(json.dumps(task_body(meta={"image_uid": f"i{k}"})) + "\n" for k in range(4)))
    gold.write_text(json.dumps(task_body(meta={"kind": "gold", "gold": "b"})) + "\n")

    r = runner.invoke(cli, ["load", "--db", str(db), str(tasks), "--gold", str(gold), "--gold-every", "2",
                            "--repeat-every", "2"])
    assert r.exit_code == 0, r.output
    assert "loaded 8 tasks (2 gold, 2 repeats)" in r.output

    r = runner.invoke(cli, ["add-annotator", "--db", str(db), "Ada"])
    assert r.exit_code == 0 and "token: lt_" in r.output
    ann = r.output.split("annotator_id: ")[1].split()[0]
    store = Database(db)
    for k in range(8):
        task = store.next_task(ann)
        store.submit(ann, task["task_id"], task["region"], "b", f"k{k}", 1000)
    r = runner.invoke(cli, ["stats", "--db", str(db), "--json"])
    (row,) = json.loads(r.output)["annotators"]
    assert row["gold_accuracy"] == 1.0 and row["repeat_consistency"] == 1.0 and row["count"] == 8
    assert "Ada" in runner.invoke(cli, ["stats", "--db", str(db)]).output

    out = tmp_path / "export.jsonl"
    r = runner.invoke(cli, ["export", "--db", str(db), "-o", str(out)])
    assert r.exit_code == 0 and "wrote 8 judgments" in r.output
    r = runner.invoke(cli, ["import", "--db", str(tmp_path / "other.sqlite"), str(out)])
    assert r.exit_code == 0 and "inserted: 8" in r.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(task_body()) + "\n" + json.dumps({**task_body(), "region": "ear"}) + "\n")
    r = runner.invoke(cli, ["load", "--db", str(db), str(bad)])
    assert r.exit_code == 1 and "bad.jsonl:2" in r.output
    assert Database(db).counts()["tasks"] == 8  # all or nothing
    r = runner.invoke(cli, ["load", "--db", str(tmp_path / "nope" / "x.sqlite"), str(tasks)])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_serve_prints_generated_token_and_client_works(tmp_path):
    """`facecore label serve` without --admin-token prints one; LabelClient drives the real server."""
    import os
    import subprocess
    import sys

    from facecore.label import LabelClient, LabelError

    from .live import free_port, wait_ready

    port = free_port()
    code = "from facecore.label.cli import app; app()"
    env = {k: v for k, v in os.environ.items() if k != "FACECORE_LABEL_ADMIN_TOKEN"}
    argv = [sys.executable, "-c", code, "serve", "--db", str(tmp_path / "s.sqlite"), "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first.startswith("admin token: "), first
        token = first.split(": ", 1)[1].strip()
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, token)
        with LabelClient(base, token) as admin:
            made = admin.add_annotator("client")
            ids = admin.load_tasks([task_body("lower", {"kind": "gold", "gold": "a"}), task_body("lower")])
            with LabelClient(base, made["token"]) as ann:
                task = ann.next_task()
                assert task["task_id"] == ids[0]
                assert ann.picture(task["left_url"]).startswith(b"\x89PNG")
                first_answer = ann.judge(ids[0], "lower", "a", "cl-1", 700)
                assert ann.judge(ids[0], "lower", "a", "cl-1", 700) == first_answer
                with pytest.raises(LabelError) as err:
                    ann.judge(ids[0], "lower", "b", "cl-2", 700)
                assert err.value.status == 409
                ann.judge(ids[1], "lower", "skip")  # a generated client id
                assert ann.next_task() is None and ann.me()["answered"] == 2
                assert ann.undo()["undone"]["task_id"] == ids[1]
                assert ann.next_task()["task_id"] == ids[1]
                with pytest.raises(LabelError) as err:
                    ann.stats()
                assert err.value.status == 403
            assert [r["client_id"] for r in admin.export()] == ["cl-1"]
            (row,) = admin.stats()["annotators"]
            assert row["gold_accuracy"] == 1.0 and row["count"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
