"""facecore: fast differentiable kernels and pipelines for ARKit-blendshape facial animation.

Submodules are imported lazily so that ``import facecore`` stays cheap:
``facecore.arkit`` (the 61-channel schema), ``facecore.io`` (file formats), ``facecore.ops``
(the kernels as torch custom ops), ``facecore.reference`` (plain-torch oracles),
``facecore.rig`` (face rigs).
"""

from __future__ import annotations

import importlib
from typing import Any

from . import _C

__version__: str = _C.build_info()["version"]

_SUBMODULES = ("arkit", "io", "ops", "reference", "rig", "render", "losses", "nn", "animate", "cli")


def build_info() -> dict[str, Any]:
    """What this build of facecore contains.

    Keys: ``version``; ``cuda`` (CUDA kernels compiled), ``cuda_archs`` (list of architectures);
    ``triton`` (Triton importable); ``threads`` (the CPU threads kernels will use, which is
    ``torch.get_num_threads()``); ``compiler``; ``torch`` (torch version).
    """
    info = dict(_C.build_info())
    info["cuda_archs"] = [a for a in info["cuda_archs"].replace(",", ";").split(";") if a]
    try:
        importlib.import_module("triton")
        info["triton"] = True
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        info["triton"] = False
    import torch

    info["threads"] = torch.get_num_threads()
    info["torch"] = torch.__version__
    info["cuda_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return info


def cmake_prefix_path() -> str:
    """The prefix to give CMake (``-DCMAKE_PREFIX_PATH``) so that ``find_package(facecore)`` works."""
    from pathlib import Path

    # The compiled module sits in the install prefix next to include/ and lib/cmake/facecore
    # (also for editable installs, where this __init__.py stays in the source tree).
    return str(Path(_C.__file__).resolve().parent)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'facecore' has no attribute {name!r}")


__all__ = ["__version__", "build_info", "cmake_prefix_path", *_SUBMODULES]
