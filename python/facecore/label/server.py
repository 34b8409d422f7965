"""Run the app under uvicorn (``facecore label serve``)."""

from __future__ import annotations

import os
import sys

from .app import create_app


def serve(db_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8765,
          admin_token: str | None = None, log_level: str = "warning", **app_options) -> None:
    """Serve ``db_path`` until interrupted. A generated admin token is printed once, to stdout."""
    import uvicorn

    app = create_app(db_path, admin_token=admin_token, **app_options)
    if admin_token is None:
        print(f"admin token: {app.state.admin_token}", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}, reachable from other machines; tokens travel unencrypted "
              "unless a TLS proxy is in front", file=sys.stderr, flush=True)
    print(f"facecore label: http://{host}:{port}/  (annotators open http://{host}:{port}/#token=<token>)",
          flush=True)
    # one worker: SQLite is the single writer anyway; the thread pool serves concurrent requests
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
