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
the descriptions, background and emotion; its timing is the default pacing. A KeyframeFace
response file (``{"response": "{\"Keyframe_one\": {…}}"}`` lines) already holds the keyframes:
:func:`load_keyframes` returns them with a script that places them :data:`RESPONSE_SPACING`
seconds apart (the spacing of KeyframeFace's published ``example_result.csv``), named by their keys.

Every size is bounded before anything is allocated: a script file holds at most
:data:`MAX_SCRIPT_BYTES` (and, for YAML, :data:`MAX_YAML_NODES` nodes counting each alias as the
nodes it repeats, which stops alias bombs), at most :data:`MAX_KEYFRAMES` keyframes of at most
:data:`MAX_TEXT` characters, ``fps`` <= :data:`MAX_FPS`, and the whole animation lasts at most
:data:`MAX_DURATION` seconds (so at most 864,001 frames). Errors quote at most ~80 characters of a
bad value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.errors import FormatError, excerpt, json_loads, read_text

DEFAULT_FPS = 30.0
DEFAULT_LEAD_IN = 0.5
MIN_TRANSITION = 0.12  # seconds: the fastest move into a keyframe the pacing allows
SCRIPT_KEYS = {"keyframes", "background", "emotion", "fps", "lead_in", "name"}
KEYFRAME_KEYS = {"text", "duration", "time", "hold", "transition"}
MAX_SCRIPT_BYTES = 4 * 2**20  # a script file (YAML, JSON or KeyframeFace JSONL)
MAX_YAML_NODES = 100_000  # YAML nodes, each alias counted as all the nodes it stands for
MAX_KEYFRAMES = 99  # KeyframeFace names keyframes "One" .. "Ninety Nine"
MAX_TEXT = 4000  # characters in a description, the background, the emotion
MAX_FPS = 240.0
MAX_DURATION = 3600.0  # seconds: any time value, and the whole animation
MAX_NAME = 100  # characters in the name (the outputs' file stem)
RESPONSE_SPACING = 1.0  # seconds between the keyframes of a response file (KeyframeFace's example_result.csv)


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
        if len(self.keyframes) > MAX_KEYFRAMES:
            raise ValueError(f"script has {len(self.keyframes)} keyframes; at most {MAX_KEYFRAMES}")
        for i, k in enumerate(self.keyframes):
            if not isinstance(k.text, str) or not k.text.strip():
                raise ValueError(f"keyframes[{i}].text must be a non-empty string, got {excerpt(k.text)}")
            if len(k.text) > MAX_TEXT:
                raise ValueError(f"keyframes[{i}].text has {len(k.text)} characters; at most {MAX_TEXT}")
            for key in ("duration", "time", "hold", "transition"):
                v = getattr(k, key)
                if v is not None:
                    _seconds(v, f"keyframes[{i}].{key}", positive=key == "duration")
        if not _is_number(self.fps) or not 0 < self.fps <= MAX_FPS:
            raise ValueError(f"fps must be a number in (0, {MAX_FPS:g}], got {excerpt(self.fps)}")
        _seconds(self.lead_in, "lead_in")
        for key in ("background", "emotion"):
            v = getattr(self, key)
            if not isinstance(v, str):
                raise ValueError(f"{key} must be a string, got {excerpt(v)}")
            if len(v) > MAX_TEXT:
                raise ValueError(f"{key} has {len(v)} characters; at most {MAX_TEXT}")
        check_name(self.name)

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
        end = float(times[-1] + max(durations[-1], holds[-1])) + self.lead_in
        if end > MAX_DURATION:
            raise ValueError(f"the animation would last {end:g} s; at most {MAX_DURATION:g} s")
        return times + self.lead_in, holds, end


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _seconds(v: Any, what: str, positive: bool = False) -> None:
    """A time in seconds: a number in [0, MAX_DURATION] (> 0 with ``positive``). The comparisons
    hold for ints of any size (no float conversion) and fail for NaN."""
    if not _is_number(v) or not 0 <= v <= MAX_DURATION or (positive and v == 0):
        raise ValueError(f"{what} must be a number of seconds in {'(' if positive else '['}0, "
                         f"{MAX_DURATION:g}], got {excerpt(v)}")


def check_name(name: Any) -> str:
    """A script name is the file stem of its outputs: a non-empty string of at most MAX_NAME
    characters, no path separators, not starting with a dot."""
    if (not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or name.startswith(".")
            or any(c in name for c in "/\\\0")):
        raise ValueError(f"name must be a file stem (1..{MAX_NAME} characters, no '/', '\\' or "
                         f"leading '.'), got {excerpt(name)}")
    return name


def _keyframe(obj: Any, i: int) -> Keyframe:
    if isinstance(obj, str):
        return Keyframe(obj)
    if not isinstance(obj, Mapping):
        raise ValueError(f"keyframes[{i}] must be a string or a mapping with 'text', got "
                         f"{type(obj).__name__}")
    unknown = [k for k in obj if k not in KEYFRAME_KEYS]
    if unknown:
        raise ValueError(f"keyframes[{i}] has unknown keys {_keys(unknown)}; "
                         f"allowed: {sorted(KEYFRAME_KEYS)}")
    if "text" not in obj:
        raise ValueError(f"keyframes[{i}] has no 'text'")
    return Keyframe(**dict(obj))


def parse_script(obj: Mapping[str, Any], source: str = "") -> Script:
    """A script mapping (parsed YAML/JSON) -> :class:`Script`; unknown keys are errors."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a script must be a mapping with 'keyframes', got {type(obj).__name__}")
    unknown = [k for k in obj if k not in SCRIPT_KEYS]
    if unknown:
        raise ValueError(f"unknown script keys {_keys(unknown)}; allowed: {sorted(SCRIPT_KEYS)}")
    frames = obj.get("keyframes")
    if not isinstance(frames, Sequence) or isinstance(frames, str) or not frames:
        raise ValueError("script has no keyframes: 'keyframes' must be a non-empty list")
    if len(frames) > MAX_KEYFRAMES:
        raise ValueError(f"script has {len(frames)} keyframes; at most {MAX_KEYFRAMES}")
    kw = {k: obj[k] for k in ("background", "emotion", "fps", "lead_in", "name") if obj.get(k) is not None}
    script = Script([_keyframe(f, i) for i, f in enumerate(frames)], source=source, **kw)
    script.timing()  # times that do not increase, or too long an animation, fail here
    return script


def _keys(keys: list) -> str:
    """Unknown keys for a message: a few, each cut short."""
    return "[" + ", ".join(excerpt(k, 40) for k in keys[:5]) + (", ..." if len(keys) > 5 else "") + "]"


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
    FileNotFoundError with a one-line reason (a response file: use :func:`load_keyframes`)."""
    script, keyframes = load_keyframes(source)
    if keyframes is not None:
        raise FormatError("holds KeyframeFace responses (keyframes), not requests: animate them with "
                          "facecore.animate.animate or load_keyframes", path=source)
    return script


def load_keyframes(source: Any) -> tuple[Script, np.ndarray | None]:
    """Like :func:`load_script`, also accepting a KeyframeFace response file (``.jsonl``): returns
    ``(script, keyframes float32 [K, 61])`` for responses (see :func:`from_responses`), and
    ``(script, None)`` for everything else (the keyframes are then for a generator to make)."""
    from ..io import KeyframeRequest

    if isinstance(source, Script):
        return source, None
    if isinstance(source, KeyframeRequest):
        source = [source]
    if isinstance(source, Mapping):
        return parse_script(source), None
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)) and source and all(
            isinstance(r, KeyframeRequest) for r in source):
        return _one(from_requests(source)), None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"script file not found: {path}")
        return _load_file(path)
    raise TypeError(f"cannot read a script from {type(source).__name__}; give a path, a mapping, "
                    "a Script or KeyframeFace requests")


def from_responses(responses: Sequence[Mapping[str, Any]], source: str = "") -> tuple[Script, np.ndarray]:
    """KeyframeFace responses (``[{"Keyframe_one": params [61]}, …]``) -> ``(script, keyframes
    [K, 61])``: keyframes in number order (see :func:`facecore.io.response_keyframes`), each
    :data:`RESPONSE_SPACING` seconds after the one before, named ``Keyframe One``, … (or by their
    key when it is no numbered keyframe key). Responses carry no descriptions, background or emotion."""
    from ..io import keyframe_name, keyframe_number, response_keyframes

    keys, params = response_keyframes(responses, path=source or None)
    texts = []
    for i, key in enumerate(keys):
        number = keyframe_number(key)
        label = " ".join(key.split()) or f"Keyframe {i + 1}"
        texts.append(keyframe_name(number) if number is not None else label)
    script = Script([Keyframe(t, duration=RESPONSE_SPACING) for t in texts], source=source)
    script.timing()
    return script, params


def _one(scripts: list[Script]) -> Script:
    if len(scripts) > 1:
        raise ValueError(f"the requests hold {len(scripts)} different keyframe sequences; "
                         "animate one sequence at a time")
    return scripts[0]


def _load_file(path: Path) -> tuple[Script, np.ndarray | None]:
    """A script file -> (Script, keyframes of a response file or None); every problem is a
    FormatError naming the file (and line)."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".yaml", ".yml"):
        raise ValueError(f"{path}: unknown script type {excerpt(suffix)}; use .jsonl (KeyframeFace "
                         "requests or responses), .json or .yaml")
    if path.stat().st_size > MAX_SCRIPT_BYTES:
        raise FormatError(f"file is larger than {MAX_SCRIPT_BYTES} bytes; a script is a few kB", path=path)
    try:
        if suffix == ".jsonl":
            return _load_jsonl(path)
        text = read_text(path, max_bytes=MAX_SCRIPT_BYTES)
        obj = json_loads(text, what="not JSON", path=path) if suffix == ".json" else _load_yaml(text, path)
        if obj is None:
            raise ValueError("empty script")
        script = parse_script(obj, source=str(path))
    except FormatError:
        raise
    except ValueError as e:
        raise FormatError(str(e), path=path) from None
    if "name" not in obj:
        try:
            script.name = check_name(path.stem)
        except ValueError:
            pass  # the file's name is no file stem for the outputs: keep the default
    return script, None


def _load_jsonl(path: Path) -> tuple[Script, np.ndarray | None]:
    from ..io import read_keyframeface

    items = read_keyframeface(path)
    if not items:
        raise ValueError("empty request file")
    if isinstance(items[0], dict):
        return from_responses(items, source=str(path))
    return _one(from_requests(items, source=str(path))), None


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load`` after counting the nodes from the event stream (no node is built before
    the count is known: an alias bomb of a few hundred bytes stands for billions)."""
    try:
        import yaml
    except ImportError:
        raise ImportError('reading a YAML script needs PyYAML: pip install "facecore[animate]"') from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in: fast, nesting <= 1000
    try:
        _count_yaml_nodes(yaml.parse(text, Loader=loader), yaml, path)
        return yaml.load(text, Loader=loader)
    except FormatError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise FormatError(f"not YAML: {str(e).splitlines()[0]}", path=path,
                          line=mark.line + 1 if mark is not None else None) from None
    except RecursionError:
        raise FormatError("not YAML: nested too deeply", path=path) from None
    except ValueError as e:  # a value no Python type holds: an int over 4300 digits, a bad date
        raise FormatError(f"not YAML: {str(e)[:120]}", path=path) from None


def _count_yaml_nodes(events: Any, yaml: Any, path: Path) -> None:
    """Raise FormatError when the document stands for more than MAX_YAML_NODES nodes (an alias
    counts as every node of its anchor) or an alias is used before its anchor is complete."""
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for
    open_: list[tuple[str | None, int]] = []  # collections being read: (anchor, count at start)
    count = 0
    for ev in events:
        if isinstance(ev, yaml.AliasEvent):
            if ev.anchor not in sizes:
                raise FormatError(f"not YAML: alias *{ev.anchor[:40]} is undefined or refers "
                                  "to a node that contains it", path=path, line=ev.start_mark.line + 1)
            count += sizes[ev.anchor]
        elif isinstance(ev, yaml.ScalarEvent):
            count += 1
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
        elif isinstance(ev, yaml.CollectionStartEvent):
            open_.append((ev.anchor, count))
            count += 1
        elif isinstance(ev, yaml.CollectionEndEvent):
            anchor, start = open_.pop()
            if anchor is not None:
                sizes[anchor] = count - start
        if count > MAX_YAML_NODES:
            raise FormatError(f"script has over {MAX_YAML_NODES} YAML nodes (counting what each alias "
                              "repeats); a script is a few dozen", path=path, line=ev.start_mark.line + 1)
