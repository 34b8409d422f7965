"""Text script -> semantic keyframes -> smooth 61-channel animation (the KeyframeFace pipeline).

Public names: :class:`SemanticGenerator`, :class:`LLMGenerator`, :func:`interpolate`,
:func:`animate`, :func:`load_script` / :class:`Script`, :func:`add_secondary_motion`, :func:`run_demo`,
and the offline sentence encoder :class:`MiniLMEncoder` / :func:`default_encoder` (used by SemanticFace too).
Submodules load lazily, so ``import facecore.animate`` does not pull in torch-heavy pieces.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported eagerly: the function shares its name with its submodule, and a lazy lookup would be
# shadowed by the submodule once anything imports facecore.animate.interpolate.
from .interpolate import interpolate  # noqa: F401 - re-exported

_LAZY = {
    "SemanticGenerator": "semantic",
    "LLMGenerator": "llm",
    "animate": "pipeline",
    "generate_keyframes": "pipeline",
    "Script": "script",
    "Keyframe": "script",
    "load_script": "script",
    "load_keyframes": "script",
    "from_responses": "script",
    "parse_script": "script",
    "add_secondary_motion": "secondary",
    "mirror": "secondary",
    "run_demo": "demo",
    "MiniLMEncoder": "encoder",
    "default_encoder": "encoder",
    "DEMO_SCRIPT": "demo",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'facecore.animate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


__all__ = sorted([*_LAZY, "interpolate"])
