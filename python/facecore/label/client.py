"""``LabelClient``: the labeling app's HTTP API from Python (httpx), for scripts and simulated annotators.

Annotator calls (an annotator token):
    ``next_task() -> dict | None``            the next trial (``task_id, region, shown_left, *_url``),
                                              None when no task is left
    ``judge(task_id, region, choice, client_id=None, response_ms=0) -> dict``
                                              submit ``choice`` in candidate terms ("a"|"b"|"tie"|"skip");
                                              retried on connection errors with the same client_id
    ``undo() -> dict | None``, ``me() -> dict``, ``picture(url) -> bytes`` (PNG)
Admin calls (the admin token):
    ``add_annotator(name) -> {annotator_id, name, token}``, ``load_tasks(tasks) -> [task_id]``,
    ``export(include_skip=False) -> [row]``, ``stats() -> dict``

Errors: an HTTP error status raises :class:`LabelError` carrying ``status`` and the server's ``detail``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx


class LabelError(RuntimeError):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail
        super().__init__(f"HTTP {status}: {detail}")


class LabelClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, retries: int = 5):
        if not isinstance(token, str) or not token:
            raise ValueError("token: expected a non-empty string")
        self.retries = retries
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, retry: bool = False, **kw: Any) -> httpx.Response:
        for attempt in range(self.retries + 1 if retry else 1):
            try:
                resp = self._http.request(method, path, **kw)
            except httpx.TransportError:
                if not retry or attempt == self.retries:
                    raise
                time.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            if retry and resp.status_code == 503 and attempt < self.retries:
                time.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            if resp.status_code >= 400:
                try:
                    detail = resp.json().get("detail", resp.text)
                except (ValueError, AttributeError):
                    detail = resp.text
                raise LabelError(resp.status_code, str(detail))
            return resp
        raise AssertionError("unreachable")

    # -- annotator -----------------------------------------------------------------------------
    def next_task(self) -> dict[str, Any] | None:
        resp = self._request("GET", "/api/v1/tasks/next", retry=True)
        return None if resp.status_code == 204 else resp.json()

    def judge(self, task_id: str, region: str, choice: str, client_id: str | None = None,
              response_ms: int = 0) -> dict[str, Any]:
        """Submit one answer; safe to repeat (the same ``client_id`` is stored once)."""
        body = {"task_id": task_id, "region": region, "choice": choice,
                "client_id": client_id or uuid.uuid4().hex, "response_ms": int(response_ms)}
        return self._request("POST", "/api/v1/judgments", json=body, retry=True).json()

    def undo(self) -> dict[str, Any] | None:
        try:
            return self._request("POST", "/api/v1/judgments/undo").json()
        except LabelError as exc:
            if exc.status == 404:
                return None
            raise

    def me(self) -> dict[str, Any]:
        return self._request("GET", "/api/v1/me").json()

    def picture(self, url: str) -> bytes:
        return self._request("GET", url, retry=True).content

    # -- admin ---------------------------------------------------------------------------------
    def add_annotator(self, name: str) -> dict[str, str]:
        return self._request("POST", "/api/v1/annotators", json={"name": name}).json()

    def load_tasks(self, tasks: list[dict[str, Any]]) -> list[str]:
        return self._request("POST", "/api/v1/tasks", json=tasks).json()["task_ids"]

    def export(self, include_skip: bool = False) -> list[dict[str, Any]]:
        resp = self._request("GET", "/api/v1/export", params={"include_skip": str(include_skip).lower()})
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/api/v1/stats").json()
