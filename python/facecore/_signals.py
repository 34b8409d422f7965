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
_DEFERRED = tuple(s for s in ("SIGINT", "SIGTERM", "SIGALRM") if hasattr(signal, s))


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGALRM until the block ends; they are then delivered (and their
    Python handlers run) as usual. Only the main thread runs Python signal handlers, so elsewhere,
    and where the OS has no signal masks, this does nothing.

    A child process started inside the block inherits the mask: it is not interrupted by these
    signals sent to it alone (ffmpeg here, whose lifetime facecore controls through its stdin and kill).
    """
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, [getattr(signal, s) for s in _DEFERRED])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
