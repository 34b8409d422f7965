"""`facecore demo`, `facecore animate`, `facecore render`: outputs, and one-line errors on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from facecore.cli import app
from facecore.io import Track, read_csv, read_keyframeface, write_csv
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


def _alias_bomb(key: str) -> str:
    """The "billion laughs" in YAML: 9 anchors, each a list of 9 aliases of the one before."""
    lines = ["emotion: [&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol],"]
    lines += [f"  &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]," for i in range(1, 9)]
    return "\n".join(lines) + f"\n  calm]\nkeyframes: [a smile]\n{key}: *a8\n"


@pytest.mark.parametrize("content, words", [
    ("keyframes: []\n", ("no keyframes",)),
    ("", ("empty script",)),
    ("keyframes: [a smile]\nmood: happy\n", ("unknown script keys", "mood")),
    ("keyframes:\n  - {text: a smile, speed: 2}\n", ("unknown keys", "speed")),
    ("keyframes: [a smile\n", ("not YAML",)),
    # Sizes are bounded before anything is allocated, and messages quote only a short excerpt.
    (_alias_bomb("fps"), ("over 100000 YAML nodes",)),
    (_alias_bomb("keyframes"), ("over 100000 YAML nodes",)),
    ("fps: 1000\nkeyframes: [a smile]\n", ("fps must be a number in (0, 240]",)),
    ("keyframes:\n  - {text: a smile, duration: 1.0e+12}\n", ("duration", "3600")),
    ("keyframes:\n  - {text: a smile, time: 3000}\n  - {text: a frown, time: 3500}\nlead_in: 200\n",
     ("would last", "at most 3600 s")),
    ("keyframes: [" + ", ".join(["a smile"] * 100) + "]\n", ("100 keyframes", "at most 99")),
    ("keyframes: [" + "x" * 5000 + "]\n", ("5000 characters", "at most 4000")),
    ("name: ../evil\nkeyframes: [a smile]\n", ("name must be a file stem",)),
    ("keyframes: [a smile]\nlead_in: .nan\n", ("lead_in",)),
    ("keyframes: [a smile]\nfps: " + "9" * 5000 + "\n", ("not YAML", "4300 digits")),
    ("keyframes: " + "[" * 5000 + "\n", ("not YAML",)),
])
def test_bad_scripts_fail_cleanly(tmp_path, content, words):
    p = tmp_path / "bad.yaml"
    p.write_text(content)
    out = tmp_path / "out"
    t = time.perf_counter()
    result = run("animate", p, "-o", out, "--no-progress")
    assert_one_line_error(result, *words)
    assert len(result.stderr) < 300 and time.perf_counter() - t < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # not even ../evil.csv


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


# --- outputs validated first, written atomically, cleaned up on SIGTERM -----------------------------


@pytest.fixture
def no_rendering(monkeypatch):
    """Fail the test if anything gets rendered (the command must stop before)."""
    import facecore.animate.frames as frames
    import facecore.rig.sheet as sheet

    def boom(*args, **kwargs):
        raise AssertionError("rendered before validating the output")

    monkeypatch.setattr(frames, "FrameRenderer", boom)
    monkeypatch.setattr(sheet, "contact_sheet", boom)


def test_outputs_are_validated_before_any_work(script, tmp_path, no_rendering):
    csv = tmp_path / "a.csv"
    write_csv(csv, Track.from_params(np.zeros((2, 61), np.float32), fps=30))
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    assert_one_line_error(run("render", csv, "-o", folder, "--no-progress"), "is a folder")
    assert_one_line_error(run("render", csv, "-o", tmp_path / "r.mp4", "--fps", "1000"), "--fps")
    sheet = tmp_path / "sheet.png"
    sheet.mkdir()
    assert_one_line_error(run("rig-sheet", "-o", sheet), "is a folder")
    for size in ("0", "-5", "100000"):
        assert_one_line_error(run("rig-sheet", "-o", tmp_path / "s.png", "--size", size), "--size")
    assert_one_line_error(run("rig-sheet", "-o", tmp_path / "s.jpg"), ".png")
    out = tmp_path / "anim"
    (out / "s.csv").mkdir(parents=True)
    assert_one_line_error(run("animate", script, "-o", out, "--no-progress"), "s.csv", "is a folder")
    assert_one_line_error(run("demo", "-o", tmp_path / "d", "--fps", "0", "--no-progress"), "--fps")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "anim", "clip.mp4", "s.yaml", "sheet.png"]


def test_rig_sheet_is_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "sheets" / "sheet.png"
    r = run("rig-sheet", "-o", out, "--size", "16")
    assert r.exit_code == 0, r.output
    import imageio.v3 as iio

    assert iio.imread(out).shape == (6 * 16, 9 * 16, 3)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    before = out.read_bytes()

    def half_written(path, image, **kwargs):  # a full disk: part of the file, then an error
        open(path, "wb").write(b"\x89PNG\r\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(iio, "imwrite", half_written)
    assert_one_line_error(run("rig-sheet", "-o", out, "--size", "16"), "No space left")
    assert out.read_bytes() == before and sorted(p.name for p in out.parent.iterdir()) == ["sheet.png"]


@pytest.mark.parametrize("module, extra, words", [
    ("yaml", "animate", ("PyYAML",)),
    ("imageio", "animate", ("imageio",)),
    ("imageio_ffmpeg", "animate", ("imageio-ffmpeg",)),
])
def test_missing_optional_dependency_names_the_extra(script, tmp_path, monkeypatch, no_rendering,
                                                     module, extra, words):
    monkeypatch.setitem(sys.modules, module, None)  # "import yaml" now raises ModuleNotFoundError
    out = tmp_path / "out"
    r = run("animate", script, "-o", out, "--no-progress")
    assert_one_line_error(r, *words, f'pip install "facecore[{extra}]"')
    assert not out.exists()


@pytest.mark.timeout(180)
def test_sigterm_mid_render_leaves_no_partial_files(tmp_path):
    # SIGTERM used to end the process on the spot, leaving .partial-* files behind.
    csv = tmp_path / "long.csv"
    write_csv(csv, Track.from_params(np.zeros((12000, 61), np.float32), fps=60))  # still rendering
    out_dir = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "facecore.cli", "render", str(csv), "-o",
                             str(out_dir / "long.mp4"), "--resolution", "16", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out_dir.is_dir() and any(out_dir.glob(".long.partial-*"))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the render never started"
            time.sleep(0.02)
        time.sleep(1.0)  # frames are being rendered and encoded
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    assert list(out_dir.iterdir()) == []
