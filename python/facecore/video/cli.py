"""`facecore video ...`: controllable face video diffusion and the synthetic-data study.

``facecore video train --config CFG.yaml [-o DIR]`` trains :class:`facecore.video.VideoDiffusion`
(:func:`facecore.video.training.train`; rerun to resume, run under torchrun for DDP);
``facecore video sample --model DIR --reference IMG --motion ANIM.csv -o OUT.mp4`` renders the CSV's
motion to facecore motion maps and generates the video. The commands only parse options.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ..cli_support import progress_bar, user_errors

app = typer.Typer(no_args_is_help=True,
                  help="Controllable face video diffusion and the synthetic-data study.")


@app.command("train")
def train_main(
    config: Annotated[Path, typer.Option(help="a VideoTrainConfig .json/.yaml (fields: docs/video.md)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="run folder (overrides the config's out)")] = None,
    steps: Annotated[int, typer.Option(help="optimisation steps (overrides the config)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1")] = None,
    stop_after: Annotated[int, typer.Option("--stop-after", help="end this run after this step (resumable)")]
    = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="continue OUT's checkpoint if any")]
    = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
) -> dict[str, Any]:
    """Train the video diffusion model (facecore.video.training). Rerun the same command to resume;
    run it under torchrun for DDP."""
    from .training import VideoTrainConfig, train

    with user_errors():
        given = {"out": None if out is None else str(out), "steps": steps, "device": device,
                 "stop_after": stop_after, "resume": resume}
        cfg = VideoTrainConfig.from_file(config, **{k: v for k, v in given.items() if v is not None})
        t = time.perf_counter()
        with progress_bar(progress) as bar:
            result = train(cfg, progress=bar)
    if result["rank"] == 0:
        m = result["metrics"]
        typer.echo(f"{cfg.out}: step {result['step']}/{cfg.steps}, loss {m.get('loss', float('nan')):.4f}, "
                   f"{time.perf_counter() - t:.1f} s")
        for name, path in result["files"].items():
            typer.echo(f"  {name:<10} {path}")
    return result


def read_reference(path: Path, size: int) -> np.ndarray:
    """An image file -> uint8 ``[size, size, 3]``: the centred square crop, area-resized."""
    import imageio.v3 as iio
    import torch
    import torch.nn.functional as F

    if not path.is_file():
        raise FileNotFoundError(f"reference image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            img = np.asarray(iio.imread(path))
    except Exception as e:  # noqa: BLE001 - the decoders raise many types for a bad file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path.name}: cannot read the reference image ({msg[:160]})") from None
    if img.ndim == 4:
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4) or img.dtype != np.uint8:
        raise ValueError(f"{path.name}: expected an 8-bit RGB(A) image, got shape {list(img.shape)} "
                         f"{img.dtype}")
    img = img[..., :3]
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size, size), mode="area") if s >= size else \
        F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def resample_track(times: np.ndarray, params: np.ndarray, fps: float) -> np.ndarray:
    """Per-frame parameters at ``fps`` (linear in time between the track's frames)."""
    t = np.asarray(times, np.float64) - float(times[0])
    n = int(np.floor(t[-1] * fps + 1e-9)) + 1
    grid = np.arange(n) / fps
    return np.stack([np.interp(grid, t, params[:, c]) for c in range(params.shape[1])], 1).astype(np.float32)


@app.command("sample")
def sample_main(
    model: Annotated[Path, typer.Option(help="a trained model: a run folder or its video.safetensors")],
    reference: Annotated[Path, typer.Option(help="the reference image (appearance)")],
    motion: Annotated[Path, typer.Option(help="the driving motion: a Live Link Face CSV")],
    out: Annotated[Path, typer.Option("-o", "--out", help="the output MP4")],
    steps: Annotated[int, typer.Option(help="DDIM steps")] = 25,
    guidance_reference: Annotated[float, typer.Option("--guidance-reference",
                                                      help="CFG scale of the reference")] = 2.0,
    guidance_motion: Annotated[float, typer.Option("--guidance-motion", help="CFG scale of the motion")]
    = 2.0,
    fps: Annotated[float, typer.Option(help="frame rate the motion is resampled to (the training clips')")]
    = 30.0,
    max_frames: Annotated[int, typer.Option("--max-frames", help="generate at most this many frames")] = None,
    seed: Annotated[int, typer.Option(help="noise seed")] = 0,
    overlap: Annotated[int, typer.Option(help="frames shared by neighbouring windows of a long motion "
                                              "(default: half the model's clip length)")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 (auto: cuda when available)")] = "auto",
) -> dict[str, Any]:
    """Generate a face video: appearance from REFERENCE, motion from the CSV (rendered by facecore to
    normal/depth maps, or read as ARKit vectors for a motion='params' model). A motion longer than the
    model's clip length is generated in overlapping windows denoised together (see VideoDiffusion.sample)."""
    import torch

    from ..io import read_csv
    from ..io.video import write_video
    from .model import VideoDiffusion

    with user_errors():
        if not 0 < fps <= 240:
            raise ValueError(f"--fps must be in (0, 240], got {fps}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
        if out.suffix.lower() != ".mp4":
            raise ValueError(f"--out must be an .mp4 file, got {out}")
        dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        net = VideoDiffusion.load(model, device=dev)
        cfg = net.config
        if not motion.is_file():
            raise FileNotFoundError(f"motion CSV not found: {motion}")
        track = read_csv(motion)
        params = resample_track(track.times, track.params, fps)
        if max_frames is not None:
            params = params[:max_frames]
        ref = read_reference(reference, cfg.image_size)
        t0 = time.perf_counter()
        if cfg.motion == "maps":
            from .data import motion_maps

            drive = np.asarray(motion_maps(torch.from_numpy(params), cfg.image_size), np.float32)
        else:
            drive = params
        video = net.sample(ref, drive, steps=steps, guidance=(guidance_reference, guidance_motion), seed=seed,
                           overlap=overlap)
        seconds = time.perf_counter() - t0
        out.parent.mkdir(parents=True, exist_ok=True)
        n = write_video(out, list(video), fps)
    typer.echo(f"{out}: {n} frames at {fps:g} fps, {cfg.image_size}x{cfg.image_size}, "
               f"{n / max(seconds, 1e-9):.1f} frames/s generated")
    return {"frames": video, "path": out, "seconds": seconds}


# `facecore video study` (the synthetic-data study, python/facecore/video/study_cli.py).
from .study_cli import register  # noqa: E402 - after the commands above, as the study's own entry point

register(app)
