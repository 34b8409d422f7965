"""facecore.video: controllable face video diffusion and the synthetic-data study (docs/video.md).

* :class:`VideoDiffusion` / :class:`VideoDiffusionConfig` (:mod:`.model`): the video transformer,
  ``sample(reference, motion) -> frames``, ``save``/``load``; :class:`NoiseSchedule` (:mod:`.schedule`).
* :class:`VideoTrainConfig`, :func:`train`, :func:`render_clip`, :func:`load_checkpoint` (:mod:`.training`).
* :class:`ClipDataset` (:mod:`.data`), the :mod:`.metrics` module and :func:`select` (:mod:`.select`):
  the study's data, metrics and synthetic-sample selection.

Every name loads its module on first use, so ``import facecore.video`` (and the ``facecore`` CLI) stays
cheap until a model is built.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "VideoDiffusion": "model", "VideoDiffusionConfig": "model", "biased_attention": "model",
    "NoiseSchedule": "schedule",
    "VideoTrainConfig": "training", "train": "training", "render_clip": "training",
    "load_checkpoint": "training",
    "ClipDataset": "data", "motion_maps": "data",
    "select": "select",
}
_MODULES = ("metrics",)  # exported as modules


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'facecore.video' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    # Importing a submodule binds it on the package under its own name (facecore.video.select would
    # become the module); bind the function instead so facecore.video.select(...) stays callable.
    globals()[name] = value
    return value


__all__ = sorted([*_LAZY, *_MODULES])
