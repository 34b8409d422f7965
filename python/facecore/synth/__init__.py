"""The synthetic data engine: sampled ARKit parameters, identities, cameras and lights -> rendered
faces with exact labels (parameters, 68 landmarks with visibility, masks, depth and normal maps).

* :func:`sample_params` / :class:`Prior` / :data:`PRIORS` (:mod:`.prior`): the documented parameter
  prior; :func:`sample_trajectory` for clips.
* :func:`sample_identity`, :func:`sample_appearance` (:mod:`.identity`): identity coefficients and
  skin tone / albedo variation.
* :class:`Scene`, :func:`load_preset`, :data:`PRESETS` (:mod:`.scene`, data in ``presets/*.json``):
  camera, lighting, background, sensor and material settings of a domain.
* :func:`render_batch` (:mod:`.render`): parameters + rig + scene -> a dict of images and labels;
  :func:`resolve_rig` (a name, path or FaceRig -> FaceRig).
* Building blocks other pipelines reuse (the estimator's refinement and metrics): :func:`deform_batch`
  (deform with per-sample identities), :func:`vertex_albedo`, :func:`num_identity`,
  :func:`landmark_indices` / :func:`project_landmarks` (the 68 labels), :func:`drawn_triangles` /
  :func:`materials_for` (which triangles a scene draws).
* ``write_dataset`` / ``Dataset`` (:mod:`.dataset`): sharded datasets on disk and on the fly.

Every sample is reproducible from ``(seed, index)`` alone (see :mod:`.prior`).
"""

from __future__ import annotations

import importlib
from typing import Any

# Every name loads its module on first use: `import facecore.synth` (and the `facecore` CLI, which
# registers `facecore synth`) stays cheap until something is sampled or rendered.
_LAZY = {
    "deform_batch": "identity", "num_identity": "identity", "sample_appearance": "identity",
    "sample_identity": "identity", "vertex_albedo": "identity",
    "NUM_LANDMARKS": "landmarks", "landmark_indices": "landmarks", "project_landmarks": "landmarks",
    "PRIORS": "prior", "Prior": "prior", "sample_params": "prior", "sample_trajectory": "prior",
    "render_batch": "render", "resolve_rig": "render",
    "PRESETS": "scene", "Scene": "scene", "drawn_triangles": "scene", "load_preset": "scene",
    "materials_for": "scene",
    "write_dataset": "dataset", "Dataset": "dataset", "DatasetSpec": "dataset", "read_manifest": "dataset",
}
_RENAMED = {"project_landmarks": "project"}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'facecore.synth' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), _RENAMED.get(name, name))


__all__ = sorted(_LAZY)
