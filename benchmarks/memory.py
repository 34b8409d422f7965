"""``peak_rss(fn)``: the peak resident-set growth while ``fn()`` runs, and its CPU seconds.

torch's CPU allocations are invisible to tracemalloc, so memory is sampled from the OS every ~1 ms by a
thread; the CPU seconds (``time.process_time``) are less sensitive than wall time to other processes on
a shared machine (they include the sampler thread's small share)."""

from __future__ import annotations

import threading
import time

import psutil


def peak_rss(fn) -> tuple[float, float]:
    """``(peak RSS growth in MiB, process CPU seconds)`` of ``fn()``."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    th = threading.Thread(target=sample)
    th.start()
    cpu0 = time.process_time()
    try:
        fn()
    finally:
        done.set()
        th.join()
    cpu = time.process_time() - cpu0
    return (max(peak[0], proc.memory_info().rss) - base) / 2**20, cpu
