"""Atomic outputs: a file appears whole or not at all, even when Ctrl-C or SIGTERM arrives.

facecore's CLI turns SIGTERM into ``SystemExit`` (``cli_support.exit_on_sigterm``) so that
``finally`` blocks clean up. An exception raised between "a resource exists" and "a variable names
it" leaks that resource: a temporary file created but not yet returned by ``mkstemp``, or an ffmpeg
process started but not yet known to its caller (which then waits on its stdin until this process
exits, and writes its output file after the cleanup has removed it). :func:`interrupts_deferred` holds
interrupts across such statements; :func:`atomic_path` is the one temporary-file-then-rename helper that
every atomic write in facecore goes through.
"""
from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# SIGALRM too: exit_on_sigterm re-raises a dropped SIGTERM from a SIGALRM.
_DEFERRED = tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGALRM") if hasattr(signal, s))


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGALRM until the block ends; each one that arrived is then raised
    again, so its handler runs (and its exception is raised) as the block exits.

    Signals are held at the Python level: their Python handlers are swapped for one that only records
    them. A signal mask would not do: with other threads alive (torch's and OpenMP's pools) the kernel
    hands a process-directed signal to a thread that does not block it, and Python runs the handler in
    the main thread anyway. Signals left at their default or ignored are not touched, and outside the
    main thread (where Python cannot set handlers, and runs none) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {}
    for s in _DEFERRED:
        handler = signal.getsignal(s)
        if callable(handler):  # a Python handler: one that could raise in the middle of the block
            previous[s] = signal.signal(s, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(arrived):  # each once, in arrival order; its handler runs right after
            signal.raise_signal(s)


@contextmanager
def atomic_path(out: str | os.PathLike, prefix: str, suffix: str = "",
                mode: int | None = None) -> Iterator[Path]:
    """A temporary file beside ``out`` (named ``prefix…suffix``; the parent folder is created) that
    replaces ``out`` when the block completes and is removed otherwise (an error, Ctrl-C, SIGTERM).
    ``mode``: the output's permission bits (default ``0o666`` less the umask; mkstemp makes the file
    private)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        # Deferred, so that no interrupt lands between mkstemp and ``tmp`` naming its file; a signal
        # held here is raised as the block ends, inside the try, and the finally removes the file.
        with interrupts_deferred():
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=out.parent)
            os.close(fd)
            tmp = Path(name)
        yield tmp
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
