"""The synthetic data engine: sampled ARKit parameters, identities, cameras and lights -> rendered
faces with exact labels (parameters, 68 landmarks with visibility, masks, depth and normal maps).

* :func:`sample_params` / :class:`Prior` / :data:`PRIORS` (:mod:`.prior`): the documented parameter
  prior; :func:`sample_trajectory` for clips.
* :func:`sample_identity`, :func:`sample_appearance` (:mod:`.identity`): identity coefficients and
  skin tone / albedo variation.
* :class:`Scene`, :func:`load_preset`, :data:`PRESETS` (:mod:`.scene`, data in ``presets/*.json``):
  camera, lighting, background, sensor and material settings of a domain.
* :func:`render_batch` (:mod:`.render`): parameters + rig + scene -> a dict of images and labels.
* ``write_dataset`` / ``Dataset`` (:mod:`.dataset`): sharded datasets on disk and on the fly.

Every sample is reproducible from ``(seed, index)`` alone (see :mod:`.prior`).
"""

from __future__ import annotations

import importlib
from typing import Any

from .identity import sample_appearance, sample_identity
from .landmarks import NUM_LANDMARKS
from .prior import PRIORS, Prior, sample_params, sample_trajectory
from .render import render_batch
from .scene import PRESETS, Scene, load_preset

_LAZY = {"write_dataset": "dataset", "Dataset": "dataset", "DatasetSpec": "dataset",
         "read_manifest": "dataset"}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'facecore.synth' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


__all__ = ["NUM_LANDMARKS", "PRESETS", "PRIORS", "Prior", "Scene", "load_preset", "render_batch",
           "sample_appearance", "sample_identity", "sample_params", "sample_trajectory", *_LAZY]
