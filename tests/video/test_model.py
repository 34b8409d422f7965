"""VideoDiffusion: shapes, the zero-initialised motion paths, the three attention backends, classifier-free
guidance, sampling, the file format and bad inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facecore.io.errors import FormatError
from facecore.video.model import VideoDiffusion, VideoDiffusionConfig, _window_starts, biased_attention

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(image_size=16, frames=4, patch_size=4, dim=32, depth=2, heads=2, guider_channels=8)
S, T = 16, 4


def _randomised(model: VideoDiffusion, seed: int = 0, skip: tuple[str, ...] = ()) -> VideoDiffusion:
    """Random weights everywhere except the parameters named in ``skip`` (the zero inits make an
    untrained model's output identically zero, which would make every test below vacuous)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not any(name.startswith(s) for s in skip):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def _inputs(motion: str, B: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, S, S, 3, generator=g)
    t = torch.randint(0, 1000, (B,), generator=g)
    ref = torch.rand(B, S, S, 3, generator=g) * 2 - 1
    mot = torch.rand(B, T, S, S, 4, generator=g) if motion == "maps" else torch.rand(B, T, 61, generator=g)
    return x, t, ref, mot


@pytest.mark.parametrize("motion", ["maps", "params"])
def test_forward_shape_and_zero_init_output(motion):
    model = VideoDiffusion(TINY, motion=motion)
    x, t, ref, mot = _inputs(motion)
    out = model(x, t, ref, mot)
    assert out.shape == (2, T, S, S, 3)
    assert torch.equal(out, torch.zeros_like(out))  # adaLN-Zero gates and a zero output layer
    assert torch.isfinite(_randomised(model)(x, t, ref, mot)).all()


@pytest.mark.parametrize("motion, guider", [("maps", "guider.out"), ("params", "params_encoder.fc2")])
def test_zero_initialised_guider_ignores_motion_exactly(motion, guider):
    model = _randomised(VideoDiffusion(TINY, motion=motion), skip=(guider,))
    x, t, ref, mot = _inputs(motion)
    other = torch.rand_like(mot)
    a, b = model(x, t, ref, mot), model(x, t, ref, other)
    assert a.abs().mean() > 1e-3  # the rest of the network is live
    assert torch.equal(a, b)  # ... but the motion has no path in yet
    _randomised(model, seed=3)  # now the guider's last layer too
    assert not torch.allclose(model(x, t, ref, mot), model(x, t, ref, other))
    # dropping the motion (classifier-free guidance) restores the motion-blind output
    keep = torch.zeros(2)
    assert torch.equal(model(x, t, ref, mot, keep_motion=keep), model(x, t, ref, other, keep_motion=keep))


def test_dropped_reference_is_ignored():
    model = _randomised(VideoDiffusion(TINY))
    x, t, ref, mot = _inputs("maps")
    keep = torch.tensor([0.0, 1.0])
    a = model(x, t, ref, mot, keep_reference=keep)
    b = model(x, t, torch.rand_like(ref), mot, keep_reference=keep)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 8), (3, 2, 17, 33, 16)])
def test_biased_attention_backends_agree(shape):
    B, H, Lq, Lk, D = shape
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, L, D, generator=g) for L in (Lq, Lk, Lk))
    bias0 = torch.randn(H, Lq, Lk, generator=g)
    up = torch.randn(B, H, Lq, D, generator=g)
    outs, grads = {}, {}
    for backend in ("facecore", "sdpa", "eager"):
        bias = bias0.clone().requires_grad_()
        qq = q.clone().requires_grad_()
        out = biased_attention(qq, k, v, bias, backend)
        (out * up).sum().backward()
        outs[backend], grads[backend] = out.detach(), (bias.grad, qq.grad)
    for backend in ("facecore", "sdpa"):
        # float32 attention of unit-scale inputs: ~1e-6 apart; the bias gradient sums over B
        torch.testing.assert_close(outs[backend], outs["eager"], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(grads[backend][0], grads["eager"][0], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(grads[backend][1], grads["eager"][1], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("motion", ["maps", "params"])
def test_model_backends_agree_in_values_and_bias_gradients(motion):
    model = _randomised(VideoDiffusion(TINY, motion=motion))
    x, t, ref, mot = _inputs(motion)
    outs, grads = {}, {}
    for backend in ("facecore", "sdpa", "eager"):
        model.set_attention(backend)
        model.zero_grad()
        out = model(x, t, ref, mot)
        out.square().mean().backward()
        outs[backend] = out.detach()
        grads[backend] = {n: p.grad.clone() for n, p in model.named_parameters()
                          if p.requires_grad and ("rel_" in n or "ref_offset" in n)}
    assert any(g.abs().max() > 0 for g in grads["eager"].values())
    for backend in ("facecore", "sdpa"):
        torch.testing.assert_close(outs[backend], outs["eager"], atol=1e-4, rtol=1e-4)
        for n, g in grads["eager"].items():
            torch.testing.assert_close(grads[backend][n], g, atol=1e-4, rtol=1e-3, msg=n)


def test_sample_shapes_determinism_and_guidance_paths():
    model = _randomised(VideoDiffusion(TINY))
    g = torch.Generator().manual_seed(5)
    ref_a = torch.randint(0, 256, (S, S, 3), generator=g, dtype=torch.uint8)
    ref_b = torch.randint(0, 256, (S, S, 3), generator=g, dtype=torch.uint8)
    mot_a, mot_b = torch.rand(T, S, S, 4, generator=g), torch.rand(T, S, S, 4, generator=g)
    frames = model.sample(ref_a, mot_a, steps=3)
    assert frames.shape == (T, S, S, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, model.sample(ref_a, mot_a, steps=3))  # DDIM eta=0: seed decides
    assert not np.array_equal(frames, model.sample(ref_a, mot_a, steps=3, seed=1))
    batched = model.sample(torch.stack([ref_a, ref_b]), torch.stack([mot_a, mot_b]), steps=2)
    assert batched.shape == (2, T, S, S, 3)
    # guidance (0, 0) is the unconditional prediction; (1, 0) the reference-only one
    assert np.array_equal(model.sample(ref_a, mot_a, steps=2, guidance=(0, 0)),
                          model.sample(ref_b, mot_b, steps=2, guidance=(0, 0)))
    assert np.array_equal(model.sample(ref_a, mot_a, steps=2, guidance=(1, 0)),
                          model.sample(ref_a, mot_b, steps=2, guidance=(1, 0)))
    assert not np.array_equal(model.sample(ref_a, mot_a, steps=2, guidance=(2, 2)),
                              model.sample(ref_a, mot_b, steps=2, guidance=(2, 2)))
    # (1, 1) is the plain conditional prediction: one pass equals the three-pass combination
    one = model.sample(ref_a, mot_a, steps=2, guidance=1.0)
    three = model.sample(ref_a, mot_a, steps=2, guidance=(1.0, 1.0 + 1e-7))
    assert np.abs(one.astype(int) - three.astype(int)).max() <= 1


def test_window_starts():
    assert _window_starts(4, 4, None) == [0] and _window_starts(3, 4, 3) == [0]
    assert _window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert _window_starts(9, 4, 2) == [0, 2, 4, 5]  # the last window ends at the last frame
    assert _window_starts(8, 4, 0) == [0, 4] and _window_starts(10, 4, None) == [0, 2, 4, 6]
    for bad in (4, -1, 1.5, True):
        with pytest.raises(ValueError, match="overlap must be an int in"):
            _window_starts(10, 4, bad)


def test_long_motion_windows_are_denoised_together(monkeypatch):
    model = _randomised(VideoDiffusion(TINY))
    g = torch.Generator().manual_seed(7)
    ref = torch.randint(0, 256, (S, S, 3), generator=g, dtype=torch.uint8)
    long = torch.rand(3 * T - 2, S, S, 4, generator=g)  # 10 frames: windows of 4
    other = long.clone()
    other[T:] = torch.rand(long.shape[0] - T, S, S, 4, generator=g)  # new motion after the first window
    out = model.sample(ref, long, steps=3, overlap=2)
    assert out.shape == (long.shape[0], S, S, 3)
    # independent windows: the first window does not see the motion after it ...
    assert np.array_equal(model.sample(ref, long, steps=3, overlap=0)[:T],
                          model.sample(ref, other, steps=3, overlap=0)[:T])
    # ... overlapping ones are denoised together, so it does
    assert not np.array_equal(out[:T], model.sample(ref, other, steps=3, overlap=2)[:T])
    # how many windows go through the model at once changes nothing but rounding
    import facecore.video.model as vm

    monkeypatch.setattr(vm, "_ROWS_PER_PASS", 1)
    assert np.abs(model.sample(ref, long, steps=3, overlap=2).astype(int) - out.astype(int)).max() <= 1

    # With a prediction that looks at each frame alone, averaging the windows changes nothing: the
    # windowed result equals one pass over the whole sequence.
    def per_frame(x, t, reference, motion, keep_reference=None, keep_motion=None):
        return torch.tanh(0.5 * x + motion[..., :3].mean(-1, keepdim=True) - 0.2)

    model.forward = per_frame
    windowed = model.sample(ref, long, steps=3, overlap=2)
    model.config = dataclasses.replace(model.config, frames=long.shape[0])
    whole = model.sample(ref, long, steps=3)
    assert np.abs(windowed.astype(int) - whole.astype(int)).max() <= 1


def test_params_model_samples_from_parameters():
    model = _randomised(VideoDiffusion(TINY, motion="params"))
    frames = model.sample(np.zeros((S, S, 3), np.uint8), np.random.default_rng(0).random((T, 61)), steps=2)
    assert frames.shape == (T, S, S, 3) and frames.dtype == np.uint8


def test_save_load_roundtrip(tmp_path):
    model = _randomised(VideoDiffusion(TINY, motion="params"))
    model.save(tmp_path / "m" / "video.safetensors")
    loaded = VideoDiffusion.load(tmp_path / "m", attention="eager")  # a folder finds its file
    assert loaded.config.motion == "params" and loaded.config.attention == "eager"
    x, t, ref, mot = _inputs("params")
    torch.testing.assert_close(loaded(x, t, ref, mot), model(x, t, ref, mot), atol=1e-5, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="video model not found"):
        VideoDiffusion.load(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(FormatError, match="bad.safetensors"):
        VideoDiffusion.load(tmp_path / "bad.safetensors")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VideoDiffusionConfig(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="motion must be one of"):
        VideoDiffusion(TINY, motion="audio")
    with pytest.raises(ValueError, match="attention must be one of"):
        VideoDiffusion(TINY, attention="flash")
    with pytest.raises(ValueError, match="unknown keys"):
        VideoDiffusion({"image_sz": 16})
    model = VideoDiffusion(TINY)
    ref = np.zeros((S, S, 3), np.uint8)
    with pytest.raises(ValueError, match=r"motion maps \[T, 16, 16, 4\]"):
        model.sample(ref, np.zeros((T, 61), np.float32), steps=1)
    with pytest.raises(ValueError, match="image_size = 16"):
        model.sample(np.zeros((8, 8, 3), np.uint8), np.zeros((T, S, S, 4), np.float32), steps=1)
    with pytest.raises(ValueError, match="guidance"):
        model.sample(ref, np.zeros((T, S, S, 4), np.float32), steps=1, guidance=(1.0,))
    with pytest.raises(ValueError, match="steps"):
        model.sample(ref, np.zeros((T, S, S, 4), np.float32), steps=0)
    with pytest.raises(ValueError, match="NaN"):
        model.sample(ref, np.full((T, S, S, 4), np.nan, np.float32), steps=1)
    with pytest.raises(ValueError, match="missing keys"):
        model.batch([{"frames": np.zeros((T, S, S, 3), np.uint8)}])


def test_package_exports_are_lazy_and_callable():
    import facecore.video as video

    assert video.VideoDiffusion is VideoDiffusion
    from facecore.video.training import train

    assert video.train is train
    pytest.importorskip("facecore.video.select")
    assert callable(video.select)  # the function, not the module of the same name
    pytest.importorskip("facecore.video.data")
    assert video.ClipDataset.__name__ == "ClipDataset"
    pytest.importorskip("facecore.video.metrics")
    assert video.metrics.__name__ == "facecore.video.metrics"
    with pytest.raises(AttributeError, match="no attribute"):
        video.NoSuchThing  # noqa: B018
