"""One animation between file formats: Live Link Face CSV, KeyframeFace JSONL responses,
SemanticFace JSON answers and GLB (``facecore convert IN -o OUT``).

Every format is read into a :class:`~facecore.io.Track` and written from one (:data:`SUFFIXES`):

- ``csv`` (``.csv``): frames with timecodes (:func:`~facecore.io.read_csv`; ``lost`` chooses what
  tracking-lost rows become);
- ``keyframeface`` (``.jsonl``): response lines holding keyframes but no times (at most 99); read
  as frames ``1 / fps`` seconds apart (``fps`` default 1, the spacing of KeyframeFace's own
  ``example_result.csv``); request files hold no parameters and are refused;
- ``semanticface`` (``.json``): one frame with its analysis text, written with empty analysis
  fields unless the input was a SemanticFace answer (facecore does not write analyses);
- ``glb`` (``.glb``; input also ``.gltf``): a rig (``rig``) with the 52 blendshape weights and the
  head rotation as an animation (:func:`~facecore.io.gltf.write_glb`). Eye rotations are not
  exported: they read back as 0 (with a warning when writing non-zero ones).

Values round-trip to each format's precision: CSV, JSONL and JSON write the shortest text that
reads back as the same float32, GLB stores float32 weights (exact) and the head pose as a float32
quaternion (about 1e-7). ``fps`` resamples CSV/GLB input linearly (``fps=1`` turns a take into at
most 99 keyframes); ``frame`` takes one frame (a SemanticFace answer holds only one). A pair that
cannot hold the track is a ``ValueError`` saying what to pass instead.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import arkit
from .errors import FormatError, excerpt
from .track import Track

__all__ = ["FORMATS", "SUFFIXES", "format_of", "read_track", "write_track", "read_glb_track", "convert"]

FORMATS = ("csv", "keyframeface", "semanticface", "glb")
"""The format names ``convert`` takes (``src_format``/``dst_format``, CLI ``--from``/``--to``)."""
SUFFIXES = {".csv": "csv", ".jsonl": "keyframeface", ".json": "semanticface", ".glb": "glb", ".gltf": "glb"}
"""File suffix -> format."""
_ALIASES = {"livelinkface": "csv", "jsonl": "keyframeface", "json": "semanticface", "gltf": "glb"}
KEYFRAME_FORMATS = ("keyframeface", "semanticface")  # no times in the file: ``fps`` spaces the keyframes
MAX_KEYFRAMES = 99  # KeyframeFace names keyframes "One" .. "Ninety Nine"
_EYES = slice(55, 61)  # LeftEyeYaw .. RightEyeRoll: not in a GLB


def format_of(path: str | os.PathLike, fmt: str | None = None, *, what: str = "input") -> str:
    """The format of ``path``: ``fmt`` when given (a name of :data:`FORMATS` or an alias such as
    ``"livelinkface"``, ``"jsonl"``), else from the suffix. ValueError names what is expected."""
    if fmt is not None:
        if not isinstance(fmt, str) or fmt.lower() not in (*FORMATS, *_ALIASES):
            raise ValueError(f"{what} format must be one of {', '.join(FORMATS)}, got {excerpt(fmt)}")
        return _ALIASES.get(fmt.lower(), fmt.lower())
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"cannot tell the format of {what} {excerpt(str(path))} from its suffix: use "
                         f"{', '.join(SUFFIXES)} or give the format ({', '.join(FORMATS)})")
    return SUFFIXES[suffix]


def _positive(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(v) and v > 0):
        raise ValueError(f"{what} must be a positive number, got {excerpt(v)}")
    return float(v)


# --- reading ------------------------------------------------------------------------------------


def read_track(path: str | os.PathLike, fmt: str | None = None, *, fps: float | None = None,
               lost: str | None = None, strict: bool = True, timebase: int = 60) -> Track:
    """Read any :data:`FORMATS` file into a :class:`Track` (see the module docstring).

    ``fps``: keyframes per second of a KeyframeFace/SemanticFace file (default 1); ``lost``: the
    tracking-lost policy of a CSV (default ``"hold"``); ``strict``: as in each format's reader."""
    from .keyframeface import read_keyframeface, response_keyframes
    from .livelink import read_csv
    from .semanticface import read_semanticface

    fmt = format_of(path, fmt)
    if lost is not None and fmt != "csv":
        raise ValueError(f"lost applies to Live Link Face CSV input only, not {fmt}")
    if fps is not None and fmt not in KEYFRAME_FORMATS:
        raise ValueError(f"fps spaces the keyframes of {' / '.join(KEYFRAME_FORMATS)} input; {fmt} "
                         "input has its own times (resample it with convert(fps=...))")
    rate = 1.0 if fps is None else _positive(fps, "fps")
    if not Path(path).is_file():
        raise FileNotFoundError(f"input not found: {path}")
    if fmt == "csv":
        return read_csv(path, lost="hold" if lost is None else lost, strict=strict, timebase=timebase)
    if fmt == "glb":
        return read_glb_track(path)
    if fmt == "semanticface":
        _, params = read_semanticface(path, strict=strict)
        return Track.from_params(params[None], fps=rate)
    items = read_keyframeface(path, strict=strict)
    if items and not isinstance(items[0], Mapping):
        raise FormatError("holds KeyframeFace requests (descriptions, no parameters): make their "
                          "keyframes with `facecore animate`", path=path)
    _, params = response_keyframes(items, path=path)
    return Track.from_params(params, fps=rate)


def read_glb_track(path: str | os.PathLike) -> Track:
    """The morph-target weights animation of a GLB/glTF (as :func:`facecore.io.gltf.write_glb`
    writes it) -> :class:`Track`, parsed by :func:`facecore.io.gltf_reader.read_glb`.

    Morph targets are matched to channels by their names in ``mesh.extras.targetNames``, in any
    naming convention facecore knows and in any case (``EyeBlinkLeft``, ``eyeBlinkLeft``,
    ``eyeBlink_L``); the head node's rotation gives HeadYaw/Pitch/Roll (the inverse of
    :func:`facecore.io.gltf.pose_quaternions`, angles over ``head_max_angle`` = pi/2 unless the
    file's ``extras.facecore`` records another). Times start at 0; eye channels are 0."""
    from .gltf_reader import read_glb
    from .livelink import _estimate_fps

    glb = read_glb(path)
    times, weights, rotations = glb["times"], glb["weights"], glb["rotations"]
    if weights is None or times is None:
        raise FormatError("has no morph-target weights animation to read", path=path)
    names = glb["target_names"]
    if not names:
        raise FormatError("meshes[0].extras.targetNames is missing: the morph targets have no names to "
                          "match to ARKit channels", path=path)
    n = len(times)
    if weights.shape != (n, len(names)):
        raise FormatError(f"the weights animation has {weights.shape[1]} values per frame, the mesh names "
                          f"{len(names)} morph targets", path=path)
    try:
        params = arkit.from_order(weights.astype(np.float64), names, unknown="raise")
    except ValueError as e:
        raise FormatError(f"morph target names: {e}", path=path) from None
    if not np.isfinite(params).all():
        raise FormatError("the weights animation has NaN or infinite values", path=path)
    if rotations is not None:
        if rotations.shape != (n, 4):
            raise FormatError(f"the rotation animation has {rotations.shape[0]} keys, the weights {n}",
                              path=path)
        params[:, 52:55] = _pose_from_quaternions(rotations.astype(np.float64)) / _head_max_angle(glb, path)
    t = times.astype(np.float64)
    try:
        return Track(times=t, params=params.astype(np.float32), fps=_estimate_fps(t, 60))
    except ValueError as e:
        raise FormatError(f"animation times: {e}", path=path) from None


def _head_max_angle(glb: dict, path: Any) -> float:
    """The angle of a pose channel at 1: recorded by the writer in ``asset.extras.facecore``, else
    write_glb's default."""
    recorded: Any = glb["json"]
    for key in ("asset", "extras", "facecore", "head_max_angle"):
        recorded = recorded.get(key) if isinstance(recorded, dict) else None
    if recorded is None:
        return math.pi / 2  # write_glb's default
    try:
        return _positive(recorded, "asset.extras.facecore.head_max_angle")
    except ValueError as e:
        raise FormatError(str(e), path=path) from None


def _pose_from_quaternions(q: np.ndarray) -> np.ndarray:
    """``[N, 4]`` (x, y, z, w) quaternions of ``Ry(yaw) Rx(-pitch) Rz(-roll)`` -> ``[N, 3]`` (yaw,
    pitch, roll) in radians: the Y-X-Z Euler decomposition (pitch within +-pi/2)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-30)
    x, y, z, w = q.T
    r02 = 2 * (x * z + y * w)
    r22 = 1 - 2 * (x * x + y * y)
    r12 = 2 * (y * z - x * w)
    r10 = 2 * (x * y + z * w)
    r11 = 1 - 2 * (x * x + z * z)
    yaw = np.arctan2(r02, r22)
    pitch = -np.arcsin(np.clip(-r12, -1.0, 1.0))
    roll = -np.arctan2(r10, r11)
    return np.stack([yaw, pitch, roll], axis=1)


# --- writing ------------------------------------------------------------------------------------


def write_track(path: str | os.PathLike, track: Track, fmt: str | None = None, *, rig: Any = None,
                name: str | None = None, analysis: Mapping[str, Any] | None = None,
                timebase: int = 60) -> None:
    """Write ``track`` as any :data:`FORMATS` file; a track the format cannot hold (more than one
    frame for a SemanticFace answer, over 99 for KeyframeFace, NaN anywhere but in a CSV's lost
    frames) is a ``ValueError`` saying what to do. ``rig`` (GLB): anything
    :func:`facecore.rig.load_rig` takes (default the embedded rig); ``name``: the GLB
    mesh name (default the file stem); ``analysis``: the SemanticFace analysis (default empty)."""
    fmt = format_of(path, fmt, what="output")
    if not isinstance(track, Track):
        raise TypeError(f"track must be a facecore.io.Track, got {type(track).__name__}")
    if rig is not None and fmt != "glb":
        raise ValueError(f"rig applies to GLB output only, not {fmt}")
    if analysis is not None and fmt != "semanticface":
        raise ValueError(f"analysis applies to SemanticFace output only, not {fmt}")
    if fmt == "glb" and Path(path).suffix.lower() == ".gltf":
        raise ValueError(f"facecore writes binary glTF: name the output .glb, not {excerpt(str(path))}")
    n = len(track)
    if fmt != "csv":
        if n == 0:
            raise ValueError(f"the track has no frames; {fmt} output needs at least one")
        if not np.isfinite(track.params).all():
            rows = np.flatnonzero(~np.isfinite(track.params).all(1))
            raise ValueError(f"{rows.size} frame(s) have NaN parameters (first: frame {rows[0]}), as "
                             f"tracking-lost frames read with lost='nan' do: only CSV keeps those (as "
                             f"tracking-lost rows); {fmt} needs --lost hold or interpolate")
    if fmt == "csv":
        from .livelink import write_csv

        write_csv(path, track, timebase=timebase)
    elif fmt == "semanticface":
        from .semanticface import ANALYSIS_KEYS, write_semanticface

        if n != 1:
            raise ValueError(f"a SemanticFace answer holds one frame, the track has {n}: take one with "
                             f"--frame N (frame=N), N in 0..{n - 1}")
        write_semanticface(path, analysis if analysis is not None else dict.fromkeys(ANALYSIS_KEYS, ""),
                           track.params[0])
    elif fmt == "keyframeface":
        from .keyframeface import keyframe_key, keyframe_name, write_keyframeface

        if n > MAX_KEYFRAMES:
            raise ValueError(f"KeyframeFace responses hold at most {MAX_KEYFRAMES} keyframes, the track has "
                             f"{n} frames: sample keyframes with --fps F (fps=F; e.g. 1 per second), "
                             "or take one with --frame N")
        keys = [keyframe_key(keyframe_name(i + 1)) for i in range(n)]
        write_keyframeface(path, [{k: p} for k, p in zip(keys, track.params)])
    else:
        from ..rig import load_rig
        from .gltf import write_glb

        if np.any(track.params[:, _EYES] != 0):
            warnings.warn("a GLB holds no eye rotations: the eye pose channels (LeftEyeYaw..RightEyeRoll) "
                          "are not written", UserWarning, stacklevel=2)
        write_glb(path=path, rig=load_rig("default" if rig is None else rig), track=track,
                  name=name if name is not None else Path(path).stem)


def _resample(track: Track, fps: float) -> Track:
    """``track`` sampled every ``1 / fps`` seconds from its first frame, linear in time. A new frame
    is tracked when the frames it comes from are."""
    if len(track) < 2:
        return Track(times=track.times, params=track.params, fps=fps, tracked=track.tracked)
    t0 = track.times[0]
    count = int(math.floor(track.duration * fps + 1e-9)) + 1
    times = t0 + np.arange(count) / fps
    hi = np.clip(np.searchsorted(track.times, times, side="right"), 1, len(track) - 1)
    lo = hi - 1
    span = track.times[hi] - track.times[lo]
    w = np.clip(np.divide(times - track.times[lo], span, out=np.zeros_like(span), where=span > 0), 0, 1)
    w[w < 1e-9] = 0.0  # on a frame up to rounding of k / fps: copy it exactly, and a NaN
    w[w > 1 - 1e-9] = 1.0  # (lost frame) beside it must not leak in
    a = track.params[lo].astype(np.float64)
    b = track.params[hi].astype(np.float64)
    with np.errstate(invalid="ignore"):
        mixed = a + w[:, None] * (b - a)
    params = np.where((w == 0)[:, None], a, np.where((w == 1)[:, None], b, mixed))
    tracked = np.where(w == 0, track.tracked[lo],
                       np.where(w == 1, track.tracked[hi], track.tracked[lo] & track.tracked[hi]))
    return Track(times=times, params=params.astype(np.float32), fps=fps, tracked=tracked)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, src_format: str | None = None,
            dst_format: str | None = None, fps: float | None = None, lost: str | None = None,
            rig: Any = None, frame: int | None = None, strict: bool = True, name: str | None = None) -> Track:
    """Convert the animation in ``src`` into ``dst`` (formats from the suffixes unless given);
    returns the track written. Options (each a ``ValueError`` where it does not apply):

    - ``fps``: keyframes per second of KeyframeFace/SemanticFace input (default 1); for CSV/GLB
      input, resample to that rate (linear in time);
    - ``lost``: CSV input, the tracking-lost policy (``"hold"`` default, ``"interpolate"``, ``"nan"``).
      Given as ``"hold"``/``"interpolate"``, the filled frames are written as frames (a CSV output
      then has no tracking-lost rows); not given, a CSV output keeps the lost rows as they were;
    - ``rig``: GLB output, the rig (default the embedded one); ``name``: the GLB mesh name;
    - ``frame``: take this one frame (0-based) of the input;
    - ``strict``: as in the readers (``False`` skips what it can, with a warning).

    ``dst`` is written in place; ``facecore convert`` writes through a temporary file.
    """
    from .semanticface import read_semanticface

    src_fmt = format_of(src, src_format)
    dst_fmt = format_of(dst, dst_format, what="output")
    if rig is not None and dst_fmt != "glb":
        raise ValueError(f"rig applies to GLB output only, not {dst_fmt}")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise ValueError(f"frame must be an int (0-based frame number), got {excerpt(frame)}")
    if fps is not None:
        fps = _positive(fps, "fps")
    keyframe_input = src_fmt in KEYFRAME_FORMATS
    track = read_track(src, src_fmt, fps=fps if keyframe_input else None, lost=lost, strict=strict)
    if lost in ("hold", "interpolate"):
        track.tracked[:] = True  # asked to fill the gaps: the filled frames are the output
    if fps is not None and not keyframe_input:
        track = _resample(track, fps)
    if frame is not None:
        if not 0 <= frame < len(track):
            raise ValueError(f"frame {frame} is out of range: {src} has {len(track)} frames (0.."
                             f"{len(track) - 1})")
        track = track.select(int(frame))
    analysis = None
    if src_fmt == "semanticface" and dst_fmt == "semanticface":
        analysis = read_semanticface(src, strict=strict)[0]  # the text travels along
    write_track(dst, track, dst_fmt, rig=rig, name=name, analysis=analysis)
    return track
