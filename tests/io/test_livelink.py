"""Live Link Face CSV: header by name, timecodes, 52-only files, strict/lenient, errors with line numbers."""

from __future__ import annotations

import io
import os
import time
import warnings

import numpy as np
import pytest

from facecore import arkit
from facecore.io import FormatError, Track, format_timecode, parse_timecode, read_csv, write_csv

from ..conftest import SHARED_DATA

HEADER = "Timecode,BlendShapeCount," + ",".join(arkit.NAMES)


@pytest.fixture
def rng() -> np.random.Generator:
    seed = int.from_bytes(os.urandom(4), "little")  # fresh inputs every run; printed on failure
    print(f"numpy seed: {seed}")
    return np.random.default_rng(seed)


def random_track(rng: np.random.Generator, n: int = 9, fps: float = 30.0) -> Track:
    params = rng.uniform(arkit.LOW, arkit.HIGH, size=(n, 61)).astype(np.float32)
    return Track.from_params(params, fps=fps, start=12.5)


def csv_text(header: str, rows: list[str]) -> io.StringIO:
    return io.StringIO("\n".join([header, *rows]) + "\n")


def row(tc: str, values, count: int = 61) -> str:
    return f"{tc},{count}," + ",".join(str(v) for v in values)


# --- timecodes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,timebase,seconds", [
    ("00:00:00:00.000", 60, 0.0),
    ("00:00:01:30.500", 60, 1 + 30.5 / 60),
    ("01:02:03:04", 30, 3723 + 4 / 30),
    ("19:35:30:59.999", 60, 19 * 3600 + 35 * 60 + 30 + 59.999 / 60),
    ("00:00:10;12.25", 24, 10 + 12.25 / 24),
])
def test_parse_timecode(text, timebase, seconds):
    assert parse_timecode(text, timebase) == pytest.approx(seconds, abs=1e-12)


def test_format_timecode():
    assert format_timecode(0.0) == "00:00:00:00.000"
    assert format_timecode(3661.5) == "01:01:01:30.000"
    assert format_timecode(1 / 120) == "00:00:00:00.500"
    assert format_timecode(59.99999999) == "00:01:00:00.000"  # rounds up across every field
    assert format_timecode(1 + 7.25 / 30, timebase=30) == "00:00:01:07.250"
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="finite time >= 0"):
            format_timecode(bad)


def test_timecode_round_trip(rng):
    for t in rng.uniform(0, 86400 * 2, 200):
        assert parse_timecode(format_timecode(t), 60, strict=False) == pytest.approx(t, abs=1 / 120000 + 1e-9)


def test_bad_timecodes():
    with pytest.raises(ValueError, match="expected HH:MM:SS:FF.fff"):
        parse_timecode("12:00")
    with pytest.raises(ValueError, match="frame 61 >= timebase 60"):
        parse_timecode("00:00:00:61.000")
    assert parse_timecode("00:00:00:61.000", strict=False) == pytest.approx(61 / 60)
    with pytest.raises(ValueError, match="< 60"):
        parse_timecode("00:61:00:00")
    # Endless digits are no timecode (they used to overflow the float: a bare OverflowError).
    for bad in ("9" * 400 + ":00:00:00", "00:00:00:" + "9" * 400, "00:00:00:00." + "9" * 5000):
        with pytest.raises(ValueError, match="bad timecode") as info:
            parse_timecode(bad, strict=False)
        assert len(str(info.value)) < 200


# --- reading ------------------------------------------------------------------------------------


def test_example_file(keyframeface_dir):
    path = keyframeface_dir / "example_result.csv"
    track = read_csv(path)
    assert track.params.shape == (2, 61) and track.params.dtype == np.float32
    np.testing.assert_array_equal(track.times, [0.0, 1.0])
    assert track.fps == 1.0
    p = dict(zip(arkit.NAMES, track.params[0]))
    assert p["MouthPressLeft"] == np.float32(0.4) and p["BrowInnerUp"] == np.float32(0.3)
    assert p["HeadPitch"] == np.float32(-0.1) and p["RightEyePitch"] == np.float32(-0.2)
    # written back with the file's own count spelling: byte for byte the same
    out = io.StringIO()
    write_csv(out, track, count_header="BlendshapeCount")
    assert out.getvalue() == path.read_text()


REAL_EXPORT = SHARED_DATA / "livelinkface" / "alex_rom_3.csv"


def test_real_live_link_face_export():
    if not REAL_EXPORT.is_file():
        pytest.skip(f"real Live Link Face export not found at {REAL_EXPORT}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        track = read_csv(REAL_EXPORT)
    lines = [ln for ln in REAL_EXPORT.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    assert len(track) == len(lines) - 1 and track.params.shape[1] == 61
    assert np.isfinite(track.params).all() and track.fps == 30.0 and track.params[:, 52:].any()


def test_columns_are_matched_by_name(rng):
    values = rng.uniform(arkit.LOW, arkit.HIGH).astype(np.float32)
    order = rng.permutation(61)
    header = "Timecode,BlendshapeCount," + ",".join(arkit.NAMES[i] for i in order)
    track = read_csv(csv_text(header, [row("00:00:00:00.000", [repr(float(values[i])) for i in order])]))
    np.testing.assert_array_equal(track.params[0], values)


def test_jaw_right_before_jaw_left_is_not_swapped():
    values = np.zeros(61)
    values[arkit.index("JawRight")], values[arkit.index("MouthLeft")] = 0.75, 0.25
    track = read_csv(csv_text(HEADER, [row("00:00:00:00", values)]))
    assert track.params[0, arkit.NAMES.index("JawRight")] == 0.75
    assert track.params[0, arkit.NAMES.index("JawLeft")] == 0
    assert track.params[0, arkit.NAMES.index("MouthLeft")] == 0.25


def test_header_in_other_conventions():
    header = "Timecode,BlendShapeCount," + ",".join(arkit.convert(n, "arkit_raw") for n in arkit.NAMES)
    track = read_csv(csv_text(header, [row("00:00:00:01.000", np.linspace(0, 1, 61))]))
    np.testing.assert_allclose(track.params[0], np.linspace(0, 1, 61).astype(np.float32))


def test_blendshape_only_file():
    header = "Timecode,BlendShapeCount," + ",".join(arkit.BLENDSHAPES)
    rows = [row(f"00:00:00:{f:02d}.000", np.full(52, 0.5), 52) for f in range(0, 6, 2)]
    track = read_csv(csv_text(header, rows))
    assert track.params.shape == (3, 61) and (track.params[:, :52] == 0.5).all()
    assert (track.params[:, 52:] == 0).all() and track.fps == 30.0


def test_time_of_day_start_and_midnight_wrap():
    rows = [row(tc, np.zeros(61)) for tc in ("23:59:59:58.000", "23:59:59:59.000", "00:00:00:00.000")]
    track = read_csv(csv_text(HEADER, rows))
    np.testing.assert_allclose(track.times - track.times[0], [0, 1 / 60, 2 / 60], atol=1e-9)
    assert track.fps == 60.0


def test_fps_override_and_single_frame():
    track = read_csv(csv_text(HEADER, [row("00:00:00:00.000", np.zeros(61))]), timebase=30)
    assert track.fps == 30.0 and len(track) == 1
    assert read_csv(csv_text(HEADER, [row("00:00:00:00.000", np.zeros(61))]), fps=59.94).fps == 59.94


def test_blank_lines_and_bom(tmp_path):
    p = tmp_path / "take.csv"
    p.write_text("\ufeff" + HEADER + "\n\n" + row("00:00:00:00", np.zeros(61)) + "\n\n\n", encoding="utf-8")
    assert len(read_csv(p)) == 1


# --- malformed files ----------------------------------------------------------------------------

GOOD = row("00:00:00:00.000", np.zeros(61))


@pytest.mark.parametrize("bad_row,match,lenient_rows", [
    (row("00:00:00:02.000", np.zeros(60)), "row has 62 values, header has 63 columns", 3),
    (row("00:00:00:02.000", ["0.1"] * 22 + ["abc"] + ["0"] * 38), "'MouthLeft': 'abc' is not a number", 3),
    (row("00:00:00:02.000", ["0"] * 60 + ["nan"]), "'RightEyeRoll': 'nan' is not finite", 3),
    (row("0:0:2", np.zeros(61)), "bad timecode '0:0:2'", 3),
    # only strict mode cares about these two: the row itself is readable
    (row("00:00:00:75.000", np.zeros(61)), "frame 75 >= timebase 60", 4),
    (row("00:00:00:02.000", np.zeros(61), count="x"), "BlendShapeCount 'x' is not an integer", 4),
])
def test_malformed_row_reports_its_line(bad_row, match, lenient_rows):
    last = GOOD.replace("00:00:00:00.000", "00:00:02:00.000")
    text = csv_text(HEADER, [GOOD, GOOD.replace(":00.000", ":01.000"), bad_row, last])
    with pytest.raises(FormatError, match=match) as info:
        read_csv(text)
    assert info.value.line == 4 and ":4: " in str(info.value)
    assert isinstance(info.value, ValueError)
    # lenient: the row is skipped with a warning that names the line
    text.seek(0)
    if lenient_rows == 3:
        with pytest.warns(UserWarning, match="skipped 1 malformed row.*line 4"):
            track = read_csv(text, strict=False)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            track = read_csv(text, strict=False)
    assert len(track) == lenient_rows


def test_lenient_reads_trailing_commas():
    text = csv_text(HEADER, [GOOD + ",,", GOOD.replace(":00.000", ":01.000") + ","])
    with pytest.raises(FormatError, match=":2: row has 65 values"):
        read_csv(text)
    text.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_csv(text, strict=False)) == 2


def test_time_going_back(tmp_path):
    p = tmp_path / "back.csv"
    p.write_text("\n".join([HEADER, GOOD.replace(":00.000", ":05.000"), GOOD, ""]))
    with pytest.raises(FormatError, match=r"back\.csv:3: timecode 00:00:00:00.000 goes back in time"):
        read_csv(p)
    with pytest.warns(UserWarning, match="rows sorted"):
        track = read_csv(p, strict=False)
    np.testing.assert_allclose(track.times, [0, 5 / 60])


def test_bad_headers():
    with pytest.raises(FormatError, match=r":1: header has no Timecode column"):
        read_csv(csv_text("Time,BlendShapeCount," + ",".join(arkit.NAMES), [GOOD]))
    with pytest.raises(FormatError, match="must start with Timecode,BlendShapeCount"):
        read_csv(csv_text("BlendShapeCount,Timecode," + ",".join(arkit.NAMES), [GOOD]))
    typo = HEADER.replace("JawOpen", "JawOpne")
    with pytest.raises(FormatError, match=r":1: column 20: unknown ARKit channel name 'JawOpne'; did you"):
        read_csv(csv_text(typo, [GOOD]))
    with pytest.warns(UserWarning, match="ignored 1 unknown column.*'JawOpne'.*filled absent.*JawOpen"):
        assert read_csv(csv_text(typo, [GOOD]), strict=False).params.shape == (1, 61)
    short = HEADER.replace(",CheekPuff", "")
    with pytest.raises(FormatError, match=r"header lacks 1 channel\(s\): CheekPuff"):
        read_csv(csv_text(short, [row("00:00:00:00", np.zeros(60))]))
    partial_pose = "Timecode,BlendShapeCount," + ",".join(arkit.NAMES[:55])
    with pytest.raises(FormatError, match=r"lacks 6 channel\(s\): LeftEyeYaw"):
        read_csv(csv_text(partial_pose, [row("00:00:00:00", np.zeros(55))]))
    dup = HEADER + ",jawOpen"
    with pytest.raises(FormatError, match="JawOpen appears twice"):
        read_csv(csv_text(dup, [row("00:00:00:00", np.zeros(62))]), strict=False)
    with pytest.raises(FormatError, match="empty file"):
        read_csv(io.StringIO(""))
    with pytest.raises(FileNotFoundError):
        read_csv("/nonexistent/take.csv")


def test_values_beyond_float32_are_refused():
    # 1e39 is finite as a Python float but inf as float32: it used to pass the check and turn into inf.
    for text in ("1e39", "-3.5e38", "1" + "0" * 400):
        bad = csv_text(HEADER, [GOOD, row("00:00:00:01.000", ["0"] * 17 + [text] + ["0"] * 43)])
        with pytest.raises(FormatError, match=r":3: column 'JawOpen': .* is (beyond float32's|not finite)"):
            read_csv(bad)
        bad.seek(0)
        with pytest.warns(UserWarning, match="skipped 1 malformed row"):
            assert len(read_csv(bad, strict=False)) == 1
    top = read_csv(csv_text(HEADER, [row("00:00:00:00.000", ["3.4e38"] + ["0"] * 60)]))
    assert np.isfinite(top.params).all() and top.params[0, 0] == np.float32(3.4e38)


def test_undecodable_bytes_and_csv_errors_name_the_line(tmp_path):
    p = tmp_path / "take.csv"
    p.write_bytes((HEADER + "\n" + GOOD + "\n").encode() + GOOD.encode()[:40] + b"\xff\xfe" + b"\n")
    with pytest.raises(FormatError, match=r"take\.csv:3: not utf-8 text: byte 0xff"):
        read_csv(p)
    # A field over csv's size limit (131072 characters) used to escape as a bare _csv.Error.
    p.write_text(HEADER + "\n" + GOOD + "\n" + '"' + "x" * 200_000 + '"\n')
    with pytest.raises(FormatError, match=r"take\.csv:3: unreadable CSV: field larger than field limit"):
        read_csv(p, strict=False)
    # A binary stream read as text fails while csv reads it: the error names the stream.
    stream = io.TextIOWrapper(io.BytesIO((HEADER + "\n").encode() + b"\xff" * 10), encoding="utf-8")
    with pytest.raises(FormatError, match="unreadable CSV"):
        read_csv(stream)


def test_errors_quote_a_short_excerpt():
    huge = "7" * 100_000 + "x"
    with pytest.raises(FormatError) as info:
        read_csv(csv_text(HEADER, [row("00:00:00:00.000", [huge] + ["0"] * 60)]))
    assert "is not a number" in str(info.value) and len(str(info.value)) < 300
    with pytest.raises(FormatError) as info:
        read_csv(csv_text(HEADER + ",Q" + "q" * 100_000, [GOOD + ",0"]))
    assert "unknown ARKit channel name" in str(info.value) and len(str(info.value)) < 300


@pytest.mark.timeout(60)
def test_lenient_unknown_columns_cost_o1_each():
    # Each unknown column used to run the "did you mean" search (~0.2-1.5 ms a column).
    extra = ",".join(f"Extra{i}" for i in range(20_000))
    text = csv_text(HEADER + "," + extra, [GOOD + "," + ",".join(["1"] * 20_000)])
    t = time.perf_counter()
    with pytest.warns(UserWarning, match=r"ignored 20000 unknown column\(s\): 'Extra0', .*, \.\.\.") as w:
        track = read_csv(text, strict=False)
    assert time.perf_counter() - t < 1.0 and len(track) == 1
    assert len(str(w[0].message)) < 1000


def test_blank_leading_lines_shift_the_header_line():
    text = io.StringIO("\n\n" + HEADER.replace("JawOpen", "Jaw") + "\n" + GOOD + "\n")
    with pytest.raises(FormatError) as info:
        read_csv(text)
    assert info.value.line == 3


# --- writing ------------------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path, rng):
    track = random_track(rng, n=17, fps=24)
    p = tmp_path / "t.csv"
    write_csv(p, track)
    text = p.read_text().splitlines()
    assert text[0] == HEADER and text[1].startswith("00:00:12:30.000,61,")
    back = read_csv(p)
    np.testing.assert_array_equal(back.params, track.params)
    np.testing.assert_allclose(back.times, track.times, atol=1 / 120000)
    assert back.fps == 24.0
    write_csv(p, track, precision=3, timebase=30)
    back = read_csv(p, timebase=30)
    np.testing.assert_allclose(back.params, track.params, atol=5e-4 + 1e-7)


def test_write_rejects_bad_input(tmp_path, rng):
    track = random_track(rng, n=3)
    track.params[1, 7] = np.inf
    with pytest.raises(ValueError, match=r"params\[1, 7\] \(EyeBlinkRight\) is not finite"):
        write_csv(tmp_path / "x.csv", track)
    with pytest.raises(ValueError, match="timebase must be a positive integer"):
        write_csv(tmp_path / "x.csv", random_track(rng), timebase=29.97)
    with pytest.raises(ValueError, match=">= 0"):
        write_csv(tmp_path / "x.csv", Track(times=[-1.0], params=np.zeros((1, 61))))
    with pytest.raises(TypeError, match="must be a facecore.io.Track"):
        write_csv(tmp_path / "x.csv", np.zeros((3, 61)))
    with pytest.raises(ValueError, match="count_header"):
        write_csv(tmp_path / "x.csv", random_track(rng), count_header="Count")


def test_empty_track_round_trips(tmp_path):
    p = tmp_path / "empty.csv"
    write_csv(p, Track(times=np.zeros(0), params=np.zeros((0, 61)), fps=30))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = read_csv(p)
    assert len(back) == 0 and back.params.shape == (0, 61)


# --- Track --------------------------------------------------------------------------------------


def test_track_validation():
    t = Track(times=[0, 1], params=np.zeros((2, 61), dtype=np.float64), fps=1)
    assert t.times.dtype == np.float64 and t.params.dtype == np.float32 and t.duration == 1.0
    with pytest.raises(ValueError, match=r"params must have shape \[N=2, 61\], got \[2, 52\]"):
        Track(times=[0, 1], params=np.zeros((2, 52)))
    with pytest.raises(ValueError, match=r"times must have shape \[N\]"):
        Track(times=np.zeros((2, 1)), params=np.zeros((2, 61)))
    with pytest.raises(ValueError, match="non-decreasing"):
        Track(times=[1, 0], params=np.zeros((2, 61)))
    with pytest.raises(ValueError, match="fps must be a positive number"):
        Track(times=[0], params=np.zeros((1, 61)), fps=0)
    assert Track.from_params(np.zeros((3, 61)), fps=4) == Track([0, 0.25, 0.5], np.zeros((3, 61)), 4)
