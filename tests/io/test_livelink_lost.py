"""Live Link Face tracking-lost rows (``timecode,0``): each ``lost`` policy, the tracked mask, the
warning, round trips, ``facecore render --lost``, and the real export beside the repository."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from facecore import arkit
from facecore.cli import app
from facecore.io import FormatError, Track, TrackingLostWarning, format_timecode, read_csv, write_csv

from ..conftest import SHARED_DATA

REAL_EXPORT = SHARED_DATA / "livelinkface" / "alex_rom_3.csv"
runner = CliRunner()


def _header() -> str:
    """The header facecore writes (the same as real exports: Timecode,BlendShapeCount,<61 names>)."""
    buf = io.StringIO()
    write_csv(buf, Track.from_params(np.zeros((1, 61), np.float32)))
    return buf.getvalue().splitlines()[0]


HEADER = _header()

# Ten frames at 30 fps (timecode frames at the default timebase 60): lost at the start (0, 1), in
# the middle (4, 5, 6) and at the end (8, 9). Values are multiples of 1/32 so that every expected
# value, interpolated ones included (weights 1/4, 1/2, 3/4), is exact in float32.
LOST = [0, 1, 4, 5, 6, 8, 9]
TRACKED = [2, 3, 7]
_k = np.arange(61)
A = ((_k % 5) / 8).astype(np.float32)  # frame 2
B = ((_k % 8) / 8).astype(np.float32)  # frame 3
C = (1 - (_k % 8) / 8).astype(np.float32)  # frame 7
VALUES = {2: A, 3: B, 7: C}


def tc(i: int) -> str:
    return format_timecode(16 * 3600 + 48 * 60 + 52 + i / 30)  # a time-of-day start, as real takes


def export_text(lost_row=lambda i: f"{tc(i)},0") -> str:
    rows = [lost_row(i) if i in LOST else f"{tc(i)},61," + ",".join(map(str, VALUES[i].tolist()))
            for i in range(10)]
    return "\n".join([HEADER, *rows]) + "\n"


@pytest.fixture
def take(tmp_path):
    p = tmp_path / "take.csv"
    p.write_text(export_text())
    return p


def expected(policy: str) -> np.ndarray:
    out = np.zeros((10, 61), np.float64)
    for i, v in VALUES.items():
        out[i] = v
    if policy == "nan":
        out[LOST] = np.nan
    elif policy == "hold":
        out[[0, 1]] = A  # before the first tracked frame: that frame
        out[[4, 5, 6]] = B
        out[[8, 9]] = C
    else:
        out[[0, 1]] = A
        for i, w in zip((4, 5, 6), (0.25, 0.5, 0.75)):
            out[i] = B + w * (C.astype(np.float64) - B)
        out[[8, 9]] = C
    return out.astype(np.float32)


@pytest.mark.parametrize("policy", ["hold", "interpolate", "nan"])
@pytest.mark.parametrize("strict", [True, False])
def test_each_policy_fills_lost_frames_exactly(take, policy, strict):
    with pytest.warns(TrackingLostWarning) as record:
        track = read_csv(take, lost=policy, strict=strict)
    assert len(record) == 1
    msg = str(record[0].message)
    assert "take.csv" in msg and "tracking lost in 7 of 10 frames" in msg and f"lost={policy!r}" in msg
    assert "line(s) 2, 3, 6, 7, 8, 10, 11" in msg
    np.testing.assert_array_equal(track.tracked, [i in TRACKED for i in range(10)])
    np.testing.assert_array_equal(track.params, expected(policy))  # NaN where NaN
    assert len(track) == 10 and track.fps == 30.0
    np.testing.assert_allclose(np.diff(track.times), 1 / 30, atol=1e-9)
    assert track.num_lost == 7


def test_default_is_hold_and_warning_is_a_user_warning(take):
    with pytest.warns(UserWarning, match="held the last tracked frame"):
        track = read_csv(take)
    np.testing.assert_array_equal(track.params, expected("hold"))


def test_lenient_lost_rows_with_empty_cells(tmp_path):
    p = tmp_path / "commas.csv"
    p.write_text(export_text(lambda i: f"{tc(i)},0" + "," * 61))  # the full width, all empty
    with pytest.warns(TrackingLostWarning, match="7 of 10"):
        strict = read_csv(p, lost="interpolate")
    with pytest.warns(TrackingLostWarning, match="7 of 10"):
        lenient = read_csv(p, lost="interpolate", strict=False)
    assert strict == lenient
    np.testing.assert_array_equal(strict.params, expected("interpolate"))


def test_other_malformed_rows_keep_their_behaviour(tmp_path):
    p = tmp_path / "bad.csv"
    # A count of 0 followed by values is an ordinary row; a short row with a count is malformed.
    text = export_text().replace(f"{tc(8)},0", f"{tc(8)},0," + ",".join(["0.5"] * 61))
    text = text.replace(f"{tc(9)},0", f"{tc(9)},61,0.5")
    p.write_text(text)
    with pytest.raises(FormatError, match=r"bad\.csv:11: row has 3 values, header has 63 columns"):
        read_csv(p)
    with pytest.warns(UserWarning) as record:
        track = read_csv(p, strict=False)
    messages = " | ".join(str(w.message) for w in record)
    assert "skipped 1 malformed row(s): line 11" in messages and "tracking lost in 5 of 9" in messages
    assert track.tracked[8] and (track.params[8] == 0.5).all()
    # A lost row's timecode is still checked.
    p.write_text(export_text().replace(f"{tc(5)},0", "16:48:52,0"))
    with pytest.raises(FormatError, match=r":7: bad timecode"):
        read_csv(p)


def test_all_rows_lost_is_an_error(tmp_path):
    p = tmp_path / "gone.csv"
    p.write_text("\n".join([HEADER, f"{tc(0)},0", f"{tc(1)},0", f"{tc(2)},0"]) + "\n")
    for policy in ("hold", "interpolate", "nan"):
        with pytest.raises(FormatError, match=r"gone\.csv: all 3 frames lost tracking"):
            read_csv(p, lost=policy)


def test_bad_policy():
    with pytest.raises(ValueError, match="lost must be one of 'hold', 'interpolate', 'nan', got 'zero'"):
        read_csv(io.StringIO(HEADER + "\n"), lost="zero")


def test_no_lost_rows_no_warning(tmp_path):
    p = tmp_path / "full.csv"
    write_csv(p, Track.from_params(np.full((3, 61), 0.25, np.float32), fps=30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        track = read_csv(p, lost="nan")
    assert track.tracked.all() and track.num_lost == 0


@pytest.mark.parametrize("policy", ["hold", "interpolate", "nan"])
def test_round_trip_writes_lost_rows_back(take, tmp_path, policy):
    with pytest.warns(TrackingLostWarning):
        track = read_csv(take, lost=policy)
    out = tmp_path / "again.csv"
    write_csv(out, track)  # NaN in untracked frames is fine: they are written as lost rows
    lines = out.read_text().splitlines()
    assert lines[0] == HEADER
    for i in range(10):
        assert (lines[i + 1] == f"{tc(i)},0") == (i in LOST), lines[i + 1][:40]
    assert out.read_text() == take.read_text()  # byte for byte: the take was written by facecore's rules
    with pytest.warns(TrackingLostWarning):
        back = read_csv(out, lost=policy)
    assert back == track  # params (NaN = NaN), times, fps and the tracked mask


def test_write_still_refuses_nan_in_tracked_frames(tmp_path):
    track = Track.from_params(np.zeros((3, 61), np.float32), tracked=np.array([True, False, True]))
    track.params[1] = np.nan
    write_csv(tmp_path / "ok.csv", track)
    track.params[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"params\[2, 5\] \(EyeSquintLeft\) is not finite"):
        write_csv(tmp_path / "bad.csv", track)


def test_track_mask_validation_and_methods():
    t = Track(times=[0, 1, 2], params=np.zeros((3, 61)))
    assert t.tracked.dtype == bool and t.tracked.all()
    with pytest.raises(ValueError, match=r"tracked must have shape \[N=3\], got \[2\]"):
        Track(times=[0, 1, 2], params=np.zeros((3, 61)), tracked=np.ones(2, bool))
    with pytest.raises(ValueError, match="tracked must be a bool array"):
        Track(times=[0, 1, 2], params=np.zeros((3, 61)), tracked=np.ones(3))
    mask = np.array([True, False, True])
    m = Track(times=[0, 1, 2], params=np.zeros((3, 61)), fps=1, tracked=mask)
    assert m != Track(times=[0, 1, 2], params=np.zeros((3, 61)), fps=1)
    assert m == Track(times=[0, 1, 2], params=np.zeros((3, 61)), fps=1, tracked=mask.copy())
    assert Track.from_params(np.zeros((3, 61)), fps=1, tracked=mask) == m.select(slice(None))
    np.testing.assert_array_equal(m.select(slice(1, 3)).tracked, [False, True])
    one = m.select(1)
    assert len(one) == 1 and not one.tracked[0] and one.times[0] == 1.0
    with pytest.raises(IndexError, match="frame 3 is out of range"):
        m.select(3)


# --- facecore render --lost ------------------------------------------------------------------------


def test_render_reads_lost_rows_and_reports_the_count(take, tmp_path):
    from facecore.io.video import video_info

    for policy in ("hold", "interpolate"):
        mp4 = tmp_path / f"{policy}.mp4"
        r = runner.invoke(app, ["render", str(take), "-o", str(mp4), "--resolution", "16",
                                "--lost", policy, "--no-progress"])
        assert r.exit_code == 0, r.output
        assert "warning: " in r.stderr and "tracking lost in 7 of 10 frames" in r.stderr, r.stderr
        assert video_info(mp4)["frames"] == 10
    r = runner.invoke(app, ["render", str(take), "-o", str(tmp_path / "d.mp4"), "--resolution", "16",
                            "--frames", "2:5", "--no-progress"])  # the default: hold
    assert r.exit_code == 0, r.output
    assert "lost='hold'" in r.stderr and video_info(tmp_path / "d.mp4")["frames"] == 3


@pytest.mark.parametrize("args, words, before_reading", [
    (["--lost", "nan"], ("cannot be rendered", "--lost hold", "interpolate"), True),
    (["--lost", "zero"], ("--lost must be one of",), True),
    (["--frames", "5"], ("--frames must be START:END",), True),
    (["--frames", "a:b"], ("--frames must be START:END",), True),
    (["--frames", "20:"], ("selects no frame of the 10",), False),
])
def test_render_bad_lost_and_frames(take, tmp_path, args, words, before_reading):
    out = tmp_path / "x.mp4"
    r = runner.invoke(app, ["render", str(take), "-o", str(out), "--no-progress", *args])
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == (1 if before_reading else 2), lines  # else: after the tracking-lost warning
    assert lines[-1].startswith("error: ") and all(w in lines[-1] for w in words), lines
    assert not out.exists()


def test_render_all_lost_is_a_one_line_error(tmp_path):
    p = tmp_path / "gone.csv"
    p.write_text("\n".join([HEADER, f"{tc(0)},0", f"{tc(1)},0"]) + "\n")
    r = runner.invoke(app, ["render", str(p), "-o", str(tmp_path / "x.mp4"), "--no-progress"])
    assert r.exit_code == 1 and "all 2 frames lost tracking" in r.stderr and "\n" not in r.stderr.strip()


# --- the real export ---------------------------------------------------------------------------------


@pytest.fixture
def real_export():
    if not REAL_EXPORT.is_file():
        pytest.skip(f"real Live Link Face export not found at {REAL_EXPORT}")
    return REAL_EXPORT


def test_real_export_round_trips(real_export, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        track = read_csv(real_export)  # strict, no warning
    assert len(track) == 4030 and track.fps == 30.0 and track.tracked.all()
    out = tmp_path / "again.csv"
    write_csv(out, track)
    back = read_csv(out)
    np.testing.assert_array_equal(back.params, track.params)  # shortest float32 text: exact
    np.testing.assert_allclose(back.times, track.times, rtol=0, atol=1 / 120000)
    assert back.fps == track.fps and back.tracked.all()
    write_csv(out, track, precision=4)
    np.testing.assert_allclose(read_csv(out).params, track.params, rtol=0, atol=5e-5 + 1e-7)
    # The file's own values, read by name, are what the track holds (spot check one row).
    lines = real_export.read_text(encoding="utf-8-sig").splitlines()
    names = lines[0].split(",")[2:]
    row = lines[1001].split(",")
    for name, text in zip(names, row[2:]):
        assert track.params[1000, arkit.index(name)] == np.float32(text), name


def test_real_export_renders_a_few_frames(real_export, tmp_path):
    from facecore.io.video import video_info

    mp4 = tmp_path / "rom.mp4"
    r = runner.invoke(app, ["render", str(real_export), "-o", str(mp4), "--frames", "1000:1004",
                            "--resolution", "32x24", "--no-progress"])
    assert r.exit_code == 0, r.output
    info = video_info(mp4)
    assert info["frames"] == 4 and (info["width"], info["height"]) == (32, 24)
