"""``facecore estimate`` / ``facecore estimator train|eval`` as plain functions and as typer commands
(registered the way facecore.cli registers them): an image, a folder with a corrupt file (skip vs
fail), a short video with the side-by-side render, train and eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from facecore.estimator.cli import estimate_main, eval_main, train_main
from facecore.estimator.model import Estimator, EstimatorConfig
from facecore.io import read_csv
from tests.estimator.conftest import TINY

iio = pytest.importorskip("imageio.v3")


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    Estimator(EstimatorConfig(**TINY)).save(path)
    return path


@pytest.fixture
def app():
    app = typer.Typer()
    app.command("estimate")(estimate_main)
    sub = typer.Typer()
    sub.command("train")(train_main)
    sub.command("eval")(eval_main)
    app.add_typer(sub, name="estimator")
    return app


def _faces(n: int, size: int = 40) -> np.ndarray:
    from facecore import synth

    return synth.render_batch(synth.sample_params(n, 3), "ict", "clean", size, 3)["image"].numpy()


def test_one_image(tmp_path, ckpt, app):
    img = tmp_path / "face.png"
    iio.imwrite(img, _faces(1)[0])
    out = tmp_path / "face.csv"
    res = CliRunner().invoke(app, ["estimate", str(img), "-o", str(out), "--model", str(ckpt), "--cropped",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    track = read_csv(out)
    assert len(track) == 1 and track.params.shape == (1, 61) and bool(track.tracked.all())
    ref = Estimator.load(ckpt).predict(iio.imread(img)[None], assume_cropped=True)
    np.testing.assert_allclose(track.params, ref, atol=1e-6)


def test_folder_with_a_corrupt_file_skip_or_fail(tmp_path, ckpt, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(_faces(2, 36)):
        iio.imwrite(folder / f"{i}.png", f)
    (folder / "1b_broken.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    (folder / "notes.txt").write_text("ignored: not an image")
    out = tmp_path / "out.csv"
    res = estimate_main(folder, out, model=ckpt, cropped=True, progress=False)
    assert res["frames"] == 2 and res["skipped"] == ["1b_broken.jpg"]
    assert "skipped 1b_broken.jpg" in capsys.readouterr().err
    assert len(read_csv(out)) == 2
    out2 = tmp_path / "fail.csv"
    with pytest.raises(typer.Exit):
        estimate_main(folder, out2, model=ckpt, cropped=True, on_error="fail", progress=False)
    assert "1b_broken.jpg" in capsys.readouterr().err
    assert not out2.exists() and not list(tmp_path.glob(".*partial*"))


def test_short_video_with_side_by_side(tmp_path, ckpt):
    pytest.importorskip("imageio_ffmpeg")
    from facecore.io.video import video_info, write_video

    clip = tmp_path / "clip.mp4"
    write_video(clip, list(_faces(4, 48)), fps=25)
    out, side = tmp_path / "clip.csv", tmp_path / "side.mp4"
    res = estimate_main(clip, out, model=ckpt, cropped=True, render=side, size=32, progress=False)
    track = read_csv(out)
    assert res["frames"] == 4 and len(track) == 4
    np.testing.assert_allclose(np.diff(track.times), 1 / 25, atol=1e-3)  # timecodes at the video's rate
    info = video_info(side)
    assert info["frames"] == 4 and (info["width"], info["height"]) == (64, 32)


def test_bad_arguments(tmp_path, ckpt, capsys):
    with pytest.raises(typer.Exit):
        estimate_main(tmp_path / "missing.png", tmp_path / "o.csv", model=ckpt, progress=False)
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(typer.Exit):
        estimate_main(tmp_path / "a.png", tmp_path / "o.txt", model=ckpt, progress=False)
    assert ".csv" in capsys.readouterr().err
    with pytest.raises(typer.Exit):
        estimate_main(tmp_path / "a.png", tmp_path / "o.csv", model=ckpt, on_error="ignore", progress=False)
    assert "--on-error" in capsys.readouterr().err


def test_refine_flag(tmp_path, ckpt):
    pytest.importorskip("facecore.estimator.refinement")
    img = tmp_path / "face.png"
    iio.imwrite(img, _faces(1, 32)[0])
    res = estimate_main(img, tmp_path / "r.csv", model=ckpt, cropped=True, refine=True, progress=False)
    assert res["tracked"] == 1 and len(read_csv(tmp_path / "r.csv")) == 1


def test_train_and_eval_commands(tmp_path, app):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": TINY, "resolution": 24, "batch_size": 2, "warmup_steps": 1,
                               "tensorboard": False}))
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["estimator", "train", "-o", str(run), "--config", str(cfg), "--steps", "2",
                                   "--labels", "truth", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (run / "estimator.safetensors").is_file()
    table = tmp_path / "eval.md"
    model = str(run / "estimator.safetensors")
    res = CliRunner().invoke(app, ["estimator", "eval", "--model", model, "-n", "4",
                                   "--resolution", "24", "-o", str(table)])
    assert res.exit_code == 0, res.output
    assert "|" in table.read_text()
    res = CliRunner().invoke(app, ["estimator", "train", "-o", str(run), "--labels", "noisy",
                                   "--no-progress"])
    assert res.exit_code == 1 and "labels" in res.output
