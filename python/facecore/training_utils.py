"""What every facecore training loop shares (the estimator, semantic distillation, video diffusion):
torchrun/DDP plumbing, the device choice, stable seeds, the parameter EMA, RNG state for exact resume and
atomic checkpoint writes. Each pipeline's ``training.py`` keeps its own loop top to bottom and calls these.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._atomic import atomic_path

__all__ = ["EMA", "all_mean", "atomic_save", "atomic_write", "barrier", "choose_device", "dist_setup",
           "read_checkpoint", "read_safetensors", "rng_state", "seed_of", "set_rng_state", "warmup_cosine"]


def dist_setup() -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group). Starts one from torchrun's
    environment (WORLD_SIZE > 1) when none is running: NCCL with CUDA, gloo otherwise."""
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def all_mean(values: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of ``values`` over the ``world`` ranks (a copy; ``values`` itself when world == 1)."""
    if world > 1:
        import torch.distributed as dist

        values = values.clone()
        dist.all_reduce(values)
        values /= world
    return values


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def choose_device(name: str, rank: int) -> torch.device:
    """``"auto"``: this rank's GPU (LOCAL_RANK) when CUDA is available, else the CPU; otherwise the named
    device, refused clearly when it is CUDA and none is available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: no CUDA device is available")
    return dev


def seed_of(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and platforms)."""
    h = hashlib.sha256(np.asarray(parts, dtype=np.int64).tobytes()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


class EMA:
    """Exponential moving average of a model's state, with the usual warmup of the decay
    (``min(decay, (1 + step) / (10 + step))``) so early averages are not dominated by the init.
    Non-float buffers (counters) are copied, not averaged."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1 - d)
            else:
                self.shadow[k].copy_(v)


def rng_state() -> dict[str, Any]:
    """torch, Python, legacy-numpy (and CUDA, when initialised) RNG states, as torch.save-able values."""
    np_state = np.random.get_state()  # noqa: NPY002 - saving the legacy global state others may use
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    legacy = ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    np.random.set_state(legacy)  # noqa: NPY002 - restoring the legacy global state
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it over ``path``: a reader (or a
    crash) never sees a half-written file. The parent folder is created."""
    path = Path(path)
    with atomic_path(path, prefix=f".{path.name}.", suffix=".partial", mode=0o644) as tmp:
        write(str(tmp))


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def warmup_cosine(step: int, steps: int, warmup_steps: int, floor: float) -> float:
    """Learning-rate multiplier at ``step``: linear warmup over ``warmup_steps``, then a cosine from 1 down
    to ``floor`` at ``steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, steps - warmup_steps)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def read_checkpoint(path: str | os.PathLike, fmt: str, what: str) -> dict[str, Any]:
    """Load a training checkpoint written with :func:`atomic_save` (tensors and plain values only:
    ``weights_only=True``) whose ``"format"`` is ``fmt``; FileNotFoundError / FormatError naming the file
    and ``what`` it should have been otherwise."""
    from .io.errors import FormatError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises many types for a damaged file
        raise FormatError(f"not a training checkpoint ({str(e).splitlines()[0][:120]})", path=path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise FormatError(f"not a {what}", path=path)
    return ckpt


def read_safetensors(path: str | os.PathLike, meta_key: str, what: str, hint: str = ""
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, header)`` of a facecore safetensors file whose metadata holds the JSON header under
    ``meta_key``: FileNotFoundError when absent, FormatError naming the file when it is not a
    safetensors file, has no such header (``hint`` says what else it may be) or the header is not a
    JSON object. ``what`` names the kind of file in the messages."""
    import json

    from safetensors import safe_open

    from .io.errors import FormatError, excerpt

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        raise FormatError(f"not a safetensors file ({excerpt(str(e), 120)})", path=path) from None
    if meta_key not in meta:
        also = f"; {hint}" if hint else ""
        raise FormatError(f"has no {meta_key!r} header (not a {what}{also})", path=path)
    try:
        header = json.loads(meta[meta_key])
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise FormatError(f"its {meta_key!r} header is not a JSON object (not a valid {what})", path=path)
    return tensors, header
