"""File formats: Live Link Face CSV, KeyframeFace JSONL, SemanticFace JSON.

Every reader returns the 61 channels in :data:`facecore.arkit.NAMES` order and raises
:class:`FormatError` (a ``ValueError``) carrying the file and line number on malformed input.
"""

from __future__ import annotations

from .errors import FormatError
from .keyframeface import (
    SYSTEM_PROMPT,
    KeyframeRequest,
    format_response,
    keyframe_key,
    keyframe_name,
    make_requests,
    parse_response,
    read_keyframeface,
    write_keyframeface,
)
from .livelink import format_timecode, parse_timecode, read_csv, write_csv
from .semanticface import (
    ANALYSIS_KEYS,
    format_semanticface,
    parse_semanticface,
    read_semanticface,
    write_semanticface,
)
from .track import Track

__all__ = [
    "FormatError", "Track",
    "read_csv", "write_csv", "parse_timecode", "format_timecode",
    "KeyframeRequest", "SYSTEM_PROMPT", "make_requests", "keyframe_name", "keyframe_key",
    "parse_response", "format_response", "read_keyframeface", "write_keyframeface",
    "ANALYSIS_KEYS", "parse_semanticface", "format_semanticface", "read_semanticface", "write_semanticface",
]
