"""write_video's MP4: box order (ftyp, then moov before mdat: faststart), H.264 yuv420p with BT.709 tags as
ffmpeg's own probe reports them (the imageio-ffmpeg binary, no system ffprobe), colours that survive the
RGB -> YCbCr -> RGB trip, odd sizes padded by edge replication, float frames sRGB-encoded."""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from facecore.io.video import read_video, write_video
from facecore.render.color import to_uint8

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="MP4 needs imageio-ffmpeg (facecore[animate])")

COLOURS = np.array([(200, 60, 30), (20, 200, 90), (40, 60, 220), (230, 220, 40), (128, 128, 128)], np.uint8)


def top_level_boxes(path: Path) -> list[tuple[str, int, int]]:
    """(type, offset, size) of each top-level ISO-BMFF box, read with struct (ISO/IEC 14496-12 4.2)."""
    data = path.read_bytes()
    boxes, at = [], 0
    while at < len(data):
        assert at + 8 <= len(data), f"truncated box header at byte {at}"
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:  # 64-bit largesize follows the type
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - at
        assert size >= header and at + size <= len(data), f"bad box {kind!r} of {size} bytes at {at}"
        boxes.append((kind.decode("latin-1"), at, size))
        at += size
    return boxes


def probe(path: Path) -> str:
    """The video stream line of ``ffmpeg -i`` (it prints the input description, then complains that no
    output was given; the description is what we want)."""
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                       capture_output=True, text=True, timeout=60)
    lines = [ln.strip() for ln in r.stderr.splitlines() if "Video:" in ln]
    assert len(lines) == 1, r.stderr
    return lines[0]


def stripes(h: int, w: int) -> np.ndarray:
    """Vertical bands of COLOURS, 8+ pixels wide (chroma subsampling blurs only their edges)."""
    idx = np.minimum(np.arange(w) * len(COLOURS) // w, len(COLOURS) - 1)
    return np.ascontiguousarray(np.broadcast_to(COLOURS[idx][None], (h, w, 3)))


def test_faststart_box_order(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, [stripes(48, 64)] * 12, fps=24)
    kinds = [k for k, _, _ in top_level_boxes(path)]
    assert kinds[0] == "ftyp", kinds
    assert "moov" in kinds and "mdat" in kinds, kinds
    assert kinds.index("moov") < kinds.index("mdat"), f"moov after mdat (no faststart): {kinds}"


def test_h264_yuv420p_bt709_tags(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, [stripes(48, 64)] * 5, fps=10)
    line = probe(path)
    assert re.search(r"Video: h264 \(", line), line
    m = re.search(r"yuv420p\(([^)]*)\)", line)
    assert m, f"not yuv420p: {line}"
    props = [p.strip() for p in m.group(1).split(",")]
    assert props[0] == "tv", line  # limited range, what H.264 players assume
    assert props[1] == "bt709/bt709/iec61966-2-1", line  # colorspace/primaries/transfer
    assert "48" in line and "64x48" in line


def test_colours_survive_the_yuv_round_trip(tmp_path):
    # A BT.601 matrix under BT.709 tags (or the reverse) shifts these by 10-25 levels; 4 is codec noise.
    path = tmp_path / "c.mp4"
    frame = stripes(32, 80)
    write_video(path, [frame] * 3, fps=10, quality=12)
    frames, meta = read_video(path)
    got = next(frames).astype(int)
    centres = (np.arange(len(COLOURS)) * 80 + 40) // len(COLOURS)
    for c, colour in zip(centres, COLOURS):
        np.testing.assert_allclose(got[16, c], colour, atol=4, err_msg=f"colour {colour.tolist()}")


def test_odd_size_is_padded_by_edge_replication(tmp_path):
    h, w = 37, 51
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, : w - 9] = (30, 40, 50)
    frame[:, w - 9 :] = (220, 200, 40)  # the right edge: a bright band the padding must repeat
    frame[h - 9 :, :] = (40, 200, 210)  # the bottom edge likewise
    path = tmp_path / "odd.mp4"
    assert write_video(path, [frame] * 4, fps=8, quality=10) == 4
    line = probe(path)
    assert "52x38" in line, line
    frames, meta = read_video(path)
    got = next(frames).astype(int)
    assert got.shape == (38, 52, 3)
    np.testing.assert_allclose(got[10, 51], got[10, 50], atol=4)  # the padded column repeats the last one
    np.testing.assert_allclose(got[10, 51], (220, 200, 40), atol=6)
    np.testing.assert_allclose(got[37, 20], (40, 200, 210), atol=6)  # the padded row repeats the last one
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert "facecore size=51x37" in r.stderr  # the real size is recorded


def test_float_frames_are_linear_and_encoded(tmp_path):
    lin = np.full((24, 32, 3), 0.5, np.float32)
    path = tmp_path / "f.mp4"
    write_video(path, [lin] * 3, fps=10)
    frames, _ = read_video(path)
    got = next(frames).astype(int)
    expected = int(to_uint8(np.float32(0.5)))
    assert expected == 188
    assert np.abs(got - expected).max() <= 2  # not 128: the float frame was sRGB-encoded
    rgba = np.concatenate([lin, np.ones((24, 32, 1), np.float32)], -1)
    write_video(tmp_path / "rgba.mp4", [rgba] * 2, fps=10)
    got = next(read_video(tmp_path / "rgba.mp4")[0]).astype(int)
    assert np.abs(got - expected).max() <= 2


def test_bad_quality_and_dtype(tmp_path):
    f = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="quality"):
        write_video(tmp_path / "q.mp4", [f], fps=10, quality=99)
    with pytest.raises(ValueError, match="quality"):
        write_video(tmp_path / "q.mp4", [f], fps=10, quality=2.5)
    with pytest.raises(TypeError, match="uint8"):
        write_video(tmp_path / "q.mp4", [np.zeros((16, 16, 3), np.int32)], fps=10)
    assert not (tmp_path / "q.mp4").exists()


def test_an_interrupted_cleanup_still_stops_ffmpeg_and_removes_the_file(tmp_path, monkeypatch):
    # A SIGTERM re-raised while the error path waits in writer.close() used to skip the kill and the
    # unlink, leaving ffmpeg running and the partial file behind.
    import imageio_ffmpeg

    real = imageio_ffmpeg.write_frames
    procs = []

    class InterruptedClose:
        def __init__(self, gen):
            self.gen = gen

        @property
        def gi_frame(self):  # write_video finds the ffmpeg process through the generator's frame
            return self.gen.gi_frame

        def send(self, x):
            out = self.gen.send(x)
            procs.append(self.gen.gi_frame.f_locals["p"])
            return out

        def close(self):
            raise SystemExit(143)

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", lambda *a, **k: InterruptedClose(real(*a, **k)))

    def frames():
        for _ in range(3):
            yield np.zeros((16, 16, 3), np.uint8)
        raise ValueError("the renderer failed")

    out = tmp_path / "v.mp4"
    with pytest.raises((ValueError, SystemExit)):
        write_video(out, frames(), 30)
    assert not out.exists() and procs and procs[0].poll() is not None


def _processes_naming(folder: Path) -> list[int]:
    """PIDs whose command line mentions ``folder`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(folder).encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # the process ended while we looked
            pass
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds ffmpeg through Linux /proc")
@pytest.mark.timeout(120)
def test_sigterm_as_ffmpeg_starts_leaves_no_ffmpeg_and_no_file(tmp_path):
    # The SIGTERM arrives as ffmpeg's Popen returns, before write_video knows of the process (CI's flaky
    # SIGTERM test). Such an ffmpeg kept its stdin open until this process exited, then wrote the file
    # that the cleanup had already removed.
    out_dir = tmp_path / "out"
    child = textwrap.dedent(f"""
        import os, signal, subprocess
        from pathlib import Path
        import numpy as np
        from facecore.cli_support import atomic_file, exit_on_sigterm
        from facecore.io.video import write_video
        real_init = subprocess.Popen.__init__

        def init_then_sigterm(self, args, *a, **k):
            real_init(self, args, *a, **k)
            if "rawvideo" in args:  # ffmpeg reading our frames
                os.kill(os.getpid(), signal.SIGTERM)

        subprocess.Popen.__init__ = init_then_sigterm
        import threading, time  # another thread, as torch's pools are in a real command
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        exit_on_sigterm()
        with atomic_file(Path({str(out_dir)!r}) / "clip.mp4") as tmp:
            write_video(tmp, (np.zeros((16, 16, 3), np.uint8) for _ in range(30)), 30)
        print("written", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=100)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.stdout, proc.stderr)
    assert "written" not in proc.stdout
    deadline = time.monotonic() + 30
    while _processes_naming(out_dir) and time.monotonic() < deadline:  # an orphaned ffmpeg finishing
        time.sleep(0.1)
    assert _processes_naming(out_dir) == []
    assert list(out_dir.iterdir()) == []
