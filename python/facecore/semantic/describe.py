"""Stage 1 of SemanticFace: 61 ARKit parameters -> a structured FACS-style analysis, deterministically.

The facial-action lexicon of the animator (:mod:`facecore.animate.lexicon`) is read in reverse: each
row of :data:`FAMILIES` names a channel family (``MouthSmile{S}``), the action unit that drives it,
and the phrase that the animator's :class:`~facecore.animate.semantic.SemanticGenerator` reads back
as that action (``the lip corners are pulled up``). An intensity adverb chosen from the lexicon's own
:data:`~facecore.animate.lexicon.INTENSITY_WORDS` (the one whose value is nearest) says how strongly,
so reading a description back recovers which channels are active and roughly how much.

The analysis has the four keys of the SemanticFace prompt (:data:`facecore.io.ANALYSIS_KEYS`):

* ``expression_category``: the nearest emotion prototype of
  :data:`~facecore.animate.lexicon.EMOTIONS` (cosine similarity of the blendshapes), ``"neutral"``
  when nothing moves, or ``"not clearly observable"`` when no prototype is near enough;
* ``muscle_movements``: ``{region: text}`` in the order Brows, Eyes, Cheeks, Nose, Mouth, Jaw, Head,
  active regions only (``{"Face": "No visible muscle movement."}`` for a neutral face);
* ``emotional_implication``: the prototype and the active action units that support it, or
  ``"not clearly observable"``;
* ``symmetry``: ``"mostly symmetric"``, or the families whose left and right differ by >= 0.2.

Parameters are rounded to one decimal first, as the answers that SemanticFace models write
(:func:`answer_text`), so the text describes exactly the numbers written after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import arkit
from ..animate import lexicon as lx
from ..animate.semantic import au_vector

__all__ = ["describe", "analysis_text", "answer_text", "quantize", "nearest_emotion", "FAMILIES", "REGIONS",
           "ACTIVE"]

ACTIVE = 0.1  # a channel counts as moving at this value (after rounding to one decimal)
ASYMMETRIC = 0.2  # left/right difference that the symmetry statement names
SIDE_SPLIT = 0.15  # left/right difference above which the two sides are described separately
CATEGORY_MIN_COSINE = 0.6  # below this no prototype is near enough to name
IMPLICATION_MIN_COSINE = 0.75  # an emotional implication is stated only for a clear match

REGIONS = ("Brows", "Eyes", "Cheeks", "Nose", "Mouth", "Jaw", "Head")

# Intensity adverbs taken from the lexicon (value = what the animator reads them as).
_ADVERBS = ("faintly", "slightly", "moderately", "noticeably", "strongly", "fully")
_ADVERB_VALUES = np.array([lx.INTENSITY_WORDS[w] for w in _ADVERBS])


@dataclass(frozen=True)
class Family:
    """A channel family, the action unit it expresses, and how to say it.

    ``channel`` holds ``{S}`` for a Left/Right pair. ``both`` is said when the sides agree (or the
    channel is bilateral), ``one`` with ``{side}`` for one side; ``{w}`` is the intensity adverb.
    ``per_unit`` is the channel value the phrase produces at intensity 1 (read back by the animator).
    ``name`` is used in the symmetry statement ("the smile is stronger on the left").
    """

    region: str
    channel: str
    au: str
    both: str
    one: str = ""
    name: str = ""
    per_unit: float = 1.0


FAMILIES: tuple[Family, ...] = (
    Family("Brows", "BrowInnerUp", "1", "the inner brows are {w} raised"),
    Family("Brows", "BrowOuterUp{S}", "2", "both outer brows are {w} raised",
           "the {side} outer brow is {w} raised", "outer brow raise"),
    Family("Brows", "BrowDown{S}", "4", "both brows are {w} lowered", "the {side} brow is {w} lowered",
           "brow lowering"),
    Family("Eyes", "EyeBlink{S}", "43", "both eyes are {w} closed", "the {side} eye is {w} closed",
           "eye closure"),
    Family("Eyes", "EyeSquint{S}", "7", "both eyes are {w} narrowed", "the {side} eye is {w} narrowed",
           "eye narrowing"),
    Family("Eyes", "EyeWide{S}", "5", "both eyes are {w} widened", "the {side} eye is {w} widened",
           "eye widening"),
    Family("Cheeks", "CheekSquint{S}", "6", "both cheeks are {w} raised", "the {side} cheek is {w} raised",
           "cheek raise"),
    Family("Cheeks", "CheekPuff", "34", "the cheeks are {w} puffed"),
    Family("Nose", "NoseSneer{S}", "9", "the nose is {w} wrinkled on both sides",
           "the nose is {w} wrinkled on the {side} side", "nose wrinkle"),
    Family("Mouth", "MouthSmile{S}", "12", "both lip corners are {w} pulled up",
           "the {side} lip corner is {w} pulled up", "smile"),
    Family("Mouth", "MouthFrown{S}", "15", "both lip corners are {w} pulled down",
           "the {side} lip corner is {w} pulled down", "lip corner depression"),
    Family("Mouth", "MouthDimple{S}", "14", "the mouth corners {w} dimple on both sides",
           "the {side} mouth corner {w} dimples", "dimpling"),
    Family("Mouth", "MouthStretch{S}", "20", "both sides of the lips are {w} stretched",
           "the lips are {w} stretched on the {side} side", "lip stretch"),
    Family("Mouth", "MouthPress{S}", "24", "the lips are {w} pressed on both sides",
           "the lips are {w} pressed on the {side} side", "lip press"),
    Family("Mouth", "MouthUpperUp{S}", "10", "the upper lip is {w} raised on both sides",
           "the {side} upper lip is {w} raised", "upper lip raise"),
    Family("Mouth", "MouthLowerDown{S}", "16", "the lower lip is {w} lowered on both sides",
           "the {side} lower lip is {w} lowered", "lower lip depression"),
    Family("Mouth", "MouthRollLower", "28", "the lower lip is {w} rolled inward"),
    Family("Mouth", "MouthRollUpper", "28", "the upper lip is {w} rolled inward"),
    Family("Mouth", "MouthShrugLower", "17", "the chin is {w} raised"),
    Family("Mouth", "MouthShrugUpper", "17", "the upper lip is {w} shrugged by the chin raise",
           per_unit=0.3),
    Family("Mouth", "MouthPucker", "18", "the lips are {w} puckered"),
    Family("Mouth", "MouthFunnel", "22", "the lips are {w} funneled"),
    Family("Mouth", "MouthClose", "M4", "the lips are {w} closed"),
    Family("Mouth", "MouthLeft", "M2", "the mouth is {w} pulled to the left"),
    Family("Mouth", "MouthRight", "M3", "the mouth is {w} pulled to the right"),
    Family("Mouth", "TongueOut", "19", "the tongue {w} sticks out"),
    Family("Jaw", "JawOpen", "26", "the jaw is {w} opened"),
    Family("Jaw", "JawForward", "29", "the jaw is {w} thrust forward"),
    Family("Jaw", "JawLeft", "30L", "the jaw {w} shifts left"),
    Family("Jaw", "JawRight", "30R", "the jaw {w} shifts right"),
)

# Pose and gaze: (region, channel or None, sign, AU, phrase, channel value per unit intensity).
# Gaze reads the EyeLook shapes and the eye rotations together (1.6 look per unit yaw, as the prior).
_HEAD = (
    ("HeadYaw", +1, "51", "the head is turned {w} to the left"),
    ("HeadYaw", -1, "52", "the head is turned {w} to the right"),
    ("HeadPitch", +1, "53", "the head is {w} raised"),
    ("HeadPitch", -1, "54", "the head is {w} lowered"),
    ("HeadRoll", +1, "55", "the head is tilted {w} to the left"),
    ("HeadRoll", -1, "56", "the head is tilted {w} to the right"),
)
_GAZE = (
    ("left", "61", "the gaze shifts {w} to the left"),
    ("right", "62", "the gaze shifts {w} to the right"),
    ("up", "63", "the gaze shifts {w} upward"),
    ("down", "64", "the gaze shifts {w} downward"),
)

_I = arkit.INDEX
_PAIRS = [(f, f.channel.replace("{S}", "Left"), f.channel.replace("{S}", "Right")) for f in FAMILIES
          if "{S}" in f.channel]


def quantize(params: Any) -> np.ndarray:
    """float [61] -> float64 [61] clipped to the channel ranges and rounded to one decimal (``-0.0``
    kept): the numbers a SemanticFace answer writes."""
    vec = np.asarray(params.detach().cpu().numpy() if hasattr(params, "detach") else params)
    if vec.shape != (arkit.NUM_CHANNELS,):
        raise ValueError(f"params must have shape [{arkit.NUM_CHANNELS}], got {list(vec.shape)}")
    if vec.dtype.kind not in "fiu":
        raise TypeError(f"params must be numbers, got dtype {vec.dtype}")
    vec = vec.astype(np.float64)
    if not np.isfinite(vec).all():
        bad = ", ".join(arkit.NAMES[i] for i in np.flatnonzero(~np.isfinite(vec)))
        raise ValueError(f"params has non-finite values in {bad}")
    vec = np.clip(vec, arkit.LOW, arkit.HIGH)
    # Python's round on float64 gives the same decimal as the written text (json.dumps(round(v, 1))).
    return np.array([round(float(v), 1) for v in vec])


def _adverb(intensity: float) -> str:
    return _ADVERBS[int(np.argmin(np.abs(_ADVERB_VALUES - min(intensity, 1.0))))]


def _au(code: str) -> str:
    return f"AU{code}" if code[0].isdigit() else lx.ACTION_UNITS[code][0]


def _clause(template: str, value: float, per_unit: float, au: str, side: str = "") -> str:
    text = template.format(w=_adverb(value / per_unit), side=side)
    return f"{text} ({_au(au)})" if au[0].isdigit() else text


def _movements(q: np.ndarray) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {r: [] for r in REGIONS}
    for f in FAMILIES:
        if "{S}" not in f.channel:
            v = q[_I[f.channel]]
            if v >= ACTIVE:
                out[f.region].append(_clause(f.both, v, f.per_unit, f.au))
            continue
        left, right = q[_I[f.channel.replace("{S}", "Left")]], q[_I[f.channel.replace("{S}", "Right")]]
        if max(left, right) < ACTIVE:
            continue
        if abs(left - right) <= SIDE_SPLIT and min(left, right) >= ACTIVE:
            out[f.region].append(_clause(f.both, (left + right) / 2, f.per_unit, f.au))
            continue
        for side, v in (("left", left), ("right", right)):
            if v >= ACTIVE:
                out[f.region].append(_clause(f.one, v, f.per_unit, f.au, side))
    out["Eyes"].extend(_gaze(q))
    for ch, sign, au, template in _HEAD:
        v = sign * q[_I[ch]]
        if v >= ACTIVE:
            per_unit = abs(next(iter(lx.ACTION_UNITS[au][1].values())))
            out["Head"].append(_clause(template, v, per_unit, au))
    return out


def _gaze(q: np.ndarray) -> list[str]:
    """Gaze direction from the EyeLook shapes and the eye rotations, whichever says more."""
    look = {k: (q[_I[k + "Left"]] + q[_I[k + "Right"]]) / 2 for k in ("EyeLookUp", "EyeLookDown")}
    left_look = (q[_I["EyeLookOutLeft"]] + q[_I["EyeLookInRight"]]) / 2
    right_look = (q[_I["EyeLookInLeft"]] + q[_I["EyeLookOutRight"]]) / 2
    yaw = (q[_I["LeftEyeYaw"]] + q[_I["RightEyeYaw"]]) / 2
    pitch = (q[_I["LeftEyePitch"]] + q[_I["RightEyePitch"]]) / 2
    # Intensity 1 of AU61..64 is 0.8 / 0.6 of look shape and 0.5 / 0.45 of rotation (the lexicon).
    amount = {
        "left": max(left_look / 0.8, yaw / 0.5),
        "right": max(right_look / 0.8, -yaw / 0.5),
        "up": max(look["EyeLookUp"] / 0.6, pitch / 0.45),
        "down": max(look["EyeLookDown"] / 0.6, -pitch / 0.45),
    }
    strongest = {"left": max(left_look, yaw), "right": max(right_look, -yaw),
                 "up": max(look["EyeLookUp"], pitch), "down": max(look["EyeLookDown"], -pitch)}
    clauses = []
    for direction, au, template in _GAZE:
        if strongest[direction] >= ACTIVE:
            clauses.append(_clause(template, amount[direction], 1.0, au))
    return clauses


def _sentence(clauses: list[str]) -> str:
    text = ", ".join(clauses)
    return text[0].upper() + text[1:] + "."


# --- emotion prototypes ---------------------------------------------------------------------------
def _prototypes() -> tuple[list[str], np.ndarray]:
    """Emotion prototypes at intensity 1 over the 52 blendshapes (unilateral ones on both sides)."""
    names, rows = [], []
    for emo, aus in lx.EMOTIONS.items():
        if not aus:
            continue  # "calm" has no action units: it is what "neutral" means here
        sides = ("Left", "Right") if emo in lx.UNILATERAL_EMOTIONS else (None,)
        for side in sides:
            names.append(emo)
            rows.append(au_vector(aus, 1.0, side)[:arkit.NUM_BLENDSHAPES])
    return names, np.stack(rows)


_PROTO_NAMES, _PROTO = _prototypes()
_PROTO_UNIT = _PROTO / np.linalg.norm(_PROTO, axis=1, keepdims=True)


def nearest_emotion(params: Any) -> tuple[str, float]:
    """The emotion prototype nearest to ``params`` (cosine over the blendshapes) and its cosine;
    ``("neutral", 1.0)`` when no blendshape is active."""
    q = quantize(params)[:arkit.NUM_BLENDSHAPES]
    if q.max() < ACTIVE:
        return "neutral", 1.0
    cos = _PROTO_UNIT @ (q / np.linalg.norm(q))
    best = int(np.argmax(cos))
    return _PROTO_NAMES[best], float(cos[best])


def _emotion_strength(q: np.ndarray, emo: str) -> str:
    # The projection of the face on the prototype, relative to the prototype at intensity 1.
    rows = [i for i, n in enumerate(_PROTO_NAMES) if n == emo]
    scale = max(float(_PROTO[i] @ q[:arkit.NUM_BLENDSHAPES]) / float(_PROTO[i] @ _PROTO[i]) for i in rows)
    return "mild" if scale < 0.45 else ("moderate" if scale < 0.8 else "strong")


def _implication(q: np.ndarray, emo: str, cos: float) -> str:
    if emo == "neutral" or cos < IMPLICATION_MIN_COSINE:
        return "not clearly observable"
    evidence = []
    for au in lx.EMOTIONS[emo]:
        name, channels = lx.ACTION_UNITS[au]
        main = next(iter(channels))  # the channel the action unit drives at full weight
        shown = {main.replace("{S}", s) for s in ("Left", "Right")} & set(arkit.BLENDSHAPES)
        if any(q[_I[ch]] >= ACTIVE for ch in shown):
            evidence.append(f"{name} (AU{au})")
    support = f" supported by the {_join(evidence)}" if evidence else ""
    return f"The face suggests {_emotion_strength(q, emo)} {emo}{support}."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _symmetry(q: np.ndarray) -> str:
    notes = []
    for f, left, right in _PAIRS:
        d = q[_I[left]] - q[_I[right]]
        if abs(d) >= ASYMMETRIC - 1e-9:
            notes.append(f"the {f.name} is stronger on the {'left' if d > 0 else 'right'} side")
    if not notes:
        return "mostly symmetric"
    return "Asymmetric: " + _join(notes) + "."


# --- public ---------------------------------------------------------------------------------------
def describe(params: Any) -> dict[str, Any]:
    """``params`` (float [61], Live Link Face order; numpy, list or torch) -> the stage-1 analysis.

    Keys: ``expression_category`` (str), ``muscle_movements`` (``{region: text}``),
    ``emotional_implication`` (str), ``symmetry`` (str). Deterministic; see the module docstring.
    """
    q = quantize(params)
    emo, cos = nearest_emotion(q)
    if emo == "neutral":
        category = "neutral"
    elif cos >= CATEGORY_MIN_COSINE:
        category = emo
    else:
        category = "not clearly observable"
    regions = {r: _sentence(c) for r, c in _movements(q).items() if c}
    if not regions:
        regions = {"Face": "No visible muscle movement."}
    return {
        "expression_category": category,
        "muscle_movements": regions,
        "emotional_implication": _implication(q, emo, cos),
        "symmetry": _symmetry(q),
    }


def analysis_text(analysis: Mapping[str, Any]) -> str:
    """An analysis (as :func:`describe` returns, or a parsed one) -> the numbered Markdown sections
    that the released SemanticFace model writes (see :func:`facecore.io.format_analysis_markdown`)."""
    from ..io.semanticface import format_analysis_markdown

    return format_analysis_markdown(analysis)


def answer_text(params: Any, form: str = "markdown") -> str:
    """The full answer a SemanticFace model should write for ``params``: :func:`describe`'s analysis
    then the 61 channels with one decimal (clipped to their ranges, ``-0.0`` kept).

    ``form="markdown"``: the released model's form (numbered sections, a blank line, one flat JSON
    object); ``form="json"``: the prompt's ``{"analysis": …, "arkit": …}`` object on one line.
    ``facecore.io.parse_semanticface`` reads either back to :func:`quantize` (``params``).
    """
    from ..io.semanticface import format_answer

    if form not in ("markdown", "json"):
        raise ValueError(f"form must be 'markdown' or 'json', got {form!r}")
    q = quantize(params)
    return format_answer(describe(q), q, form=form)
