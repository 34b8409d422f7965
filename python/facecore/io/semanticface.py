"""SemanticFace JSON: a FACS-style analysis plus the 61 parameters it describes.

``{"analysis": {"expression_category": …, "muscle_movements": …, "emotional_implication": …,
"symmetry": …}, "arkit": {"EyeBlinkLeft": 0.1, …61…}}``

Language models tend to wrap that object in prose or a Markdown code fence, so
:func:`parse_semanticface` looks for the first JSON object in the text that has the two keys.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import arkit
from .errors import FormatError

__all__ = ["ANALYSIS_KEYS", "parse_semanticface", "format_semanticface", "read_semanticface",
           "write_semanticface", "find_json_object"]

ANALYSIS_KEYS = ("expression_category", "muscle_movements", "emotional_implication", "symmetry")

_DECODER = json.JSONDecoder()


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def find_json_object(text: str, keys: Sequence[str] = (), *, path: str | os.PathLike | None = None,
                     line_offset: int = 0) -> tuple[dict[str, Any], int]:
    """The first JSON object in ``text`` having all of ``keys`` (free text around it is ignored),
    with the 0-based character position where it starts. Objects nested in a non-matching object
    are searched too. Raises :class:`FormatError` (line = ``line_offset`` + line in ``text``)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    first_error: json.JSONDecodeError | None = None
    pos = text.find("{")
    while pos >= 0:
        try:
            obj, _ = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            first_error = first_error or e
        else:
            if isinstance(obj, dict) and all(k in obj for k in keys):
                return obj, pos
        pos = text.find("{", pos + 1)
    want = f" with keys {', '.join(keys)}" if keys else ""
    if first_error is not None:
        raise FormatError(f"no JSON object{want}; first JSON error: {first_error.msg} "
                          f"(column {first_error.colno})", path=path, line=line_offset + first_error.lineno)
    raise FormatError(f"no JSON object{want} found", path=path, line=line_offset + 1 if text else None)


def params_from_json(obj: Any, *, strict: bool, what: str, text: str, start: int,
                     path: str | os.PathLike | None, line_offset: int = 0) -> np.ndarray:
    """``{name: number}`` -> float32 [61]; errors name the key and its line in ``text``."""

    def fail(msg: str, key: str | None = None) -> FormatError:
        at = start
        if key is not None:
            found = text.find(json.dumps(key), start)
            at = found if found >= 0 else start
        return FormatError(f"{what}: {msg}", path=path, line=line_offset + _line_at(text, at))

    if not isinstance(obj, Mapping):
        raise fail(f"expected an object of {arkit.NUM_CHANNELS} channel values, got {type(obj).__name__}")
    for k, v in obj.items():
        try:
            arkit._lookup(k)
        except (ValueError, TypeError) as e:
            if strict:
                raise fail(str(e), k) from None
            continue  # lenient: unknown names are dropped whatever their value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if strict or not isinstance(v, str) or not _is_number(v):
                raise fail(f"value of {k!r} must be a number, got {v!r}", k)
        elif not math.isfinite(v):
            raise fail(f"value of {k!r} is not finite", k)
    try:
        return arkit.to_vector(obj, missing="raise" if strict else "zero",
                               unknown="raise" if strict else "ignore")
    except (ValueError, TypeError) as e:
        # "channel 'JawOpen' given twice (as 'JawOpen' and 'jawOpen')": point at the later key.
        keys = [k for k in obj if repr(k) in str(e)]
        raise fail(str(e), keys[-1] if keys else None) from None


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def parse_semanticface(text: str, *, strict: bool = True) -> tuple[dict[str, Any], np.ndarray]:
    """SemanticFace text -> ``(analysis, params float32 [61])``.

    The JSON object may follow (or sit inside) free text or a code fence. ``strict`` requires the
    four :data:`ANALYSIS_KEYS` and all 61 channels with known names; ``strict=False`` accepts
    missing analysis keys, fills absent channels with 0 and ignores unknown channel names.
    Channel names may use any convention of :mod:`facecore.arkit`. Raises :class:`FormatError`.
    """
    obj, start = find_json_object(text, ("analysis", "arkit"))
    analysis = obj["analysis"]
    if not isinstance(analysis, dict):
        raise FormatError(f"'analysis' must be an object, got {type(analysis).__name__}",
                          line=_line_at(text, start))
    if strict:
        absent = [k for k in ANALYSIS_KEYS if k not in analysis]
        if absent:
            raise FormatError(f"'analysis' lacks {', '.join(absent)}", line=_line_at(text, start))
    params = params_from_json(obj["arkit"], strict=strict, what="'arkit'", text=text,
                              start=text.find('"arkit"', start), path=None)
    return analysis, params


def _json_number(v: float) -> float:
    # The shortest decimal that reads back as the same float32: 0.2, not 0.20000000298023224.
    return float(np.format_float_positional(np.float32(v), unique=True))


def params_to_json(params: Any, what: str = "params") -> dict[str, float]:
    """float [61] -> ``{LiveLinkName: float}`` with float32-shortest values; NaN/inf raise."""
    vec = np.asarray(params.detach().cpu().numpy() if hasattr(params, "detach") else params)
    if vec.shape != (arkit.NUM_CHANNELS,):
        raise ValueError(f"{what} must have shape [{arkit.NUM_CHANNELS}], got {list(vec.shape)}")
    if not np.isfinite(vec).all():
        raise ValueError(f"{what} has non-finite values in "
                         f"{', '.join(arkit.NAMES[i] for i in np.flatnonzero(~np.isfinite(vec)))}")
    return {n: _json_number(v) for n, v in zip(arkit.NAMES, vec.astype(np.float32).tolist())}


def format_semanticface(analysis: Mapping[str, Any], params: Any, *, indent: int | None = None) -> str:
    """``(analysis, params [61])`` -> SemanticFace JSON text (channels in Live Link Face names).
    ``analysis`` keys keep their order, with :data:`ANALYSIS_KEYS` first."""
    if not isinstance(analysis, Mapping):
        raise TypeError(f"analysis must be a dict, got {type(analysis).__name__}")
    ordered = {k: analysis[k] for k in ANALYSIS_KEYS if k in analysis}
    ordered.update({k: v for k, v in analysis.items() if k not in ordered})
    return json.dumps({"analysis": ordered, "arkit": params_to_json(params)}, indent=indent,
                      ensure_ascii=False)


def read_semanticface(path: str | os.PathLike, *, strict: bool = True) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`parse_semanticface` on a file; errors carry the path."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return parse_semanticface(text, strict=strict)
    except FormatError as e:
        raise FormatError(e.reason, path=path, line=e.line) from None


def write_semanticface(path: str | os.PathLike, analysis: Mapping[str, Any], params: Any, *,
                       indent: int | None = 2) -> None:
    """Write :func:`format_semanticface` output (plus a newline) to ``path``."""
    text = format_semanticface(analysis, params, indent=indent)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
