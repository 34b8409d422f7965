"""The sensor: every effect (blur with each sample's own radius, read noise, JPEG) gives a sample the same
bytes alone or in a batch; the blur is facecore.ops.gaussian_blur (tested against its reference in
tests/ops/test_blur.py)."""

from __future__ import annotations

import torch

from facecore import ops
from facecore.synth import scene as scn
from facecore.synth.sensor import _K_BG, apply_sensor, sensor_uniforms


def test_sensor_of_a_sample_does_not_depend_on_the_batch():
    spec = scn.resolve_scene("wild").sensor
    n = 6
    u = sensor_uniforms(3, range(n))[:, _K_BG:]
    img = torch.rand(n, 21, 17, 3, generator=torch.Generator().manual_seed(0))
    batch, info = apply_sensor(img, spec, u, 3, range(n))
    assert batch.dtype == torch.uint8 and batch.shape == img.shape
    assert bool((info["blur"] > 0).any()) and bool((info["noise"] > 0).any())
    for i in range(n):
        alone, _ = apply_sensor(img[i : i + 1], spec, u[i : i + 1], 3, range(i, i + 1))
        assert torch.equal(alone[0], batch[i]), i


def test_sensor_blur_is_the_blur_op():
    """With every other effect off, the sensor's image is the sRGB encoding of ops.gaussian_blur."""
    from facecore.render.color import to_uint8

    spec = scn.resolve_scene("wild").sensor
    off = {"exposure": (1.0, 1.0), "white_balance": 0.0, "saturation": (1.0, 1.0), "noise": (0.0, 0.0),
           "jpeg": 0.0}
    spec = type(spec)(**{**spec.__dict__, **off})
    u = sensor_uniforms(1, range(4))[:, _K_BG:]
    img = torch.rand(4, 16, 12, 3, generator=torch.Generator().manual_seed(1))
    out, info = apply_sensor(img, spec, u, 1, range(4))
    assert torch.equal(out, to_uint8(ops.gaussian_blur(img, info["blur"])))
