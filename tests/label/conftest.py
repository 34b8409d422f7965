"""Fixtures for the labeling app: a fresh app on a temporary database, admin and annotator clients."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from facecore.label import create_app  # noqa: E402

ADMIN = "admin-token-for-tests"


@pytest.fixture
def app(tmp_path):
    return create_app(tmp_path / "label.sqlite", admin_token=ADMIN)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin():
    return {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def new_annotator(client, admin):
    """``new_annotator(name) -> (annotator_id, headers)``."""

    def make(name="ann"):
        r = client.post("/api/v1/annotators", json={"name": name}, headers=admin)
        assert r.status_code == 201, r.text
        body = r.json()
        return body["annotator_id"], {"Authorization": f"Bearer {body['token']}"}

    return make
