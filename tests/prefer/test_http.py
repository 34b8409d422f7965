"""The HTTP path: a tiny round whose judgments go through the labeling app (a real uvicorn on 127.0.0.1)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from .conftest import tiny_config

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")


@pytest.fixture
def label_server(tmp_path):
    from facecore.label import create_app

    app = create_app(tmp_path / "label.sqlite", admin_token="admin-secret", judgments_per_task=1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_round_over_http(tmp_path, tiny_checkpoint, label_server):
    from facecore.estimator import Estimator
    from facecore.label import LabelClient
    from facecore.prefer import run_round
    from facecore.prefer.judging import http_judge

    cfg = tiny_config(tmp_path / "run", tiny_checkpoint, pairs=6, images=4, app=label_server,
                      app_token="admin-secret", steps=3, relabel_pairs=0, reward_steps=5)
    res = run_round(Estimator.load(tiny_checkpoint), cfg, 1, judge=http_judge(cfg), out_dir=tmp_path / "r1")
    j = res.judgments
    assert len(j) == 12  # 6 pairs x 2 regions, each answered once through the app
    assert sorted(zip(j.pair.tolist(), j.region.tolist())) == [(p, r) for p in range(6) for r in range(2)]
    assert set(j.preference.tolist()) <= {0.0, 0.5, 1.0}
    with LabelClient(label_server, "admin-secret") as admin:
        rows = admin.export()
        stats = admin.stats()
    assert len(rows) == 12 and {r["round"] for r in rows} == {1}
    assert all(r["annotator_id"] for r in rows) and stats["tasks"] == 12
    # 3 steps on 6 pairs: the loss is only checked to be finite here (test_rounds checks that it falls).
    assert np.isfinite(res.metrics["dpo_loss_after"]) and np.isfinite(res.metrics["dpo_loss_before"])
