"""``GLProcess``: software OpenGL (moderngl on Mesa llvmpipe, EGL) in its own spawned process.

Mesa reads ``LP_NUM_THREADS`` only when it loads, so each thread count needs a fresh process; Triton is
imported there before moderngl (both bring an LLVM; loading Mesa's first has crashed processes that
import Triton later). ``build(ctx, *setup_args) -> (run, release)`` is a module-level function (spawn
pickles it by name) that makes the GL objects; ``run(*run_args)`` draws one batch and returns its
read-back. The worker times each ``run`` with ``perf_counter`` and sends the seconds back, so the pipe's
round trip is not counted.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any


def _serve(conn, threads: int, build: Callable) -> None:
    os.environ["LP_NUM_THREADS"] = str(threads)  # read when Mesa loads: set before moderngl is imported
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401 - Triton's LLVM before Mesa's (see the module docstring)
    import torch

    torch.set_num_threads(threads)
    import moderngl

    try:
        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as e:  # noqa: BLE001
        conn.send(("skip", f"no headless OpenGL (EGL) context: {e}"))
        return
    conn.send(("ok", f"{ctx.info['GL_RENDERER']}, {ctx.info['GL_VERSION']}, LP_NUM_THREADS={threads}"))
    run = release = None
    while True:
        cmd, *args = conn.recv()
        if cmd == "setup":
            if release is not None:
                release()
            run, release = build(ctx, *args)
            conn.send(None)
        elif cmd == "run":
            want_image, *run_args = args
            t0 = time.perf_counter()
            out = run(*run_args)
            dt = time.perf_counter() - t0
            conn.send((dt, out.copy() if want_image else None))
        else:
            ctx.release()
            return


class GLProcess:
    """One spawned OpenGL process at ``threads`` llvmpipe threads; ``ok``/``info`` say whether it started."""

    def __init__(self, threads: int, build: Callable):
        mp = multiprocessing.get_context("spawn")
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_serve, args=(child, threads, build), daemon=True)
        self.proc.start()
        status, self.info = self.conn.recv()
        self.ok = status == "ok"

    def setup(self, *args: Any) -> None:
        self.conn.send(("setup", *args))
        self.conn.recv()

    def run(self, *args: Any, image: bool = False) -> tuple[float, Any]:
        """One batch: (seconds the worker measured, the read-back when ``image``)."""
        self.conn.send(("run", image, *args))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(("close",))
        self.proc.join(timeout=10)
