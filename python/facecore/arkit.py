"""The 61-channel ARKit parameter schema: names, ranges, groups, mirroring and name conversion.

Channel order (DESIGN.md): the 52 blendshapes of Live Link Face CSV exports (``EyeBlinkLeft`` ...
``TongueOut``, in [0, 1]) followed by 9 pose channels (``HeadYaw`` ... ``RightEyeRoll``, in
[-1, 1]). Left/Right always mean the subject's own side.

Other naming schemes are converted here, at the edges, and nowhere else:

==============  ==========================  =============================================
convention      example                     notes
==============  ==========================  =============================================
livelinkface    ``EyeBlinkLeft``            the canonical names (:data:`NAMES`)
arkit           ``eyeBlinkLeft``            camelCase; pose channels as ``headYaw``
arkit_raw       ``eyeBlink_L``              ARFaceAnchor raw keys; pose as camelCase
mediapipe       ``eyeBlinkLeft``            alphabetical, ``_neutral`` first, no tongueOut, no pose
ict             ``eyeBlink_L``              ``browInnerUp``/``cheekPuff`` split in ``_L``/``_R`` halves;
                                            extra ``cheekRaiser_*``/``PupilDilate_*``; no tongueOut, no pose
==============  ==========================  =============================================

Every function accepts names in any convention (matched case-insensitively). Names that a
convention knows but that have no ARKit channel (``_neutral``, ``cheekRaiser_L``, ...) are
skipped when building vectors; unknown names raise ``ValueError`` with the closest valid names.
"""

from __future__ import annotations

import difflib
import math
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ._names import BLENDSHAPES, NAMES, POSE

__all__ = [
    "NAMES", "BLENDSHAPES", "POSE", "NUM_CHANNELS", "NUM_BLENDSHAPES", "NUM_POSE",
    "CONVENTIONS", "LOW", "HIGH", "RANGES", "GROUPS", "GROUP_INDICES", "MIRROR_PAIRS",
    "MIRROR_PERMUTATION", "MIRROR_SIGN", "MEDIAPIPE_NAMES", "ICT_NAMES", "INDEX",
    "index", "lookup", "names", "convert", "expand", "to_vector", "to_dict", "to_vectors", "to_dicts",
    "from_columns", "to_columns", "from_order", "to_order", "mirror", "validate", "group",
]

NUM_CHANNELS = len(NAMES)
NUM_BLENDSHAPES = len(BLENDSHAPES)
NUM_POSE = len(POSE)
CONVENTIONS = ("livelinkface", "arkit", "arkit_raw", "mediapipe", "ict")
Convention = Literal["livelinkface", "arkit", "arkit_raw", "mediapipe", "ict"]

INDEX: dict[str, int] = {n: i for i, n in enumerate(NAMES)}
"""Live Link Face name -> channel index."""

# ---------------------------------------------------------------------------------------------
# Ranges
# ---------------------------------------------------------------------------------------------


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


LOW = _readonly(np.array([0.0] * NUM_BLENDSHAPES + [-1.0] * NUM_POSE, dtype=np.float32))
HIGH = _readonly(np.ones(NUM_CHANNELS, dtype=np.float32))
RANGES = _readonly(np.stack([LOW, HIGH], axis=1))
"""``[61, 2]`` (low, high) per channel: blendshapes in [0, 1], pose in [-1, 1]."""

# ---------------------------------------------------------------------------------------------
# Name conventions
# ---------------------------------------------------------------------------------------------


def _camel(name: str) -> str:
    return name[0].lower() + name[1:]


def _raw(name: str) -> str:
    # ARFaceAnchor raw keys: a trailing side becomes _L/_R, except where Left/Right is the motion's
    # direction (jawLeft, mouthRight, ...), which has no side suffix.
    c = _camel(name)
    if c in ("jawLeft", "jawRight", "mouthLeft", "mouthRight") or name in POSE:
        return c
    if c.endswith("Left"):
        return c[: -len("Left")] + "_L"
    if c.endswith("Right"):
        return c[: -len("Right")] + "_R"
    return c


_SPLIT_IN_ICT = ("BrowInnerUp", "CheekPuff")
_NOT_IN_MEDIAPIPE = ("TongueOut",)
_NOT_IN_ICT = ("TongueOut",)

# convention -> per channel: a tuple of that convention's names for the channel (empty: absent).
_TABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "livelinkface": tuple((n,) for n in NAMES),
    "arkit": tuple((_camel(n),) for n in NAMES),
    "arkit_raw": tuple((_raw(n),) for n in NAMES),
    "mediapipe": tuple(
        () if n in POSE or n in _NOT_IN_MEDIAPIPE else (_camel(n),) for n in NAMES),
    "ict": tuple(
        () if n in POSE or n in _NOT_IN_ICT
        else (_raw(n) + "_L", _raw(n) + "_R") if n in _SPLIT_IN_ICT
        else (_raw(n),) for n in NAMES),
}

# Names a convention has that correspond to no ARKit channel.
_EXTRAS: dict[str, tuple[str, ...]] = {
    "livelinkface": (), "arkit": (), "arkit_raw": (),
    "mediapipe": ("_neutral",),
    "ict": ("cheekRaiser_L", "cheekRaiser_R", "PupilDilate_L", "PupilDilate_R"),
}

MEDIAPIPE_NAMES: tuple[str, ...] = ("_neutral",) + tuple(
    sorted(t[0] for t in _TABLE["mediapipe"] if t))
"""MediaPipe FaceLandmarker blendshape categories in MediaPipe's index order (52 entries)."""

ICT_NAMES: tuple[str, ...] = tuple(n for t in _TABLE["ict"] for n in t) + _EXTRAS["ict"]
"""ICT-FaceKit expression names (57): the 53 with an ARKit channel in channel order, then the extras."""

# Every spelling (lower-cased) -> channel index, or -1 for a known name without a channel.
_LOOKUP: dict[str, int] = {}
_CANONICAL: dict[str, str] = {}  # lower-cased -> properly cased spelling
for _conv, _rows in _TABLE.items():
    for _i, _spellings in enumerate(_rows):
        for _s in _spellings:
            assert _LOOKUP.get(_s.lower(), _i) == _i, f"name clash on {_s}"
            _LOOKUP[_s.lower()] = _i
            _CANONICAL[_s.lower()] = _s
    for _s in _EXTRAS[_conv]:
        _LOOKUP[_s.lower()] = -1
        _CANONICAL[_s.lower()] = _s
_ALL_SPELLINGS = tuple(sorted({s for rows in _TABLE.values() for t in rows for s in t}
                              | {s for ex in _EXTRAS.values() for s in ex}))
_SPLIT_HALVES = {s.lower() for n in _SPLIT_IN_ICT for s in _TABLE["ict"][INDEX[n]]}


def _check_convention(to: str) -> None:
    if to not in _TABLE:
        raise ValueError(f"unknown naming convention {to!r}; expected one of {', '.join(CONVENTIONS)}")


def _unknown(name: object) -> ValueError:
    close = difflib.get_close_matches(str(name), _ALL_SPELLINGS, n=4, cutoff=0.6)
    if not close:  # case-insensitive second try ("EYEBLINK_L")
        lower = {s.lower(): s for s in _ALL_SPELLINGS}
        close = [lower[c] for c in difflib.get_close_matches(str(name).lower(), list(lower), n=4, cutoff=0.6)]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown ARKit channel name {name!r}{hint}")


def _lookup(name: str) -> int:
    """Channel index of ``name`` (any convention), -1 for a known name with no channel."""
    if not isinstance(name, str):
        raise TypeError(f"channel name must be a str, got {type(name).__name__}")
    i = _LOOKUP.get(name.lower())
    if i is None:
        raise _unknown(name)
    return i


def lookup(name: str) -> int | None:
    """The channel index of ``name`` (any convention), or None for a name that a convention knows
    but that has no ARKit channel (``_neutral``, ``cheekRaiser_L``, ``PupilDilate_R``).
    Unknown names raise ``ValueError`` with the closest valid names."""
    i = _lookup(name)
    return None if i < 0 else i


def index(name: str) -> int:
    """The channel index (0..60) of ``name`` in any naming convention."""
    i = _lookup(name)
    if i < 0:
        raise ValueError(f"{name!r} has no ARKit channel (it exists only in "
                         f"{_convention_of_extra(name)})")
    return i


def _convention_of_extra(name: str) -> str:
    return next(c for c, ex in _EXTRAS.items() if name.lower() in {e.lower() for e in ex})


def names(convention: Convention = "livelinkface") -> tuple[str, ...]:
    """All names of ``convention``: :data:`NAMES` order for livelinkface/arkit/arkit_raw,
    :data:`MEDIAPIPE_NAMES` for mediapipe, :data:`ICT_NAMES` for ict."""
    _check_convention(convention)
    if convention == "mediapipe":
        return MEDIAPIPE_NAMES
    if convention == "ict":
        return ICT_NAMES
    return tuple(t[0] for t in _TABLE[convention])


def expand(name: str, to: Convention) -> tuple[str, ...]:
    """Every name of convention ``to`` that carries ``name``'s channel: one name, two for the ICT
    halves of ``BrowInnerUp``/``CheekPuff``, none where ``to`` lacks the channel."""
    _check_convention(to)
    i = _lookup(name)
    if i < 0:
        canon = _CANONICAL[name.lower()]
        return (canon,) if canon in _EXTRAS[to] else ()
    return _TABLE[to][i]


def convert(name: str, to: Convention) -> str:
    """``name`` (any convention) spelled in convention ``to``.

    ``convert("eyeBlink_L", "livelinkface") == "EyeBlinkLeft"``; ICT halves map to their channel
    (``convert("browInnerUp_R", "arkit") == "browInnerUp"``). Raises ``ValueError`` for unknown names
    (with suggestions), for channels that ``to`` does not have (``TongueOut`` in mediapipe, pose
    outside the ARKit/Live Link conventions), and for ``BrowInnerUp``/``CheekPuff`` to ``"ict"``,
    which has two names for them (use :func:`expand`), unless ``name`` already is one of the halves.
    """
    _check_convention(to)
    i = _lookup(name)
    canon = _CANONICAL[name.lower()]
    if i < 0:
        if canon in _EXTRAS[to]:
            return canon
        raise ValueError(f"{name!r} ({_convention_of_extra(name)} only) has no ARKit channel, "
                         f"so no {to} name")
    targets = _TABLE[to][i]
    if canon in targets:
        return canon
    if not targets:
        raise ValueError(f"the {to} convention has no channel for {NAMES[i]!r}")
    if len(targets) > 1:
        raise ValueError(f"{NAMES[i]!r} is split into {' and '.join(targets)} in {to}; "
                         f"use facecore.arkit.expand({name!r}, {to!r}) for both")
    return targets[0]


# ---------------------------------------------------------------------------------------------
# Groups and mirroring
# ---------------------------------------------------------------------------------------------


def _prefixed(*prefixes: str) -> tuple[str, ...]:
    return tuple(n for n in BLENDSHAPES if n.startswith(prefixes))


_EYES = _prefixed("Eye")
_BROWS = _prefixed("Brow")
_JAW = _prefixed("Jaw")
_MOUTH = _prefixed("Mouth")
_CHEEKS = _prefixed("Cheek")
_NOSE = _prefixed("Nose")
_TONGUE = _prefixed("Tongue")

GROUPS: dict[str, tuple[str, ...]] = {
    # FACS-style split of the 52 blendshapes: upper face = AUs above the nose tip (brows, lids,
    # cheek raiser, nose wrinkler); lower face = jaw, lips, cheek puff, tongue. Together: all 52.
    "upper_face": _BROWS + _EYES + ("CheekSquintLeft", "CheekSquintRight") + _NOSE,
    "lower_face": _JAW + _MOUTH + ("CheekPuff",) + _TONGUE,
    "eyes": _EYES,
    "jaw": _JAW,
    "mouth": _MOUTH,
    "brows": _BROWS,
    "cheeks": _CHEEKS,
    "nose": _NOSE,
    "tongue": _TONGUE,
    "head_pose": POSE[:3],
    "eye_pose": POSE[3:],
    "blendshapes": BLENDSHAPES,
    "pose": POSE,
}
"""Group name -> channel names (Live Link Face spelling), in channel order within each group."""

GROUP_INDICES: dict[str, np.ndarray] = {
    g: _readonly(np.array(sorted(INDEX[n] for n in ns), dtype=np.int64)) for g, ns in GROUPS.items()}
"""Group name -> int64 channel indices (sorted), for ``params[..., GROUP_INDICES["mouth"]]``."""
GROUPS = {g: tuple(NAMES[i] for i in GROUP_INDICES[g]) for g in GROUPS}


def group(name: str) -> np.ndarray:
    """Channel indices of group ``name`` (see :data:`GROUPS`)."""
    try:
        return GROUP_INDICES[name]
    except KeyError:
        raise ValueError(f"unknown group {name!r}; expected one of {', '.join(GROUPS)}") from None


def _partner(n: str) -> str | None:
    for a, b in (("Left", "Right"), ("Right", "Left")):
        if n.startswith(a):  # LeftEyeYaw <-> RightEyeYaw
            return b + n[len(a):]
        if n.endswith(a):  # EyeBlinkLeft <-> EyeBlinkRight, JawLeft <-> JawRight
            return n[: -len(a)] + b
    return None


MIRROR_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (n, p) for n in NAMES if (p := _partner(n)) is not None and INDEX[n] < INDEX[p])
"""(name, partner) pairs swapped by :func:`mirror` (subject's left <-> right)."""

MIRROR_PERMUTATION = _readonly(np.array(
    [INDEX[p] if (p := _partner(n)) else i for i, n in enumerate(NAMES)], dtype=np.int64))
# Yaw and roll change sign under an x-reflection (M R M with M = diag(-1, 1, 1), see facecore.pose);
# pitch does not.
MIRROR_SIGN = _readonly(np.array(
    [-1.0 if n.endswith(("Yaw", "Roll")) else 1.0 for n in NAMES], dtype=np.float32))
assert all(n in INDEX for n in (_partner(m) for m in NAMES) if n is not None)


# ---------------------------------------------------------------------------------------------
# Array helpers (numpy or torch, imported lazily)
# ---------------------------------------------------------------------------------------------


def _torch():
    return sys.modules.get("torch")


def _is_tensor(x: Any) -> bool:
    t = _torch()
    return t is not None and isinstance(x, t.Tensor)


def _check_last(x: Any, size: int, what: str) -> None:
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"{what} must have shape [..., {size}], got {list(x.shape)}")


def _as_array(x: Any, what: str) -> Any:
    """Tensors pass through; everything else becomes a numpy array (float32 unless floating)."""
    if _is_tensor(x):
        if not x.is_floating_point():
            x = x.float()
        return x
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{what} must be numeric, got dtype {a.dtype}")
    if a.dtype.kind != "f":
        a = a.astype(np.float32)
    return a


def _tensor_like(a: np.ndarray, like: Any, dtype: Any = None) -> Any:
    # torch.tensor copies: the schema arrays are read-only, which torch.as_tensor warns about.
    return _torch().tensor(a, dtype=dtype, device=like.device)


def _take(x: Any, idx: np.ndarray) -> Any:
    if _is_tensor(x):
        return x[..., _tensor_like(idx, x)]
    return x[..., idx]


# ---------------------------------------------------------------------------------------------
# Dicts <-> vectors
# ---------------------------------------------------------------------------------------------


def _plan(keys: Iterable[str], *, unknown: str) -> tuple[list[tuple[str, int]], dict[int, int]]:
    """(key, channel) pairs to read, and how many keys feed each channel. Checks duplicates."""
    if unknown not in ("raise", "ignore"):
        raise ValueError(f"unknown must be 'raise' or 'ignore', got {unknown!r}")
    plan: list[tuple[str, int]] = []
    count: dict[int, int] = {}
    seen: dict[int, str] = {}
    for k in keys:
        try:
            i = _lookup(k)
        except ValueError:
            if unknown == "raise":
                raise
            continue
        if i < 0:
            continue  # a known name without a channel (_neutral, cheekRaiser_L, ...)
        if i in seen and not (k.lower() in _SPLIT_HALVES and seen[i].lower() in _SPLIT_HALVES
                              and k.lower() != seen[i].lower()):
            raise ValueError(f"channel {NAMES[i]!r} given twice (as {seen[i]!r} and {k!r})")
        seen[i] = k
        plan.append((k, i))
        count[i] = count.get(i, 0) + 1
    return plan, count


def _missing_check(count: Mapping[int, int], missing: str) -> None:
    if missing not in ("zero", "raise"):
        raise ValueError(f"missing must be 'zero' or 'raise', got {missing!r}")
    if missing == "raise" and len(count) < NUM_CHANNELS:
        absent = [n for i, n in enumerate(NAMES) if i not in count]
        raise ValueError(f"{len(absent)} channel(s) missing: {', '.join(absent)}")


def to_vector(mapping: Mapping[str, Any], *, missing: Literal["zero", "raise"] = "zero",
              unknown: Literal["raise", "ignore"] = "raise") -> np.ndarray:
    """``{name: value}`` (names in any convention) -> float32 ``[61]`` in channel order.

    ``missing="zero"`` fills absent channels with 0, ``"raise"`` refuses them. ICT halves
    (``browInnerUp_L``/``_R``) are averaged into their channel. Names with no ARKit channel
    (MediaPipe ``_neutral``, ICT ``cheekRaiser_*``) are skipped; other unknown names raise
    (``unknown="ignore"`` skips them too). Values are not range-checked (see :func:`validate`).
    """
    if not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a dict of name -> value, got {type(mapping).__name__}")
    plan, count = _plan(mapping.keys(), unknown=unknown)
    _missing_check(count, missing)
    out = np.zeros(NUM_CHANNELS, dtype=np.float64)
    for k, i in plan:
        v = mapping[k]
        try:
            x = float(v)
            out[i] = x if count[i] == 1 else out[i] + x  # assigned once: keeps a written -0.0
        except (TypeError, ValueError):
            hint = "; for arrays of values use facecore.arkit.from_columns" if np.ndim(v) else ""
            raise TypeError(f"value of {k!r} must be a number, got {v!r}{hint}") from None
    for i, c in count.items():
        if c > 1:
            out[i] /= c
    return out.astype(np.float32)


def to_dict(vector: Any, naming: Convention = "livelinkface") -> dict[str, float]:
    """float ``[61]`` (numpy, torch or sequence) -> ``{name: float}`` in ``naming``'s spelling.

    Channels that ``naming`` lacks are left out (TongueOut and pose in mediapipe/ict); ICT halves
    both get their channel's value; MediaPipe's ``_neutral`` is not produced.
    """
    _check_convention(naming)
    if _is_tensor(vector):
        vector = vector.detach().cpu().numpy()
    v = np.asarray(vector, dtype=np.float64)
    if v.shape != (NUM_CHANNELS,):
        raise ValueError(f"vector must have shape [{NUM_CHANNELS}], got {list(v.shape)}")
    return {n: float(v[i]) for i, ns in enumerate(_TABLE[naming]) for n in ns}


def to_vectors(mappings: Sequence[Mapping[str, Any]], *, missing: Literal["zero", "raise"] = "zero",
               unknown: Literal["raise", "ignore"] = "raise") -> np.ndarray:
    """A sequence of dicts -> float32 ``[N, 61]`` (see :func:`to_vector`)."""
    out = np.zeros((len(mappings), NUM_CHANNELS), dtype=np.float32)
    for r, m in enumerate(mappings):
        try:
            out[r] = to_vector(m, missing=missing, unknown=unknown)
        except (TypeError, ValueError) as e:
            raise type(e)(f"mappings[{r}]: {e}") from None
    return out


def to_dicts(array: Any, naming: Convention = "livelinkface") -> list[dict[str, float]]:
    """``[N, 61]`` -> list of dicts (see :func:`to_dict`)."""
    if _is_tensor(array):
        array = array.detach().cpu().numpy()
    a = np.asarray(array)
    if a.ndim != 2 or a.shape[1] != NUM_CHANNELS:
        raise ValueError(f"array must have shape [N, {NUM_CHANNELS}], got {list(a.shape)}")
    return [to_dict(row, naming) for row in a]


def from_columns(columns: Mapping[str, Any], *, missing: Literal["zero", "raise"] = "zero",
                 unknown: Literal["raise", "ignore"] = "raise") -> Any:
    """``{name: array [...]}`` -> ``[..., 61]``: a torch tensor if any column is one (differentiable,
    on that column's device and dtype), else float32 numpy. Absent channels are 0 (``missing``)."""
    if not isinstance(columns, Mapping) or not columns:
        raise ValueError("columns must be a non-empty dict of name -> array")
    plan, count = _plan(columns.keys(), unknown=unknown)
    _missing_check(count, missing)
    if not plan:
        raise ValueError("columns has no ARKit channel")
    cols = {k: _as_array(columns[k], f"columns[{k!r}]") for k, _ in plan}
    first = next(iter(cols.values()))
    shapes = {tuple(c.shape) for c in cols.values()}
    if len(shapes) > 1:
        raise ValueError(f"all columns must have the same shape, got {sorted(shapes)}")
    parts: list[Any] = [None] * NUM_CHANNELS
    for k, i in plan:
        c = cols[k] / count[i] if count[i] > 1 else cols[k]
        parts[i] = c if parts[i] is None else parts[i] + c
    tensors = [c for c in cols.values() if _is_tensor(c)]
    if tensors:
        torch = _torch()
        ref = tensors[0]
        parts = [torch.as_tensor(p, dtype=ref.dtype, device=ref.device) if p is not None
                 else torch.zeros(ref.shape, dtype=ref.dtype, device=ref.device) for p in parts]
        return torch.stack(parts, dim=-1)
    zero = np.zeros(first.shape, dtype=np.float32)
    return np.stack([zero if p is None else p for p in parts], axis=-1).astype(np.float32, copy=False)


def to_columns(array: Any, naming: Convention = "livelinkface") -> dict[str, Any]:
    """``[..., 61]`` -> ``{name: array [...]}`` (views of the input; torch stays torch)."""
    _check_convention(naming)
    a = _as_array(array, "array")
    _check_last(a, NUM_CHANNELS, "array")
    return {n: a[..., i] for i, ns in enumerate(_TABLE[naming]) for n in ns}


def from_order(array: Any, order: Sequence[str], *, unknown: Literal["raise", "ignore"] = "raise") -> Any:
    """``[..., K]`` whose last axis follows ``order`` (names in any convention, e.g.
    :data:`MEDIAPIPE_NAMES` for FaceLandmarker scores) -> ``[..., 61]``, numpy or torch like the input.
    Absent channels are 0; names without a channel are dropped; ICT halves are averaged."""
    a = _as_array(array, "array")
    _check_last(a, len(order), "array (last axis = len(order))")
    plan, _ = _plan(order, unknown=unknown)
    pos = {k: j for j, k in enumerate(order)}
    # A gather, never a matmul: a NaN in one input column must not leak into other channels, and
    # TF32 matmuls on GPU would not even copy values exactly. ICT halves: the mean of two gathers.
    first = np.full(NUM_CHANNELS, -1, dtype=np.int64)
    second = np.full(NUM_CHANNELS, -1, dtype=np.int64)
    for k, i in plan:
        if first[i] < 0:
            first[i] = pos[k]
        else:
            second[i] = pos[k]
    present, split = first >= 0, second >= 0
    g1 = _take(a, np.where(present, first, 0))
    g2 = _take(a, np.where(split, second, np.where(present, first, 0)))
    if _is_tensor(a):
        torch = _torch()
        out = torch.where(_tensor_like(split, a), (g1 + g2) * 0.5, g1)
        return torch.where(_tensor_like(present, a), out, torch.zeros_like(out))
    out = np.where(split, (g1 + g2) * np.asarray(0.5, dtype=a.dtype), g1)
    return np.where(present, out, np.zeros((), dtype=a.dtype))


def to_order(array: Any, order: Sequence[str], *, fill: float = 0.0) -> Any:
    """``[..., 61]`` -> ``[..., K]`` following ``order`` (any convention; ICT halves both get their
    channel's value). Names without a channel (``_neutral``) get ``fill``; unknown names raise."""
    a = _as_array(array, "array")
    _check_last(a, NUM_CHANNELS, "array")
    idx = np.array([_lookup(k) for k in order], dtype=np.int64)
    if (idx >= 0).all():
        return _take(a, idx)
    out = _take(a, np.where(idx >= 0, idx, 0))
    keep = idx >= 0
    if _is_tensor(out):
        mask = _tensor_like(keep, out)
        return out.where(mask, _torch().full_like(out, fill))
    return np.where(keep, out, np.asarray(fill, dtype=out.dtype))


# ---------------------------------------------------------------------------------------------
# Mirror and validation
# ---------------------------------------------------------------------------------------------


def mirror(params: Any) -> Any:
    """Mirror the face in x: swap every left/right pair (``EyeBlinkLeft`` <-> ``EyeBlinkRight``,
    ``JawLeft`` <-> ``JawRight``, left eye pose <-> right eye pose) and negate yaw and roll (head
    and both eyes). Accepts ``[..., 61]`` numpy/torch (differentiable) or a dict; returns the same kind.
    Applying it twice gives back the input."""
    if isinstance(params, Mapping):
        return to_dict(mirror(to_vector(params)))
    a = _as_array(params, "params")
    _check_last(a, NUM_CHANNELS, "params")
    out = _take(a, MIRROR_PERMUTATION)
    if _is_tensor(out):
        return out * _tensor_like(MIRROR_SIGN, out, out.dtype)
    return out * MIRROR_SIGN.astype(out.dtype)


def validate(params: Any, mode: Literal["raise", "clip"] = "raise", *, name: str = "params") -> Any:
    """Check ``[..., 61]`` parameters (numpy, torch or a dict): NaN/inf always raise ``ValueError``;
    values outside :data:`RANGES` raise (``mode="raise"``) or are clipped with a warning
    (``mode="clip"``). Returns the parameters (a clipped copy if anything was clipped)."""
    if mode not in ("raise", "clip"):
        raise ValueError(f"mode must be 'raise' or 'clip', got {mode!r}")
    if isinstance(params, Mapping):
        return _validate_dict(params, mode, name)
    a = _as_array(params, name)
    _check_last(a, NUM_CHANNELS, name)
    if _is_tensor(a):
        torch = _torch()
        with torch.no_grad():
            finite = torch.isfinite(a).reshape(-1, NUM_CHANNELS).all(0).cpu().numpy()
            lo, hi = _tensor_like(LOW, a, a.dtype), _tensor_like(HIGH, a, a.dtype)
            bad = ((a < lo) | (a > hi)).reshape(-1, NUM_CHANNELS).any(0).cpu().numpy()
    else:
        finite = np.isfinite(a).reshape(-1, NUM_CHANNELS).all(0)
        bad = ((a < LOW) | (a > HIGH)).reshape(-1, NUM_CHANNELS).any(0)
    if not finite.all():
        chans = [NAMES[i] for i in np.flatnonzero(~finite)]
        raise ValueError(f"{name} has NaN or infinite values in {', '.join(chans)}")
    if not bad.any():
        return params if not isinstance(params, (list, tuple)) else a
    chans = [NAMES[i] for i in np.flatnonzero(bad)]
    msg = (f"{name} out of range in {len(chans)} channel(s): {', '.join(chans[:8])}"
           f"{', ...' if len(chans) > 8 else ''} (blendshapes [0, 1], pose [-1, 1])")
    if mode == "raise":
        raise ValueError(msg)
    warnings.warn(msg + "; clipped", stacklevel=2)
    if _is_tensor(a):
        torch = _torch()
        return torch.clamp(a, _tensor_like(LOW, a, a.dtype), _tensor_like(HIGH, a, a.dtype))
    return np.clip(a, LOW.astype(a.dtype), HIGH.astype(a.dtype))


assert sorted(GROUPS["upper_face"] + GROUPS["lower_face"]) == sorted(BLENDSHAPES)


def _validate_dict(params: Mapping[str, Any], mode: str, name: str) -> dict[str, Any]:
    """:func:`validate` for ``{name: value}``: same keys back, values checked per channel."""
    out: dict[str, Any] = {}
    nonfinite, bad = [], []
    for k, v in params.items():
        i = _lookup(k)
        out[k] = v
        if i < 0:
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{name}[{k!r}] must be a number, got {v!r}") from None
        if not math.isfinite(x):
            nonfinite.append(k)
        elif not LOW[i] <= x <= HIGH[i]:
            bad.append(k)
            out[k] = min(max(x, float(LOW[i])), float(HIGH[i]))
    if nonfinite:
        raise ValueError(f"{name} has NaN or infinite values in {', '.join(nonfinite)}")
    if bad:
        msg = (f"{name} out of range in {len(bad)} channel(s): {', '.join(bad)} "
               f"(blendshapes [0, 1], pose [-1, 1])")
        if mode == "raise":
            raise ValueError(msg)
        warnings.warn(msg + "; clipped", stacklevel=3)
    return out
