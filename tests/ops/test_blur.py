"""facecore.ops.gaussian_blur: the CPU kernel against the reference (values and gradients) on fresh random
images of odd sizes and sigmas (including 0 and radii longer than a side); gradcheck in float64; batch
independence; the reference's taps; torch.compile; bad input."""

from __future__ import annotations

import pytest
import torch

from facecore import ops
from facecore import reference as ref

SHAPES = [(5, 17, 23, 3), (3, 4, 5, 2), (2, 9, 3, 1), (1, 1, 7, 4), (4, 33, 31, 3)]


def _inputs(shape, dtype, seed, smax=3.0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(*shape, generator=g, dtype=dtype)
    sigma = torch.rand(shape[0], generator=g, dtype=dtype) * smax
    sigma[0] = 0.0  # a copied image in every batch
    return img, sigma


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_matches_reference(shape, dtype):
    img, sigma = _inputs(shape, dtype, seed=sum(shape))
    out = ops.gaussian_blur(img, sigma)
    want = ref.gaussian_blur(img, sigma)
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(out, want, atol=tol, rtol=tol)
    assert torch.equal(out[0], img[0])  # sigma 0: copied through exactly


@pytest.mark.parametrize("shape", SHAPES[:3] + [(3, 64, 48, 3)], ids=lambda s: "x".join(map(str, s)))
def test_gradient_matches_reference(shape):
    img, sigma = _inputs(shape, torch.float64, seed=7 + sum(shape))
    up = torch.randn(shape, dtype=torch.float64)
    a = img.clone().requires_grad_(True)
    b = img.clone().requires_grad_(True)
    (ops.gaussian_blur(a, sigma) * up).sum().backward()
    (ref.gaussian_blur(b, sigma) * up).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=1e-12)


def test_gradcheck_float64():
    img, sigma = _inputs((3, 6, 7, 2), torch.float64, seed=11, smax=2.5)
    img.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ops.gaussian_blur(x, sigma), (img,))


def test_blur_properties():
    """A constant image stays constant (normalised taps, reflect borders); a delta spreads to exactly the
    radius ceil(3 sigma) and keeps its sum away from the borders; large sigmas on small images replicate."""
    c = torch.full((2, 12, 10, 3), 0.37)
    torch.testing.assert_close(ops.gaussian_blur(c, torch.tensor([0.7, 2.0])), c, atol=1e-6, rtol=0)
    d = torch.zeros(1, 41, 41, 1, dtype=torch.float64)
    d[0, 20, 20] = 1.0
    out = ops.gaussian_blur(d, torch.tensor([1.1], dtype=torch.float64))[0, :, :, 0]
    r = 4  # ceil(3.3)
    nz = out.abs() > 0
    ys, xs = nz.nonzero(as_tuple=True)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (20 - r, 20 + r, 20 - r, 20 + r)
    assert abs(float(out.sum()) - 1.0) < 1e-12
    taps = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / 1.1) ** 2)
    taps = taps / taps.sum()
    torch.testing.assert_close(out[20, 16:25], taps[4] * taps, atol=1e-15, rtol=1e-12)
    tiny = torch.randn(2, 3, 5, 2)  # radius 30 > every side: replicate borders
    torch.testing.assert_close(ops.gaussian_blur(tiny, 10.0), ref.gaussian_blur(tiny, torch.full((2,), 10.0)),
                               atol=2e-6, rtol=2e-6)


def test_batch_independent_and_thread_independent():
    img, sigma = _inputs((6, 40, 37, 3), torch.float32, seed=5)
    whole = ops.gaussian_blur(img, sigma)
    for i in range(6):
        assert torch.equal(ops.gaussian_blur(img[i : i + 1], sigma[i : i + 1]), whole[i : i + 1])
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.gaussian_blur(img, sigma)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one, whole)


def test_scalar_sigma_and_reference_backend():
    img = torch.rand(3, 9, 8, 3)
    torch.testing.assert_close(ops.gaussian_blur(img, 0.8), ops.gaussian_blur(img, torch.full((3,), 0.8)))
    torch.testing.assert_close(ops.gaussian_blur(img, 0.8, backend="reference"), ops.gaussian_blur(img, 0.8),
                               atol=2e-6, rtol=2e-6)


def test_torch_compile_fullgraph():
    img, sigma = _inputs((2, 10, 9, 3), torch.float32, seed=2)
    f = torch.compile(lambda x, s: ops.gaussian_blur(x, s), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(f(img, sigma), ops.gaussian_blur(img, sigma))


def test_bad_input():
    img = torch.rand(2, 8, 8, 3)
    with pytest.raises(ValueError, match="img"):
        ops.gaussian_blur(torch.rand(8, 8, 3), 1.0)
    with pytest.raises(TypeError, match="img must have dtype"):
        ops.gaussian_blur(img.half(), 1.0)
    with pytest.raises(ValueError, match=r"sigma must have shape \[2\]"):
        ops.gaussian_blur(img, torch.ones(3))
    with pytest.raises(ValueError, match=r"sigma\[1\]"):
        ops.gaussian_blur(img, torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match=r"sigma\[0\]"):
        ops.gaussian_blur(img, torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError, match="1024"):
        ops.gaussian_blur(img, torch.tensor([1.0, 5000.0]))
    with pytest.raises(ValueError, match="floating"):
        ops.gaussian_blur(img, torch.ones(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="sigma"):
        ops.gaussian_blur(img, "wide")
    with pytest.raises(ValueError, match="backend"):
        ops.gaussian_blur(img, 1.0, backend="metal")
    # the kernel checks too, whatever the Python layer lets through
    from facecore import _C

    with pytest.raises(Exception, match=r"sigma\[0\]"):
        _C.gaussian_blur_forward(img, torch.tensor([-1.0, 0.0]), torch.empty_like(img), 1)
    with pytest.raises(Exception, match="out must have shape"):
        _C.gaussian_blur_forward(img, torch.ones(2), torch.empty(2, 8, 8, 2), 1)
