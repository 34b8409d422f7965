"""The ``facecore`` command line.

``facecore info`` prints what this build contains (``facecore.build_info()``). Pipelines add their
commands here (one function each, calling into the pipeline module; no logic of their own):
``facecore demo``, ``facecore animate``, ``facecore render``, ``facecore convert``, ``facecore rig-sheet``,
``facecore synth``, ``facecore estimate``, ``facecore estimator train|eval``.

Bad input (a missing or malformed file, an unwritable output, a rig that does not load, a missing
optional dependency) ends with a one-line ``error: ...`` on stderr and exit status 1, found before
any slow work where possible. Outputs are written to temporary files and moved into place only
when complete, so a failed or interrupted run (an error, Ctrl-C, SIGTERM) leaves nothing behind
that looks finished, and no temporary files.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_support import (
    atomic_file,
    echo_warnings,
    exit_on_sigterm,
    need,
    output_file,
    progress_bar,
    user_errors,
)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="facecore: fast differentiable kernels and pipelines for ARKit facial animation.")

DEMO_OUT = Path("facecore-demo")

_RIG_HELP = "a built-in rig (ict, stylized; 'default' = ict) or a rig file/folder"



@app.callback()
def _root() -> None:
    """facecore: fast differentiable kernels and pipelines for ARKit facial animation."""


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """Print the build: version, CUDA kernels and architectures, Triton, CPU threads, compiler."""
    import facecore

    build = facecore.build_info()
    if as_json:
        typer.echo(json.dumps(build, indent=2))
        return
    width = max(map(len, build))
    for key, value in build.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        typer.echo(f"{key:<{width}}  {value}")
    if not build["cuda"]:
        typer.echo("note: this build has NO CUDA kernels (built without nvcc or with FACECORE_CUDA=OFF); "
                   "CUDA tensors use the Triton kernels where they exist, else the plain-torch references. "
                   "Rebuild with nvcc on PATH for them.", err=True)


# --- helpers ------------------------------------------------------------------------------------
def _fps(fps: float | None) -> float | None:
    from .animate.script import MAX_FPS  # the same bound as a script's fps

    if fps is not None and not 0 < fps <= MAX_FPS:  # NaN fails too
        raise ValueError(f"--fps must be in (0, {MAX_FPS:g}], got {fps}")
    return fps


def _size(text: str) -> tuple[int, int]:
    """``"320"`` or ``"640x360"`` -> (width, height)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise ValueError(f"--resolution must be N or WxH (e.g. 320 or 640x360), got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not all(16 <= p <= 4096 for p in parts):
        raise ValueError(f"--resolution must be N or WxH with sides in 16..4096, got {text!r}")
    return parts[0], parts[1]


def _frame_range(text: str | None) -> tuple[int, int | None]:
    """``--frames START:END`` (0-based, END excluded, either side may be left out) -> (start, end
    or None), checked before any reading."""
    if text is None:
        return 0, None
    start, colon, end = text.partition(":")
    try:
        a = int(start) if start.strip() else 0
        b = int(end) if end.strip() else None
    except ValueError:
        a, b = -1, None
    if not colon or a < 0 or (b is not None and b < 0):
        raise ValueError(f"--frames must be START:END (0-based, END excluded; e.g. 0:30 or 100:), "
                         f"got {text!r}")
    return a, b


def _select_frames(track: Any, frames: tuple[int, int | None], text: str | None) -> Any:
    a, b = frames
    b = len(track) if b is None else min(b, len(track))
    if not a < b:
        raise ValueError(f"--frames {text} selects no frame of the {len(track)}")
    return track.select(slice(a, b))


def _lost(lost: str | None, *, renderable: bool = False) -> str | None:
    from .io import LOST_POLICIES

    if lost is None:
        return None
    if lost not in LOST_POLICIES:
        raise ValueError(f"--lost must be one of {', '.join(LOST_POLICIES)}, got {lost!r}")
    if renderable and lost == "nan":
        raise ValueError("--lost nan leaves NaN parameters, which cannot be rendered; pick --lost hold or "
                         "--lost interpolate")
    return lost


def _report(files: dict[str, Path], timings: dict[str, float], extra: str = "") -> None:
    typer.echo(f"wrote {len(files)} files{extra}:")
    for _, path in sorted(files.items()):
        typer.echo(f"  {path}  ({path.stat().st_size / 1024:.0f} KiB)")
    typer.echo("stage timings:")
    for stage, sec in timings.items():
        typer.echo(f"  {stage:<24} {sec:6.2f} s")


# --- pipelines ----------------------------------------------------------------------------------
@app.command()
def demo(
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")] = DEMO_OUT,
    fps: float = typer.Option(None, help="frame rate (default: the script's, 24)"),
    seed: int = typer.Option(0, help="seed of the secondary motion (blinks, saccades, sway)"),
    resolution: str = typer.Option("320", help="video size: N or WxH"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Animate the built-in multi-keyframe script on the default rig and write demo.mp4, demo.csv,
    demo.glb, keyframes.jsonl and keyframes.png into OUT (default facecore-demo/)."""
    from .animate.demo import check_writable, run_demo

    with user_errors():
        size = _size(resolution)
        fps = _fps(fps)
        check_writable(out)
        need("imageio", "imageio_ffmpeg")
        with progress_bar(progress) as bar:
            result = run_demo(out, fps=fps, seed=seed, size=size, progress=bar)
    _report(result["files"], result["timings"],
            f" ({result['frames']} frames, {result['duration']:.1f} s of animation)")


@app.command()
def animate(
    request: Annotated[Path, typer.Argument(
        help="KeyframeFace requests or responses (.jsonl) or a script (.yaml/.json)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")],
    generator: str = typer.Option("semantic", help="keyframe generator: semantic or llm"),
    model: Annotated[Path | None, typer.Option(help="local Hugging Face causal LM directory (llm)")] = None,
    adapter: Annotated[Path | None, typer.Option(help="optional LoRA adapter directory (llm)")] = None,
    fps: float = typer.Option(None, help="frame rate (default: the script's, else 30)"),
    rig: str = typer.Option("default", help=_RIG_HELP),
    seed: int = typer.Option(0, help="seed of the secondary motion"),
    resolution: str = typer.Option("320", help="video size: N or WxH"),
    video: bool = typer.Option(True, "--video/--no-video", help="render the MP4 (slowest step)"),
    secondary: bool = typer.Option(True, "--secondary/--no-secondary", help="blinks, saccades, sway"),
    symmetric: bool = typer.Option(False, help="make the animation left-right symmetric"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Animate a script: keyframes -> smooth per-frame animation -> CSV, JSONL, GLB, MP4, PNG.

    KeyframeFace responses (e.g. example_result.jsonl) already hold the keyframes: they are
    animated as they are (no generator runs), one second apart."""
    from .animate.demo import check_writable, export_animation
    from .animate.pipeline import animate_full, make_generator
    from .animate.script import load_keyframes
    from .rig import load_rig

    with user_errors():
        if generator not in ("semantic", "llm"):
            raise ValueError(f"--generator must be 'semantic' or 'llm', got {generator!r}")
        if generator != "llm" and (model is not None or adapter is not None):
            raise ValueError("--model/--adapter only apply to --generator llm")
        size = _size(resolution)
        fps = _fps(fps)
        check_writable(out)
        need("imageio", *(("yaml",) if request.suffix.lower() in (".yaml", ".yml") else ()),
              *(("imageio_ffmpeg",) if video else ()))
        script, keys = load_keyframes(request)  # also checks its timing and sizes
        if keys is not None and generator != "semantic":
            raise ValueError(f"{request} holds KeyframeFace responses: their keyframes are used as they are, "
                             "so --generator does not apply")
        the_rig = load_rig(rig)  # fail before the (possibly slow) generator runs
        timings: dict[str, float] = {}
        t = time.perf_counter()
        gen = None if keys is not None else make_generator(
            generator, model=str(model) if model else None, adapter=str(adapter) if adapter else None)
        anim = animate_full(script, generator=gen, fps=fps, seed=seed, secondary=secondary,
                            symmetric=symmetric, keyframes=keys)
        timings["keyframes+interpolation"] = time.perf_counter() - t
        with progress_bar(progress) as bar:
            files = export_animation(anim, out, stem=script.name or "animation", rig=the_rig, size=size,
                                     video=video, progress=bar, timings=timings)
    _report(files, timings, f" ({len(anim.track)} frames)")


@app.command()
def render(
    anim: Annotated[Path, typer.Argument(help="Live Link Face CSV animation")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output MP4 file")],
    rig: str = typer.Option("default", help=_RIG_HELP),
    resolution: str = typer.Option("320", help="video size: N or WxH"),
    fps: float = typer.Option(None, help="frame rate (default: the CSV's)"),
    lost: str = typer.Option(None, help="tracking-lost rows (BlendShapeCount 0): hold (default: repeat the "
                                         "last tracked frame) or interpolate"),
    frames: str = typer.Option(None, help="render only frames START:END (0-based, END excluded)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Render a Live Link Face CSV animation to MP4 with the facecore renderer."""
    import numpy as np

    from .animate.frames import FrameRenderer
    from .io import read_csv
    from .io.video import write_video

    with user_errors():
        size = _size(resolution)
        fps = _fps(fps)
        lost = _lost(lost, renderable=True)
        selected = _frame_range(frames)
        output_file(out, ".mp4")
        need("imageio_ffmpeg")
        if not anim.is_file():
            raise FileNotFoundError(f"animation not found: {anim}")
        with echo_warnings():  # "tracking lost in 12 of 4030 frames ...; lost='hold' held ..."
            track = read_csv(anim, lost=lost or "hold")
        if len(track) == 0:
            raise ValueError(f"{anim}: no frames")
        track = _select_frames(track, selected, frames)
        rate = float(fps) if fps is not None else track.fps
        renderer = FrameRenderer(rig, size=size)
        t = time.perf_counter()
        with atomic_file(out) as tmp, progress_bar(progress) as bar:
            done = [0]

            def step(k: int) -> None:
                done[0] += k
                bar("render", done[0], len(track))

            n = write_video(tmp, renderer.frames(np.asarray(track.params), step), rate)
    _report({out.name: out}, {"render+encode": time.perf_counter() - t}, f" ({n} frames)")


@app.command("convert")
def convert_cmd(
    src: Annotated[Path, typer.Argument(help="input: .csv (Live Link Face), .jsonl (KeyframeFace responses), "
                                             ".json (SemanticFace answer) or .glb/.gltf")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output file: .csv, .jsonl, .json or .glb")],
    src_format: str = typer.Option(None, "--from", help="input format when its suffix does not say: "
                                                        "csv, keyframeface, semanticface or glb"),
    dst_format: str = typer.Option(None, "--to", help="output format when its suffix does not say"),
    fps: float = typer.Option(None, help="keyframes per second of .jsonl/.json input (default 1); for "
                                         ".csv/.glb input, resample to this rate"),
    lost: str = typer.Option(None, help="CSV input, tracking-lost rows: hold or interpolate (the gaps are "
                                        "filled in the output) or nan; default: hold, and a CSV output "
                                        "keeps the lost rows"),
    rig: str = typer.Option(None, help="GLB output: " + _RIG_HELP),
    frame: int = typer.Option(None, help="take only this frame (0-based), e.g. for a SemanticFace answer"),
    strict: bool = typer.Option(True, "--strict/--lenient", help="lenient: skip malformed rows, fill "
                                                                 "absent channels with 0 (with a warning)"),
) -> None:
    """Convert an animation between Live Link Face CSV, KeyframeFace JSONL responses, SemanticFace
    JSON and GLB (formats from the suffixes)."""
    from .animate.demo import check_writable
    from .io.convert import convert, format_of

    with user_errors():
        fps = _fps(fps)
        lost = _lost(lost)
        format_of(src, src_format)  # a bad format or suffix fails before any reading
        dst_fmt = format_of(out, dst_format, what="output")
        if out.is_dir():
            raise IsADirectoryError(f"output {out} is a folder; give a file name")
        check_writable(out.parent if str(out.parent) else Path("."))
        if not src.is_file():
            raise FileNotFoundError(f"input not found: {src}")
        t = time.perf_counter()
        with echo_warnings(), atomic_file(out) as tmp:
            track = convert(src, tmp, src_format=src_format, dst_format=dst_fmt, fps=fps, lost=lost, rig=rig,
                            frame=frame, strict=strict, name=out.stem)
    _report({out.name: out}, {"convert": time.perf_counter() - t}, f" ({len(track)} frames, {dst_fmt})")


@app.command("rig-sheet")
def rig_sheet(
    out: Annotated[Path, typer.Option("-o", "--out", help="output PNG")] = Path("rig-sheet.png"),
    rig: Annotated[str, typer.Option(help=_RIG_HELP)] = "default",
    size: int = typer.Option(256, help="pixels per tile, 16..1024"),
) -> None:
    """Render the neutral face and each of the 52 shapes at weight 1 into one PNG, to check a rig by eye."""
    from .rig.sheet import main as write_sheet

    with user_errors():
        if not 16 <= size <= 1024:
            raise ValueError(f"--size must be in 16..1024 pixels per tile, got {size}")
        output_file(out, ".png")
        need("imageio")
        from .rig import load_rig

        the_rig = load_rig(rig)
        t = time.perf_counter()
        with atomic_file(out) as tmp:
            write_sheet(tmp, the_rig, size=size)
    _report({out.name: out}, {"render": time.perf_counter() - t}, "")


# Pipeline commands live with their pipelines; registered here so `facecore --help` lists them all.
from .estimator.cli import estimate_main, eval_main, train_main  # noqa: E402
from .synth.cli import synth_main  # noqa: E402

app.command("synth")(synth_main)

app.command("estimate")(estimate_main)
estimator_app = typer.Typer(no_args_is_help=True, help="Train and evaluate the face estimator.")
estimator_app.command("train")(train_main)
estimator_app.command("eval")(eval_main)
app.add_typer(estimator_app, name="estimator")

from .label.cli import app as label_app  # noqa: E402
from .prefer.cli import app as prefer_app  # noqa: E402
from .semantic.cli import app as semantic_app  # noqa: E402
from .video.cli import app as video_app  # noqa: E402

app.add_typer(label_app, name="label")
app.add_typer(prefer_app, name="prefer")
app.add_typer(semantic_app, name="semantic")
app.add_typer(video_app, name="video")


def main() -> None:
    exit_on_sigterm()
    app()


if __name__ == "__main__":
    main()
    sys.exit(0)
