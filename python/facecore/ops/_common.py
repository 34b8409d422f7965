"""Shared plumbing for the op modules: backend choice, argument checks, thread/stream plumbing.

Every op module in facecore.ops follows the same recipe (see ../shared/DESIGN.md): a
``torch.library.custom_op`` per kernel entry, ``register_fake`` for torch.compile,
``register_autograd`` pairing forward with backward, and a public function that validates
arguments with messages naming the argument, then picks a backend.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence

import torch

from .. import _C

BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")


@functools.cache
def cuda_compiled() -> bool:
    return bool(_C.build_info()["cuda"])


@functools.cache
def triton_available() -> bool:
    try:
        importlib.import_module("triton")
        return True
    except Exception:  # noqa: BLE001
        return False


def threads() -> int:
    """CPU threads for a kernel call: torch's setting, so torch.set_num_threads governs facecore too."""
    return torch.get_num_threads()


def stream(t: torch.Tensor) -> int:
    """The current CUDA stream of t's device as an integer handle (0 on CPU)."""
    if t.is_cuda:
        return torch.cuda.current_stream(t.device).cuda_stream
    return 0


def choose_backend(op: str, backend: str, device: torch.device, *, has_triton: bool = False,
                   has_cuda: bool = True) -> str:
    """Resolve backend="auto" and validate an explicit choice against the device and the build."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cpu":
            return "cpu"
        if device.type == "cuda":
            if has_cuda and cuda_compiled():
                return "cuda"
            if has_triton and triton_available():
                return "triton"
            return "reference"
        return "reference"
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"{op}: backend='cpu' needs CPU tensors, got tensors on {device}")
    if backend == "cuda":
        if device.type != "cuda":
            raise ValueError(f"{op}: backend='cuda' needs CUDA tensors, got tensors on {device}")
        if not has_cuda:
            raise ValueError(f"{op}: there is no CUDA kernel for this op; use backend='triton'")
        if not cuda_compiled():
            raise ValueError(f"{op}: this facecore build has no CUDA kernels "
                             "(facecore.build_info()['cuda'] is False)")
    if backend == "triton":
        if not has_triton:
            raise ValueError(f"{op}: there is no Triton kernel for this op")
        if not triton_available():
            raise ValueError(f"{op}: backend='triton' needs the triton package (pip install triton)")
    return backend


def check_tensor(op: str, name: str, t: object, *, ndim: int | Sequence[int] | None = None,
                 dtypes: Sequence[torch.dtype] | None = None, spec: str = "") -> torch.Tensor:
    """Type, ndim, dtype and finiteness-free checks with a message naming the argument."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            raise ValueError(f"{op}: {name} must have shape {spec or allowed}, got {list(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{op}: {name} must have dtype {names}, got {str(t.dtype).removeprefix('torch.')}")
    return t


def check_same_device(op: str, **tensors: torch.Tensor | None) -> torch.device:
    items = [(k, v) for k, v in tensors.items() if v is not None]
    dev = items[0][1].device
    for k, v in items[1:]:
        if v.device != dev:
            raise ValueError(f"{op}: {k} is on {v.device} but {items[0][0]} is on {dev}; "
                             "all tensors must be on one device")
    return dev


def check_same_dtype(op: str, **tensors: torch.Tensor | None) -> torch.dtype:
    items = [(k, v) for k, v in tensors.items() if v is not None]
    dt = items[0][1].dtype
    for k, v in items[1:]:
        if v.dtype != dt:
            raise TypeError(f"{op}: {k} has dtype {v.dtype} but {items[0][0]} has {dt}; "
                            "they must match")
    return dt


def checked_indices(op: str, name: str, idx: torch.Tensor, bound: int) -> torch.Tensor:
    """``idx`` (int32/int64 ``[N, C]`` vertex indices, each in ``[0, bound)``) as int32, contiguous.

    Call it inside the custom op (custom op bodies run eagerly even under torch.compile). Checked here on
    the GPU (one min/max reduction and one sync) and for int64 *before* the cast, which would otherwise
    wrap 2**32 + 1 to 1, a wrong index that looks valid; CPU int32 indices are left to the C++ kernel,
    which checks them in the pass that reads them. Raises ValueError naming the first bad row.
    """
    if idx.numel() and (idx.dtype != torch.int32 or idx.device.type != "cpu"):
        lo, hi = torch.aminmax(idx)
        if int(lo) < 0 or int(hi) >= bound:
            bad = int(((idx < 0) | (idx >= bound)).any(1).nonzero()[0])
            raise ValueError(f"{op}: {name}[{bad}] = {idx[bad].tolist()} has a vertex index outside "
                             f"[0, V={bound})")
    return idx.to(torch.int32).contiguous()
