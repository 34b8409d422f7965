"""`facecore demo`, `facecore animate`, `facecore render`: outputs, and one-line errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from facecore.cli import app
from facecore.io import read_csv, read_keyframeface
from facecore.io.gltf import read_glb
from facecore.io.video import video_info

runner = CliRunner()
DEMO_FILES = {"demo.mp4", "demo.csv", "demo.glb", "keyframes.jsonl", "keyframes.png"}


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for w in words:
        assert w in err, err


def test_demo_writes_everything(tmp_path):
    out = tmp_path / "facecore-demo"
    r = run("demo", "-o", out, "--resolution", "64x48", "--fps", "10", "--no-progress")
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == DEMO_FILES
    assert "stage timings" in r.stdout and "video" in r.stdout and "total" in r.stdout
    track = read_csv(out / "demo.csv")
    info = video_info(out / "demo.mp4")
    assert info["frames"] == len(track) and (info["width"], info["height"]) == (64, 48)
    assert track.fps == 10
    keys = read_keyframeface(out / "keyframes.jsonl")
    assert len(keys) == 5 and next(iter(keys[0].values())).shape == (61,)
    glb = read_glb(out / "demo.glb")
    np.testing.assert_array_equal(glb["weights"], track.params[:, :52])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder cleaned up


@pytest.fixture
def script(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("fps: 10\nkeyframes:\n  - text: a slight smile\n    duration: 0.6\n  - the eyes close\n")
    return p


def test_animate_and_render(script, tmp_path):
    out = tmp_path / "anim"
    r = run("animate", script, "-o", out, "--resolution", "48", "--seed", "3", "--no-progress")
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} == {"s.mp4", "s.csv", "s.glb", "keyframes.jsonl", "keyframes.png"}
    track = read_csv(out / "s.csv")
    assert track.fps == 10
    mp4 = tmp_path / "r.mp4"
    r = run("render", out / "s.csv", "-o", mp4, "--resolution", "32x24", "--no-progress")
    assert r.exit_code == 0, r.output
    info = video_info(mp4)
    assert info["frames"] == len(track) and (info["width"], info["height"]) == (32, 24)


def test_animate_keyframeface_request(keyframeface_dir, tmp_path):
    out = tmp_path / "kf"
    r = run("animate", keyframeface_dir / "example.jsonl", "-o", out, "--no-video", "--fps", "12",
            "--resolution", "32", "--no-progress")
    assert r.exit_code == 0, r.output
    assert len(read_keyframeface(out / "keyframes.jsonl")) == 2 and not (out / "example.mp4").exists()


@pytest.mark.parametrize("content, words", [
    ("keyframes: []\n", ("no keyframes",)),
    ("", ("empty script",)),
    ("keyframes: [a smile]\nmood: happy\n", ("unknown script keys", "mood")),
    ("keyframes:\n  - {text: a smile, speed: 2}\n", ("unknown keys", "speed")),
    ("keyframes: [a smile\n", ("not YAML",)),
])
def test_bad_scripts_fail_cleanly(tmp_path, content, words):
    p = tmp_path / "bad.yaml"
    p.write_text(content)
    out = tmp_path / "out"
    assert_one_line_error(run("animate", p, "-o", out, "--no-progress"), *words)
    assert not out.exists()


def test_malformed_jsonl_line(keyframeface_dir, tmp_path):
    p = tmp_path / "req.jsonl"
    lines = (keyframeface_dir / "example.jsonl").read_text().splitlines()
    p.write_text(lines[0] + "\n" + lines[1][:-5] + "\n")
    out = tmp_path / "out"
    assert_one_line_error(run("animate", p, "-o", out, "--no-progress"), "req.jsonl:2")
    assert not out.exists()


def test_unwritable_output_and_bad_rig(script, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run("animate", script, "-o", blocker / "sub", "--no-progress"), "cannot be created")
    assert_one_line_error(run("demo", "-o", blocker, "--no-progress"), "not a folder")
    bad_rig = tmp_path / "rig.safetensors"
    bad_rig.write_bytes(b"\x00" * 64)
    out = tmp_path / "out"
    assert_one_line_error(run("animate", script, "-o", out, "--rig", bad_rig, "--no-progress"),
                          "does not load")
    assert not out.exists()
    assert_one_line_error(run("animate", script, "-o", out, "--rig", tmp_path / "nope.safetensors"),
                          "not found")


def test_other_bad_arguments(script, tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(run("animate", tmp_path / "missing.yaml", "-o", out), "not found")
    assert_one_line_error(run("animate", script, "-o", out, "--generator", "magic"), "--generator")
    assert_one_line_error(run("animate", script, "-o", out, "--generator", "llm"), "model")
    assert_one_line_error(run("animate", script, "-o", out, "--resolution", "big"), "--resolution")
    assert not out.exists()
    csv = tmp_path / "bad.csv"
    csv.write_text("Timecode,BlendshapeCount,EyeBlinkLeft\n00:00:00:00.000,61,abc\n")
    mp4 = tmp_path / "x.mp4"
    assert_one_line_error(run("render", csv, "-o", mp4, "--no-progress"), "bad.csv")
    assert_one_line_error(run("render", script, "-o", tmp_path / "x.avi"), ".mp4")
    assert not mp4.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_info_still_works():
    r = run("info", "--json")
    assert r.exit_code == 0 and "version" in json.loads(r.stdout)


def test_failure_mid_export_leaves_nothing(script, tmp_path, monkeypatch):
    import facecore.io.video as video

    def broken(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(video, "write_video", broken)
    out = tmp_path / "out"
    assert_one_line_error(run("animate", script, "-o", out, "--resolution", "32", "--no-progress"),
                          "encoder exploded")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # An existing output folder keeps its old files untouched when a new run fails.
    out.mkdir()
    (out / "s.csv").write_text("old")
    assert_one_line_error(run("animate", script, "-o", out, "--resolution", "32", "--no-progress"))
    assert (out / "s.csv").read_text() == "old"
