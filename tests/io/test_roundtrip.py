"""Property test: random parameter tracks survive every file format (hypothesis)."""

from __future__ import annotations

import io
import os
import string
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from facecore.io import (
    KeyframeRequest,
    Track,
    format_semanticface,
    keyframe_key,
    keyframe_name,
    parse_semanticface,
    read_csv,
    read_keyframeface,
    write_csv,
    write_keyframeface,
)

# 40 examples keep CI quick; FACECORE_HYPOTHESIS_EXAMPLES=1000 for a deeper local search.
SETTINGS = settings(max_examples=int(os.environ.get("FACECORE_HYPOTHESIS_EXAMPLES", "40")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Any float32 in range, subnormals and signed zeros included: the writers must keep every bit.
channel = st.floats(min_value=0, max_value=1, width=32)
pose = st.floats(min_value=-1, max_value=1, width=32)


@st.composite
def params(draw, n: int | None = None) -> np.ndarray:
    n = draw(st.integers(0, 12)) if n is None else n
    blend = draw(hnp.arrays(np.float32, (n, 52), elements=channel))
    head = draw(hnp.arrays(np.float32, (n, 9), elements=pose))
    return np.concatenate([blend, head], axis=1)


@st.composite
def tracks(draw) -> tuple[Track, int]:
    """A uniformly sampled track whose times fall on the timecode's sub-frame ticks."""
    timebase = draw(st.sampled_from([24, 25, 30, 50, 60]))
    fps = draw(st.sampled_from([f for f in (12, 24, 25, 30, 50, 60, 100, 120)
                                if (timebase * 1000) % f == 0]))
    ticks = draw(st.integers(0, 48 * 3600 * timebase * 1000))  # a start up to two days in
    p = draw(params())
    start = ticks / (timebase * 1000)
    return Track.from_params(p, fps=fps, start=start), timebase


@given(tracks())
@SETTINGS
def test_csv_round_trip(case):
    track, timebase = case
    buf = io.StringIO()
    write_csv(buf, track, timebase=timebase)
    buf.seek(0)
    back = read_csv(buf, timebase=timebase, fps=None if len(track) > 1 else track.fps)
    assert back.params.dtype == np.float32 and back.params.shape == track.params.shape
    np.testing.assert_array_equal(back.params, track.params)
    # times come back to the tick (1/1000 frame), float noise aside
    atol = 1e-9 * max(1.0, track.times.max(initial=0))
    np.testing.assert_allclose(back.times, track.times, rtol=0, atol=atol)
    assert back.fps == track.fps


ANALYSIS = dict.fromkeys(("expression_category", "muscle_movements", "emotional_implication", "symmetry"), "")
text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
line = st.text(string.ascii_letters + string.digits + " ,.;!?'\"-()", max_size=60)


@given(params(), st.lists(line, min_size=1, max_size=5), line, line, st.data())
@SETTINGS
def test_keyframeface_round_trip(p, descriptions, background, emotion, data):
    frames = {keyframe_name(i + 1): d for i, d in enumerate(descriptions)}
    target = data.draw(st.sampled_from(list(frames)))
    responses = [{keyframe_key(keyframe_name(i % 99 + 1)): row} for i, row in enumerate(p)]
    req = KeyframeRequest(frames, target, background, emotion)
    if len(p):
        req.response = {req.target_key: p[0]}
    with tempfile.TemporaryDirectory() as d:
        rq, rs = Path(d) / "req.jsonl", Path(d) / "resp.jsonl"
        write_keyframeface(rq, [req, req])
        write_keyframeface(rs, responses)
        back_req = read_keyframeface(rq)
        back_resp = read_keyframeface(rs)
    assert back_req == [req, req]
    if len(p):
        np.testing.assert_array_equal(back_req[0].response[req.target_key], p[0])
    assert len(back_resp) == len(responses)
    for got, want in zip(back_resp, responses):
        assert list(got) == list(want)
        np.testing.assert_array_equal(next(iter(got.values())), next(iter(want.values())))


@given(params(n=1), st.dictionaries(st.sampled_from(["expression_category", "muscle_movements",
                                                     "emotional_implication", "symmetry"]),
                                    text | st.lists(text, max_size=3), min_size=4),
       st.text(st.characters(blacklist_characters="{"), max_size=80), st.sampled_from([None, 2]))
@SETTINGS
def test_semanticface_round_trip(p, analysis, prose, indent):
    doc = prose + format_semanticface(analysis, p[0], indent=indent) + prose
    got_analysis, got = parse_semanticface(doc)
    assert got_analysis == analysis
    np.testing.assert_array_equal(got, p[0])


@given(tracks())
@SETTINGS
def test_track_through_every_format(case):
    """CSV -> SemanticFace per frame -> KeyframeFace responses -> CSV: still the same track."""
    track, timebase = case
    buf = io.StringIO()
    write_csv(buf, track, timebase=timebase)
    buf.seek(0)
    t1 = read_csv(buf, timebase=timebase, fps=track.fps)
    frames = [parse_semanticface(format_semanticface(ANALYSIS, row))[1] for row in t1.params]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.jsonl"
        write_keyframeface(path, [{"Keyframe_one": f} for f in frames])
        rows = [r["Keyframe_one"] for r in read_keyframeface(path)]
    t2 = Track(times=t1.times, params=np.stack(rows) if rows else np.zeros((0, 61)), fps=t1.fps)
    buf = io.StringIO()
    write_csv(buf, t2, timebase=timebase)
    buf.seek(0)
    t3 = read_csv(buf, timebase=timebase, fps=track.fps)
    np.testing.assert_array_equal(t3.params, track.params)
    np.testing.assert_array_equal(t3.times, t1.times)
