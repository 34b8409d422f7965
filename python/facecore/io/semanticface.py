"""SemanticFace JSON: a FACS-style analysis plus the 61 parameters it describes.

``{"analysis": {"expression_category": …, "muscle_movements": …, "emotional_implication": …,
"symmetry": …}, "arkit": {"EyeBlinkLeft": 0.1, …61…}}``

Language models tend to wrap that object in prose or a Markdown code fence, so
:func:`parse_semanticface` looks for the first JSON object in the text that has the two keys.
Channel values must be finite float32 numbers (|v| <= 3.4e38).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import arkit
from .errors import FormatError, excerpt, read_text, unknown_channel

__all__ = ["ANALYSIS_KEYS", "parse_semanticface", "format_semanticface", "read_semanticface",
           "write_semanticface", "find_json_object"]

ANALYSIS_KEYS = ("expression_category", "muscle_movements", "emotional_implication", "symmetry")

_DECODER = json.JSONDecoder()
_F32_MAX = float(np.finfo(np.float32).max)  # larger values would turn into inf in float32 params
_OBJECT_START = re.compile(r'\{[ \t\n\r]*["}]')  # a JSON object opens with a key, or is empty
_WINDOW = 4096  # characters decoded first after a '{' (x4 while the object goes on)
_WORK = 16  # give up after decoding this many times the text's length (plus 16M characters)
_TRY_COST = 16  # characters of work charged for each attempt, however short


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _decode_at(text: str, pos: int) -> tuple[Any, int, tuple[str, int] | None, int]:
    """``raw_decode`` at ``pos`` -> (object, end, None, work) or (None, 0, (message, position), work).

    The decoder sees a window of the text that grows only while the object goes on: each decoding
    error numbers its line by counting newlines from the start of the document it was given, which
    on the whole text would make every failed attempt cost O(pos). An object that decodes inside
    the window decodes the same in the whole text (the decoder never looks past its closing brace);
    an error that may come from the cut (at the window's end, or a string that runs past it) grows
    the window instead."""
    size, work = _WINDOW, _TRY_COST
    while True:
        doc = text[pos:pos + size]
        try:
            obj, end = _DECODER.raw_decode(doc)
            return obj, pos + end, None, work + end
        except json.JSONDecodeError as e:
            cut = e.pos >= len(doc) - 64 or e.msg.startswith("Unterminated string")
            work += len(doc) if cut else e.pos
            if not cut or pos + size >= len(text):
                return None, 0, (e.msg, pos + e.pos), work
        except RecursionError:
            return None, 0, ("nested too deeply", pos), work + len(doc)
        except ValueError as e:  # an integer literal over Python's 4300-digit limit
            return None, 0, (str(e), pos), work + len(doc)
        size *= 4


def _holds_match(obj: Any, keys: Sequence[str]) -> bool:
    """Whether a dict inside ``obj`` (decoded JSON) has all of ``keys``."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if all(k in o for k in keys):
                return True
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return False


def find_json_object(text: str, keys: Sequence[str] = (), *, path: str | os.PathLike | None = None,
                     line_offset: int = 0) -> tuple[dict[str, Any], int]:
    """The first JSON object in ``text`` having all of ``keys`` (free text around it is ignored),
    with the 0-based character position where it starts. Objects nested in a non-matching object
    are searched too (the text inside its strings is not). Raises :class:`FormatError` (line =
    ``line_offset`` + line in ``text``).

    Work is linear in the text: only a ``{`` followed by a key or ``}`` is tried (a few us each), a
    decoded object that holds no match is skipped whole, and the search gives up (FormatError) once
    the decoder has read 16 times the text's length (plus 16M characters): only attempts that
    overlap, as in thousands of nested objects that never close, get there.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    want = f" with keys {', '.join(keys)}" if keys else ""
    first_error: tuple[str, int] | None = None
    budget = _WORK * len(text) + 2**24
    m = _OBJECT_START.search(text)
    while m is not None:
        pos = m.start()
        obj, end, error, work = _decode_at(text, pos)
        budget -= work
        if error is None:
            if all(k in obj for k in keys):
                return obj, pos
            nxt = pos + 1 if _holds_match(obj, keys) else end
        else:
            first_error = first_error or error
            nxt = pos + 1
        if budget < 0:
            raise FormatError(f"no JSON object{want} found before giving up (too much text that looks "
                              "like broken JSON)", path=path, line=line_offset + _line_at(text, pos))
        m = _OBJECT_START.search(text, nxt)
    if first_error is not None:
        msg, at = first_error
        column = at - text.rfind("\n", 0, at)
        raise FormatError(f"no JSON object{want}; first JSON error: {msg} (column {column})", path=path,
                          line=line_offset + _line_at(text, at))
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
    if not strict:  # unknown names are dropped whatever their value (an O(1) test each)
        obj = {k: v for k, v in obj.items() if isinstance(k, str) and k.lower() in arkit._LOOKUP}
    for k, v in obj.items():
        if strict and (not isinstance(k, str) or k.lower() not in arkit._LOOKUP):
            raise fail(unknown_channel(k), k)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if strict or not isinstance(v, str) or not _is_number(v):
                raise fail(f"value of {excerpt(k)} must be a number, got {excerpt(v)}", k)
        elif not abs(v) <= _F32_MAX:  # NaN, inf, and values that float32 turns into inf
            raise fail(f"value of {excerpt(k)} is not finite (as float32): {excerpt(v)}", k)
    try:
        return arkit.to_vector(obj, missing="raise" if strict else "zero",
                               unknown="raise" if strict else "ignore")
    except (ValueError, TypeError) as e:
        # "channel 'JawOpen' given twice (as 'JawOpen' and 'jawOpen')": point at the later key.
        keys = [k for k in obj if repr(k) in str(e)]
        raise fail(str(e), keys[-1] if keys else None) from None


def _is_number(s: str) -> bool:
    try:
        return abs(float(s)) <= _F32_MAX
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
    if vec.dtype.kind == "f":
        with np.errstate(over="ignore"):
            vec = vec.astype(np.float32)  # checked after the cast: 1e39 is inf in float32
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
    text = read_text(path, encoding="utf-8")
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
