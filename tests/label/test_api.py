"""The /api/v1 contract through FastAPI's TestClient on a temporary database."""

from __future__ import annotations

import base64
import json

import pytest

from .live import png_b64, task_body


def load(client, admin, tasks):
    r = client.post("/api/v1/tasks", json=tasks, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()["task_ids"]


def judge(client, headers, task_id, choice="a", client_id="c1", region="upper", response_ms=500):
    return client.post("/api/v1/judgments", headers=headers, json={
        "task_id": task_id, "region": region, "choice": choice, "client_id": client_id,
        "response_ms": response_ms})


def n_rows(app):
    return app.state.db.counts()


def test_full_trial_flow(client, admin, new_annotator):
    ids = load(client, admin, [task_body("upper", {"round": 2, "image_uid": "img7", "candidate_a": "p1",
                                                   "candidate_b": "p2"}), task_body("lower")])
    assert len(ids) == 2 and len(set(ids)) == 2
    _, ann = new_annotator()
    assert client.get("/api/v1/me", headers=ann).json()["remaining"] == 2

    task = client.get("/api/v1/tasks/next", headers=ann).json()
    assert task["task_id"] == ids[0] and task["region"] == "upper" and task["round"] == 2
    assert "meta" not in task  # gold answers must not reach the annotator
    left_expected = task["candidate_a_url"] if task["shown_left"] == "a" else task["candidate_b_url"]
    assert task["left_url"] == left_expected and {task["left_url"], task["right_url"]} == {
        task["candidate_a_url"], task["candidate_b_url"]}
    for url in (task["image_url"], task["left_url"], task["right_url"]):
        r = client.get(url, headers=ann)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content.startswith(b"\x89PNG")
    assert client.get(task["candidate_a_url"], headers=ann).content == base64.b64decode(
        task_body()["candidate_a"]["png"])

    first = judge(client, ann, ids[0], "b", "cid-1")
    assert first.status_code == 201
    body = first.json()
    assert body["choice"] == "b" and body["shown_left"] == task["shown_left"] and body["response_ms"] == 500
    again = judge(client, ann, ids[0], "b", "cid-1")
    assert again.status_code == 200 and again.json() == body  # idempotent: same body, stored once
    assert n_rows(client.app)["judgments"] == 1

    assert client.get("/api/v1/tasks/next", headers=ann).json()["task_id"] == ids[1]
    assert judge(client, ann, ids[1], "tie", "cid-2", region="lower").status_code == 201
    assert client.get("/api/v1/tasks/next", headers=ann).status_code == 204
    me = client.get("/api/v1/me", headers=ann).json()
    assert (me["answered"], me["remaining"], me["total"]) == (2, 0, 2)

    rows = [json.loads(line) for line in client.get("/api/v1/export", headers=admin).text.splitlines()]
    assert [(r["image_uid"], r["candidate_0"], r["candidate_1"], r["label_0"], r["label_1"], r["round"])
            for r in rows[:1]] == [("img7", "p1", "p2", 0.0, 1.0, 2)]
    assert (rows[1]["label_0"], rows[1]["label_1"]) == (0.5, 0.5)
    assert set(rows[0]) >= {"task_id", "client_id", "region", "shown_left", "annotator_id", "response_ms",
                            "created_at"}


def test_side_order_is_random_per_annotator_and_task_and_stable(client, admin, new_annotator):
    ids = load(client, admin, [task_body() for _ in range(24)])
    sides = []
    for k in range(2):
        _, ann = new_annotator(f"a{k}")
        first = client.get("/api/v1/tasks/next", headers=ann).json()
        assert client.get("/api/v1/tasks/next", headers=ann).json() == first  # stable across reloads
        db = client.app.state.db
        aid = client.get("/api/v1/me", headers=ann).json()["annotator_id"]
        sides.append([db.shown_left(aid, t) for t in ids])
    for s in sides:
        assert 3 <= s.count("a") <= 21  # both sides occur (P(fail) ~ 1e-4 per annotator)
    assert sides[0] != sides[1]


def test_conflicts_409(client, admin, new_annotator):
    (tid,) = load(client, admin, [task_body()])
    _, ann = new_annotator()
    _, other = new_annotator("b")
    assert judge(client, ann, tid, "a", "x1").status_code == 201
    r = judge(client, ann, tid, "b", "x2")  # same task, same annotator, new client id
    assert r.status_code == 409 and "already answered" in r.json()["detail"]
    r = judge(client, ann, tid, "b", "x1")  # same client id, other content
    assert r.status_code == 409 and "different judgment" in r.json()["detail"]
    r = judge(client, other, tid, "a", "x1")  # someone else's client id
    assert r.status_code == 409
    assert judge(client, other, tid, "a", "y1").status_code == 201
    assert n_rows(client.app)["judgments"] == 2


def test_undo_only_own_answers(client, admin, new_annotator):
    t1, t2 = load(client, admin, [task_body(), task_body()])
    _, ann = new_annotator()
    _, other = new_annotator("b")
    assert judge(client, ann, t1, "a", "a1").status_code == 201
    assert judge(client, ann, t2, "b", "a2").status_code == 201
    assert judge(client, other, t1, "tie", "b1").status_code == 201
    assert [j["client_id"] for j in client.get("/api/v1/judgments", headers=other).json()] == ["b1"]

    r = client.post("/api/v1/judgments/undo", headers=other)
    assert r.status_code == 200 and r.json()["undone"]["client_id"] == "b1"
    assert client.post("/api/v1/judgments/undo", headers=other).status_code == 404
    assert [j["client_id"] for j in client.get("/api/v1/judgments", headers=ann).json()] == ["a1", "a2"]

    r = client.post("/api/v1/judgments/undo", headers=ann).json()
    assert r["undone"]["client_id"] == "a2" and r["task"]["task_id"] == t2
    assert client.get("/api/v1/tasks/next", headers=ann).json()["task_id"] == t2
    # a late retry of the undone submit must not bring it back
    assert judge(client, ann, t2, "b", "a2").status_code == 409
    assert judge(client, ann, t2, "a", "a3").status_code == 201
    assert n_rows(client.app) == {"annotators": 2, "tasks": 2, "judgments": 2, "undone": 2}


def test_auth(client, admin, new_annotator):
    (tid,) = load(client, admin, [task_body()])
    _, ann = new_annotator()
    wrong = {"Authorization": "Bearer nope-nope-nope"}
    for method, path in [("GET", "/api/v1/stats"), ("GET", "/api/v1/export"), ("POST", "/api/v1/annotators"),
                         ("POST", "/api/v1/tasks"), ("GET", "/api/v1/tasks/next"), ("GET", "/api/v1/me"),
                         ("POST", "/api/v1/judgments"), ("POST", "/api/v1/judgments/undo")]:
        for headers in ({}, wrong, {"Authorization": "Basic abc"}):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and r.json()["detail"]
    for method, path in [("GET", "/api/v1/stats"), ("GET", "/api/v1/export"), ("POST", "/api/v1/annotators"),
                         ("POST", "/api/v1/tasks")]:
        r = client.request(method, path, headers=ann, json={"name": "x"})
        assert r.status_code == 403 and "admin" in r.json()["detail"]
    for method, path in [("GET", "/api/v1/tasks/next"), ("GET", "/api/v1/me"),
                         ("POST", "/api/v1/judgments/undo")]:
        assert client.request(method, path, headers=admin).status_code == 403
    task = client.get("/api/v1/tasks/next", headers=ann).json()
    assert client.get(task["image_url"]).status_code == 401  # pictures need a token too
    assert client.get("/api/v1/blobs/" + "0" * 64 + ".png", headers=ann).status_code == 404
    assert client.get("/api/v1/blobs/..%2F..%2Fetc.png", headers=ann).status_code == 404
    assert client.get("/").status_code == 200  # the page itself is public; its data is not
    assert n_rows(client.app)["annotators"] == 1


BAD_TASKS = [
    ("not a list", {"x": 1}, "list"),
    ("empty", [], "non-empty"),
    ("unknown region", [task_body("nose")], "region"),
    ("png not base64", [{**task_body(), "image": "%%%"}], "base64"),
    ("base64 not png", [{**task_body(), "image": base64.b64encode(b"GIF89a......").decode()}], "not a PNG"),
    ("truncated png", [{**task_body(), "image": base64.b64encode(base64.b64decode(png_b64())[:30]).decode()}],
     "PNG"),
    ("neither png nor params", [{**task_body(), "candidate_a": {}}], "candidate_a: expected {png"),
    ("params out of range", [{**task_body(), "candidate_a": {"params": [0.0] * 51 + [1.5] + [0.0] * 9}}],
     "params[51]"),
    ("pose out of range", [{**task_body(), "candidate_b": {"params": [0.0] * 60 + [-1.01]}}], "params[60]"),
    ("params wrong length", [{**task_body(), "candidate_b": {"png": png_b64(), "params": [0.0] * 60}}], "61"),
    ("wrong type", [{**task_body(), "image": 5}], "image"),
    ("extra field", [{**task_body(), "surprise": 1}], "surprise"),
    ("gold without answer", [task_body(meta={"kind": "gold"})], "gold"),
    ("unknown kind", [task_body(meta={"kind": "weird"})], "kind"),
    ("repeat of nothing", [task_body(meta={"kind": "repeat", "repeat_of": "t_missing"})], "repeat_of"),
    ("bad round", [task_body(meta={"round": "two"})], "round"),
    ("huge round", [task_body(meta={"round": 10**30})], "round"),
    ("long image_uid", [task_body(meta={"image_uid": "x" * 300})], "image_uid"),
    ("lone surrogate", [task_body(meta={"image_uid": "\ud800"})], "Unicode"),
    ("second task bad", [task_body(), {**task_body(), "region": 3}], "region"),
]


@pytest.mark.parametrize("name,body,needle", BAD_TASKS, ids=[b[0] for b in BAD_TASKS])
def test_bad_task_loads_are_422_and_store_nothing(client, admin, name, body, needle):
    # json.dumps escapes a lone surrogate (valid JSON text that is not valid Unicode)
    r = client.post("/api/v1/tasks", content=json.dumps(body),
                    headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]
    assert n_rows(client.app)["tasks"] == 0


def test_nan_params_and_malformed_json(client, admin):
    text = json.dumps([{**task_body(), "candidate_a": {"png": png_b64(), "params": [0.0] * 61}}])
    text = text.replace("0.0, 0.0]", "0.0, NaN]", 1)  # Python's json accepts NaN tokens
    assert "NaN" in text
    r = client.post("/api/v1/tasks", content=text, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and "params" in r.json()["detail"]
    r = client.post("/api/v1/tasks", content=b"[{", headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and "invalid JSON" in r.json()["detail"]
    assert n_rows(client.app)["tasks"] == 0


def test_params_only_candidates_are_rendered_at_load(client, admin, new_annotator):
    from PIL import Image

    from facecore import arkit

    params = [0.0] * 61
    params[arkit.NAMES.index("JawOpen")] = 1.0  # visibly moves the face
    body = {**task_body(), "candidate_a": {"params": [0.0] * 61}, "candidate_b": {"params": params}}
    (tid,) = load(client, admin, [body])
    _, ann = new_annotator()
    task = client.get("/api/v1/tasks/next", headers=ann).json()
    a, b = (client.get(task[k], headers=ann).content for k in ("candidate_a_url", "candidate_b_url"))
    import io

    import numpy as np

    img_a, img_b = (np.asarray(Image.open(io.BytesIO(x))) for x in (a, b))
    assert img_a.shape == (256, 256, 3) and img_a.std() > 5  # a face, not a blank frame
    changed = (np.abs(img_a.astype(int) - img_b).max(-1) > 8).sum()
    assert changed > 200, changed  # the open jaw changed the picture
    assert json.loads(client.app.state.db.task(tid)["b_params"]) == params


def test_params_only_refused_when_rendering_is_off(tmp_path, admin):
    from fastapi.testclient import TestClient

    from facecore.label import create_app

    from .conftest import ADMIN

    app = create_app(tmp_path / "norender.sqlite", admin_token=ADMIN, render_params=False)
    with TestClient(app) as client:
        body = {**task_body(), "candidate_a": {"params": [0.0] * 61}}
        r = client.post("/api/v1/tasks", json=[body], headers=admin)
        assert r.status_code == 422 and "candidate_a: expected {png: base64}" in r.json()["detail"]
        assert app.state.db.counts()["tasks"] == 0


def test_params_ride_along_with_png(client, admin):
    body = task_body()
    body["candidate_a"]["params"] = [0.25] * 61
    (tid,) = load(client, admin, [body])
    assert json.loads(client.app.state.db.task(tid)["a_params"]) == [0.25] * 61


BAD_JUDGMENTS = [
    ("unknown choice", {"choice": "left"}, "choice"),
    ("unknown region", {"region": "chin"}, "region"),
    ("region mismatch", {"region": "lower"}, "asks about"),
    ("string response_ms", {"response_ms": "12"}, "response_ms"),
    ("negative response_ms", {"response_ms": -1}, "response_ms"),
    ("float response_ms", {"response_ms": 1.5}, "response_ms"),
    ("bad client id", {"client_id": "a b"}, "client_id"),
    ("empty client id", {"client_id": ""}, "client_id"),
    ("int task id", {"task_id": 7}, "task_id"),
    ("extra field", {"note": "hi"}, "note"),
]


@pytest.mark.parametrize("name,change,needle", BAD_JUDGMENTS, ids=[b[0] for b in BAD_JUDGMENTS])
def test_bad_judgments_are_4xx_and_store_nothing(client, admin, new_annotator, name, change, needle):
    (tid,) = load(client, admin, [task_body("upper")])
    _, ann = new_annotator()
    body = {"task_id": tid, "region": "upper", "choice": "a", "client_id": "c1", "response_ms": 10, **change}
    r = client.post("/api/v1/judgments", json=body, headers=ann)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]
    assert n_rows(client.app)["judgments"] == 0


def test_judgment_edge_cases(client, admin, new_annotator):
    (tid,) = load(client, admin, [task_body()])
    _, ann = new_annotator()
    r = judge(client, ann, "t_0000000000000000")
    assert r.status_code == 404 and "no task" in r.json()["detail"]
    for raw in (b"{not json", b"[]", b"null", b'"a"', b"[" * 15000, b"\xff\xfe"):
        r = client.post("/api/v1/judgments", content=raw, headers={**ann, "Content-Type": "application/json"})
        assert r.status_code in (400, 422) and r.json()["detail"], raw
    assert n_rows(client.app)["judgments"] == 0


def test_oversized_bodies_are_413(tmp_path, admin):
    from fastapi.testclient import TestClient

    from facecore.label import create_app

    from .conftest import ADMIN

    app = create_app(tmp_path / "small.sqlite", admin_token=ADMIN, max_task_body_bytes=4000,
                     max_body_bytes=300)
    with TestClient(app) as client:
        big = [task_body(meta={"pad": "x" * 5000})]
        r = client.post("/api/v1/tasks", json=big, headers=admin)
        assert r.status_code == 413 and "limit of 4000" in r.json()["detail"]
        r = client.post("/api/v1/annotators", json={"name": "x" * 400}, headers=admin)
        assert r.status_code == 413

        def chunks():  # no Content-Length: counted while it streams
            for _ in range(10):
                yield b" " * 100

        r = client.post("/api/v1/annotators", content=chunks(),
                        headers={**admin, "Content-Type": "application/json"})
        assert r.status_code == 413
        assert app.state.db.counts()["annotators"] == 0 and app.state.db.counts()["tasks"] == 0


def test_bad_arguments_to_create_app(tmp_path):
    from facecore.label import create_app

    with pytest.raises(ValueError, match="admin_token"):
        create_app(tmp_path / "x.sqlite", admin_token="short")
    with pytest.raises(ValueError, match="max_body_bytes"):
        create_app(tmp_path / "x.sqlite", admin_token="long-enough", max_body_bytes=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_app(tmp_path / "missing" / "x.sqlite", admin_token="long-enough")
    with pytest.raises(ValueError, match="directory"):
        create_app(tmp_path, admin_token="long-enough")
    app = create_app(tmp_path / "gen.sqlite")
    assert len(app.state.admin_token) > 20


def test_judgments_per_task_cap(tmp_path, admin):
    from fastapi.testclient import TestClient

    from facecore.label import create_app

    from .conftest import ADMIN

    app = create_app(tmp_path / "cap.sqlite", admin_token=ADMIN, judgments_per_task=1)
    with TestClient(app) as client:
        t1, t2 = load(client, admin, [task_body(), task_body()])
        heads = [{"Authorization": "Bearer " + client.post("/api/v1/annotators", json={"name": n},
                                                            headers=admin).json()["token"]} for n in "xy"]
        assert client.get("/api/v1/tasks/next", headers=heads[0]).json()["task_id"] == t1
        assert judge(client, heads[0], t1, client_id="k1").status_code == 201
        assert client.get("/api/v1/tasks/next", headers=heads[1]).json()["task_id"] == t2


def test_stats_gold_and_repeat_numbers(client, admin, new_annotator):
    """A scripted answer set with known accuracy and consistency."""
    pairs = load(client, admin, [task_body(), task_body(), task_body()])
    gold = load(client, admin, [task_body(meta={"kind": "gold", "gold": g}) for g in ("a", "b", "a", "b")])
    # repeats: two identical, one with the candidates swapped (the chosen picture is what must match)
    swapped = task_body(colors=((9, 9, 9), (0, 0, 200), (200, 0, 0)))
    reps = load(client, admin, [task_body(meta={"kind": "repeat", "repeat_of": pairs[0]}),
                                task_body(meta={"kind": "repeat", "repeat_of": pairs[1]}),
                                {**swapped, "meta": {"kind": "repeat", "repeat_of": pairs[2]}}])
    aid, ann = new_annotator("scripted")
    answers = [(pairs[0], "a"), (pairs[1], "b"), (pairs[2], "a"),
               (gold[0], "a"), (gold[1], "b"), (gold[2], "b"), (gold[3], "skip"),  # 2 of 3 right, 1 skipped
               (reps[0], "a"), (reps[1], "a"), (reps[2], "b")]  # consistent, inconsistent, consistent (swap)
    for k, (tid, choice) in enumerate(answers):
        assert judge(client, ann, tid, choice, f"s{k}", response_ms=100 * (k + 1)).status_code == 201
    stats = client.get("/api/v1/stats", headers=admin).json()
    (row,) = [a for a in stats["annotators"] if a["annotator_id"] == aid]
    assert row["count"] == 10 and row["skips"] == 1 and row["ties"] == 0
    assert row["gold_n"] == 3 and row["gold_accuracy"] == pytest.approx(2 / 3)
    assert row["repeat_n"] == 3 and row["repeat_consistency"] == pytest.approx(2 / 3)
    assert row["median_response_ms"] == pytest.approx(550)
    assert (stats["tasks"], stats["judgments"]) == (10, 10)


def test_page_and_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: everything is served locally
