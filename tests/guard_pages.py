"""CPU tensors that end exactly at an inaccessible page, so that a kernel reading or writing one
element past the end faults (SIGSEGV) instead of silently using whatever lies there.

    t = guarded(x)             # a copy of x whose last byte is followed by a PROT_NONE page
    rc, log = run_isolated(f)  # run f() in a fresh interpreter: a crash is a return code, not a dead pytest

Linux/macOS only (mmap + mprotect through ctypes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import subprocess
import sys
from pathlib import Path

import torch

PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
PROT_NONE = 0  # not exported by the mmap module
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_keep: list[mmap.mmap] = []  # the mappings stay alive with the process (tests are short-lived)


def guarded(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy of ``t`` whose last byte is the last byte before a PROT_NONE page."""
    t = t.detach().cpu().contiguous()
    nbytes = t.numel() * t.element_size()
    if nbytes == 0:
        return t.clone()
    data_pages = -(-nbytes // PAGE) * PAGE
    m = mmap.mmap(-1, data_pages + PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if _libc.mprotect(ctypes.c_void_p(base + data_pages), PAGE, PROT_NONE) != 0:
        raise OSError(ctypes.get_errno(), "mprotect failed")
    _keep.append(m)
    out = torch.frombuffer(m, dtype=t.dtype, count=t.numel(), offset=data_pages - nbytes).view(t.shape)
    out.copy_(t)
    return out


def run_isolated(code: str, timeout: float = 120) -> tuple[int, str]:
    """Runs ``code`` (Python source) in a fresh interpreter with the repository on sys.path.

    Returns (return code, stdout + stderr); a return code of -11 is a SIGSEGV.
    """
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    p = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr
