"""The one error type for malformed files: a ``ValueError`` that knows where it happened."""

from __future__ import annotations

import os


class FormatError(ValueError):
    """A malformed file or text. ``path`` (or None for in-memory text) and the 1-based ``line``
    (or None when the problem is not tied to a line) are attributes and part of the message:
    ``"take.csv:17: row has 60 values, header has 63 columns"``."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, line: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.reason = message
        where = self.path if self.path is not None else "<text>"
        super().__init__(f"{where}:{line}: {message}" if line is not None else f"{where}: {message}")
