"""`facecore video train` and `facecore video sample`, tiny end to end, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from facecore.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(image_size=16, frames=4, patch_size=4, dim=32, depth=1, heads=2, guider_channels=8)


def _csv(path, frames: int = 6, fps: float = 30.0):
    from facecore.io import Track, write_csv

    params = np.zeros((frames, 61), np.float32)
    params[:, 17] = np.linspace(0, 1, frames)  # JawOpen
    write_csv(path, Track(times=np.arange(frames) / fps, params=params, fps=fps))
    return path


def test_train_then_sample(tmp_path):
    pytest.importorskip("imageio")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 2, "batch_size": 1, "frames": 4, "n": 2, "model": TINY,
                               "warmup_steps": 1, "domains": {"clean": 1.0}, "device": "cpu"}))
    runner = CliRunner()
    res = runner.invoke(app, ["video", "train", "--config", str(cfg), "-o", str(tmp_path / "run"),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "video.safetensors").is_file() and "step 2/2" in res.output

    import imageio.v3 as iio

    iio.imwrite(tmp_path / "ref.png", np.full((40, 30, 3), 128, np.uint8))  # not square: centre-cropped
    out = tmp_path / "out.mp4"
    res = runner.invoke(app, ["video", "sample", "--model", str(tmp_path / "run"), "--reference",
                              str(tmp_path / "ref.png"), "--motion", str(_csv(tmp_path / "take.csv")),
                              "-o", str(out), "--steps", "2"])
    assert res.exit_code == 0, res.output
    from facecore.io.video import read_video

    frames, info = read_video(out)
    frames = list(frames)
    assert len(frames) == 6 and frames[0].shape[:2] == (16, 16)  # 6 frames: windows of 4 at frames 0 and 2
    res = runner.invoke(app, ["video", "sample", "--model", str(tmp_path / "run"), "--reference",
                              str(tmp_path / "ref.png"), "--motion", str(tmp_path / "take.csv"),
                              "-o", str(out), "--steps", "2", "--overlap", "4"])
    assert res.exit_code == 1 and "overlap must be an int in [0, frames=4)" in res.output


def test_cli_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["video", "train", "--config", str(tmp_path / "none.yaml")])
    assert res.exit_code == 1 and "config not found" in res.output
    (tmp_path / "bad.yaml").write_text("steps: [1, 2\n")
    res = runner.invoke(app, ["video", "train", "--config", str(tmp_path / "bad.yaml")])
    assert res.exit_code == 1 and "not YAML" in res.output
    (tmp_path / "keys.json").write_text(json.dumps({"stepz": 1}))
    res = runner.invoke(app, ["video", "train", "--config", str(tmp_path / "keys.json")])
    assert res.exit_code == 1 and "unknown keys" in res.output
    res = runner.invoke(app, ["video", "sample", "--model", str(tmp_path / "nomodel"), "--reference", "r.png",
                              "--motion", "m.csv", "-o", str(tmp_path / "o.mp4")])
    assert res.exit_code == 1 and "video model not found" in res.output
    res = runner.invoke(app, ["video", "sample", "--model", str(tmp_path), "--reference", "r.png",
                              "--motion", "m.csv", "-o", str(tmp_path / "o.gif")])
    assert res.exit_code == 1 and ".mp4" in res.output
