"""The face estimator (SuperFace, part 1): image -> a Gaussian over the 61 ARKit parameters.

* :class:`PseudoLabeler` -- a seeded simulation of capture-software labels (Live Link Face / ARKit),
  the SuperFace baseline's training targets (:mod:`.pseudo`);
* :class:`Estimator`, :func:`load_pretrained` -- the network and its shipped checkpoint;
  :func:`train` / :class:`TrainConfig` -- training on pseudo labels or on the truth (:mod:`.training`);
* :func:`refine` -- analysis-by-synthesis through facecore's differentiable renderer (:mod:`.refinement`);
* :func:`evaluate` / :func:`format_table` -- metrics against synthetic truth (:mod:`.metrics`).

Names import lazily: ``import facecore.estimator`` (and the ``facecore`` CLI, which registers the
estimator commands) loads neither torch models nor checkpoints. The modules of ``train`` and ``refine``
are named ``training`` and ``refinement`` so that a submodule import never rebinds those names.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # module (relative) -> public names
    ".pseudo": ("PseudoLabeler", "Profile", "PROFILES", "get_profile"),
    ".metrics": ("evaluate", "format_table", "REGIONS", "RARE_ACTIONS", "auc"),
    ".refinement": ("refine", "RefineResult", "RefineWeights"),
    ".model": ("Estimator",),
    ".pretrained": ("load_pretrained",),
    ".training": ("train", "TrainConfig"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'facecore.estimator' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
