"""KeyframeFace JSONL: keyframe requests (chat messages) and their responses.

A request line is ``{"messages": [{"role": "system", …}, {"role": "user", "content": …}]}`` whose
user content reads::

    Keyframe Description Sequence:
    - Keyframe One: <description>
    - Keyframe Two: <description>

    Background: <scene>
    Emotion: <emotion>

    Task Instruction: Generate the facial expression parameters for Keyframe One.

(training data may add an ``assistant`` message holding the answer). A response line is
``{"response": "{\\"Keyframe_one\\": {…61 channels…}}"}``: the model's answer as a JSON string.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FormatError, excerpt, json_loads, read_text
from .semanticface import find_json_object, params_from_json, params_to_json

__all__ = ["SYSTEM_PROMPT", "KeyframeRequest", "make_requests", "keyframe_name", "keyframe_key",
           "keyframe_number", "response_keyframes", "parse_response", "format_response",
           "read_keyframeface", "write_keyframeface"]

SYSTEM_PROMPT = (
    "You are a professional facial animator. Generate all 61 ARKit facial parameters for exactly one "
    "requested semantic keyframe. The first 52 blendshapes are in [0,1], and the final 9 head/eye pose "
    "parameters are in [-1,1]. Return strict JSON only in the form {\"Keyframe_x\":{...}}.")
"""The system prompt of KeyframeFace's published requests."""

_ONES = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten",
         "Eleven", "Twelve", "Thirteen", "Fourteen", "Fifteen", "Sixteen", "Seventeen", "Eighteen",
         "Nineteen")
_TENS = ("", "", "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety")


def keyframe_name(i: int) -> str:
    """1-based keyframe number -> its name in requests: ``1 -> "Keyframe One"``, ``21 -> "Keyframe
    Twenty One"`` (1..99)."""
    if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= 99:
        raise ValueError(f"keyframe number must be an int in 1..99, got {i!r}")
    words = _ONES[i] if i < 20 else _TENS[i // 10] + (f" {_ONES[i % 10]}" if i % 10 else "")
    return f"Keyframe {words}"


def keyframe_key(name: str) -> str:
    """A keyframe's name in requests -> its key in responses: ``"Keyframe One" -> "Keyframe_one"``."""
    head, _, rest = name.strip().partition(" ")
    return f"{head}_{rest.lower().replace(' ', '_')}" if rest else head


_NUMBER_OF_KEY = {keyframe_key(keyframe_name(i)).lower(): i for i in range(1, 100)}


def keyframe_number(key: str) -> int | None:
    """A keyframe's key (``"Keyframe_one"``) or name (``"Keyframe One"``) -> its number (1..99);
    None for any other key. Case and spaces/underscores do not matter."""
    if not isinstance(key, str):
        return None
    return _NUMBER_OF_KEY.get("_".join(key.replace("_", " ").split()).lower())


def response_keyframes(responses: Sequence[Mapping[str, Any]], *, path: str | os.PathLike | None = None
                       ) -> tuple[list[str], np.ndarray]:
    """KeyframeFace responses (what :func:`read_keyframeface` returns for a response file: one
    ``{"Keyframe_one": params [61]}`` per line) -> ``(keys, float32 [K, 61])`` in keyframe order.

    The order is the keyframe number when every key is a numbered ``Keyframe_<number>`` key
    (responses are often written in the order they finished, not in the script's), else the order
    of the file. A key given twice is a :class:`FormatError`: the keyframes would be ambiguous.
    """
    if isinstance(responses, Mapping):
        responses = [responses]
    keys: list[str] = []
    values: list[np.ndarray] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(responses):
        if not isinstance(item, Mapping):
            raise TypeError(f"responses[{i}] must be a dict of keyframe key -> params, got "
                            f"{type(item).__name__}")
        for key, params in item.items():
            number = keyframe_number(key)
            ident = f"#{number}" if number is not None else str(key)
            if ident in seen:
                raise FormatError(f"keyframe {excerpt(key)} is given twice (responses {seen[ident] + 1} "
                                  f"and {i + 1})", path=path)
            seen[ident] = i
            vec = np.asarray(params, dtype=np.float32)
            if vec.shape != (61,):
                raise ValueError(f"responses[{i}][{excerpt(key)}] must have shape [61], got "
                                 f"{list(vec.shape)}")
            keys.append(str(key))
            values.append(vec)
    if not keys:
        raise FormatError("no keyframes: the responses are empty", path=path)
    numbers = [keyframe_number(k) for k in keys]
    order = (sorted(range(len(keys)), key=lambda j: numbers[j]) if None not in numbers
             else list(range(len(keys))))
    return [keys[j] for j in order], np.stack([values[j] for j in order])


@dataclass
class KeyframeRequest:
    """One request: the whole keyframe description sequence, the scene, and which keyframe to make.

    ``keyframes`` maps each keyframe name (``"Keyframe One"``) to its description, in order;
    ``target`` is one of those names; ``system`` None means no system message. ``response`` holds
    the answer when the line carried an assistant message (``{"Keyframe_one": float32 [61]}``),
    else None.
    """

    keyframes: dict[str, str]
    target: str
    background: str = ""
    emotion: str = ""
    system: str | None = SYSTEM_PROMPT
    response: dict[str, np.ndarray] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.keyframes, Mapping) or not self.keyframes:
            raise ValueError("keyframes must be a non-empty dict of name -> description")
        self.keyframes = dict(self.keyframes)
        bad = [k for k in self.keyframes
               if not isinstance(k, str) or not k or k != k.strip() or ":" in k or "\n" in k]
        if bad:
            raise ValueError(f"keyframe names must be stripped one-line strings without ':', got "
                             f"{excerpt(bad)}")
        if self.target not in self.keyframes:
            raise ValueError(f"target {excerpt(self.target)} is not one of the keyframes "
                             f"{excerpt(list(self.keyframes))}")

    @property
    def target_key(self) -> str:
        """The key the response uses for the target keyframe (``"Keyframe_one"``)."""
        return keyframe_key(self.target)

    def user_prompt(self) -> str:
        """The user message text, exactly as KeyframeFace writes it."""
        seq = "\n".join(f"- {k}: {v}" for k, v in self.keyframes.items())
        return (f"Keyframe Description Sequence:\n{seq}\n\nBackground: {self.background}\n"
                f"Emotion: {self.emotion}\n\n"
                f"Task Instruction: Generate the facial expression parameters for {self.target}.")

    def messages(self) -> list[dict[str, str]]:
        """Chat messages: system (unless None), user, and the assistant's answer when ``response`` is set."""
        out = [] if self.system is None else [{"role": "system", "content": self.system}]
        out.append({"role": "user", "content": self.user_prompt()})
        if self.response is not None:
            out.append({"role": "assistant", "content": format_response(self.response)})
        return out


def make_requests(descriptions: Sequence[str], background: str = "", emotion: str = "",
                  system: str = SYSTEM_PROMPT) -> list[KeyframeRequest]:
    """One request per keyframe of a script (descriptions in order), as KeyframeFace expects them."""
    if isinstance(descriptions, str) or not descriptions:
        raise ValueError("descriptions must be a non-empty sequence of strings")
    frames = {keyframe_name(i + 1): str(d) for i, d in enumerate(descriptions)}
    return [KeyframeRequest(frames, name, background, emotion, system) for name in frames]


# Values keep their own whitespace: only the one space after the colon belongs to the format.
_FIELD = re.compile(r"^\s*(Background|Emotion)\s*: ?(.*)$")
_TASK = re.compile(r"^Task Instruction\s*:\s*Generate the facial expression parameters for\s+")


def _item(raw: str) -> tuple[str, str] | None:
    """``"- Keyframe One: text"`` -> ("Keyframe One", "text"), None for any other line. String
    operations, not a regex: ``-\\s*([^:]+?)\\s*:`` backtracks cubically on a long run of spaces."""
    head, colon, value = raw.partition(":")
    head = head.strip()
    if not colon or not head.startswith("-") or not head[1:].strip():
        return None
    return head[1:].strip(), value[1:] if value.startswith(" ") else value


def _parse_user(text: str) -> tuple[dict[str, str], str, str, str]:
    """User content -> (keyframes, target, background, emotion); ValueError names the problem."""
    # Values are collected as lists of lines (joined at the end: appending to a str is quadratic).
    keyframes: dict[str, list[str]] = {}
    found: dict[str, list[str]] = {}
    target = None
    section = None
    last: list[str] | None = None  # the value that continuation lines extend
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            last = None
            continue
        if line.rstrip(":").strip().lower() == "keyframe description sequence":
            section = "seq"
            continue
        if (m := _FIELD.match(raw)) is not None:
            last = found[m.group(1).lower()] = [m.group(2)]
            section = None
            continue
        if (m := _TASK.match(line)) is not None and line[m.end():]:
            rest = line[m.end():]  # "Keyframe One." (the line is stripped)
            target = (rest[:-1] if rest.endswith(".") else rest).strip()
            section = last = None
            continue
        if section == "seq" and (item := _item(raw)) is not None:
            if item[0] in keyframes:
                raise ValueError(f"keyframe {excerpt(item[0])} described twice")
            last = keyframes[item[0]] = [item[1]]
            continue
        if last is not None:  # a description or field running over several lines
            last.append(raw)
            continue
        raise ValueError(f"unexpected text in the user message: {line[:60]!r}")
    if not keyframes:
        raise ValueError("user message has no 'Keyframe Description Sequence' items")
    if target is None:
        raise ValueError("user message has no 'Task Instruction: Generate the facial expression "
                         "parameters for <keyframe>.' line")
    if target not in keyframes:
        raise ValueError(f"task targets {excerpt(target)}, which is not in the sequence "
                         f"{excerpt(list(keyframes))}")
    text_of = {k: "\n".join(v) for k, v in keyframes.items()}
    return text_of, target, "\n".join(found.get("background", [""])), "\n".join(found.get("emotion", [""]))


def parse_response(text: str, *, strict: bool = True, path: str | os.PathLike | None = None,
                   line: int = 0) -> dict[str, np.ndarray]:
    """A model answer -> ``{"Keyframe_one": float32 [61], …}``.

    ``strict`` wants the answer to be exactly one JSON object whose values hold all 61 channels;
    otherwise the first JSON object in the text is used (code fences and prose around it are
    ignored), absent channels are 0 and unknown names are ignored. Raises :class:`FormatError`.
    """
    if strict:
        obj = json_loads(text, what="response is not strict JSON", path=path, line=line)
        start = 0
        if not isinstance(obj, dict):
            raise FormatError(f"response must be a JSON object, got {type(obj).__name__}", path=path,
                              line=line + 1)
    else:
        obj, start = find_json_object(text, path=path, line_offset=line)
    if not strict:  # prose-wrapped answers sometimes add notes beside the keyframes
        obj = {k: v for k, v in obj.items() if isinstance(v, Mapping)}
    if not obj:
        raise FormatError("response holds no keyframe", path=path, line=line + 1)
    out = {}
    for key, values in obj.items():  # keys come in text order: each search starts at the last one
        at = text.find(json.dumps(key), start)
        start = max(at, start)
        out[key] = params_from_json(values, strict=strict, what=f"keyframe {excerpt(key)}", text=text,
                                    start=start, path=path, line_offset=line)
    return out


def format_response(keyframes: Mapping[str, Any]) -> str:
    """``{"Keyframe_one": params [61]}`` -> the compact JSON answer text KeyframeFace produces."""
    if not isinstance(keyframes, Mapping) or not keyframes:
        raise ValueError("keyframes must be a non-empty dict of keyframe key -> params [61]")
    return json.dumps({str(k): params_to_json(v, f"keyframes[{k!r}]") for k, v in keyframes.items()},
                      separators=(",", ":"))


def _request_from_json(obj: dict, strict: bool, path: str, line: int) -> KeyframeRequest:
    msgs = obj["messages"]
    if not isinstance(msgs, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                             and isinstance(m.get("role"), str) for m in msgs):
        raise FormatError("'messages' must be a list of {role, content} strings", path=path, line=line)
    by_role: dict[str, str] = {}
    for m in msgs:
        if m["role"] in by_role:
            raise FormatError(f"two {excerpt(m['role'])} messages", path=path, line=line)
        if m["role"] not in ("system", "user", "assistant"):
            raise FormatError(f"unknown message role {excerpt(m['role'])}", path=path, line=line)
        by_role[m["role"]] = m["content"]
    if "user" not in by_role:
        raise FormatError("request has no user message", path=path, line=line)
    try:
        keyframes, target, background, emotion = _parse_user(by_role["user"])
    except ValueError as e:
        raise FormatError(str(e), path=path, line=line) from None
    response = None
    if "assistant" in by_role:
        try:
            response = parse_response(by_role["assistant"], strict=strict)
        except FormatError as e:
            raise FormatError(f"assistant message: {e.reason}", path=path, line=line) from None
    return KeyframeRequest(keyframes, target, background, emotion, by_role.get("system"), response)


def read_keyframeface(path: str | os.PathLike, *, strict: bool = True
                      ) -> list[KeyframeRequest] | list[dict[str, np.ndarray]]:
    """Read a KeyframeFace JSONL file: a list of :class:`KeyframeRequest` for a request file, or a
    list of ``{"Keyframe_one": float32 [61]}`` for a response file (blank lines skipped; one file
    holds one kind). ``strict=False`` accepts answers wrapped in prose and incomplete channel sets
    (absent channels 0). Malformed lines raise :class:`FormatError` with the line number."""
    name = os.fspath(path)
    items: list[Any] = []
    kind = None
    # Read whole and decoded at once, so that bytes which are not UTF-8 are reported with their line.
    with io.StringIO(read_text(name), newline=None) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            obj = json_loads(line.rstrip("\n"), what="not JSON", path=name, line=line_no - 1)
            if not isinstance(obj, dict) or ("messages" in obj) == ("response" in obj):
                raise FormatError("expected an object with either 'messages' (request) or 'response'",
                                  path=name, line=line_no)
            this = "request" if "messages" in obj else "response"
            if kind is not None and this != kind:
                raise FormatError(f"a {this} line in a file of {kind}s", path=name, line=line_no)
            kind = this
            if this == "request":
                items.append(_request_from_json(obj, strict, name, line_no))
                continue
            if not isinstance(obj["response"], str):
                raise FormatError("'response' must be a JSON string", path=name, line=line_no)
            try:
                items.append(parse_response(obj["response"], strict=strict, path=name))
            except FormatError as e:
                raise FormatError(e.reason, path=name, line=line_no) from None
    return items


def write_keyframeface(path: str | os.PathLike,
                       items: Sequence[KeyframeRequest] | Sequence[Mapping[str, Any]]) -> None:
    """Write requests (:class:`KeyframeRequest`) or responses (``{"Keyframe_one": params [61]}``)
    as KeyframeFace JSONL, one compact JSON object per line. A file holds one kind."""
    if isinstance(items, (KeyframeRequest, Mapping)):
        items = [items]  # type: ignore[list-item]
    lines = []
    kinds = {isinstance(it, KeyframeRequest) for it in items}
    if len(kinds) > 1:
        raise TypeError("items mixes requests and responses; write them to separate files")
    for i, it in enumerate(items):
        if isinstance(it, KeyframeRequest):
            obj: dict[str, Any] = {"messages": it.messages()}
        elif isinstance(it, Mapping):
            try:
                obj = {"response": format_response(it)}
            except ValueError as e:
                raise ValueError(f"items[{i}]: {e}") from None
        else:
            raise TypeError(f"items[{i}] must be a KeyframeRequest or a dict of keyframe -> params, "
                            f"got {type(it).__name__}")
        lines.append(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)
