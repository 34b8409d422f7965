"""The labeling app's serving latency (target: a trial in < 50 ms median on 2 cores).

    pytest benchmarks/test_label.py --benchmark-only --benchmark-min-rounds=3

A real uvicorn in a child process (one worker, like ``facecore label serve``) on 127.0.0.1, driven by
one keep-alive httpx client, with pre-rendered 256x256 candidates (smooth renders with a little
noise, ~100 KB PNGs, so the bytes are not trivially compressible). Rows:

* ``trial``: what the page does per trial: ``GET /api/v1/tasks/next`` + the photo + the two
  candidate PNGs (sequential; a browser fetches the three pictures in parallel);
* ``page``: the page's first load: ``GET /`` + ``app.js`` + ``app.css``;
* ``answer``: ``POST /api/v1/judgments`` (one durable SQLite commit, fsync included) + the next
  ``GET /api/v1/tasks/next``.
"""

from __future__ import annotations

import base64
import io
import itertools
import uuid

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.label.live import ServerProcess  # noqa: E402

from facecore.label import Database, loader  # noqa: E402

ADMIN = "benchmark-admin-token"


def render_like_png(seed: int, size: int = 256) -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    face = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.12).astype(np.float32)
    img = np.stack([0.2 + 0.6 * face * (1 - y), 0.2 + 0.5 * face * x, 0.3 * face + 0.1], -1)
    img = np.clip(img * 255 + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    db_path = tmp_path_factory.mktemp("label-bench") / "bench.sqlite"
    db = Database(db_path)
    pngs = [render_like_png(k) for k in range(30)]
    tasks = [{"image": pngs[(3 * k) % 30], "candidate_a": {"png": pngs[(3 * k + 1) % 30]},
              "candidate_b": {"png": pngs[(3 * k + 2) % 30]}, "region": ("upper", "lower")[k % 2],
              "meta": {"round": 1}} for k in range(3000)]
    loader.load(db, tasks)
    token = db.add_annotator("bench")["token"]
    server = ServerProcess(db_path, ADMIN).start()
    client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"})
    try:
        yield client, len(base64.b64decode(pngs[1]))
    finally:
        client.close()
        server.stop()


def test_trial(benchmark, served):
    client, png_size = served
    benchmark.group = "label serving"
    benchmark.extra_info["candidate_png_bytes"] = png_size

    def trial():
        task = client.get("/api/v1/tasks/next").json()
        sizes = [len(client.get(task[k]).content) for k in ("image_url", "left_url", "right_url")]
        assert min(sizes) > 1000
        return task

    benchmark(trial)


def test_page(benchmark, served):
    client, _ = served
    benchmark.group = "label serving"

    def page():
        for path in ("/", "/static/app.js", "/static/app.css"):
            assert client.get(path).status_code == 200

    benchmark(page)


def test_answer(benchmark, served):
    client, _ = served
    benchmark.group = "label serving"
    counter = itertools.count()

    def answer():
        task = client.get("/api/v1/tasks/next").json()
        r = client.post("/api/v1/judgments", json={
            "task_id": task["task_id"], "region": task["region"], "choice": "a",
            "client_id": f"bench-{next(counter)}-{uuid.uuid4().hex[:8]}", "response_ms": 900})
        assert r.status_code == 201, r.text

    benchmark.pedantic(answer, rounds=200, iterations=1, warmup_rounds=5)
