"""The estimator network: shapes and ranges, gradients, predict on odd-sized uint8 images, the
crop path, the file format, the detector's error without scikit-image, load_pretrained."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from facecore import arkit
from facecore.estimator.model import Estimator, EstimatorConfig
from facecore.estimator.predict import (
    FaceDetector,
    NoFaceError,
    boxes_from_landmarks,
    crop_faces,
    face_boxes,
)
from facecore.io.errors import FormatError
from tests.estimator.conftest import TINY


@pytest.fixture
def tiny() -> Estimator:
    torch.manual_seed(0)
    return Estimator(EstimatorConfig(**TINY))


def test_default_size_is_realtime_sized():
    m = Estimator()
    assert m.num_parameters() <= 3_000_000
    assert m.num_parameters() * 4 <= 10 * 2**20  # float32 checkpoint <= 10 MB


def test_forward_shapes_ranges_and_gradients(tiny):
    x = torch.randn(5, 3, 32, 32) * 3
    mean, log_std = tiny(x)
    assert mean.shape == (5, 61) and log_std.shape == (5, 61)
    low, high = torch.tensor(arkit.LOW), torch.tensor(arkit.HIGH)
    assert bool((mean >= low).all() and (mean <= high).all())
    assert bool((log_std >= tiny.config.min_log_std).all() and (log_std <= tiny.config.max_log_std).all())
    (mean.sum() + log_std.sum()).backward()
    # every parameter but the relative bias's prefix-token constants (no prefix tokens here)
    grads = {n: p.grad for n, p in tiny.named_parameters() if p.requires_grad}
    assert len(grads) == len(list(tiny.parameters())) - len(tiny.blocks)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # the attention blocks (facecore.nn) take part: their weights get gradient
    assert tiny.blocks[0].attn.q.weight.grad.abs().sum() > 0


def test_mean_head_clamps_forward_and_passes_the_gradient(tiny):
    # the neutral face (blendshapes at their floor) still gets the loss's whole gradient: a sigmoid
    # head there passed ~2% of it and sparse channels never moved (the straight-through clamp)
    start = torch.zeros(61)
    start[arkit.index("JawOpen")] = 0.3
    tiny.init_mean(start)
    with torch.no_grad():
        tiny.head.weight.zero_()
        tiny.head.bias[:10] = -2.0  # below the range: clamped to 0 forward
    mean, _ = tiny(torch.randn(4, 3, 32, 32))
    assert torch.allclose(mean[:, 10:], start[10:].expand(4, -1))
    assert bool((mean[:, :10] == 0).all())
    mean.sum().backward()
    assert torch.allclose(tiny.head.bias.grad[:61], torch.full((61,), 4.0))
    # edge_gradient="inward": the same values; past an edge only the gradient that lifts it back passes
    x = torch.randn(4, 3, 32, 32)
    for sign, passes in ((1.0, False), (-1.0, True)):  # descent lowers / raises the outputs
        tiny.zero_grad()
        inward, _ = tiny(x, edge_gradient="inward")
        assert torch.equal(inward, tiny(x)[0])
        (sign * inward).sum().backward()
        below = tiny.head.bias.grad[:10]
        assert bool((below == (sign * 4.0 if passes else 0.0)).all())
        assert torch.allclose(tiny.head.bias.grad[10:61], torch.full((51,), sign * 4.0))
    with pytest.raises(ValueError, match="edge_gradient"):
        tiny(x, edge_gradient="hard")
    with pytest.raises(ValueError, match="61 finite"):
        tiny.init_mean(torch.zeros(52))
    with pytest.raises(ValueError, match="61 finite"):
        tiny.init_mean(torch.full((61,), float("nan")))


def test_forward_rejects_bad_input(tiny):
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        tiny(torch.randn(2, 3, 31, 32))
    with pytest.raises(TypeError, match="predict"):
        tiny(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="multiple of 16"):
        EstimatorConfig(image_size=40)


def test_predict_odd_sizes_boxes_and_batching(tiny):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((17, 23), (65, 41), (32, 32))]
    out = tiny.predict(imgs, assume_cropped=True)
    assert out.shape == (3, 61) and out.dtype == np.float32
    # batched in pieces gives the same answer; training mode is restored
    tiny.train()
    again = tiny.predict(imgs, assume_cropped=True, batch_size=2)
    assert tiny.training
    np.testing.assert_allclose(out, again, atol=1e-6)
    boxes = [[2, 3, 15, 16], [5, 5, 40, 60], [0, 0, 32, 32]]
    by_box = tiny.predict(imgs, boxes=boxes)
    assert by_box.shape == (3, 61) and np.isfinite(by_box).all()
    batch = rng.integers(0, 256, (4, 45, 37, 3), dtype=np.uint8)
    mean, std = tiny.predict(torch.as_tensor(batch), assume_cropped=True, return_std=True)
    assert mean.shape == std.shape == (4, 61) and (std > 0).all()
    with pytest.raises(TypeError, match="uint8"):
        tiny.predict(batch.astype(np.float32), assume_cropped=True)
    with pytest.raises(ValueError, match="boxes"):
        tiny.predict(imgs, boxes=[[0, 0, 1, 1]])


def test_crop_faces_frames_the_box():
    img = torch.zeros(50, 80, 3, dtype=torch.uint8)
    img[10:30, 40:60] = 255  # a white 20 x 20 square
    crop = crop_faces([img], [[40, 10, 60, 30]], 20, crop_scale=1.0)
    assert crop.shape == (1, 20, 20, 3)
    assert float(crop.min()) == 1.0  # exactly the square
    wide = crop_faces([img], [[40, 10, 60, 30]], 40, crop_scale=2.0)[0, ..., 0]
    assert float(wide[10:30, 10:30].min()) == 1.0 and float(wide[:10].max()) == 0.0
    # a box past the image border is padded with black, not shifted
    edge = crop_faces([img], [[-10, -10, 10, 10]], 20, crop_scale=1.0)[0, ..., 0]
    assert float(edge[:10].max()) == 0.0 and float(edge[:, :10].max()) == 0.0
    whole = crop_faces([img], None, 16)  # the whole image, letterboxed to a square
    assert whole.shape == (1, 16, 16, 3)


def test_boxes_from_landmarks_and_mask():
    lm = torch.tensor([[[10.0, 20.0], [30.0, 25.0], [20.0, 40.0]]]).expand(2, -1, -1).clone()
    lm[1] = float("nan")
    mask = torch.zeros(2, 50, 50, dtype=torch.bool)
    mask[1, 5:15, 7:9] = True
    boxes = boxes_from_landmarks(lm, mask=mask)
    assert boxes[0].tolist() == [10.0, 20.0, 30.0, 40.0]
    assert boxes[1].tolist() == [7.0, 5.0, 9.0, 15.0]
    with pytest.raises(ValueError, match="no finite landmarks"):
        boxes_from_landmarks(lm[1:])


def test_save_load_round_trip(tiny, tmp_path):
    path = tmp_path / "sub" / "est.safetensors"
    tiny.save(path)
    assert path.is_file() and not list(path.parent.glob(".*partial"))
    back = Estimator.load(path)
    assert back.config == tiny.config and not back.training
    x = torch.randn(2, 3, 32, 32)
    tiny.eval()
    for a, b in zip(tiny(x), back(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        Estimator.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(FormatError, match="bad.safetensors"):
        Estimator.load(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(FormatError, match="not a facecore estimator"):
        Estimator.load(other)


def test_face_boxes_reports_the_image_without_a_face():
    imgs = [torch.zeros(20, 20, 3, dtype=torch.uint8), torch.ones(20, 20, 3, dtype=torch.uint8)]
    with pytest.raises(NoFaceError, match="b.png"):
        face_boxes(imgs, detector=lambda im: None if im.max() == 1 else np.ones(4), names=["a.png", "b.png"])
    boxes = face_boxes(imgs, detector=lambda im: np.array([1.0, 2.0, 10.0, 12.0]))
    assert boxes.shape == (2, 4)


def test_detector_without_scikit_image_names_the_package(tiny, monkeypatch):
    # Hide scikit-image whether or not it is installed: a None entry makes `import skimage` fail.
    for mod in [m for m in sys.modules if m == "skimage" or m.startswith("skimage.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match="scikit-image"):
        FaceDetector()
    with pytest.raises(ImportError, match="scikit-image"):
        tiny.predict(np.zeros((1, 40, 40, 3), np.uint8))


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image")
def test_detector_finds_the_astronaut_and_not_a_blank(tiny):
    from skimage import data

    img = data.astronaut()
    box = FaceDetector()(img)
    assert box is not None
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    assert 150 < cx < 280 and 50 < cy < 180  # her face, not the flag or the suit
    assert tiny.predict(img).shape == (1, 61)
    with pytest.raises(NoFaceError, match="no face found in image 0"):
        tiny.predict(np.full((1, 120, 120, 3), 128, np.uint8))


def test_load_pretrained(monkeypatch, tmp_path, tiny):
    from facecore.estimator import pretrained

    monkeypatch.setattr(pretrained, "PRETRAINED", tmp_path / "estimator.safetensors")
    with pytest.raises(FileNotFoundError, match="estimator train"):
        pretrained.load_pretrained()
    tiny.save(tmp_path / "estimator.safetensors")
    assert pretrained.load_pretrained().config == tiny.config
