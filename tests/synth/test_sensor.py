"""The sensor's blur: per-sample kernels that do not depend on the rest of the batch."""

from __future__ import annotations

import torch

from facecore.synth.sensor import _gaussian_blur


def test_blur_of_a_sample_does_not_depend_on_the_batch():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 21, 17, 3, generator=g)
    sigma = torch.tensor([0.4, 0.0, 2.5])
    batch = _gaussian_blur(img, sigma)
    for i in range(3):
        alone = _gaussian_blur(img[i : i + 1], sigma[i : i + 1])
        assert torch.equal(alone[0], batch[i]), i
    assert torch.equal(batch[1], img[1])  # sigma 0: untouched


def test_blur_is_a_normalised_gaussian():
    img = torch.zeros(1, 15, 15, 1)
    img[0, 7, 7] = 1.0
    out = _gaussian_blur(img, torch.tensor([1.0]))[0, ..., 0]
    assert abs(float(out.sum()) - 1.0) < 1e-6  # nothing leaves a 15-pixel image at radius 3
    k = torch.exp(-0.5 * torch.arange(-3, 4.0) ** 2)
    k = k / k.sum()
    torch.testing.assert_close(out[4:11, 4:11], k[:, None] * k[None], atol=1e-7, rtol=0)
