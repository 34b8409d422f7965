"""SIGTERM unwinds a ``facecore`` command like Ctrl-C, even when it lands where Python drops exceptions."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

# The child installs the handler, then SIGTERMs itself inside a weakref callback (Python prints and
# drops any exception raised there, as it did in CI inside importlib's module-lock callback), then
# keeps working. It must still unwind through its finally block and exit 128 + SIGTERM.
_CHILD = textwrap.dedent("""
    import os, signal, sys, time, weakref
    from facecore.cli_support import exit_on_sigterm

    exit_on_sigterm()

    class Thing:
        pass

    def callback(_):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecode boundaries: the handler runs here, inside the callback
            pass
        print("callback done", flush=True)

    thing = Thing()
    ref = weakref.ref(thing, callback)
    try:
        del thing
        print("after the callback", flush=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the work that must not run to the end
            sum(range(1000))
        print("finished the work", flush=True)
    finally:
        print("cleaned up", flush=True)
""")


def _run_until_sigterm(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python; it must end as a SIGTERM'd facecore command does (128 + 15)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.stdout, proc.stderr)
    return proc


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)")
@pytest.mark.timeout(60)
def test_sigterm_inside_a_weakref_callback_still_unwinds():
    proc = _run_until_sigterm(_CHILD)
    assert "cleaned up" in proc.stdout
    assert "finished the work" not in proc.stdout
    assert "Exception ignored" not in proc.stderr  # the dropped SystemExit is not reported as a bug


@pytest.mark.timeout(60)
def test_sigterm_at_a_plain_point_unwinds_once():
    child = textwrap.dedent("""
        import os, signal, time
        from facecore.cli_support import exit_on_sigterm
        exit_on_sigterm()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(20)
            print("slept", flush=True)
        finally:
            print("cleaned up", flush=True)
    """)
    proc = _run_until_sigterm(child)
    assert proc.stdout.split() == ["cleaned", "up"]


@pytest.mark.parametrize("threads", [0, 2])
@pytest.mark.timeout(60)
def test_interrupts_deferred_holds_sigterm_until_the_block_ends(threads):
    # With other threads alive (torch's and OpenMP's pools in a real command) the kernel hands a
    # process-directed signal to any thread; Python still runs the handler in the main thread.
    child = textwrap.dedent(f"""
        import os, signal, threading, time
        from facecore._atomic import interrupts_deferred
        from facecore.cli_support import exit_on_sigterm
        for _ in range({threads}):
            threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        exit_on_sigterm()
        try:
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                print("block finished", flush=True)
            print("after the block", flush=True)
        finally:
            print("cleaned up", flush=True)
    """)
    proc = _run_until_sigterm(child)
    assert proc.stdout.splitlines() == ["block finished", "cleaned up"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.timeout(60)
def test_sigterm_right_after_mkstemp_leaves_no_temporary_file(tmp_path):
    # The SIGTERM arrives as mkstemp returns, before atomic_file has named the file it made.
    child = textwrap.dedent(f"""
        import os, signal, tempfile
        from pathlib import Path
        from facecore.cli_support import atomic_file, exit_on_sigterm
        real = tempfile.mkstemp

        def mkstemp_then_sigterm(*a, **k):
            made = real(*a, **k)
            os.kill(os.getpid(), signal.SIGTERM)
            return made

        tempfile.mkstemp = mkstemp_then_sigterm
        exit_on_sigterm()
        with atomic_file(Path({str(tmp_path)!r}) / "out.csv") as tmp:
            print("inside", flush=True)
    """)
    proc = _run_until_sigterm(child)
    assert "inside" not in proc.stdout
    assert list(tmp_path.iterdir()) == []
