"""Metric sanity: pixel metrics against scikit-image, FVD-proxy, warp error, the learned judges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facecore.video import metrics as M
from facecore.video.data import ClipDataset


@pytest.fixture
def rng():
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"numpy seed {seed}")
    return np.random.default_rng(seed)


def _noisy(rng, shape, amount):
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-amount, amount + 1, shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_ssim_match_skimage(rng):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = _noisy(rng, (3, 23, 31, 3), 40)  # odd sizes
    ref_ssim = np.mean([structural_similarity(a[i], b[i], channel_axis=-1, data_range=255) for i in range(3)])
    ref_psnr = np.mean([peak_signal_noise_ratio(a[i], b[i], data_range=255) for i in range(3)])
    assert M.ssim(a, b) == pytest.approx(ref_ssim, abs=1e-10)
    assert M.psnr(a, b) == pytest.approx(ref_psnr, abs=1e-10)
    assert M.l1(a, b) == pytest.approx(np.abs(a.astype(float) - b).mean())


def test_identical_images(rng):
    a = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert M.psnr(a, a) == math.inf
    assert M.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert M.l1(a, a) == 0.0
    worse = np.clip(a.astype(int) + 60, 0, 255).astype(np.uint8)
    assert M.ssim(a, worse) < 0.99 and M.psnr(a, worse) < 20


def test_pixel_metric_errors():
    with pytest.raises(ValueError, match="one shape"):
        M.psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="at least 7"):
        M.ssim(np.zeros((5, 5, 3)), np.zeros((5, 5, 3)))


def test_frechet_distance(rng):
    a = rng.normal(size=(40, 6))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # N(0, I) against N(m, 4 I) in 3-D, |m|^2 = 9: |m|^2 + tr(S1 + S2 - 2 sqrt(S1 S2)) = 9 + 3 (1 + 4 - 4)
    x, y = np.eye(3) * 1.0, np.eye(3) * 2.0
    big = rng.normal(size=(20000, 3))
    d = M.frechet_distance(big @ x, big @ y + np.sqrt(3.0))
    assert d == pytest.approx(9.0 + 3 * 1.0, rel=0.05)


def test_fvd_proxy_zero_on_identical_and_grows_with_shift(tmp_path):
    data = list(ClipDataset("real_proxy", n=6, frames=4, size=16, seed=0))
    enc = M.train_fvd_encoder(data, steps=3, batch_size=4, out=tmp_path / "fvd.safetensors")
    assert not any(p.requires_grad for p in enc.parameters())
    clips = np.stack([s["frames"] for s in data])
    assert M.fvd_proxy(clips, clips, enc) == pytest.approx(0.0, abs=1e-6)
    small = np.clip(clips.astype(int) + 20, 0, 255).astype(np.uint8)
    large = np.clip(clips.astype(int) + 80, 0, 255).astype(np.uint8)
    d_small, d_large = M.fvd_proxy(clips, small, enc), M.fvd_proxy(clips, large, enc)
    assert 0 < d_small < d_large
    loaded = M.FVDEncoder.load(tmp_path / "fvd.safetensors")
    assert M.fvd_proxy(clips, large, loaded) == pytest.approx(d_large, rel=1e-6)
    with pytest.raises(ValueError, match="real-proxy"):
        M.train_fvd_encoder([{**data[0], "domain": "synthetic"}], steps=1)


def test_warp_error():
    rng = np.random.default_rng(1)
    static = np.repeat(rng.integers(0, 256, (1, 24, 24, 3), dtype=np.uint8), 5, 0)
    assert M.warp_error(static) == 0.0
    assert M.warp_error(static[:1]) == 0.0
    # a texture moving 1 px down per frame: the block flow recovers it and the warp error stays far
    # below the plain frame difference (only the entering border row is unexplained)
    base = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    moving = np.stack([np.roll(base, k, axis=0) for k in range(4)])[:, 8:32, 8:32]
    plain = np.abs(np.diff(moving.astype(float), axis=0)).mean()
    assert M.warp_error(moving) < 0.1 * plain
    # a generated clip judged with the truth's flow: frozen when the truth moves -> large error
    assert M.warp_error(static[:4, :24, :24], flow_from=moving) > 0.0
    flow = M.block_flow(moving)
    assert flow.shape == (3, 24, 24, 2) and bool((flow[:, 4:20, 4:20] == torch.tensor([1, 0])).all())
    with pytest.raises(ValueError, match="flow_from"):
        M.warp_error(static, flow_from=static[:3])


def test_identity_encoder_and_similarity(tmp_path):
    enc = M.train_identity_encoder(16, 16, steps=2, batch_size=8, out=tmp_path / "id.safetensors")
    s = ClipDataset("real_proxy", n=1, frames=2, size=16)[0]
    sim = M.identity_similarity(s["frames"], s["reference"], enc)
    assert -1.0 <= sim <= 1.0
    assert M.identity_similarity(s["frames"], s["frames"], enc) == pytest.approx(1.0, abs=1e-5)
    loaded = M.IdentityEncoder.load(tmp_path / "id.safetensors")
    assert M.identity_similarity(s["frames"], s["reference"], loaded) == pytest.approx(sim, abs=1e-6)
    with pytest.raises(ValueError, match="reference"):
        M.identity_similarity(s["frames"], s["frames"][:1].repeat(3, 0), enc)
    from facecore.io import FormatError

    with pytest.raises(FormatError, match="not a FVDEncoder"):
        M.FVDEncoder.load(tmp_path / "id.safetensors")


def test_motion_error_with_a_trained_estimator(tmp_path):
    data = list(ClipDataset("real_proxy", n=2, frames=2, size=16, seed=0))
    est = M.train_motion_estimator(data, steps=2, batch_size=4, out=tmp_path / "est.safetensors")
    frames, params = data[0]["frames"], data[0]["params"]
    pred = est.predict(frames, assume_cropped=True)
    assert M.motion_error(frames, params, est) == pytest.approx(float(np.abs(pred - params).mean()), rel=1e-6)
    assert M.motion_error(frames, params, tmp_path / "est.safetensors") == pytest.approx(
        M.motion_error(frames, params, est), rel=1e-6)
    assert M.motion_error(frames, pred, est) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="parameter rows"):
        M.motion_error(frames, params[:1], est)
    with pytest.raises(TypeError, match="Estimator"):
        M.motion_error(frames, params, 3)
