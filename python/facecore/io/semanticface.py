"""SemanticFace answers: a FACS-style analysis plus the 61 parameters it describes, in two forms.

The prompt's JSON object::

    {"analysis": {"expression_category": …, "muscle_movements": …, "emotional_implication": …,
     "symmetry": …}, "arkit": {"EyeBlinkLeft": 0.1, …61…}}

and the form the released SemanticFace model actually writes (its published example outputs):
numbered Markdown sections, then one flat JSON object of the 61 channels with one decimal::

    1. **Facial Expression Category**: …
    2. **Detailed Facial Muscle Movements**:
       - **Eyes**: …
       - **Mouth**: …
    3. **Emotional Implication**: …
    4. **Symmetry**: …

    {"EyeBlinkLeft": 0.0, …, "HeadRoll": -0.0, …}

:func:`parse_semanticface` reads both (JSON first: the first object with the two keys, wherever it
sits in prose or a code fence; else the sections and the last channel object);
:func:`format_semanticface` writes the JSON form with exact float32 values, :func:`format_answer`
either form with rounded values. :func:`read_semanticface_answers` reads a file of many answers
(the released inference's JSON Lines) and :func:`semanticface_to_csv` converts one to a Live Link
Face CSV the way the released ``jsonl2csv`` script does. Channel values must be finite float32
numbers (|v| <= 3.4e38).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import arkit
from .errors import FormatError, excerpt, read_text, unknown_channel

__all__ = ["ANALYSIS_KEYS", "parse_semanticface", "format_semanticface", "read_semanticface",
           "write_semanticface", "find_json_object", "structure_analysis", "parse_movements",
           "movements_text", "format_analysis_markdown", "format_answer", "SemanticAnswer",
           "read_semanticface_answers", "semanticface_to_csv", "REGION_NAMES"]

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
        vec = arkit.to_vector(obj, missing="raise" if strict else "zero",
                              unknown="raise" if strict else "ignore")
    except (ValueError, TypeError) as e:
        # "channel 'JawOpen' given twice (as 'JawOpen' and 'jawOpen')": point at the later key.
        keys = [k for k in obj if repr(k) in str(e)]
        raise fail(str(e), keys[-1] if keys else None) from None
    return vec  # signed zeros as written ("HeadRoll": -0.0 in the released answers) stay signed


def _is_number(s: str) -> bool:
    try:
        return abs(float(s)) <= _F32_MAX
    except ValueError:
        return False


def parse_semanticface(text: str, *, strict: bool = True,
                       structured: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """SemanticFace text -> ``(analysis, params float32 [61])``, from either form of answer:

    * the prompt's JSON object ``{"analysis": {…}, "arkit": {…}}``, possibly after (or inside) free
      text or a code fence; ``analysis`` is returned as written unless ``structured``;
    * the released model's form: numbered Markdown sections (``1. **Facial Expression Category**:
      …``, ``2. **Detailed Facial Muscle Movements**:`` with ``- **Region**: …`` bullets, ``3.
      **Emotional Implication**: …``, ``4. **Symmetry**: …``; titles may vary, as "Detailed Muscle
      Movements" or "Symmetry or Asymmetry") followed by one flat JSON object of channels (the last
      one in the text, as the released ``jsonl2csv`` takes it). ``analysis`` is then always
      structured (below).

    Structured analysis: ``expression_category``, ``emotional_implication``, ``symmetry`` (str, bold
    markers and line breaks removed), ``muscle_movements`` (``{region: text}``: labelled bullets keep
    their label, Brows/Eyes/Cheeks/Nose/Mouth/Jaw/Head spelled canonically; unlabelled bullets go to
    the region their first face word names, else "Other") and ``muscle_movements_text`` (the raw
    section). Keys are present only for sections that were found.

    Channels: any naming convention of :mod:`facecore.arkit`, any key order. The 52-blendshape
    variant (no pose keys at all) is accepted in both modes with the 9 pose channels 0.
    ``strict`` requires the four analysis parts and the 61 (or 52) channels with known names;
    ``strict=False`` accepts missing analysis parts, fills absent channels with 0 and ignores
    unknown channel names. Raises :class:`FormatError` naming what was expected.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    try:
        obj, start = find_json_object(text, ("analysis", "arkit"))
    except FormatError as json_error:
        found = _markdown_answer(text, strict=strict)
        if found is None:
            raise FormatError(
                f"{json_error.reason}; nor a released-style answer (numbered sections "
                "'1. **Facial Expression Category**: …' followed by a JSON object of ARKit channels)",
                line=json_error.line) from None
        return found
    analysis = obj["analysis"]
    if not isinstance(analysis, dict):
        raise FormatError(f"'analysis' must be an object, got {type(analysis).__name__}",
                          line=_line_at(text, start))
    if strict:
        absent = [k for k in ANALYSIS_KEYS if k not in analysis]
        if absent:
            raise FormatError(f"'analysis' lacks {', '.join(absent)}", line=_line_at(text, start))
    arkit_obj = _pose_optional(obj["arkit"])
    params = params_from_json(arkit_obj, strict=strict, what="'arkit'", text=text,
                              start=text.find('"arkit"', start), path=None)
    return (structure_analysis(analysis) if structured else analysis), params


def _channel_of(key: Any) -> int | None:
    """The channel index of a key, or None (not a str, an unknown name, or a name with no channel)."""
    i = arkit._LOOKUP.get(key.lower()) if isinstance(key, str) else None
    return i if i is not None and i >= 0 else None


def _pose_optional(obj: Any) -> Any:
    """The 52-key variant: a channel object without any pose key gets the 9 pose channels as 0."""
    if not isinstance(obj, Mapping) or len(obj) != arkit.NUM_BLENDSHAPES:
        return obj
    idx = {_channel_of(k) for k in obj}
    if idx == set(range(arkit.NUM_BLENDSHAPES)):
        return {**obj, **dict.fromkeys(arkit.POSE, 0.0)}
    return obj


# --- the released Markdown form -------------------------------------------------------------------
_SECTION = re.compile(r"^[ \t]*(?:#+[ \t]*)?(\d{1,2})[.)][ \t]*\*\*(.+?)\*\*[ \t]*:?[ \t]*(.*)$", re.M)
_SECTION_KEYS = (  # section title words -> analysis key (first match wins)
    (re.compile(r"categor|type of expression", re.I), "expression_category"),
    (re.compile(r"muscle|movement|action unit", re.I), "muscle_movements"),
    (re.compile(r"emotion|implication|meaning", re.I), "emotional_implication"),
    (re.compile(r"symmetr", re.I), "symmetry"),
)
_BULLET = re.compile(r"^[ \t]*[-*\u2022][ \t]+(.*)$")
_LABEL = re.compile(r"^\*\*([^*:]{1,40}?)\*\*[ \t]*:[ \t]*(.*)$|^\*\*([^*]{1,40}?):\*\*[ \t]*(.*)$|"
                    r"^([A-Z][A-Za-z ]{0,30}?)[ \t]*:[ \t]+(.*)$")
# Face words -> canonical region, in this order at one position ("eyebrow" is a brow, not an eye).
_REGION_WORDS = re.compile(
    r"(eyebrow|brow|forehead)|(eye|gaze|blink|squint|lid)|(cheek)|(nose|nostril|nasolabial|sneer)|"
    r"(mouth|lip|smil|dimpl|tongue|pucker|funnel|zygomatic)|(jaw|chin)|(head|neck)", re.I)
REGION_NAMES = ("Brows", "Eyes", "Cheeks", "Nose", "Mouth", "Jaw", "Head")
_MOVEMENTS_SPLIT = re.compile(r"(?:^|(?<=\s))(Brows|Eyebrows|Eyes|Gaze|Cheeks|Nose|Mouth|Lips|Jaw|Head|"
                              r"Face|Other):[ \t]+")


def _clean(text: str) -> str:
    """Section text -> one line: bold/italic markers and runs of whitespace removed."""
    return " ".join(text.replace("**", "").replace("__", "").split())


def _region_of(text: str) -> str:
    m = _REGION_WORDS.search(text)
    return REGION_NAMES[m.lastindex - 1] if m else "Other"


def _canonical_region(label: str) -> str:
    label = _clean(label).strip()
    m = _REGION_WORDS.fullmatch(label.rstrip("s")) or _REGION_WORDS.fullmatch(label)
    return REGION_NAMES[m.lastindex - 1] if m else (label[:1].upper() + label[1:])


def _add(regions: dict[str, str], region: str, text: str) -> None:
    text = _clean(text)
    if text:
        regions[region] = f"{regions[region]} {text}" if region in regions else text


def parse_movements(text: str) -> dict[str, str]:
    """The muscle-movement part of an analysis -> ``{region: text}``.

    Reads Markdown bullets (``- **Eyes**: …``, or unlabelled ``- bilateral smiling …``, assigned to
    the region its first face word names) and the one-line form :func:`movements_text` writes
    (``Brows: … Eyes: …``). Text without either gives ``{}``."""
    regions: dict[str, str] = {}
    bullets = [m.group(1) for m in map(_BULLET.match, text.splitlines()) if m]
    if bullets:
        for b in bullets:
            m = _LABEL.match(b.strip())
            if m:
                label, rest = next((m.group(i), m.group(i + 1)) for i in (1, 3, 5) if m.group(i))
                _add(regions, _canonical_region(label), rest)
            else:
                _add(regions, _region_of(b), b)
        return regions
    parts = _MOVEMENTS_SPLIT.split(_clean(text))
    if len(parts) >= 3 and not parts[0].strip():
        for label, body in zip(parts[1::2], parts[2::2]):
            _add(regions, _canonical_region(label), body)
    return regions


def structure_analysis(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """An analysis object as written (JSON form) -> the structured fields of
    :func:`parse_semanticface` (``muscle_movements`` as ``{region: text}`` plus
    ``muscle_movements_text``). Lists are read as bullets; other keys are kept as they are."""
    if not isinstance(analysis, Mapping):
        raise TypeError(f"analysis must be a dict, got {type(analysis).__name__}")
    out: dict[str, Any] = {}
    for key, value in analysis.items():
        if key != "muscle_movements":
            out[key] = _clean(value) if isinstance(value, str) else value
            continue
        if isinstance(value, Mapping):
            out[key] = {_canonical_region(str(k)): _clean(str(v)) for k, v in value.items()}
            out["muscle_movements_text"] = movements_text(out[key])
        elif isinstance(value, (list, tuple)):
            raw = "\n".join(f"- {v}" for v in value)
            out[key] = parse_movements(raw)
            out["muscle_movements_text"] = raw
        else:
            raw = str(value)
            out[key] = parse_movements(raw)
            out["muscle_movements_text"] = raw
    return out


def _last_channel_object(text: str) -> tuple[dict[str, Any], int] | None:
    """The last JSON object in ``text`` having a key that names a channel (any convention)."""
    found = None
    m = _OBJECT_START.search(text)
    budget = _WORK * len(text) + 2**24
    while m is not None and budget > 0:
        pos = m.start()
        obj, end, error, work = _decode_at(text, pos)
        budget -= work
        if error is None:
            if any(_channel_of(k) is not None for k in obj):
                found = (obj, pos)
            m = _OBJECT_START.search(text, end)
        else:
            m = _OBJECT_START.search(text, pos + 1)
    return found


def _markdown_answer(text: str, *, strict: bool) -> tuple[dict[str, Any], np.ndarray] | None:
    """The released form, or None when ``text`` has neither numbered sections nor channel JSON."""
    channels = _last_channel_object(text)
    heads = list(_SECTION.finditer(text, 0, channels[1] if channels else len(text)))
    if channels is None and not heads:
        return None
    if channels is None:
        raise FormatError("numbered analysis sections but no JSON object of ARKit channels after them "
                          "(expected {\"EyeBlinkLeft\": 0.0, …})", line=_line_at(text, heads[-1].start()))
    obj, start = channels
    analysis: dict[str, Any] = {}
    for i, h in enumerate(heads):
        key = next((k for rx, k in _SECTION_KEYS if rx.search(h.group(2))), None)
        if key is None or key in analysis:
            continue
        stop = heads[i + 1].start() if i + 1 < len(heads) else start
        body = (h.group(3) + "\n" + text[h.end():stop]).strip()
        if key == "muscle_movements":
            raw = "\n".join(line.strip() for line in body.splitlines() if line.strip())
            analysis[key] = parse_movements(raw)
            analysis["muscle_movements_text"] = raw
        else:
            analysis[key] = _clean(body)
    if strict:
        absent = [k for k in ANALYSIS_KEYS if k not in analysis]
        if absent:
            where = _line_at(text, heads[0].start()) if heads else _line_at(text, start)
            raise FormatError(f"answer lacks the analysis section(s) {', '.join(absent)} (expected "
                              "numbered sections '1. **Facial Expression Category**: …' to "
                              "'4. **Symmetry**: …' before the channels)", line=where)
    params = params_from_json(_pose_optional(obj), strict=strict, what="channel object", text=text,
                              start=start, path=None)
    return analysis, params


# --- writing the released form --------------------------------------------------------------------
_TITLES = {
    "expression_category": "Facial Expression Category",
    "muscle_movements": "Detailed Facial Muscle Movements",
    "emotional_implication": "Emotional Implication",
    "symmetry": "Symmetry",
}


def movements_text(movements: Any) -> str:
    """``{region: text}`` -> the one line ``"Brows: … Eyes: …"`` (the JSON form's string); a str
    passes through and a list is joined with spaces."""
    if isinstance(movements, Mapping):
        return " ".join(f"{r}: {t}" for r, t in movements.items())
    if isinstance(movements, (list, tuple)):
        return " ".join(str(m) for m in movements)
    return str(movements)


def format_analysis_markdown(analysis: Mapping[str, Any]) -> str:
    """An analysis -> the numbered Markdown sections the released SemanticFace model writes
    (lines end in two spaces, as there; ``muscle_movements`` as ``- **Region**: text`` bullets
    when it is a dict or list, else on the header line). Sections absent from ``analysis`` are
    left out."""
    if not isinstance(analysis, Mapping):
        raise TypeError(f"analysis must be a dict, got {type(analysis).__name__}")
    lines = []
    for n, key in enumerate(ANALYSIS_KEYS, 1):
        if key not in analysis:
            continue
        value = analysis[key]
        title = f"{n}. **{_TITLES[key]}**:"
        if key == "muscle_movements" and isinstance(value, Mapping):
            lines.append(title + "  ")
            lines += [f"   - **{r}**: {t}  " for r, t in value.items()]
        elif key == "muscle_movements" and isinstance(value, (list, tuple)):
            lines.append(title + "  ")
            lines += [f"   - {t}  " for t in value]
        else:
            lines.append(f"{title} {value}  ")
    return "\n".join(lines).rstrip()


def _one_decimal(params: Any, decimals: int) -> dict[str, float]:
    values = params_to_json(params)
    out = {}
    for name, v in values.items():
        out[name] = round(float(v), decimals)
    return out


def format_answer(analysis: Mapping[str, Any], params: Any, *, form: str = "markdown",
                  decimals: int = 1) -> str:
    """``(analysis, params [61])`` -> a whole answer with values at ``decimals`` places (``-0.0``
    kept): ``form="markdown"`` the released model's form (:func:`format_analysis_markdown`, a blank
    line, one flat JSON object of the 61 channels); ``form="json"`` the prompt's object on one line
    (``muscle_movements`` as one string, :func:`movements_text`). Values are not clipped."""
    if form not in ("markdown", "json"):
        raise ValueError(f"form must be 'markdown' or 'json', got {form!r}")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 8:
        raise ValueError(f"decimals must be an int in [0, 8], got {decimals!r}")
    channels = _one_decimal(params, decimals)
    if form == "markdown":
        return format_analysis_markdown(analysis) + "\n\n" + json.dumps(channels)
    if not isinstance(analysis, Mapping):
        raise TypeError(f"analysis must be a dict, got {type(analysis).__name__}")
    ordered = {k: analysis[k] for k in ANALYSIS_KEYS if k in analysis}
    ordered.update({k: v for k, v in analysis.items() if k not in ordered and k != "muscle_movements_text"})
    if "muscle_movements" in ordered:
        ordered["muscle_movements"] = movements_text(ordered["muscle_movements"])
    return json.dumps({"analysis": ordered, "arkit": channels}, ensure_ascii=False)


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


def read_semanticface(path: str | os.PathLike, *, strict: bool = True,
                      structured: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`parse_semanticface` on a file holding one answer; errors carry the path.

    The file is the answer itself (plain text, Markdown or JSON), or a JSON Lines file of exactly one
    inference record (``{"response": …}``, see :func:`read_semanticface_answers`, which reads many).
    """
    text = read_text(path, encoding="utf-8")
    records = _answer_records(text, path)
    if records is not None:
        if len(records) != 1:
            raise FormatError(f"holds {len(records)} answers (JSON Lines); read them with "
                              "facecore.io.read_semanticface_answers", path=path)
        text, line = records[0][0], records[0][1]
        try:
            return parse_semanticface(text, strict=strict, structured=structured)
        except FormatError as e:
            raise FormatError(e.reason, path=path, line=line) from None
    try:
        return parse_semanticface(text, strict=strict, structured=structured)
    except FormatError as e:
        raise FormatError(e.reason, path=path, line=e.line) from None


def write_semanticface(path: str | os.PathLike, analysis: Mapping[str, Any], params: Any, *,
                       indent: int | None = 2) -> None:
    """Write :func:`format_semanticface` output (plus a newline) to ``path``."""
    text = format_semanticface(analysis, params, indent=indent)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


# --- files of answers (the released inference's JSON Lines) -------------------------------------
@dataclass
class SemanticAnswer:
    """One answer of a file: its analysis and params (see :func:`parse_semanticface`), the image it
    answers (``None`` when the record names none), and its 1-based line (JSON Lines) or 1."""

    analysis: dict[str, Any]
    params: np.ndarray
    image: str | None = None
    line: int = 1


def _record_text(record: Any) -> str | None:
    """The answer text inside one JSON Lines record, in the shapes that inference tools write."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("response"), str):  # ms-swift `swift infer` (the released repository)
        return record["response"]
    if "analysis" in record and "arkit" in record:  # the prompt's object, one per line
        return json.dumps(record)
    messages = record.get("messages")
    if isinstance(messages, list):  # a chat record: its last assistant message
        said = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
        if said and isinstance(said[-1], str):
            return said[-1]
    return None


def _record_image(record: dict[str, Any]) -> str | None:
    images = record.get("images")
    if isinstance(images, list) and images:
        first = images[0]
        if isinstance(first, str):
            return first
        if isinstance(first, dict) and isinstance(first.get("path"), str):
            return first["path"]
    return None


def _answer_records(text: str, path: Any) -> list[tuple[str | None, int, dict[str, Any]]] | None:
    """JSON Lines records -> ``[(answer text or None, line, record)]``; None when ``text`` is not
    JSON Lines (every non-empty line one JSON object) or no record has an answer field."""
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if not lines or not all(ln.lstrip().startswith("{") for _, ln in lines):
        return None
    records = []
    for i, ln in lines:
        try:
            rec = json.loads(ln)
        except (json.JSONDecodeError, RecursionError, ValueError):
            return None  # e.g. one pretty-printed JSON object over many lines
        if not isinstance(rec, dict):
            return None
        records.append((_record_text(rec), i, rec))
    if not any(t is not None for t, _, _ in records):
        return None
    if len(records) == 1 and "response" not in records[0][2] and "messages" not in records[0][2]:
        return None  # a single {"analysis": …, "arkit": …} object: an answer, not a record file
    return records


def read_semanticface_answers(path: str | os.PathLike, *, strict: bool = True, structured: bool = True,
                              on_error: str = "raise") -> list[SemanticAnswer]:
    """A file of answers -> one :class:`SemanticAnswer` per answer.

    JSON Lines of inference records, as the released repository's ``swift infer`` writes them
    (``{"response": "<answer>", "images": [{"path": …}], "messages": […], …}`` per line); lines of
    ``{"analysis": …, "arkit": …}`` objects; or chat records whose last assistant message is the
    answer. Any other file is one plain-text answer. ``on_error="skip"`` leaves out answers that do
    not parse (one ``warnings.warn`` lists their lines), ``"raise"`` raises :class:`FormatError`.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    text = read_text(path, encoding="utf-8")
    records = _answer_records(text, path)
    if records is None:
        analysis, params = read_semanticface(path, strict=strict, structured=structured)
        return [SemanticAnswer(analysis, params)]
    out, skipped = [], []
    for answer, line, rec in records:
        try:
            if answer is None:
                raise FormatError("record has no answer (expected a 'response' string, an "
                                  "'analysis'/'arkit' object or an assistant message)")
            analysis, params = parse_semanticface(answer, strict=strict, structured=structured)
        except FormatError as e:
            if on_error == "raise":
                raise FormatError(e.reason, path=path, line=line) from None
            skipped.append(f"{line} ({e.reason[:80]})")
            continue
        out.append(SemanticAnswer(analysis, params, _record_image(rec), line))
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} answer(s) that do not parse, on line(s) "
                      + "; ".join(skipped[:10]), stacklevel=2)
    return out


def semanticface_to_csv(answers_path: str | os.PathLike, out_csv: str | os.PathLike, *,
                        on_error: str = "skip", fps: float = 1.0) -> int:
    """A file of answers -> a Live Link Face CSV, as the released ``jsonl2csv`` script converts them.

    Like that script: one row per answer that parses, in file order, at ``fps`` = 1 frame per second
    from 00:00:00 (timecode ``HH:MM:SS:00.000``, 60 timebase); header ``Timecode,BlendshapeCount``
    then the 61 channels in Live Link Face order, ``BlendshapeCount`` 61; channels an answer leaves
    out (the 52-key variant's pose, or any other) are written as 0; values as written (``-0.0``
    kept); answers that do not parse are skipped with a warning (``on_error="raise"`` raises).
    Unlike it: lines end in ``\\n`` (its csv module writes ``\\r\\n``), and a record whose channel
    values are not numbers is skipped rather than written. Returns the number of rows written.
    """
    from .livelink import write_csv
    from .track import Track

    answers = read_semanticface_answers(answers_path, strict=False, structured=False, on_error=on_error)
    params = np.stack([a.params for a in answers]) if answers else np.zeros((0, arkit.NUM_CHANNELS))
    track = Track(times=np.arange(len(answers)) / fps, params=params, fps=fps)
    write_csv(out_csv, track, count_header="BlendshapeCount")
    return len(answers)
