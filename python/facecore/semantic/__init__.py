"""SemanticFace in facecore: ARKit parameters <-> structured FACS-style analysis text.

* Stage 1 (:mod:`.describe`): :func:`describe` (61 parameters -> the four-part analysis, from the
  animator's FACS lexicon run in reverse), :func:`analysis_text` (the released numbered Markdown),
  :func:`answer_text` (the whole answer a model should write: analysis, then the 61 channels with
  one decimal), :func:`quantize` and :func:`nearest_emotion`.
* Stage 2: :func:`train` / :class:`SemanticConfig` (:mod:`.training`: a small LLaVA-style VLM trained by
  facecore, or any local HF VLM with LoRA, on synthetic renders with stage-1 targets), :func:`load` ->
  :class:`SemanticModel` (``.predict(images) -> [(analysis, params)]``, constrained decoding),
  :func:`evaluate` / :func:`format_table` (:mod:`.evaluation`).
* Reading and writing answers lives in :mod:`facecore.io` (``parse_semanticface``,
  ``read_semanticface_answers``, ``semanticface_to_csv``).

Stage 1 is imported at once (numpy only, no torch): its module is named like its main function, and
importing the submodule first (``from facecore.semantic.describe import …``) would otherwise leave
``facecore.semantic.describe`` bound to the module. Names added later import lazily, so that
``import facecore.semantic`` (and the ``facecore`` CLI) loads no model code.
"""

from __future__ import annotations

import importlib

from .describe import FAMILIES, REGIONS, analysis_text, answer_text, describe, nearest_emotion, quantize

_EXPORTS: dict[str, tuple[str, ...]] = {
    # module (relative) -> public names, loaded on first use
    ".training": ("train", "SemanticConfig"),
    ".inference": ("load", "SemanticModel"),
    ".evaluation": ("evaluate", "format_table"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = ["FAMILIES", "REGIONS", "analysis_text", "answer_text", "describe", "nearest_emotion", "quantize",
           *sorted(_WHERE)]


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'facecore.semantic' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
