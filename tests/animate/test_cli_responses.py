"""``facecore animate`` on KeyframeFace responses (the published ``example_result.jsonl`` form):
the keyframes are animated as they are, one second apart, without running a generator."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from facecore import arkit
from facecore.animate.pipeline import animate_full
from facecore.animate.script import RESPONSE_SPACING, from_responses, load_keyframes, load_script
from facecore.cli import app
from facecore.io import FormatError, read_csv, read_keyframeface, write_keyframeface

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def keys() -> np.ndarray:
    rng = np.random.default_rng(7)
    k = rng.uniform(arkit.LOW, arkit.HIGH, size=(3, 61)).astype(np.float32)
    return k


@pytest.fixture
def responses(tmp_path, keys):
    """Three responses written by facecore, in the order they finished (3, 1, 2)."""
    p = tmp_path / "result.jsonl"
    write_keyframeface(p, [{"Keyframe_three": keys[2]}, {"Keyframe_one": keys[0]}, {"Keyframe_two": keys[1]}])
    return p


class NoGenerator:
    def generate(self, *args, **kwargs):
        raise AssertionError("a generator ran on responses")


def test_responses_give_the_keyframes_and_their_timing(responses, keys):
    script, got = load_keyframes(responses)
    np.testing.assert_array_equal(got, keys)  # in keyframe-number order
    assert script.descriptions == ["Keyframe One", "Keyframe Two", "Keyframe Three"]
    times, holds, end = script.timing()
    np.testing.assert_allclose(times, script.lead_in + RESPONSE_SPACING * np.arange(3))
    anim = animate_full(responses, generator=NoGenerator(), fps=10, secondary=False)
    np.testing.assert_array_equal(anim.keyframes, keys)
    # Each keyframe is reached at its time and held: the frames there are the keyframe.
    for i, t in enumerate(times):
        frame = int(round(t * 10))
        np.testing.assert_allclose(anim.track.params[frame], keys[i], rtol=0, atol=1e-6)
    with pytest.raises(FormatError, match="holds KeyframeFace responses"):
        load_script(responses)


def test_keys_that_are_no_keyframe_numbers_keep_the_file_order(keys):
    script, got = from_responses([{"smile": keys[1]}, {"  big   frown ": keys[0]}])
    assert script.descriptions == ["smile", "big frown"]
    np.testing.assert_array_equal(got, keys[[1, 0]])


def test_cli_animates_responses(responses, keys, tmp_path):
    out = tmp_path / "out"
    r = run("animate", responses, "-o", out, "--fps", "10", "--no-secondary", "--resolution", "32",
            "--no-progress")
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == {"animation.csv", "animation.glb", "animation.mp4",
                                               "keyframes.jsonl", "keyframes.png"}
    track = read_csv(out / "animation.csv")
    assert track.fps == 10 and len(track) == 36  # 0.5 s lead-in + 3 x 1 s, at 10 fps, both ends
    np.testing.assert_allclose(track.params[5], keys[0], rtol=0, atol=1e-6)
    written = read_keyframeface(out / "keyframes.jsonl")  # the keyframes used, in order
    assert [next(iter(w)) for w in written] == ["Keyframe_one", "Keyframe_two", "Keyframe_three"]
    np.testing.assert_array_equal(np.stack([next(iter(w.values())) for w in written]), keys)


def test_cli_responses_refuse_a_generator(responses, tmp_path):
    out = tmp_path / "out"
    r = run("animate", responses, "-o", out, "--generator", "llm", "--model", tmp_path, "--no-progress")
    assert r.exit_code == 1 and "--generator does not apply" in r.stderr and "\n" not in r.stderr.strip()
    assert not out.exists()


def test_cli_bad_response_files(tmp_path, keys):
    p = tmp_path / "dup.jsonl"
    write_keyframeface(p, [{"Keyframe_one": keys[0]}, {"Keyframe_one": keys[1]}])
    out = tmp_path / "out"
    r = run("animate", p, "-o", out, "--no-progress")
    assert r.exit_code == 1 and "dup.jsonl" in r.stderr and "given twice" in r.stderr, r.output
    p.write_text('{"response": "{\\"Keyframe_one\\": {\\"JawOpen\\": 0.5}}"}\n')  # 60 channels missing
    r = run("animate", p, "-o", out, "--no-progress")
    assert r.exit_code == 1 and "dup.jsonl:1" in r.stderr and "\n" not in r.stderr.strip(), r.output
    assert not out.exists()


def test_cli_animates_the_published_example(keyframeface_dir, tmp_path):
    out = tmp_path / "kf"
    r = run("animate", keyframeface_dir / "example_result.jsonl", "-o", out, "--no-video", "--fps", "12",
            "--resolution", "32", "--no-progress")
    assert r.exit_code == 0, r.output
    published = read_keyframeface(keyframeface_dir / "example_result.jsonl")
    written = read_keyframeface(out / "keyframes.jsonl")
    assert [list(w) for w in written] == [list(p) for p in published]
    for w, p in zip(written, published):
        np.testing.assert_array_equal(next(iter(w.values())), next(iter(p.values())))
    track = read_csv(out / "animation.csv")
    assert track.fps == 12 and abs(track.duration - 2.5) < 1e-9  # lead-in 0.5 + 2 keyframes 1 s apart
