"""MP4 video: write ``[H, W, 3]`` frames with H.264 (imageio + imageio-ffmpeg), read them back.

imageio-ffmpeg ships its own ffmpeg binary inside the wheel, so nothing else is needed
(``pip install facecore[animate]``). What :func:`write_video` writes plays in browsers and streams:

- H.264 (libx264), yuv420p, the index (``moov`` box) at the front of the file (``+faststart``) so
  playback starts before the whole file has arrived;
- colour: uint8 frames are taken as sRGB-encoded (what :func:`facecore.render.color.to_uint8` and
  ``RenderResult.to_uint8`` give); float frames are linear light in [0, 1] and are sRGB-encoded here.
  RGB is converted to YCbCr with the BT.709 matrix in limited (TV) range, and the stream is tagged so
  (``colorspace``/``color_primaries`` bt709, ``color_trc`` iec61966-2-1, i.e. sRGB, the curve the
  values really carry; ``color_range`` tv), so players do not guess BT.601;
- size: frames keep their exact size (no rescaling to 16-pixel macro blocks). yuv420p needs even
  sides, so an odd width or height is padded by repeating the last column / row (one pixel, no
  visible border) and the real size is recorded in the file's metadata comment
  (``facecore size=WxH``); the decoded video is then one pixel wider / taller.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .._atomic import interrupts_deferred


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
            from ..render.color import to_uint8

            f = to_uint8(f[..., :3])  # floats are linear light in [0, 1]: encode to sRGB
        else:
            raise TypeError(f"frame {i} must be uint8 (sRGB) or float (linear, in [0, 1]), got {f.dtype}")
    f = f[..., :3]
    if size is not None and f.shape[:2] != size:
        raise ValueError(f"frame {i} has size {f.shape[:2]}, the first frame had {size}")
    return f


# BT.709 YCbCr in TV range with the sRGB transfer the pixel values carry. swscale converts RGB with
# BT.601 unless told (so the scale filter names the matrix), and ffmpeg's encoder takes the colour
# description from the frames (so setparams puts it there; the -color_* flags cover older ffmpegs).
COLOR_FILTER = ("scale=out_color_matrix=bt709:out_range=tv,"
                "setparams=colorspace=bt709:color_primaries=bt709:color_trc=iec61966-2-1:range=tv")
COLOR_TAGS = ("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "iec61966-2-1",
              "-color_range", "tv")


def _output_params(quality: int, w: int, h: int) -> list[str]:
    return ["-crf", str(quality), "-vf", COLOR_FILTER, *COLOR_TAGS,
            "-movflags", "+faststart",  # moov before mdat: playback starts before the whole file is there
            "-metadata", f"comment=facecore size={w}x{h}"]


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, *, quality: int = 20,
                codec: str = "libx264") -> int:
    """Write frames (uint8 sRGB or float linear, ``[H, W, 3]`` or RGBA whose alpha is dropped) to an
    H.264 MP4 at ``fps`` (see the module docstring for the colour tags, faststart and odd sizes);
    returns the number of frames written.

    ``quality``: x264 CRF (lower is better, 18–28 sensible). Raises ValueError on an empty
    sequence, mismatched frame sizes or a bad fps; the partial file is removed on error.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 0 <= quality <= 51:
        raise ValueError(f"quality must be an x264 CRF, an integer in 0..51, got {quality!r}")
    ff = _ffmpeg()
    path = Path(path)
    writer = proc = None
    n = 0
    size = None
    try:
        for i, frame in enumerate(frames):
            f = _check_frame(frame, i, size)
            if writer is None:
                size = f.shape[:2]
                h, w = size
                with interrupts_deferred():  # an ffmpeg we do not know of would write path after we remove it
                    writer = ff.write_frames(
                        str(path), (w + w % 2, h + h % 2), fps=float(fps), codec=codec, pix_fmt_in="rgb24",
                        pix_fmt_out="yuv420p", output_params=_output_params(int(quality), w, h),
                        macro_block_size=1, quality=None, ffmpeg_log_level="error")
                    writer.send(None)  # start ffmpeg
                    proc = _ffmpeg_process(writer)
            if f.shape[0] % 2 or f.shape[1] % 2:
                f = np.pad(f, ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(f))
            n += 1
        if writer is None:
            raise ValueError("no frames to write")
        writer.close()
    except BaseException:
        try:
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
        finally:  # even if close() is interrupted (a SIGTERM re-raised while it waits for ffmpeg)
            if proc is not None and proc.poll() is None:
                # imageio-ffmpeg only signals ffmpeg on SystemExit/KeyboardInterrupt; wait until it is
                # gone, or its faststart pass could write the file again after it is removed below.
                proc.kill()
                proc.wait(timeout=30)
            path.unlink(missing_ok=True)
        raise
    return n


def _ffmpeg_process(writer):
    """The ffmpeg ``Popen`` inside an imageio-ffmpeg ``write_frames`` generator (None if not found)."""
    frame = getattr(writer, "gi_frame", None)
    proc = frame.f_locals.get("p") if frame is not None else None
    return proc if hasattr(proc, "poll") and hasattr(proc, "kill") else None


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
