"""The app factory: ``create_app(db_path, admin_token=...) -> FastAPI``.

Routers per resource (tasks, judgments, admin, the page), auth as dependencies, a body-size limit
in front of everything, and error handlers that turn every bad request into a 4xx whose
``detail`` is one readable sentence (validation errors keep the structured list in ``errors``).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from . import routes_admin, routes_judgments, routes_tasks
from .db import Conflict, Database, Invalid, NotFound
from .limits import BodyLimit
from .render import ParamsRenderer

STATIC = Path(__file__).with_name("static")
API_VERSION = "v1"


def _validation_message(errors: list[dict]) -> str:
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            parts.append(f"body: invalid JSON (near character {err['loc'][-1]})")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def create_app(db_path: str | os.PathLike, admin_token: str | None = None, *,
               max_task_body_bytes: int = 32 * 2**20, max_body_bytes: int = 16 * 2**10,
               judgments_per_task: int | None = None, break_every_trials: int = 100,
               break_every_minutes: float = 20.0, render_params: bool = True) -> FastAPI:
    """Build the labeling app on the SQLite file ``db_path`` (created when missing).

    ``admin_token``: the admin's bearer token; when None a random one is generated and kept in
    ``app.state.admin_token`` (``facecore label serve`` prints it once). ``max_task_body_bytes``
    bounds ``POST /api/v1/tasks`` bodies, ``max_body_bytes`` every other body.
    ``judgments_per_task``: stop handing out a task once it has that many answers (None: every
    annotator sees every task). ``break_every_trials`` / ``break_every_minutes``: when the page
    reminds the annotator to take a break. ``render_params``: render params-only candidates at
    load time (:mod:`facecore.label.render`; False: refuse them with 422).
    """
    if admin_token is None:
        admin_token = "adm_" + secrets.token_urlsafe(24)
    if not isinstance(admin_token, str) or len(admin_token) < 8 or any(c.isspace() for c in admin_token):
        raise ValueError("admin_token: expected a string of at least 8 characters without spaces")
    for name, value in (("max_task_body_bytes", max_task_body_bytes), ("max_body_bytes", max_body_bytes),
                        ("break_every_trials", break_every_trials)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if judgments_per_task is not None and (not isinstance(judgments_per_task, int) or judgments_per_task < 1):
        raise ValueError(f"judgments_per_task: expected None or a positive integer, got {judgments_per_task}")

    app = FastAPI(title="facecore label", version=API_VERSION,
                  description="Pairwise preference labeling of rendered face candidates.")
    app.state.db = Database(db_path)
    app.state.admin_token = admin_token
    app.state.judgments_per_task = judgments_per_task
    app.state.break_every_trials = break_every_trials
    app.state.break_every_minutes = float(break_every_minutes)
    app.state.render = ParamsRenderer() if render_params else None

    for router in (routes_tasks.router, routes_judgments.router, routes_admin.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": _validation_message(errors), "errors": jsonable_encoder(errors)},
                            status_code=422)

    @app.exception_handler(Invalid)
    async def _invalid(request: Request, exc: Invalid) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(sqlite3.OperationalError)
    async def _busy(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        # the one server-side failure we expect (the database stayed locked past the busy timeout)
        return JSONResponse({"detail": f"database unavailable, retry: {exc}"}, status_code=503,
                            headers={"Retry-After": "1"})

    def limit_for(path: str) -> int:
        return max_task_body_bytes if path.rstrip("/") == "/api/v1/tasks" else max_body_bytes

    app.add_middleware(BodyLimit, limit_for=limit_for)
    return app
