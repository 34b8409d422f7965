"""GLB, video and contact-sheet exports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facecore.animate import animate
from facecore.animate.frames import FrameRenderer, contact_sheet
from facecore.io.gltf import pose_quaternions, read_glb, write_glb
from facecore.io.video import read_video, video_info, write_video
from facecore.pose import euler_to_matrix
from facecore.render.color import to_uint8


@pytest.fixture(scope="module")
def rig():
    from facecore.rig import default_rig

    return default_rig()


@pytest.fixture(scope="module")
def track():
    return animate({"keyframes": ["a broad smile", "the head turns to the left and the jaw drops"],
                    "fps": 12, "lead_in": 0.2}, seed=0)


def test_glb_round_trip(rig, track, tmp_path):
    path = tmp_path / "a.glb"
    write_glb(path, rig, track, names="livelinkface", units="cm")  # the rig's own numbers and names
    g = read_glb(path)
    deltas = rig.dense_deltas().numpy()
    assert g["target_names"][0] == "EyeBlinkLeft" and len(g["target_names"]) == 52
    np.testing.assert_array_equal(g["targets"], deltas)  # sparse accessors restore exactly
    np.testing.assert_allclose(g["positions"] + np.asarray(g["node_translations"][0]), rig.neutral.numpy(),
                               atol=1e-5)
    assert g["indices"].shape == tuple(rig.triangles.shape)
    np.testing.assert_array_equal(g["weights"], track.params[:, :52])
    np.testing.assert_allclose(g["times"], track.times - track.times[0], atol=1e-6)
    # The head rotation quaternions are facecore.pose's matrices.
    q = g["rotations"].astype(np.float64)
    x, y, z, w = q.T
    mat = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                    2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                    2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1).reshape(-1, 3, 3)
    ang = torch.as_tensor(track.params[:, 52:55], dtype=torch.float64) * (math.pi / 2)
    ref = euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2]).numpy()
    np.testing.assert_allclose(mat, ref, atol=1e-5)
    assert np.abs(track.params[:, 52]).max() > 0.1  # the head really turned


def test_glb_without_animation_and_bad_input(rig, tmp_path):
    write_glb(tmp_path / "rig.glb", rig)
    g = read_glb(tmp_path / "rig.glb")
    assert g["weights"] is None and g["targets"].shape == (52, rig.num_vertices, 3)
    (tmp_path / "bad.glb").write_bytes(b"not a glb file at all")
    with pytest.raises(ValueError, match="not a glTF"):
        read_glb(tmp_path / "bad.glb")


def test_glb_loads_as_a_rig(rig, tmp_path):
    gltf = pytest.importorskip("facecore.rig.gltf", reason="facecore.rig.load_gltf not in this tree yet")
    write_glb(tmp_path / "rig.glb", rig, units="cm")
    back = gltf.load_gltf(tmp_path / "rig.glb")
    np.testing.assert_allclose(back.dense_deltas().numpy(), rig.dense_deltas().numpy(), atol=1e-6)


def test_pose_quaternion_identity():
    q = pose_quaternions(np.zeros(2), np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(q, [[0, 0, 0, 1]] * 2)


@pytest.mark.parametrize("size", [(64, 48), (50, 37)])
def test_video_frame_count_and_size(size, tmp_path):
    w, h = size
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(17)]
    assert write_video(tmp_path / "v.mp4", frames, fps=15) == 17
    info = video_info(tmp_path / "v.mp4")
    assert info["frames"] == 17 and info["fps"] == pytest.approx(15)
    assert (info["width"], info["height"]) == (w + w % 2, h + h % 2)  # H.264 needs even sides


def test_video_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "v.mp4", [], fps=10)
    assert not (tmp_path / "v.mp4").exists()
    frames = [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        write_video(tmp_path / "v.mp4", frames, fps=10)
    assert not (tmp_path / "v.mp4").exists()  # no partial file left behind
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "v.mp4", frames[:1], fps=0)


def test_rendered_animation_video(track, rig, tmp_path):
    r = FrameRenderer(rig, size=(64, 48))
    n = write_video(tmp_path / "a.mp4", r.frames(track.params), track.fps)
    assert n == len(track)
    frames, meta = read_video(tmp_path / "a.mp4")
    frames = list(frames)
    assert len(frames) == len(track) and frames[0].shape == (48, 64, 3)
    # The face is there and it moves.
    first, last = frames[0].astype(float), frames[-1].astype(float)
    assert first.std() > 10 and np.abs(first - last).mean() > 1.0


def test_renderer_backends_agree(rig):
    p = np.zeros((2, 61), np.float32)
    p[1, 17] = 0.7  # JawOpen
    ra = FrameRenderer(rig, size=(96, 96), backend="kernels")
    a = ra.render(p)
    b = FrameRenderer(rig, size=(96, 96), backend="numpy").render(p)
    assert a.shape == b.shape == (2, 96, 96, 3)
    bg = to_uint8(np.array(ra.background)).astype(float)  # linear inside, written as sRGB
    assert (a[:, 0, 0] == bg).all() and (b[:, 0, 0] == bg).all()  # both paths encode the same way
    mask_a = np.abs(a.astype(float) - bg).sum(-1) > 6
    mask_b = np.abs(b.astype(float) - bg).sum(-1) > 6
    assert (mask_a == mask_b).mean() > 0.97  # same silhouette
    assert np.abs(a[1].astype(float) - a[0]).mean() > 0.5  # the jaw moved
    # The facecore Renderer (perspective camera, antialiased) shows the same face and motion.
    fc = FrameRenderer(rig, size=(96, 96), backend="facecore")
    assert fc.backend_used == "facecore"
    c = fc.render(p)
    mask_c = np.abs(c.astype(float) - bg).sum(-1) > 6
    assert 0.3 < mask_c.mean() < 0.95 and np.abs(c[1].astype(float) - c[0]).mean() > 0.5
    with pytest.raises(ValueError):
        FrameRenderer(rig, size=(8, 8))
    with pytest.raises(ValueError, match="backend"):
        FrameRenderer(rig, size=(32, 32), backend="magic")


def test_contact_sheet_layout():
    tiles = np.zeros((5, 40, 30, 3), np.uint8)
    sheet = contact_sheet(tiles, [f"keyframe {i}" for i in range(5)], columns=3)
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 90 and sheet.shape[0] == 2 * (40 + 28)


def test_caption_lines_wrap_and_ellipsis():
    from facecore.animate.frames import caption_lines

    width = len  # one unit per character
    assert caption_lines("a slight smile", width, 20, 2) == ["a slight smile"]
    assert caption_lines("the eyes close slowly", width, 10, 2) == ["the eyes", "close slo…"]
    assert caption_lines("the eyes closed, and more", width, 8, 2) == ["the eyes", "closed…"]  # not ",…"
    assert caption_lines("one two three", width, 9, 2) == ["one two", "three"]  # fits in two: no ellipsis
    long = "1. the head turns slowly to the left while the jaw drops and the brows rise"
    lines = caption_lines(long, width, 16, 2, ellipsis="...")
    assert len(lines) == 2 and lines[1].endswith("...") and all(len(x) <= 16 for x in lines)
    assert " ".join(lines).removesuffix("...").replace(" ", "") in long.replace(" ", "")
    # a word longer than a line is broken rather than overflowing
    assert caption_lines("supercalifragilistic", width, 8, 3) == ["supercal", "ifragili", "stic"]
    assert caption_lines("supercalifragilistic", width, 8, 2) == ["supercal", "ifragil…"]
    assert caption_lines("ab cdefghijklmnop", width, 4, 2) == ["ab", "cde…"]
    assert caption_lines("", width, 8, 2) == []


def test_contact_sheet_long_caption_fits_with_ellipsis():
    from PIL import Image, ImageDraw

    from facecore.animate.frames import _ellipsis, _font, caption_lines

    h, w = 96, 120
    tiles = np.zeros((2, h, w, 3), np.uint8)
    long = ("1. a broad smile spreads slowly across the face while the head tilts to the left, the brows "
            "rise in surprise and the eyes close")
    sheet = contact_sheet(tiles, [long, "2. short"], columns=2)
    cap = max(28, h // 6)
    strip = sheet[h:h + cap]
    ink = (strip < 200).any(-1)
    assert ink[:, :w].any() and ink[:, w:].any()
    # the text stays inside its tile (4 px margin), so it never runs into the neighbour's caption
    assert not ink[:, w - 3:w + 3].any()
    # what was drawn is two lines ending in an ellipsis, measured in the sheet's own font
    font = _font(max(10, cap // 3))
    draw = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    lines = caption_lines(long, lambda t: draw.textlength(t, font=font), w - 8, 2, _ellipsis(font))
    assert len(lines) == 2 and lines[1].endswith(("\u2026", "..."))
    assert all(draw.textlength(x, font=font) <= w - 8 for x in lines)
    # the old-style cut (no ellipsis, no measuring) drew something else
    ref = Image.fromarray(np.full((cap, w, 3), 245, np.uint8))
    d = ImageDraw.Draw(ref)
    for j, line in enumerate(lines):
        d.text((4, 2 + j * (cap // 2 - 1)), line, fill=(20, 20, 20), font=font)
    np.testing.assert_array_equal(strip[:, :w], np.asarray(ref))
