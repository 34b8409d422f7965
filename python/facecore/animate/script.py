"""Animation scripts: KeyframeFace requests or a plain YAML/JSON script, with their timing.

Script form (YAML or JSON)::

    background: A student waits outside an interview room.   # optional
    emotion: Anxiety concealed by a restrained smile.        # optional
    fps: 30                                                  # optional (default 30)
    lead_in: 0.5        # optional: seconds from a neutral face to the first keyframe (default 0.5)
    keyframes:
      - text: The gaze is lowered and the lips press together.
        duration: 2.0   # seconds until the next keyframe starts (default pacing otherwise)
        hold: 0.6       # seconds the pose is held once reached (default 30% of the duration)
      - {text: The gaze rises into a small smile., time: 2.5, transition: 0.8}
      - A keyframe may also be a plain string.

``time`` is absolute (seconds from the start of the first keyframe) and wins over the previous
keyframe's ``duration``; ``transition`` is how long the move into this keyframe takes (it shortens
the previous keyframe's hold accordingly). A KeyframeFace request file (JSONL chat messages) gives
the descriptions, background and emotion; its timing is the default pacing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_FPS = 30.0
DEFAULT_LEAD_IN = 0.5
MIN_TRANSITION = 0.12  # seconds: the fastest move into a keyframe the pacing allows
SCRIPT_KEYS = {"keyframes", "background", "emotion", "fps", "lead_in", "name"}
KEYFRAME_KEYS = {"text", "duration", "time", "hold", "transition"}


def default_duration(text: str) -> float:
    """Default pacing: about 1.2 s plus a little per word of description, capped at 3 s."""
    return float(min(3.0, 1.2 + 0.04 * len(text.split())))


@dataclass
class Keyframe:
    text: str
    duration: float | None = None
    time: float | None = None
    hold: float | None = None
    transition: float | None = None


@dataclass
class Script:
    """A keyframe script. ``timing()`` resolves times, holds and the end time."""

    keyframes: list[Keyframe]
    background: str = ""
    emotion: str = ""
    fps: float = DEFAULT_FPS
    lead_in: float = DEFAULT_LEAD_IN
    name: str = "animation"
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.keyframes:
            raise ValueError("script has no keyframes: give at least one keyframe description")
        for i, k in enumerate(self.keyframes):
            if not isinstance(k.text, str) or not k.text.strip():
                raise ValueError(f"keyframes[{i}].text must be a non-empty string")
            for key in ("duration", "time", "hold", "transition"):
                v = getattr(k, key)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                      or not np.isfinite(v) or v < 0):
                    raise ValueError(f"keyframes[{i}].{key} must be a number >= 0, got {v!r}")
            if k.duration is not None and k.duration <= 0:
                raise ValueError(f"keyframes[{i}].duration must be > 0, got {k.duration!r}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not (
                np.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise ValueError(f"fps must be a number in (0, 1000], got {self.fps!r}")
        if isinstance(self.lead_in, bool) or not isinstance(self.lead_in, (int, float)) or not (
                np.isfinite(self.lead_in) and self.lead_in >= 0):
            raise ValueError(f"lead_in must be a number >= 0, got {self.lead_in!r}")
        for key in ("background", "emotion"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{key} must be a string")

    @property
    def descriptions(self) -> list[str]:
        return [k.text for k in self.keyframes]

    def timing(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``(times [K], holds [K], end)`` in seconds; times start at ``lead_in``."""
        n = len(self.keyframes)
        durations = [k.duration if k.duration is not None else default_duration(k.text)
                     for k in self.keyframes]
        times = np.zeros(n)
        for i, k in enumerate(self.keyframes):
            if k.time is not None:
                times[i] = k.time
            elif i > 0:
                times[i] = times[i - 1] + durations[i - 1]
        if n > 1 and (np.diff(times) <= 0).any():
            i = int(np.flatnonzero(np.diff(times) <= 0)[0]) + 1
            raise ValueError(f"keyframes[{i}] starts at {times[i]:g} s, not after keyframes[{i - 1}] "
                             f"({times[i - 1]:g} s): times must increase")
        gaps = np.append(np.diff(times), durations[-1])
        holds = np.zeros(n)
        for i, k in enumerate(self.keyframes):
            nxt = self.keyframes[i + 1] if i + 1 < n else None
            hold = k.hold if k.hold is not None else 0.3 * gaps[i]
            if nxt is not None and nxt.transition is not None:
                hold = gaps[i] - nxt.transition
            if i + 1 < n:
                hold = min(hold, gaps[i] - MIN_TRANSITION)
                if hold < 0:
                    raise ValueError(f"keyframes[{i + 1}] leaves no time for the move into it "
                                     f"(gap {gaps[i]:g} s, transition {nxt.transition})")
            holds[i] = max(hold, 0.0)
        end = float(times[-1] + max(durations[-1], holds[-1]))
        return times + self.lead_in, holds, end + self.lead_in


def _keyframe(obj: Any, i: int) -> Keyframe:
    if isinstance(obj, str):
        return Keyframe(obj)
    if not isinstance(obj, Mapping):
        raise ValueError(f"keyframes[{i}] must be a string or a mapping with 'text', got "
                         f"{type(obj).__name__}")
    unknown = set(obj) - KEYFRAME_KEYS
    if unknown:
        raise ValueError(f"keyframes[{i}] has unknown keys {sorted(map(str, unknown))}; "
                         f"allowed: {sorted(KEYFRAME_KEYS)}")
    if "text" not in obj:
        raise ValueError(f"keyframes[{i}] has no 'text'")
    return Keyframe(**dict(obj))


def parse_script(obj: Mapping[str, Any], source: str = "") -> Script:
    """A script mapping (parsed YAML/JSON) -> :class:`Script`; unknown keys are errors."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a script must be a mapping with 'keyframes', got {type(obj).__name__}")
    unknown = set(obj) - SCRIPT_KEYS
    if unknown:
        raise ValueError(f"unknown script keys {sorted(map(str, unknown))}; allowed: {sorted(SCRIPT_KEYS)}")
    frames = obj.get("keyframes")
    if not isinstance(frames, Sequence) or isinstance(frames, str) or not frames:
        raise ValueError("script has no keyframes: 'keyframes' must be a non-empty list")
    kw = {k: obj[k] for k in ("background", "emotion", "fps", "lead_in", "name") if obj.get(k) is not None}
    return Script([_keyframe(f, i) for i, f in enumerate(frames)], source=source, **kw)


def from_requests(requests: Sequence[Any], source: str = "") -> list[Script]:
    """KeyframeFace requests -> one script per distinct keyframe sequence (in first-seen order)."""
    scripts: dict[tuple, Script] = {}
    for r in requests:
        key = (tuple(r.keyframes.items()), r.background, r.emotion)
        if key not in scripts:
            scripts[key] = Script([Keyframe(t) for t in r.keyframes.values()], background=r.background,
                                  emotion=r.emotion, source=source)
    if not scripts:
        raise ValueError("no keyframe requests found")
    return list(scripts.values())


def load_script(source: Any) -> Script:
    """A script from a path (``.jsonl`` KeyframeFace requests, ``.json``, ``.yaml``/``.yml``), a
    mapping, a :class:`Script`, or KeyframeFace request objects. Raises ValueError /
    FileNotFoundError with a one-line reason."""
    from ..io import KeyframeRequest

    if isinstance(source, Script):
        return source
    if isinstance(source, KeyframeRequest):
        source = [source]
    if isinstance(source, Mapping):
        return parse_script(source)
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)) and source and all(
            isinstance(r, KeyframeRequest) for r in source):
        return _one(from_requests(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"script file not found: {path}")
        return _load_file(path)
    raise TypeError(f"cannot read a script from {type(source).__name__}; give a path, a mapping, "
                    "a Script or KeyframeFace requests")


def _one(scripts: list[Script]) -> Script:
    if len(scripts) > 1:
        raise ValueError(f"the requests hold {len(scripts)} different keyframe sequences; "
                         "animate one sequence at a time")
    return scripts[0]


def _load_file(path: Path) -> Script:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".jsonl":
        from ..io import read_keyframeface

        items = read_keyframeface(path)
        if not items:
            raise ValueError(f"{path}: empty request file")
        if isinstance(items[0], dict):
            raise ValueError(f"{path}: holds KeyframeFace responses, not requests")
        return _one(from_requests(items, source=str(path)))
    if suffix == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON: {e.msg} (line {e.lineno})") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not YAML: {str(e).splitlines()[0]}") from None
    else:
        raise ValueError(f"{path}: unknown script type {suffix!r}; use .jsonl (KeyframeFace requests), "
                         ".json or .yaml")
    if obj is None:
        raise ValueError(f"{path}: empty script")
    try:
        script = parse_script(obj, source=str(path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if "name" not in obj:
        script.name = path.stem
    return script
