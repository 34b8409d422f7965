"""``facecore estimate`` and ``facecore estimator train|eval``: the commands as plain functions.

Each only checks and passes its options on (to :meth:`Estimator.predict`, :func:`train`,
:func:`evaluate`); ``facecore.cli`` registers them (typer reads the annotated parameters)::

    app.command("estimate")(estimate_main)
    estimator_app = typer.Typer(no_args_is_help=True, help="Train and evaluate the face estimator.")
    estimator_app.command("train")(train_main)
    estimator_app.command("eval")(eval_main)
    app.add_typer(estimator_app, name="estimator")

They are also ordinary functions: ``estimate_main("clip.mp4", "clip.csv", render="side.mp4")``.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
ON_ERROR = ("skip", "fail")


# ---------------------------------------------------------------------------------------------------
# facecore estimate
# ---------------------------------------------------------------------------------------------------
def _load_model(model: Path | str | None):
    from .model import Estimator
    from .pretrained import load_pretrained

    return load_pretrained() if model is None else Estimator.load(model)


def _read_image(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        with warnings.catch_warnings():  # imageio tries every plugin on a bad file; some warn as they go
            warnings.simplefilter("ignore", DeprecationWarning)
            img = np.asarray(iio.imread(path))
    except Exception as e:  # noqa: BLE001 - the decoders raise many types for a bad file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path.name}: cannot read the image ({msg[:160]})") from None
    if img.ndim == 4:  # an animated GIF/WebP: its first frame
        img = img[0]
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        elif img.dtype == np.bool_:
            img = img.astype(np.uint8) * 255
        else:
            raise ValueError(f"{path.name}: unsupported pixel type {img.dtype} (expected 8-bit images)")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"{path.name}: expected an RGB image, got shape {list(img.shape)}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, -1)
    return np.ascontiguousarray(img[..., :3])


Frames = Iterator[tuple[str, "np.ndarray | Exception"]]


def _frames(input: Path, fps: float | None) -> tuple[str, Frames, int, float]:
    """(kind, iterator of (name, frame or the error reading it), count or -1, fps) of an input."""
    if input.is_dir():
        files = sorted(p for p in input.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{input}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")

        def images() -> Iterator[tuple[str, np.ndarray | Exception]]:
            for p in files:
                try:
                    yield p.name, _read_image(p)
                except ValueError as e:
                    yield p.name, e
        return "images", images(), len(files), float(fps or 30.0)
    if not input.is_file():
        raise FileNotFoundError(f"input not found: {input}")
    suffix = input.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        def one() -> Iterator[tuple[str, np.ndarray | Exception]]:
            try:
                yield input.name, _read_image(input)
            except ValueError as e:
                yield input.name, e
        return "images", one(), 1, float(fps or 30.0)
    if suffix in VIDEO_SUFFIXES:
        from ..io.video import read_video

        try:
            frames, meta = read_video(input)
        except (OSError, RuntimeError, StopIteration) as e:
            msg = str(e).splitlines()[0] if str(e) else repr(e)
            raise ValueError(f"{input}: cannot read the video ({msg})") from None
        rate = float(fps or meta.get("fps") or 30.0)
        total = int(round(float(meta.get("duration") or 0) * rate)) or -1

        def video() -> Iterator[tuple[str, np.ndarray | Exception]]:
            for i, f in enumerate(frames):
                yield f"{input.name} frame {i}", f
        return "video", video(), total, rate
    raise ValueError(f"input must be an image ({', '.join(IMAGE_SUFFIXES)}), a video "
                     f"({', '.join(VIDEO_SUFFIXES)}) or a folder of images, got {input}")


def _crop_camera(rig: Any, size: int, crop_scale: float):
    """A camera that frames the rig's neutral face as the estimator's crops do (the box of its 68
    landmarks, ``crop_scale`` times its larger side), for refinement on crops of real photographs."""
    import math

    from ..render import Camera
    from ..synth import landmark_indices

    p = rig.neutral[landmark_indices(rig)].double()
    lo, hi = p.min(0).values, p.max(0).values
    c = 0.5 * (lo + hi)
    half = 0.5 * crop_scale * float(max(hi[0] - lo[0], hi[1] - lo[1]))
    dist = half / math.tan(math.radians(10.0))
    eye = (float(c[0]), float(c[1]), float(hi[2]) + dist)
    return Camera.perspective(eye=eye, target=(float(c[0]), float(c[1]), float(hi[2])), resolution=size,
                              fov_y=20.0, near=0.5 * dist, far=2.0 * dist)


class _Estimate:
    """Boxes (detector on images; on videos every ``detect_every`` frames, held between), crops,
    the network, and optional refinement, batch by batch."""

    def __init__(self, model: Any, kind: str, cropped: bool, refine: bool, detect_every: int, rig: str):
        self.model, self.kind, self.cropped, self.detect_every = model, kind, cropped, detect_every
        self.size, self.crop_scale = model.config.image_size, model.config.crop_scale
        self.detector = None
        if not cropped:
            from .predict import FaceDetector

            self.detector = FaceDetector()
        self.box: np.ndarray | None = None
        self.seen = 0
        self.refine = None
        if refine:
            from ..synth import resolve_rig
            from .refinement import refine as refine_fn

            self.refine, self.rig = refine_fn, resolve_rig(rig)
            self.camera = _crop_camera(self.rig, self.size, self.crop_scale)

    def boxes(self, frames: list[np.ndarray], names: list[str]) -> list[np.ndarray | Exception | None]:
        """A box per frame (None: the whole frame), or the NoFaceError saying why not."""
        from .predict import NoFaceError

        out: list[np.ndarray | Exception | None] = []
        for f, name in zip(frames, names):
            i = self.seen
            self.seen += 1
            if self.detector is None:
                out.append(None)
                continue
            if self.kind == "video" and self.box is not None and i % self.detect_every:
                out.append(self.box)  # track: hold the last keyframe's box
                continue
            box = self.detector(f)
            if box is not None:
                self.box = box
            elif self.kind == "video" and self.box is not None:
                box = self.box  # the detector missed one keyframe: keep the last face
            out.append(box if box is not None else NoFaceError(f"{name}: no face found", name=name))
        return out

    def __call__(self, frames: list[np.ndarray], boxes: list[np.ndarray | None]) -> np.ndarray:
        import torch

        from .predict import crop_faces, to_image_list

        imgs = to_image_list(frames)
        crops = torch.stack([crop_faces([im], None if b is None else np.asarray(b)[None], self.size,
                                        self.crop_scale)[0] for im, b in zip(imgs, boxes)])
        model = self.model.eval()
        with torch.no_grad():
            mean, log_std = model(model.normalize(crops))
        if self.refine is None:
            return mean.numpy()
        target = (crops * 255.0).round().to(torch.uint8)
        res = self.refine(target, mean, self.rig, camera=self.camera, prior=(mean, log_std))
        return res.params.detach().cpu().numpy()


def _side_by_side(frame: np.ndarray, params: np.ndarray | None, renderer: Any, size: int) -> np.ndarray:
    """The input letterboxed into a ``size`` square | the re-render of its estimate (black if none)."""
    from .predict import crop_faces, to_image_list

    left = (crop_faces(to_image_list([frame]), None, size)[0].numpy() * 255.0).round().astype(np.uint8)
    right = renderer.render(params[None])[0] if params is not None else np.zeros_like(left)
    return np.concatenate([left, right], axis=1)


def estimate_main(
    input: Annotated[Path, typer.Argument(help="an image, a folder of images or a video")],
    out_csv: Annotated[Path, typer.Option("-o", "--out", help="output Live Link Face CSV")],
    model: Annotated[Path, typer.Option(help="estimator checkpoint (.safetensors; default: the shipped one)")]
    = None,
    refine: Annotated[bool, typer.Option("--refine/--no-refine", help="refine each estimate by "
                                         "analysis-by-synthesis (slower)")] = False,
    render: Annotated[Path, typer.Option(help="also write a side-by-side MP4: input | re-rendered estimate")]
    = None,
    on_error: Annotated[str, typer.Option("--on-error", help="a bad file or a frame with no face: skip "
                                          "(report it and go on) or fail")] = "skip",
    cropped: Annotated[bool, typer.Option("--cropped/--detect", help="the inputs are face crops (no "
                                          "detection)")] = False,
    fps: Annotated[float, typer.Option(help="frame rate of the CSV for image input (default 30) or to "
                                       "override a video's")] = None,
    batch: Annotated[int, typer.Option(help="images per network call")] = 64,
    detect_every: Annotated[int, typer.Option("--detect-every", help="videos: run the face detector every N "
                                              "frames, hold the box between")] = 5,
    rig: Annotated[str, typer.Option(help="rig of --refine and --render")] = "default",
    size: Annotated[int, typer.Option(help="side of each half of the --render video, pixels")] = 320,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
) -> dict[str, Any]:
    """Estimate the 61 ARKit parameters of every face in INPUT (an image, a folder of images or a
    video) and write them as a Live Link Face CSV (timecodes from the video's frame rate); bad files and
    frames without a face are reported by name and skipped (video frames become tracking-lost rows) or,
    with --on-error fail, stop the run. Returns ``{"frames", "skipped", "files"}``."""
    from ..cli_support import atomic_file, output_file, progress_bar, user_errors

    with user_errors():
        input, out_csv = Path(input), Path(out_csv)
        if on_error not in ON_ERROR:
            raise ValueError(f"--on-error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        for name, v, lo in (("--batch", batch, 1), ("--detect-every", detect_every, 1), ("--size", size, 16)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if fps is not None and not (np.isfinite(fps) and 0 < fps <= 1000):
            raise ValueError(f"--fps must be in (0, 1000], got {fps}")
        output_file(out_csv, ".csv")
        if render is not None:
            render = Path(render)
            output_file(render, ".mp4")
            from ..cli_support import need

            need("imageio_ffmpeg")
        kind, frames, total, rate = _frames(input, fps)
        net = _load_model(model)
        estimator = _Estimate(net, kind, cropped, refine, detect_every, rig)
        renderer = None
        if render is not None:
            from ..animate.frames import FrameRenderer

            renderer = FrameRenderer(rig, size=(size, size))
        rows: list[np.ndarray] = []
        tracked: list[bool] = []
        skipped: list[str] = []
        done = [0]  # inputs read so far
        t = time.perf_counter()

        def report(name: str, err: Exception) -> None:
            if on_error == "fail":
                raise ValueError(str(err) if name in str(err) else f"{name}: {err}")
            skipped.append(name)
            typer.echo(f"skipped {name}: {str(err).removeprefix(name + ': ')}", err=True)

        def composites(bar: Any) -> Iterator[np.ndarray]:
            """Runs the estimate batch by batch; yields the side-by-side frames as it goes."""
            buf: list[tuple[str, np.ndarray]] = []

            def flush() -> Iterator[np.ndarray]:
                names, imgs = [n for n, _ in buf], [f for _, f in buf]
                boxes = estimator.boxes(imgs, names)
                good = [i for i, b in enumerate(boxes) if not isinstance(b, Exception)]
                params = estimator([imgs[i] for i in good], [boxes[i] for i in good]) if good else None
                est: dict[int, np.ndarray] = {i: params[k] for k, i in enumerate(good)}
                for i, b in enumerate(boxes):
                    if isinstance(b, Exception):
                        report(names[i], b)
                        if kind != "video":
                            continue  # a still without a face has no row; a video frame keeps its time
                    rows.append(est.get(i, np.zeros(61, np.float32)))
                    tracked.append(i in est)
                    if renderer is not None:
                        yield _side_by_side(imgs[i], est.get(i), renderer, size)
                buf.clear()
                bar("estimate", done[0], max(total, done[0]))

            for name, frame in frames:
                done[0] += 1
                if isinstance(frame, Exception):
                    report(name, frame)
                    continue
                buf.append((name, frame))
                if len(buf) >= batch:
                    yield from flush()
            if buf:
                yield from flush()

        files: dict[str, Path] = {}
        with progress_bar(progress) as bar:
            if renderer is not None:
                from ..io.video import write_video

                with atomic_file(render) as tmp_video:
                    try:
                        write_video(tmp_video, composites(bar), rate)
                    except ValueError as e:  # "no frames to write": reported below as no frames estimated
                        if rows or "no frames" not in str(e):
                            raise
                    if not any(tracked):
                        raise ValueError(f"{input}: no frames estimated ({len(skipped)} skipped)")
                files["video"] = render
            else:
                for _ in composites(bar):
                    pass
            if not any(tracked):
                raise ValueError(f"{input}: no frames estimated ({len(skipped)} skipped)")
            from ..io import Track, write_csv

            track = Track(times=np.arange(len(rows)) / rate, params=np.stack(rows), fps=rate,
                          tracked=np.array(tracked, dtype=bool))
            with atomic_file(out_csv) as tmp:
                write_csv(tmp, track)
            files["csv"] = out_csv
    elapsed = time.perf_counter() - t
    typer.echo(f"{out_csv}: {len(rows)} frames ({sum(tracked)} with a face), {len(skipped)} skipped, "
               f"{len(rows) / max(elapsed, 1e-9):.1f} frames/s")
    if "video" in files:
        typer.echo(f"{files['video']}: side-by-side video")
    return {"frames": len(rows), "tracked": int(sum(tracked)), "skipped": skipped, "files": files}


# ---------------------------------------------------------------------------------------------------
# facecore estimator train
# ---------------------------------------------------------------------------------------------------
def train_main(
    out: Annotated[Path, typer.Option("-o", "--out", help="run folder (checkpoint, metrics.jsonl, model)")],
    config: Annotated[Path, typer.Option(help="a TrainConfig .json/.yaml; options given here override it")]
    = None,
    labels: Annotated[str, typer.Option(help="pseudo (simulated capture labels) or truth")] = None,
    data: Annotated[Path, typer.Option(help="a shard folder or manifest.json (default: render on the fly)")]
    = None,
    rig: Annotated[str, typer.Option(help="on-the-fly data: built-in rig (ict, stylized) or rig file")]
    = None,
    domain: Annotated[str, typer.Option(help="on-the-fly data: scene preset (clean, studio, wild, toon)")]
    = None,
    resolution: Annotated[int, typer.Option(help="on-the-fly data: rendered image side")] = None,
    data_seed: Annotated[int, typer.Option("--data-seed", help="on-the-fly data: dataset seed")] = None,
    n: Annotated[int, typer.Option("-n", help="on-the-fly data: number of distinct samples (default: "
                                   "endless fresh samples)")] = None,
    image_size: Annotated[int, typer.Option("--image-size", help="network input side (multiple of 16)")]
    = None,
    steps: Annotated[int, typer.Option(help="optimisation steps")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="samples per step and process")] = None,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW)")] = None,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps", help="linear warmup steps")] = None,
    loss: Annotated[str, typer.Option(help="l1+mse (default), nll or nll+l1 (facecore.estimator.training)")]
    = None,
    seed: Annotated[int, typer.Option(help="seed of init and augmentation")] = None,
    deterministic: Annotated[bool, typer.Option("--deterministic/--fast", help="deterministic algorithms "
                                                "(exact resume on CPU)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1")] = None,
    amp: Annotated[str, typer.Option(help="auto (bf16 autocast on CUDA), bf16 (also on CPU) or off")] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="steps between checkpoints")]
    = None,
    stop_after: Annotated[int, typer.Option("--stop-after", help="end this run after this step (resumable)")]
    = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="continue OUT's checkpoint if any")]
    = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
) -> dict[str, Any]:
    """Train the face estimator on synthetic faces with pseudo or true labels (see
    facecore.estimator.training). Rerun the same command to resume; run it under torchrun for DDP."""
    from ..cli_support import progress_bar, user_errors
    from .training import TrainConfig, train

    with user_errors():
        given = {"labels": labels, "data": None if data is None else str(data), "rig": rig, "domain": domain,
                 "resolution": resolution, "data_seed": data_seed, "n": n, "steps": steps,
                 "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "loss": loss, "seed": seed,
                 "deterministic": deterministic, "device": device, "amp": amp,
                 "checkpoint_every": checkpoint_every, "stop_after": stop_after, "resume": resume}
        given = {k: v for k, v in given.items() if v is not None}
        given["out"] = str(out)
        cfg = TrainConfig.from_file(config, **given) if config is not None else TrainConfig.from_dict(given)
        if image_size is not None:
            cfg.model = {**cfg.model, "image_size": image_size}
            cfg = TrainConfig.from_dict(cfg.to_dict())  # re-checked
        t = time.perf_counter()
        with progress_bar(progress) as bar:
            result = train(cfg, progress=bar)
    if result["rank"] == 0:
        m = result["metrics"]
        typer.echo(f"{out}: step {result['step']}/{cfg.steps}, loss {m.get('loss', float('nan')):.4f}, "
                   f"{time.perf_counter() - t:.1f} s")
        for name, path in result["files"].items():
            typer.echo(f"  {name:<10} {path}")
    return result


# ---------------------------------------------------------------------------------------------------
# facecore estimator eval
# ---------------------------------------------------------------------------------------------------
def eval_main(
    model: Annotated[Path, typer.Option(help="estimator checkpoint (default: the shipped one)")] = None,
    data: Annotated[Path, typer.Option(help="a shard folder or manifest.json (default: render on the fly)")]
    = None,
    rig: Annotated[str, typer.Option(help="on-the-fly data: built-in rig or rig file")] = "ict",
    domain: Annotated[str, typer.Option(help="on-the-fly data: scene preset")] = "clean",
    resolution: Annotated[int, typer.Option(help="on-the-fly data: image side")] = 128,
    seed: Annotated[int, typer.Option(help="on-the-fly data: dataset seed (use one training did not)")] = 1,
    n: Annotated[int, typer.Option("-n", help="on-the-fly data: number of samples")] = 256,
    out: Annotated[Path, typer.Option("-o", "--out", help="write the results: .md (table) or .json")] = None,
    name: Annotated[str, typer.Option(help="the row's name in the table")] = "estimator",
    batch: Annotated[int, typer.Option(help="images per network call")] = 64,
) -> dict[str, Any]:
    """Evaluate an estimator against synthetic truth (MAE per region and channel, rare-action AUC,
    asymmetry, calibration, vertex and landmark error) and print the Markdown table. The crops come
    from the samples' landmark boxes, as in training."""
    from ..cli_support import atomic_file, output_file, user_errors
    from .metrics import evaluate, format_table
    from .predict import boxes_from_landmarks

    with user_errors():
        if out is not None:
            out = Path(out)
            if out.suffix.lower() not in (".md", ".json"):
                raise ValueError(f"--out must be a .md or .json file, got {out}")
            output_file(out, out.suffix.lower())
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"--batch must be an integer >= 1, got {batch!r}")
        from .. import synth

        source: Any = str(data) if data is not None else {"n": n, "rig": rig, "domain": domain,
                                                            "resolution": resolution, "seed": seed}
        dataset = synth.Dataset(source, batch=batch)
        net = _load_model(model)
        samples, preds, buf = [], [], []

        def flush() -> None:
            lm = np.stack([np.asarray(s["landmarks2d"], np.float32) for s in buf])
            mask = np.stack([np.asarray(s["mask"]) for s in buf]) if all("mask" in s for s in buf) else None
            import torch

            boxes = boxes_from_landmarks(torch.as_tensor(lm),
                                         mask=None if mask is None else torch.as_tensor(mask))
            preds.append(net.predict([s["image"] for s in buf], boxes=boxes, batch_size=batch))
            samples.extend(buf)
            buf.clear()

        for s in dataset:
            buf.append(s)
            if len(buf) >= batch:
                flush()
        if buf:
            flush()
        if not samples:
            raise ValueError(f"{source}: the dataset has no samples")
        result = evaluate(np.concatenate(preds), samples, batch=batch)
        table = format_table({name: result})
        if out is not None:
            with atomic_file(out) as tmp:
                text = table + "\n" if out.suffix.lower() == ".md" else json.dumps(
                    {name: result}, indent=2, default=float) + "\n"
                tmp.write_text(text, encoding="utf-8")
    typer.echo(table)
    return result
