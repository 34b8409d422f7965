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

__all__ = ["read_csv", "write_csv", "parse_timecode", "format_timecode"]

# Digit counts are bounded so that no field can overflow a float.
_TIMECODE = re.compile(r"^\s*(\d{1,9}):(\d{1,2}):(\d{1,2})[:;.](\d{1,9})(?:\.(\d{1,18}))?\s*$")
_COUNT_NAMES = ("blendshapecount",)  # matched lower-cased: BlendShapeCount and BlendshapeCount
_DAY = 86400.0
_F32_MAX = float(np.finfo(np.float32).max)  # larger values would turn into inf in the float32 track


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


def read_csv(path: str | os.PathLike | IO[str], *, timebase: int = 60, strict: bool = True,
             fps: float | None = None) -> Track:
    """Read a Live Link Face CSV into a :class:`Track`.

    ``times`` are the timecodes in seconds (a time-of-day start is kept; subtract ``times[0]`` for
    a take-relative clock; a take crossing midnight keeps increasing). ``fps`` defaults to the
    frame rate implied by the median frame step (the timebase for a single frame). Values are not
    range-checked: use :func:`facecore.arkit.validate`. Malformed input raises :class:`FormatError`
    (``strict``) or is skipped with a warning (``strict=False``).
    """
    timebase = _check_timebase(timebase)
    notes: list[str] = []
    skipped: list[str] = []
    times: list[float] = []
    rows: list[list[float]] = []
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
    t_arr = np.asarray(times, dtype=np.float64)
    params = np.zeros((len(rows), arkit.NUM_CHANNELS), dtype=np.float64)
    if rows:
        np.add.at(params, (slice(None), ch_idx), np.asarray(rows, dtype=np.float64) * weight)
    order = np.argsort(t_arr, kind="stable")
    t_arr, params = t_arr[order], params[order]
    if fps is None:
        fps = _estimate_fps(t_arr, timebase)
    return Track(times=t_arr, params=params.astype(np.float32), fps=fps)


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
    3-digit sub-frame, so they read back to within 1/(2000*timebase) s. NaN/inf raise ``ValueError``.
    """
    timebase = _check_timebase(timebase)
    if not isinstance(track, Track):
        raise TypeError(f"track must be a facecore.io.Track, got {type(track).__name__}")
    if count_header.lower() not in _COUNT_NAMES:
        raise ValueError(f"count_header must be 'BlendShapeCount' or 'BlendshapeCount', got {count_header!r}")
    if not np.isfinite(track.params).all():
        r, c = np.argwhere(~np.isfinite(track.params))[0]
        raise ValueError(f"track.params[{r}, {c}] ({arkit.NAMES[c]}) is not finite")
    if len(track) and track.times[0] < 0:
        raise ValueError(f"track.times must be >= 0 to be written as timecodes, got {track.times[0]}")
    cells = _cells(track.params, precision)
    buf = io.StringIO()
    buf.write(",".join(("Timecode", count_header) + arkit.NAMES) + "\n")
    n = str(arkit.NUM_CHANNELS)
    for t, row in zip(track.times.tolist(), cells):
        buf.write(format_timecode(t, timebase) + "," + n + "," + ",".join(row) + "\n")
    with _text(path, "w") as (f, _):
        f.write(buf.getvalue())
