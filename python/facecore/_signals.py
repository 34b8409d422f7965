"""Deferring Ctrl-C and SIGTERM across a few statements that must not be split.

facecore's CLI turns SIGTERM into ``SystemExit`` (``cli_support.exit_on_sigterm``) so that
``finally`` blocks clean up. An exception raised between "a resource exists" and "a variable names
it" leaks that resource: a temporary file created but not yet returned by ``mkstemp``, or an ffmpeg
process started but not yet known to its caller (which then waits on its stdin until this process
exits, and writes its output file after the cleanup has removed it).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
