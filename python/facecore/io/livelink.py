"""Live Link Face CSV: ``Timecode,BlendShapeCount,<61 channel names>``, one row per frame.

The timecode is ``HH:MM:SS:FF.fff``: hours, minutes, seconds, then a frame number ``FF`` at the
*timebase* (60 by default) plus a sub-frame fraction ``.fff``. Columns are matched by their header
name, never by position: real exports put JawRight before JawLeft and MouthRight before MouthLeft,
some spell the count column ``BlendshapeCount``, and older files carry only the 52 blendshapes
(pose channels are then 0).

``strict=True`` (default) turns every irregularity into a :class:`FormatError` carrying the line
number. ``strict=False`` skips malformed rows, ignores unknown columns, fills absent channels with 0
and sorts rows whose times go backwards, reporting what it did in one ``warnings.warn``. Values
must be finite float32 numbers (|v| <= 3.4e38) in both modes.

Tracking lost: when the iPhone loses the face, Live Link Face writes a row holding only the
timecode and ``BlendShapeCount`` 0 (``16:48:52:29.134,0``). Such rows are read in both modes as
frames with ``Track.tracked`` False, their values filled by the ``lost`` policy (``"hold"``,
``"interpolate"`` or ``"nan"``), and reported in one :class:`TrackingLostWarning`;
:func:`write_csv` writes untracked frames back as such rows.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import warnings
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from .. import arkit
from .errors import FormatError, excerpt, read_text, unknown_channel
from .track import Track

__all__ = ["read_csv", "write_csv", "parse_timecode", "format_timecode", "TrackingLostWarning",
           "LOST_POLICIES"]

# Digit counts are bounded so that no field can overflow a float.
_TIMECODE = re.compile(r"^\s*(\d{1,9}):(\d{1,2}):(\d{1,2})[:;.](\d{1,9})(?:\.(\d{1,18}))?\s*$")
_COUNT_NAMES = ("blendshapecount",)  # matched lower-cased: BlendShapeCount and BlendshapeCount
_DAY = 86400.0
_F32_MAX = float(np.finfo(np.float32).max)  # larger values would turn into inf in the float32 track
LOST_POLICIES = {
    "hold": "held the last tracked frame",
    "interpolate": "interpolated linearly between the tracked frames around them",
    "nan": "left them NaN",
}
"""The ``lost=`` policies of :func:`read_csv` and what each does with tracking-lost frames."""


class TrackingLostWarning(UserWarning):
    """A Live Link Face CSV holds tracking-lost rows (``BlendShapeCount`` 0 and no values); the
    message says how many, which ``lost`` policy filled them, and the file."""


def parse_timecode(text: str, timebase: int = 60, *, strict: bool = True) -> float:
    """``"HH:MM:SS:FF.fff"`` -> seconds: ``H*3600 + M*60 + S + (FF + 0.fff) / timebase``.

    The sub-frame part is optional. ``strict`` refuses minutes/seconds >= 60 and frames >= the
    timebase (which usually means the file was written at another timebase). Raises ``ValueError``.
    """
    m = _TIMECODE.match(text)
    if m is None:
        raise ValueError(f"bad timecode {excerpt(text)}, expected HH:MM:SS:FF.fff")
    h, mi, s, f = (int(g) for g in m.groups()[:4])
    sub = m.group(5)
    frac = int(sub) / 10 ** len(sub) if sub else 0.0
    if strict and (mi >= 60 or s >= 60):
        raise ValueError(f"bad timecode {text!r}: minutes and seconds must be < 60")
    if strict and f >= timebase:
        raise ValueError(f"bad timecode {text!r}: frame {f} >= timebase {timebase} (wrong timebase?)")
    return h * 3600.0 + mi * 60.0 + s + (f + frac) / timebase


def format_timecode(seconds: float, timebase: int = 60, subframe_digits: int = 3) -> str:
    """Seconds -> ``"HH:MM:SS:FF.fff"``, rounded to the nearest 1/10**subframe_digits of a frame."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"timecode needs a finite time >= 0 seconds, got {seconds}")
    # Count in integer sub-frame ticks so that rounding never yields "FF.1000" or frame == timebase.
    scale = 10 ** subframe_digits
    ticks = round(seconds * timebase * scale)
    frames, sub = divmod(ticks, scale)
    secs, ff = divmod(frames, timebase)
    mins, ss = divmod(secs, 60)
    hh, mm = divmod(mins, 60)
    tc = f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}"
    return f"{tc}.{sub:0{subframe_digits}d}" if subframe_digits > 0 else tc


def _check_timebase(timebase: Any) -> int:
    if isinstance(timebase, bool) or not isinstance(timebase, (int, np.integer)) or timebase <= 0:
        raise ValueError(f"timebase must be a positive integer (frames per second), got {timebase!r}")
    return int(timebase)


@contextlib.contextmanager
def _text(path: Any, mode: str) -> Iterator[tuple[IO[str], str]]:
    """Open ``path`` (or pass a text stream through) for csv; yields (stream, name for errors).
    Files are read whole, so that bytes which are not UTF-8 are reported with their line."""
    if hasattr(path, "read" if mode == "r" else "write"):
        yield path, getattr(path, "name", "<stream>")
        return
    name = os.fspath(path)
    if mode == "r":
        yield io.StringIO(read_text(name), newline=""), name
        return
    with open(name, mode, newline="", encoding="utf-8") as f:
        yield f, name


def _rows(reader: Any, name: str) -> Iterator[list[str]]:
    """``reader``'s rows; csv's own errors (a field over csv's size limit, a stream that does not
    decode) become :class:`FormatError` at the line reached."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as e:
            raise FormatError(f"unreadable CSV: {e}", path=name, line=max(reader.line_num, 1)) from None
        yield row


def _header(row: list[str], strict: bool, name: str, notes: list[str]) -> tuple[int, int | None, list]:
    """(timecode column, count column or None, [(column, channel)]) from the header row."""
    cells = [c.strip() for c in row]
    lower = [c.lower() for c in cells]
    if "timecode" not in lower:
        raise FormatError(f"header has no Timecode column: {excerpt(','.join(cells[:4]))}...",
                          path=name, line=1)
    tc = lower.index("timecode")
    count = next((j for j, c in enumerate(lower) if c in _COUNT_NAMES), None)
    if strict and (tc != 0 or count != 1):
        raise FormatError("header must start with Timecode,BlendShapeCount", path=name, line=1)
    cols: list[tuple[int, int]] = []
    seen: dict[int, str] = {}
    halves: dict[int, int] = {}
    unknown: list[str] = []
    no_channel: list[str] = []
    for j, c in enumerate(cells):
        if j == tc or j == count:
            continue
        ch = arkit._LOOKUP.get(c.lower())  # O(1); only an error computes "did you mean" hints
        if ch is None:
            if strict:
                raise FormatError(f"column {j + 1}: {unknown_channel(c)}", path=name, line=1)
            unknown.append(c)
            continue
        if ch < 0:
            no_channel.append(c)
            continue
        split = c.lower() in arkit._SPLIT_HALVES
        if ch in seen and not (split and halves.get(ch) == 1 and seen[ch].lower() != c.lower()):
            raise FormatError(f"channel {arkit.NAMES[ch]} appears twice (columns {seen[ch]!r} and {c!r})",
                              path=name, line=1)
        seen[ch] = c
        halves[ch] = halves.get(ch, 0) + 1 if split else 0
        cols.append((j, ch))
    if unknown:
        notes.append(f"ignored {len(unknown)} unknown column(s): {_first(unknown)}")
    if no_channel:
        notes.append(f"ignored {len(no_channel)} column(s) with no ARKit channel: {_first(no_channel)}")
    present = set(seen)
    absent = [arkit.NAMES[i] for i in range(arkit.NUM_CHANNELS) if i not in present]
    blend_absent = [n for n in absent if arkit.INDEX[n] < arkit.NUM_BLENDSHAPES]
    pose_absent = [n for n in absent if arkit.INDEX[n] >= arkit.NUM_BLENDSHAPES]
    # Accepted as complete: all 61, or the 52 blendshapes alone (older exports; pose is then 0).
    partial_pose = pose_absent and len(pose_absent) < arkit.NUM_POSE
    if blend_absent or partial_pose:
        missing = blend_absent + (pose_absent if partial_pose else [])
        if strict:
            raise FormatError(f"header lacks {len(missing)} channel(s): {', '.join(missing)}",
                              path=name, line=1)
        notes.append(f"filled absent channel(s) with 0: {', '.join(missing)}")
    return tc, count, cols


def _first(items: list[str], n: int = 10) -> str:
    return ", ".join(excerpt(c, 40) for c in items[:n]) + (", ..." if len(items) > n else "")


def read_csv(path: str | os.PathLike | IO[str], *, timebase: int = 60, lost: str = "hold",
             strict: bool = True, fps: float | None = None) -> Track:
    """Read a Live Link Face CSV into a :class:`Track`.

    ``times`` are the timecodes in seconds (a time-of-day start is kept; subtract ``times[0]`` for
    a take-relative clock; a take crossing midnight keeps increasing). ``fps`` defaults to the
    frame rate implied by the median frame step (the timebase for a single frame). Values are not
    range-checked: use :func:`facecore.arkit.validate`. Malformed input raises :class:`FormatError`
    (``strict``) or is skipped with a warning (``strict=False``).

    Tracking-lost rows (``BlendShapeCount`` 0 and no values) are frames with ``tracked`` False in
    both modes; ``lost`` fills their params: ``"hold"`` (default) repeats the last tracked frame
    (the first tracked frame for those before it), ``"interpolate"`` is linear in time between the
    tracked frames around the gap (holding at the ends), ``"nan"`` leaves NaN. One
    :class:`TrackingLostWarning` gives the count; a file with no tracked frame is a FormatError.
    """
    timebase = _check_timebase(timebase)
    if lost not in LOST_POLICIES:
        raise ValueError(f"lost must be one of {', '.join(map(repr, LOST_POLICIES))}, got {excerpt(lost)}")
    notes: list[str] = []
    skipped: list[str] = []
    times: list[float] = []
    rows: list[list[float] | None] = []  # None: a tracking-lost frame
    lost_lines: list[int] = []
    with _text(path, "r") as (f, name):
        reader = csv.reader(f)
        rows_in = _rows(reader, name)
        header = next(rows_in, None)
        while header is not None and not any(c.strip() for c in header):
            header = next(rows_in, None)  # leading blank lines
        if header is None:
            raise FormatError("empty file, expected a Timecode,BlendShapeCount,... header", path=name, line=1)
        header_line = reader.line_num
        try:
            tc, count, cols = _header(header, strict, name, notes)
        except FormatError as e:
            raise FormatError(e.reason, path=name, line=header_line) from None
        width = len(header)
        col_list = [j for j, _ in cols]
        col_idx = np.array(col_list, dtype=np.int64)
        ch_idx = np.array([c for _, c in cols], dtype=np.int64)
        weight = np.ones(len(cols))
        for c in set(ch_idx.tolist()):
            weight[ch_idx == c] = 1.0 / np.count_nonzero(ch_idx == c)  # ICT halves: mean
        day = 0.0
        back_in_time = 0
        for row in rows_in:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue  # blank lines (e.g. a trailing newline)

            def bad(msg: str, line: int = line) -> None:
                if strict:
                    raise FormatError(msg, path=name, line=line)
                skipped.append(f"line {line}: {msg}")

            vals: list[float] | None = None
            if count is not None and _is_lost(row, tc, count):
                try:
                    t = parse_timecode(row[tc], timebase, strict=strict)
                except ValueError as e:
                    bad(str(e))
                    continue
                lost_lines.append(line)
            else:
                if not strict and len(row) > width and not any(c.strip() for c in row[width:]):
                    row = row[:width]  # trailing commas
                if len(row) != width:
                    bad(f"row has {len(row)} values, header has {width} columns")
                    continue
                try:
                    t = parse_timecode(row[tc], timebase, strict=strict)
                except ValueError as e:
                    bad(str(e))
                    continue
                if count is not None and strict:
                    try:
                        int(row[count])
                    except ValueError:
                        bad(f"BlendShapeCount {excerpt(row[count])} is not an integer")
                        continue
                try:
                    vals = [float(row[j]) for j in col_list]
                except ValueError:
                    j = next(j for j in col_idx if not _is_float(row[j]))
                    bad(f"column {header[j].strip()!r}: {excerpt(row[j])} is not a number")
                    continue
                # NaN fails the range test too; inf and 1e39 both exceed float32's largest value.
                if vals and not (all(map(math.isfinite, vals)) and max(map(abs, vals)) <= _F32_MAX):
                    j, v = next((j, v) for j, v in zip(col_list, vals) if not abs(v) <= _F32_MAX)
                    why = "is not finite" if not math.isfinite(v) else "is beyond float32's range (3.4e38)"
                    bad(f"column {header[j].strip()!r}: {excerpt(row[j].strip())} {why}")
                    continue
            t += day
            if times and t < times[-1]:
                if times[-1] - t > _DAY / 2:  # the time-of-day timecode wrapped at midnight
                    day += _DAY
                    t += _DAY
                elif strict:
                    raise FormatError(f"timecode {row[tc].strip()} goes back in time", path=name, line=line)
                else:
                    back_in_time += 1
                    if back_in_time == 1:
                        notes.append(f"line {line}: timecode goes back in time; rows sorted")
            times.append(t)
            rows.append(vals)
    if back_in_time > 1:
        notes.append(f"{back_in_time - 1} more row(s) going back in time")
    if skipped:
        notes.insert(0, f"skipped {len(skipped)} malformed row(s): " + "; ".join(skipped[:10])
                     + ("; ..." if len(skipped) > 10 else ""))
    if notes:
        warnings.warn(f"{name}: " + "; ".join(notes), stacklevel=2)
    if rows and len(lost_lines) == len(rows):
        raise FormatError(f"all {len(rows)} frames lost tracking (BlendShapeCount 0 rows): there is no "
                          "tracked frame to read", path=name)
    if lost_lines:
        lines = ", ".join(map(str, lost_lines[:10])) + (", ..." if len(lost_lines) > 10 else "")
        warnings.warn(f"{name}: tracking lost in {len(lost_lines)} of {len(rows)} frames (BlendShapeCount 0 "
                      f"rows at line(s) {lines}); lost={lost!r} {LOST_POLICIES[lost]}",
                      TrackingLostWarning, stacklevel=2)
    t_arr = np.asarray(times, dtype=np.float64)
    tracked = np.array([v is not None for v in rows], dtype=bool)
    params = np.zeros((len(rows), arkit.NUM_CHANNELS), dtype=np.float64)
    if tracked.any():
        values = np.asarray([v for v in rows if v is not None], dtype=np.float64).reshape(-1, len(cols))
        found = np.zeros((values.shape[0], arkit.NUM_CHANNELS))
        np.add.at(found, (slice(None), ch_idx), values * weight)
        params[tracked] = found
    order = np.argsort(t_arr, kind="stable")
    t_arr, params, tracked = t_arr[order], params[order], tracked[order]
    _fill_lost(t_arr, params, tracked, lost)
    if fps is None:
        fps = _estimate_fps(t_arr, timebase)
    return Track(times=t_arr, params=params.astype(np.float32), fps=fps, tracked=tracked)


def _is_lost(row: list[str], tc: int, count: int) -> bool:
    """A tracking-lost row: ``BlendShapeCount`` 0 and nothing (or only empty cells) after it."""
    if len(row) <= max(tc, count):
        return False
    try:
        if int(row[count]) != 0:
            return False
    except ValueError:
        return False
    return not any(c.strip() for j, c in enumerate(row) if j != tc and j != count)


def _fill_lost(times: np.ndarray, params: np.ndarray, tracked: np.ndarray, lost: str) -> None:
    """Fill the untracked rows of ``params`` [N, 61] (float64, rows in time order) in place."""
    gaps = np.flatnonzero(~tracked)
    if gaps.size == 0:
        return
    if lost == "nan":
        params[gaps] = np.nan
        return
    known = np.flatnonzero(tracked)
    at = np.searchsorted(known, gaps)  # known[at - 1] < gap < known[at]
    prev = known[np.clip(at - 1, 0, known.size - 1)]
    nxt = known[np.clip(at, 0, known.size - 1)]
    prev = np.where(at == 0, nxt, prev)  # before the first tracked frame: that frame
    nxt = np.where(at == known.size, prev, nxt)  # after the last one: that frame
    if lost == "hold":
        params[gaps] = params[prev]
        return
    span = times[nxt] - times[prev]
    w = np.divide(times[gaps] - times[prev], span, out=np.zeros_like(span), where=span > 0)[:, None]
    params[gaps] = params[prev] + w * (params[nxt] - params[prev])


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _estimate_fps(times: np.ndarray, timebase: int) -> float:
    steps = np.diff(times)
    steps = steps[steps > 0]
    fps = round(1.0 / float(np.median(steps)), 3) if steps.size else math.inf
    return fps if math.isfinite(fps) else float(timebase)  # steps below 1e-308 s: no rate to read


def _cells(params: np.ndarray, precision: int | None) -> list[list[str]]:
    if precision is None:
        # numpy's float32 -> str is the shortest text that reads back as the same float32 ("0.2",
        # not "0.20000000298023224"; tiny values as "1e-08"), and it runs in C.
        return params.astype(str).tolist()
    if isinstance(precision, bool) or not isinstance(precision, int) or precision < 0:
        raise ValueError(f"precision must be an int >= 0 or None, got {precision!r}")
    return [[f"{v:.{precision}f}" for v in r] for r in params.tolist()]


def write_csv(path: str | os.PathLike | IO[str], track: Track, *, timebase: int = 60,
              count_header: str = "BlendShapeCount", precision: int | None = None) -> None:
    """Write ``track`` as a Live Link Face CSV (all 61 channels, :data:`facecore.arkit.NAMES` order).

    ``precision=None`` writes the shortest text that reads back as the identical float32;
    an int writes that many decimals. Times are written as timecodes at ``timebase`` with a
    3-digit sub-frame, so they read back to within 1/(2000*timebase) s. Frames whose
    ``track.tracked`` is False are written as tracking-lost rows (``timecode,0``), whatever their
    params; NaN/inf in tracked frames raise ``ValueError``.
    """
    timebase = _check_timebase(timebase)
    if not isinstance(track, Track):
        raise TypeError(f"track must be a facecore.io.Track, got {type(track).__name__}")
    if count_header.lower() not in _COUNT_NAMES:
        raise ValueError(f"count_header must be 'BlendShapeCount' or 'BlendshapeCount', got {count_header!r}")
    tracked = track.tracked
    bad = ~np.isfinite(track.params) & tracked[:, None]
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"track.params[{r}, {c}] ({arkit.NAMES[c]}) is not finite")
    if len(track) and track.times[0] < 0:
        raise ValueError(f"track.times must be >= 0 to be written as timecodes, got {track.times[0]}")
    cells = iter(_cells(track.params[tracked], precision))
    buf = io.StringIO()
    buf.write(",".join(("Timecode", count_header) + arkit.NAMES) + "\n")
    n = str(arkit.NUM_CHANNELS)
    for t, ok in zip(track.times.tolist(), tracked.tolist()):
        tc = format_timecode(t, timebase)
        buf.write(tc + "," + n + "," + ",".join(next(cells)) + "\n" if ok else tc + ",0\n")
    with _text(path, "w") as (f, _):
        f.write(buf.getvalue())
