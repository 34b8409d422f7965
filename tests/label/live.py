"""Helpers shared by the label tests and benchmark: tiny PNGs, task bodies, a real uvicorn server."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def png_bytes(color=(200, 30, 30), size=(8, 8)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def png_b64(color=(200, 30, 30), size=(8, 8)) -> str:
    return base64.b64encode(png_bytes(color, size)).decode()


def task_body(region="upper", meta=None, colors=((9, 9, 9), (200, 0, 0), (0, 0, 200)), size=(8, 8)) -> dict:
    photo, a, b = (png_b64(c, size) for c in colors)
    return {"image": photo, "candidate_a": {"png": a}, "candidate_b": {"png": b}, "region": region,
            "meta": meta or {}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base_url: str, token: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base_url + "/api/v1/stats", headers={"Authorization": f"Bearer {token}"},
                         timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"label server at {base_url} did not come up in {timeout} s")


class ServerProcess:
    """``facecore.label`` under a real uvicorn in a child process (so it can be SIGKILLed)."""

    def __init__(self, db_path, admin_token: str, port: int | None = None):
        self.db_path, self.admin_token = str(db_path), admin_token
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        code = ("from facecore.label.server import serve; import sys; "
                "serve(sys.argv[1], port=int(sys.argv[2]), admin_token=sys.argv[3])")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        argv = [sys.executable, "-c", code, self.db_path, str(self.port), self.admin_token]
        # the server's output goes to a file beside the database (a pipe nobody reads could fill and block it)
        with open(self.db_path + ".server.log", "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_ready(self.base_url, self.admin_token)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush; what SQLite committed must survive."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class ServerThread:
    """The app under uvicorn in a thread of this process (cheaper to start; for the browser test)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
