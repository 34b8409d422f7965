"""MP4 video: write ``[H, W, 3]`` uint8 frames with H.264 (imageio + imageio-ffmpeg), read them back.

imageio-ffmpeg ships its own ffmpeg binary inside the wheel, so nothing else is needed
(``pip install facecore[animate]``). Frames keep their exact size (no rescaling to 16-pixel
macro blocks); H.264 with yuv420p needs even sizes, so an odd width or height is padded by one
edge pixel and the real size recorded in the file's metadata comment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("writing MP4 needs imageio-ffmpeg: pip install 'facecore[animate]'") from e
    return imageio_ffmpeg


def _check_frame(frame: np.ndarray, i: int, size: tuple[int, int] | None) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[2] not in (3, 4):
        raise ValueError(f"frame {i} must be [H, W, 3] (or RGBA), got {list(f.shape)}")
    if f.dtype != np.uint8:
        if np.issubdtype(f.dtype, np.floating):
            f = (np.clip(f, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)  # floats are in [0, 1]
        else:
            raise TypeError(f"frame {i} must be uint8 or float in [0, 1], got {f.dtype}")
    f = f[..., :3]
    if size is not None and f.shape[:2] != size:
        raise ValueError(f"frame {i} has size {f.shape[:2]}, the first frame had {size}")
    return f


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, *, quality: int = 20,
                codec: str = "libx264") -> int:
    """Write frames to an MP4 at ``fps``; returns the number of frames written.

    ``quality``: x264 CRF (lower is better, 18–28 sensible). Raises ValueError on an empty
    sequence, mismatched frame sizes or a bad fps; the partial file is removed on error.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    ff = _ffmpeg()
    path = Path(path)
    writer = None
    n = 0
    size = None
    try:
        for i, frame in enumerate(frames):
            f = _check_frame(frame, i, size)
            if writer is None:
                size = f.shape[:2]
                h, w = size
                writer = ff.write_frames(
                    str(path), (w + w % 2, h + h % 2), fps=float(fps), codec=codec, pix_fmt_in="rgb24",
                    output_params=["-crf", str(int(quality)), "-metadata", f"comment=facecore size={w}x{h}"],
                    macro_block_size=1, quality=None, ffmpeg_log_level="error")
                writer.send(None)  # start ffmpeg
            if f.shape[0] % 2 or f.shape[1] % 2:
                f = np.pad(f, ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(f))
            n += 1
        if writer is None:
            raise ValueError("no frames to write")
        writer.close()
    except BaseException:
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        path.unlink(missing_ok=True)
        raise
    return n


def read_video(path: str | os.PathLike) -> tuple[Iterator[np.ndarray], dict]:
    """``(frames, meta)``: an iterator of ``[H, W, 3]`` uint8 frames and ffmpeg's metadata
    (``size`` as (width, height), ``fps``, ``duration``)."""
    ff = _ffmpeg()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    gen = ff.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]

    def frames() -> Iterator[np.ndarray]:
        for raw in gen:
            yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)

    return frames(), meta


def video_info(path: str | os.PathLike) -> dict:
    """``{"frames", "width", "height", "fps"}`` of a video (frames counted by decoding)."""
    frames, meta = read_video(path)
    n = sum(1 for _ in frames)
    w, h = meta["size"]
    return {"frames": n, "width": int(w), "height": int(h), "fps": float(meta.get("fps", 0.0))}
