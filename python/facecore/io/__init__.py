"""File formats: Live Link Face CSV, KeyframeFace JSONL, SemanticFace JSON, and
:func:`facecore.io.convert.convert` between them and GLB.

Every reader returns the 61 channels in :data:`facecore.arkit.NAMES` order and raises
:class:`FormatError` (a ``ValueError``) carrying the file and line number on malformed input.
"""

from __future__ import annotations

# The module, not its convert() function, is facecore.io.convert: facecore.io.convert.convert(...).
from .convert import read_glb_track, read_track, write_track
from .errors import FormatError
from .keyframeface import (
    SYSTEM_PROMPT,
    KeyframeRequest,
    format_response,
    keyframe_key,
    keyframe_name,
    keyframe_number,
    make_requests,
    parse_response,
    read_keyframeface,
    response_keyframes,
    write_keyframeface,
)
from .livelink import LOST_POLICIES, TrackingLostWarning, format_timecode, parse_timecode, read_csv, write_csv
from .semanticface import (
    ANALYSIS_KEYS,
    SemanticAnswer,
    format_analysis_markdown,
    format_answer,
    format_semanticface,
    parse_semanticface,
    read_semanticface,
    read_semanticface_answers,
    semanticface_to_csv,
    structure_analysis,
    write_semanticface,
)
from .track import Track

__all__ = [
    "FormatError", "Track",
    "read_csv", "write_csv", "parse_timecode", "format_timecode", "TrackingLostWarning", "LOST_POLICIES",
    "KeyframeRequest", "SYSTEM_PROMPT", "make_requests", "keyframe_name", "keyframe_key", "keyframe_number",
    "parse_response", "format_response", "read_keyframeface", "write_keyframeface", "response_keyframes",
    "read_track", "write_track", "read_glb_track",
    "ANALYSIS_KEYS", "parse_semanticface", "format_semanticface", "read_semanticface", "write_semanticface",
    "SemanticAnswer", "read_semanticface_answers", "semanticface_to_csv", "structure_analysis",
    "format_analysis_markdown", "format_answer",
]
