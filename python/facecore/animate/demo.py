"""``facecore demo``: the built-in multi-keyframe script, animated and exported end to end.

:func:`run_demo` (and :func:`export_animation`, shared with ``facecore animate``) writes
``demo.mp4``, ``demo.csv`` (Live Link Face), ``demo.glb`` (rig + morph-weight animation),
``keyframes.jsonl`` (KeyframeFace responses) and ``keyframes.png`` (contact sheet). Everything is
written into a temporary folder beside the output folder and moved in only when complete, so a
failure never leaves files that look finished.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEMO_SCRIPT: dict[str, Any] = {
    "name": "demo",
    "background": "A nervous student opens the letter that decides whether they got into their dream "
                  "school.",
    "emotion": "Nervous anticipation that turns into surprise and then joy.",
    "fps": 24,
    "lead_in": 0.4,
    "keyframes": [
        {"text": "A calm, neutral face looking straight ahead.", "duration": 1.3, "hold": 0.3},
        {"text": "The gaze lowers to the letter, the inner brows lift slightly and the lips press "
                 "together with visible tension.", "duration": 1.8, "hold": 0.6},
        {"text": "The eyes widen, the brows shoot up and the jaw drops open.", "duration": 1.5,
         "hold": 0.4},
        {"text": "A broad smile spreads across the face as the head tilts to the left.",
         "duration": 1.8, "hold": 0.6},
        {"text": "The smile softens into a small restrained smile and the gaze rises to meet the "
                 "viewer.", "duration": 1.6},
    ],
}

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _publish(tmp: Path, out_dir: Path) -> list[Path]:
    """Move the finished files from ``tmp`` into ``out_dir`` (each move is atomic)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(tmp.iterdir()):
        dest = out_dir / f.name
        os.replace(f, dest)
        written.append(dest)
    return written


def check_writable(out_dir: Path) -> None:
    """Raise a one-line error when ``out_dir`` cannot be created or written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output {out_dir} exists and is not a folder")
    parent = out_dir if out_dir.exists() else out_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"output folder {out_dir} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output folder {out_dir} is not writable")


def export_animation(anim: Any, out_dir: str | os.PathLike, *, stem: str = "demo", rig: Any = "default",
                     size: tuple[int, int] = (320, 320), video: bool = True, glb: bool = True,
                     progress: Progress | None = None, timings: dict[str, float] | None = None
                     ) -> dict[str, Path]:
    """Write an :class:`~facecore.animate.pipeline.Animation`'s files into ``out_dir``:
    ``{stem}.csv``, ``keyframes.jsonl``, ``{stem}.glb``, ``{stem}.mp4``, ``keyframes.png``."""
    from ..io import make_requests, write_csv, write_keyframeface
    from .frames import FrameRenderer, contact_sheet
    from .script import check_name

    out_dir = Path(out_dir)
    check_writable(out_dir)
    check_name(stem)  # a file stem: "../x" would write beside the temporary folder, not into it
    for name in (f"{stem}.csv", "keyframes.jsonl", f"{stem}.glb", f"{stem}.mp4", "keyframes.png"):
        if (out_dir / name).is_dir():  # found now, not when moving the finished files in
            raise IsADirectoryError(f"output {out_dir / name} is a folder")
    timings = {} if timings is None else timings
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        t = time.perf_counter()
        write_csv(tmp / f"{stem}.csv", anim.track)
        reqs = make_requests(anim.script.descriptions, anim.script.background, anim.script.emotion)
        write_keyframeface(tmp / "keyframes.jsonl",
                           [{r.target_key: k} for r, k in zip(reqs, anim.keyframes)])
        timings["csv+jsonl"] = time.perf_counter() - t

        t = time.perf_counter()
        renderer = FrameRenderer(rig, size=size)  # the contact sheet needs it even without video
        timings["rig"] = time.perf_counter() - t
        if glb:
            from ..io.gltf import write_glb

            t = time.perf_counter()
            write_glb(tmp / f"{stem}.glb", renderer.rig, anim.track, name=stem)
            timings["glb"] = time.perf_counter() - t

        t = time.perf_counter()
        tiles = renderer.render(anim.keyframes)
        labels = [f"{i + 1}. {txt}" for i, txt in enumerate(anim.script.descriptions)]
        import imageio.v2 as iio

        iio.imwrite(tmp / "keyframes.png", contact_sheet(tiles, labels))
        timings["keyframes.png"] = time.perf_counter() - t

        if video:
            from ..io.video import write_video

            t = time.perf_counter()
            n = len(anim.track)
            done = [0]

            def step(k: int) -> None:
                done[0] += k
                if progress is not None:
                    progress("render", done[0], n)

            write_video(tmp / f"{stem}.mp4", renderer.frames(anim.track.params, step), anim.track.fps)
            timings["video"] = time.perf_counter() - t
        written = _publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {p.name: p for p in written}


def run_demo(out_dir: str | os.PathLike = "facecore-demo", *, fps: float | None = None, seed: int = 0,
             size: tuple[int, int] = (320, 320), rig: Any = "default", progress: Progress | None = None
             ) -> dict[str, Any]:
    """Animate :data:`DEMO_SCRIPT` and write its files into ``out_dir``.

    Returns ``{"files": {name: Path}, "timings": {stage: seconds}, "frames": N, "duration": s,
    "renderer": "facecore"|"numpy"}``.
    """
    from .pipeline import animate_full

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    t = time.perf_counter()
    anim = animate_full(DEMO_SCRIPT, fps=fps, seed=seed)
    timings["keyframes+interpolation"] = time.perf_counter() - t
    if progress is not None:
        progress("animate", 1, 1)
    files = export_animation(anim, out_dir, stem="demo", rig=rig, size=size, progress=progress,
                             timings=timings)
    timings["total"] = time.perf_counter() - t0
    return {"files": files, "timings": timings, "frames": len(anim.track),
            "duration": anim.track.duration, "keyframes": np.asarray(anim.keyframes)}
