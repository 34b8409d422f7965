"""The one error type for malformed files: a ``ValueError`` that knows where it happened, and the
helpers that keep its messages short and located (:func:`excerpt`, :func:`read_text`,
:func:`json_loads`, :func:`unknown_channel`)."""

from __future__ import annotations

import json
import os
import reprlib
from collections.abc import Iterator
from typing import Any


class FormatError(ValueError):
    """A malformed file or text. ``path`` (or None for in-memory text) and the 1-based ``line``
    (or None when the problem is not tied to a line) are attributes and part of the message:
    ``"take.csv:17: row has 60 values, header has 63 columns"``. Binary files give the 0-based byte
    ``offset`` instead: ``"face.glb: byte 20: ..."``."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, line: int | None = None,
                 offset: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.offset = offset
        self.reason = message
        where = self.path if self.path is not None else "<text>"
        if line is not None:
            where += f":{line}"
        elif offset is not None:
            where += f": byte {offset}"
        super().__init__(f"{where}: {message}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def excerpt(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, in time independent of the value's size:
    error messages quote what they refuse, never all of it (a YAML alias bomb expands to gigabytes)."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def unknown_channel(name: object) -> str:
    """The message for a channel name that no convention knows, with "did you mean" hints when the
    name is short enough to be a misspelling (the hint search costs O(len(name)))."""
    from .. import arkit

    if not isinstance(name, str):
        return f"channel name must be a str, got {type(name).__name__}"
    if len(name) > 64:
        return f"unknown ARKit channel name {excerpt(name)}"
    return str(arkit._unknown(name))


def read_text(path: str | os.PathLike, *, encoding: str = "utf-8-sig", max_bytes: int | None = None) -> str:
    """The whole file as text. Bytes that do not decode raise :class:`FormatError` naming their line
    (a streaming decoder would report the chunk, not the line); ``max_bytes`` refuses larger files."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise FormatError(f"file is larger than {max_bytes} bytes", path=name)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise FormatError(f"not {e.encoding} text: byte 0x{data[e.start]:02x} at offset {e.start}",
                          path=name, line=data.count(b"\n", 0, e.start) + 1) from None


def json_loads(text: str, *, what: str = "not JSON", path: str | os.PathLike | None = None,
               line: int = 0) -> Any:
    """``json.loads`` whose every failure (syntax, nesting too deep for the decoder, an integer over
    Python's 4300-digit limit) is a :class:`FormatError` "``what``: reason" at ``line`` + its line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{what}: {e.msg} (column {e.colno})", path=path, line=line + e.lineno) from None
    except RecursionError:
        raise FormatError(f"{what}: nested too deeply", path=path, line=line + 1) from None
    except ValueError as e:
        raise FormatError(f"{what}: {str(e)[:120]}", path=path, line=line + 1) from None


def iter_jsonl(path: str | os.PathLike, *, what: str = "invalid JSON") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of a JSON Lines file; a line that does not
    decode is a :class:`FormatError` naming the file and line (through :func:`json_loads`)."""
    with open(path, encoding="utf-8") as fh:
        for line_no, text in enumerate(fh, 1):
            if text.strip():
                yield line_no, json_loads(text, what=what, path=path, line=line_no - 1)
