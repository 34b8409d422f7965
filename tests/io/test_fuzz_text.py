"""Fuzzing the text readers: whatever the bytes, a reader returns a result or raises FormatError /
ValueError / FileNotFoundError naming the file; never another exception, a crash or a hang.

Readers: Live Link Face CSV, KeyframeFace JSONL (requests and responses), SemanticFace JSON and
animation scripts (YAML, JSON, JSONL), each in strict and lenient mode where it has both. Inputs:
valid files mutated (truncated, bytes flipped / inserted / deleted, numbers replaced by NaN, inf,
huge or endless digits, cells added or dropped, lines duplicated, nesting and alias tokens spliced
in) and plain random bytes; then a fixed corpus of pathological files (deep nesting, alias bombs,
megabytes of prose), each under a time limit.

``FACECORE_FUZZ_EXAMPLES`` sets the examples per fuzz test (default 30: the file runs in seconds).
Every run draws the same cases (``derandomize=True``).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from facecore import arkit
from facecore.animate.script import load_script
from facecore.io import (
    ANALYSIS_KEYS,
    FormatError,
    KeyframeRequest,
    Track,
    format_response,
    format_semanticface,
    make_requests,
    read_csv,
    read_keyframeface,
    read_semanticface,
    write_csv,
)

EXAMPLES = int(os.environ.get("FACECORE_FUZZ_EXAMPLES", "30"))
FUZZ = settings(derandomize=True, database=None, max_examples=EXAMPLES, deadline=timedelta(seconds=5),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
MAX_MESSAGE = 4000  # the longest legitimate message lists all 61 channel names
ACCEPTED = (FormatError, ValueError, FileNotFoundError)


# --- valid seed files -----------------------------------------------------------------------------

def _csv(track: Track, **kw) -> bytes:
    buf = io.StringIO()
    write_csv(buf, track, **kw)
    return buf.getvalue().encode()


def _track(n: int, seed: int) -> Track:
    rng = np.random.default_rng(seed)
    return Track.from_params(rng.uniform(arkit.LOW, arkit.HIGH, (n, 61)).astype(np.float32), fps=60,
                             start=3600 * 19.5)


def _blend_only(n: int) -> bytes:
    rows = [f"00:00:00:{i:02d}.000,52," + ",".join(["0.25"] * 52) for i in range(n)]
    return ("Timecode,BlendshapeCount," + ",".join(arkit.NAMES[:52]) + "\n" + "\n".join(rows) + "\n").encode()


CSV_SEEDS = [_csv(_track(3, 0)), _csv(_track(12, 1), precision=3), _blend_only(3)]
_REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "livelinkface" / "alex_rom_3.csv"
if _REAL.is_file():  # the head of a real export, when it is beside the repository
    CSV_SEEDS.append(b"".join(_REAL.read_bytes().splitlines(keepends=True)[:4]))

_REQUESTS = make_requests(["The gaze lowers and the lips press together.", "A small restrained smile."],
                          "A student waits outside an interview room.", "Anxiety held back.")
_ANSWER = {"Keyframe_one": np.linspace(0, 1, 61, dtype=np.float32)}
_TRAINING = KeyframeRequest(_REQUESTS[0].keyframes, "Keyframe One", _REQUESTS[0].background,
                            _REQUESTS[0].emotion, response=_ANSWER)


def _jsonl(objects) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objects).encode()


KFF_SEEDS = [_jsonl({"messages": r.messages()} for r in _REQUESTS),
             _jsonl([{"response": format_response(_ANSWER)},
                     {"response": format_response({"Keyframe_two": np.zeros(61)})}]),
             _jsonl([{"messages": _TRAINING.messages()}])]

_ANALYSIS = {"expression_category": "restrained smile", "muscle_movements": ["AU12 (slight)"],
             "emotional_implication": "polite", "symmetry": "symmetric"}
_SF = format_semanticface(_ANALYSIS, np.linspace(0, 1, 61, dtype=np.float32), indent=2)
SF_SEEDS = [_SF.encode(), f"Here is the analysis:\n```json\n{_SF}\n```\nDone.".encode(),
            format_semanticface(_ANALYSIS, np.zeros(61)).encode()]

YAML_SEEDS = [
    b"background: A quiet room.\nemotion: calm\nfps: 24\nlead_in: 0.5\nkeyframes:\n"
    b"  - text: a slight smile\n    duration: 1.5\n    hold: 0.3\n"
    b"  - {text: the eyes close, time: 2.0, transition: 0.4}\n  - the head turns left\n",
    b"keyframes:\n  - &k {text: a smile, duration: 1.0}\n  - *k\n  - the brows rise\nfps: 30\n",
    b"keyframes:\n  - text: a frown\n    duration: 2\n",
]
JSON_SEEDS = [json.dumps({"fps": 24, "name": "take", "keyframes": [
    {"text": "a smile", "duration": 1.25}, {"text": "a frown", "time": 2.0}, "the eyes close"]}).encode(),
    b'{"keyframes": ["a smile"], "lead_in": 0}']

# Tokens spliced into files: non-finite and out-of-range numbers, endless digits, structure, aliases.
TOKENS = [b"nan", b"NaN", b"-nan", b"inf", b"-inf", b"Infinity", b"-Infinity", b"1e39", b"-1e39",
          b"3.4028236e38", b"1e308", b"1e400", b"-0", b"1e-400", b"9" * 400, b"9" * 5000, b"0x10", b"1_0",
          b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b'"', b"'", b",", b",,,", b";",
          b"\n", b"\r", b"\r\n", b"\t", b"{", b"}", b"[", b"]", b":", b"[" * 3000, b"{" * 3000,
          b'{"a":' * 3000, b"- " * 3000, b"*a", b"&a", b"&a [*a, *a]", b"!!python/object:os.system",
          b"%YAML 1.1\n---", b"\\u0000", b"\\ud800", b'\\"', b"00:00:00:99.999", b"99999999999:00:00:00",
          b"Timecode", b"BlendShapeCount", b"JawOpen", b"TongueOut", b"keyframes", b"duration: 1e300",
          b"fps: 100000", b'"Keyframe_one"', b'"arkit"', b'"analysis"', b'"response"', b'"messages"']
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file with one to four random edits."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "token", "number", "cell",
                                   "line"]))
        n = len(data)
        at = draw(st.integers(0, max(n - 1, 0)))
        if op == "truncate":
            del data[at:]
        elif op == "flip" and n:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif op == "number":  # replace one number of the file by a token
            numbers = list(_NUMBER.finditer(bytes(data)))
            if numbers:
                m = numbers[draw(st.integers(0, len(numbers) - 1))]
                data[m.start():m.end()] = draw(st.sampled_from(TOKENS[:20]))
        elif op == "cell":  # a row gains or loses a comma-separated cell (wrong column counts)
            commas = [i for i, b in enumerate(data) if b == ord(",")]
            if commas:
                i = commas[draw(st.integers(0, len(commas) - 1))]
                if draw(st.booleans()):
                    data[i:i] = b",0.5"
                else:
                    del data[i:data.find(b",", i + 1) if b"," in data[i + 1:] else i + 1]
        elif op == "line":  # a line duplicated or dropped
            lines = bytes(data).splitlines(keepends=True)
            if lines:
                k = draw(st.integers(0, len(lines) - 1))
                lines[k:k + 1] = [lines[k]] * draw(st.integers(0, 3))
                data = bytearray(b"".join(lines))
    return bytes(data)


def files(seeds: list[bytes]):
    """Mostly mutated seeds (they get past the first checks), some random bytes."""
    return st.one_of(mutated(seeds), mutated(seeds), mutated(seeds), st.binary(max_size=600))


# --- the check ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check(read, path: Path, data: bytes) -> str:
    """``read(path)`` on ``data``: a result, or an accepted error that names the file in few words.
    Returns the outcome's class (for ``--hypothesis-show-statistics``: how deep the cases get)."""
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lenient readers report what they skipped
            read(path)
    except ACCEPTED as e:
        msg = str(e)
        assert str(path) in msg, f"{type(e).__name__} does not name the file: {msg[:300]!r}"
        assert len(msg) <= MAX_MESSAGE, f"{len(msg)}-character message: {msg[:300]!r}..."
        reason = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", msg[len(str(path)):].lstrip(":0123456789 "))
        return f"{type(e).__name__}: {' '.join(reason.split()[:3])}"
    return "read"


def strict_then_lenient(reader):
    """Both modes; the first accepted error (strict's, else lenient's) is the one checked."""
    def read(path):
        error = None
        for strict in (True, False):
            try:
                reader(path, strict=strict)
            except ACCEPTED as e:
                error = error or e
        if error is not None:
            raise error
    return read


def load_and_time(path):
    load_script(path).timing()


@FUZZ
@given(data=files(CSV_SEEDS))
def test_fuzz_livelink_csv(scratch, data):
    event(check(strict_then_lenient(read_csv), scratch / "take.csv", data))


@FUZZ
@given(data=files(KFF_SEEDS))
def test_fuzz_keyframeface_jsonl(scratch, data):
    event(check(strict_then_lenient(read_keyframeface), scratch / "keyframes.jsonl", data))


@FUZZ
@given(data=files(SF_SEEDS))
def test_fuzz_semanticface(scratch, data):
    event(check(strict_then_lenient(read_semanticface), scratch / "face.json", data))


@FUZZ
@given(data=files(YAML_SEEDS))
def test_fuzz_script_yaml(scratch, data):
    event(check(load_and_time, scratch / "script.yaml", data))


@FUZZ
@given(data=files(JSON_SEEDS))
def test_fuzz_script_json(scratch, data):
    event(check(load_and_time, scratch / "script.json", data))


@FUZZ
@given(data=files(KFF_SEEDS[:1]))
def test_fuzz_script_jsonl(scratch, data):
    event(check(load_and_time, scratch / "script.jsonl", data))


# --- pathological files ---------------------------------------------------------------------------

def _bomb(key: bytes) -> bytes:
    """The "billion laughs" (9 anchors, each 9 aliases of the one before) under an allowed key,
    then used as ``key``'s value."""
    lines = [b"emotion: [&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol],"]
    lines += [b"  &a%d [" % i + b", ".join([b"*a%d" % (i - 1)] * 9) + b"]," for i in range(1, 9)]
    return b"\n".join(lines) + b"\n  calm]\nkeyframes: [a smile]\n" + key + b": *a8\n"


DEEP_LIST = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000
PROSE = b"The face looks calm. { Notes: brows {up}, lips {pressed} } \"quoted {\" more text\n" * 65_000

PATHOLOGICAL = {
    "deep list": DEEP_LIST,
    "deep list closed": DEEP_LIST + b"]" * 100_000,
    "deep object": DEEP_OBJECT,
    "many braces": b"{" * 200_000,
    "many key starts": b'{"' * 200_000,
    "alias bomb in fps": _bomb(b"fps"),
    "alias bomb in name": _bomb(b"name"),
    "alias bomb in lead_in": _bomb(b"lead_in"),
    "alias bomb in text": _bomb(b"keyframes").replace(b"keyframes: *a8", b"keyframes: [{text: *a8}]"),
    "alias bomb in duration": _bomb(b"keyframes").replace(b"keyframes: *a8",
                                                          b"keyframes: [{text: a, duration: *a8}]"),
    "recursive alias": b"keyframes: &k [a smile, *k]\nfps: &f [*f]\n",
    "deep yaml blocks": b"".join(b"  " * i + b"-\n" for i in range(5000)),
    "huge int": b'{"keyframes": ["a smile"], "fps": ' + b"9" * 5000 + b"}",
    "long int": b'{"keyframes": ["a smile"], "fps": ' + b"9" * 4000 + b"}",
    "huge fps": b"keyframes: [a smile]\nfps: 1.0e+300\n",
    "endless take": b"keyframes:\n  - {text: a smile, duration: 1.0e+12}\nfps: 240\n",
    "too many keyframes": b"keyframes: [" + b", ".join([b"a smile"] * 5000) + b"]\n",
    "huge description": b"keyframes: [" + b"x" * 3_000_000 + b"]\n",
    "prose": PROSE,
    "random": bytes(np.random.default_rng(0).integers(0, 256, 2_000_000, dtype=np.uint8)),
    "nul": b"\x00" * 100_000,
    "bad utf-8 late": b"keyframes: [a smile]\n" * 1000 + b"\xff\n",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
@pytest.mark.parametrize("reader, suffix", [
    (strict_then_lenient(read_csv), ".csv"),
    (strict_then_lenient(read_keyframeface), ".jsonl"),
    (strict_then_lenient(read_semanticface), ".json"),
    (load_and_time, ".yaml"),
    (load_and_time, ".json"),
], ids=["csv", "keyframeface", "semanticface", "script-yaml", "script-json"])
def test_pathological_files(tmp_path, name, reader, suffix):
    t = time.perf_counter()
    check(reader, tmp_path / f"bad{suffix}", PATHOLOGICAL[name])
    assert time.perf_counter() - t < 10.0, f"{name}: {time.perf_counter() - t:.1f} s"


def test_seeds_are_valid(tmp_path):
    """The fuzzers start from files that read (so they explore near the valid format)."""
    for i, data in enumerate(CSV_SEEDS):
        (tmp_path / f"{i}.csv").write_bytes(data)
        assert len(read_csv(tmp_path / f"{i}.csv")) >= 2
    for i, data in enumerate(KFF_SEEDS):
        (tmp_path / f"{i}.jsonl").write_bytes(data)
        assert read_keyframeface(tmp_path / f"{i}.jsonl")
    for i, data in enumerate(SF_SEEDS):
        (tmp_path / f"{i}.json").write_bytes(data)
        analysis, _ = read_semanticface(tmp_path / f"{i}.json")
        assert set(ANALYSIS_KEYS) <= set(analysis)
    for i, data in enumerate(YAML_SEEDS):
        (tmp_path / f"{i}.yaml").write_bytes(data)
        load_script(tmp_path / f"{i}.yaml").timing()
    for i, data in enumerate(JSON_SEEDS):
        (tmp_path / f"s{i}.json").write_bytes(data)
        load_script(tmp_path / f"s{i}.json").timing()
    (tmp_path / "r.jsonl").write_bytes(KFF_SEEDS[0])
    assert len(load_script(tmp_path / "r.jsonl").keyframes) == 2
