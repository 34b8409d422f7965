"""Run a test body in two CPU processes joined by a gloo process group (the DDP tests of every pipeline)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, target, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        target(rank, *args)
    finally:
        dist.destroy_process_group()


def run_gloo(target, *args, world: int = 2) -> None:
    """``target(rank, *args)`` in ``world`` spawned processes inside a gloo process group (``target`` must
    be a module-level function); skips when torch.distributed or gloo is unavailable."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_entry, args=(world, _free_port(), target, args), nprocs=world, join=True)
