"""facecore.ops.srgb_uint8: the CPU kernel against the float64 reference, exactly, on fresh random values
(with and without the noise term), on a dense sweep of [-0.01, 1.01] in both dtypes and both encodings,
at every code step, on special values; to_uint8 and torch.compile go through it; bad input."""

from __future__ import annotations

import pytest
import torch

from facecore import ops
from facecore import reference as ref
from facecore.render.color import linear_to_srgb, to_uint8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("srgb", [True, False])
def test_matches_reference_exactly(dtype, srgb):
    g = torch.Generator().manual_seed(int(srgb) + 2 * (dtype == torch.float64))
    x = torch.rand(5, 37, 23, 3, generator=g, dtype=dtype) * 1.3 - 0.1
    assert torch.equal(ops.srgb_uint8(x, srgb=srgb), ref.srgb_uint8(x, srgb=srgb))
    sweep = torch.linspace(-0.01, 1.01, 1_000_003, dtype=dtype).view(1, -1)
    assert torch.equal(ops.srgb_uint8(sweep, srgb=srgb), ref.srgb_uint8(sweep, srgb=srgb))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_step_lands_where_the_formula_says(dtype):
    """Around each of the 255 code steps (the formula inverted), the values one ulp apart on either side of
    the step encode as the reference says. In float64 the kernel's pow (the C library's) and torch's may
    round the last bit differently, so a value within an ulp of a step may get the neighbouring code."""
    k = torch.arange(1, 256, dtype=torch.float64)
    s = (k - 0.5) / 255
    step = torch.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4).to(dtype)
    near = torch.stack([step, torch.nextafter(step, torch.full_like(step, -1)),
                        torch.nextafter(step, torch.full_like(step, 2))]).view(1, -1)
    got, want = ops.srgb_uint8(near), ref.srgb_uint8(near)
    if dtype == torch.float32:
        assert torch.equal(got, want)
    else:
        assert int((got.int() - want.int()).abs().max()) <= 1
        assert int((got != want).sum()) <= 20  # of 765, all within an ulp of a step
    assert set(got.unique().tolist()) >= set(range(1, 255))


def test_special_values():
    x = torch.tensor([[float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1.0, 2.0, 1e-30, 0.5]])
    assert ops.srgb_uint8(x).tolist() == [[0, 255, 0, 0, 0, 255, 255, 0, 188]]
    assert ops.srgb_uint8(x, srgb=False).tolist() == [[0, 255, 0, 0, 0, 255, 255, 0, 128]]


def test_noise_term_matches_reference_and_is_per_image():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 9, 11, 3, generator=g)
    eps = torch.randn(4, 9, 11, 3, generator=g)
    scale = torch.tensor([0.0, 0.01, 0.03, 0.2])
    got = ops.srgb_uint8(x, eps, scale)
    assert torch.equal(got, ref.srgb_uint8(x, eps, scale))
    assert torch.equal(got[0], ops.srgb_uint8(x[:1])[0])  # scale 0: the noise-free code
    assert not torch.equal(got[3], ops.srgb_uint8(x[3:])[0])
    for i in range(4):  # an image's codes do not depend on the batch
        assert torch.equal(ops.srgb_uint8(x[i : i + 1], eps[i : i + 1], scale[i : i + 1])[0], got[i])


def test_to_uint8_and_the_float32_curve_agree_within_one_code():
    """to_uint8 runs the op; the float32 curve (linear_to_srgb, rounded in float32) may land one code off
    exactly at a step, never more."""
    x = torch.rand(200_000, generator=torch.Generator().manual_seed(5))
    a = to_uint8(x)
    assert torch.equal(a, ops.srgb_uint8(x.view(1, -1)).view(-1))
    b = torch.floor(linear_to_srgb(x) * 255 + 0.5).to(torch.uint8)
    assert int((a.int() - b.int()).abs().max()) <= 1
    assert float((a != b).float().mean()) < 1e-3
    assert to_uint8(torch.tensor(0.25)).dim() == 0
    assert to_uint8(torch.tensor([[0.5]], dtype=torch.float16)).tolist() == [[188]]


def test_torch_compile_and_reference_backend():
    x = torch.rand(2, 6, 5, 3)
    f = torch.compile(lambda v: ops.srgb_uint8(v), fullgraph=True, backend="aot_eager")
    assert torch.equal(f(x), ops.srgb_uint8(x))
    assert torch.equal(ops.srgb_uint8(x, backend="reference"), ops.srgb_uint8(x))


def test_bad_input():
    x = torch.rand(2, 4, 4, 3)
    with pytest.raises(TypeError, match="x must have dtype"):
        ops.srgb_uint8(x.half())
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ops.srgb_uint8(x.numpy())
    with pytest.raises(ValueError, match="batch dimension"):
        ops.srgb_uint8(torch.tensor(0.5))
    with pytest.raises(ValueError, match="together"):
        ops.srgb_uint8(x, torch.rand_like(x))
    with pytest.raises(ValueError, match="noise must have"):
        ops.srgb_uint8(x, torch.rand(2, 4, 4, 1), torch.ones(2))
    with pytest.raises(ValueError, match=r"noise_scale must have shape \[2\]"):
        ops.srgb_uint8(x, torch.rand_like(x), torch.ones(3))
    with pytest.raises(TypeError, match="noise must have dtype"):
        ops.srgb_uint8(x, torch.rand_like(x).double(), torch.ones(2))
    from facecore import _C

    with pytest.raises(Exception, match="out must be uint8"):
        _C.srgb_uint8_forward(x.view(2, -1), x.new_empty(0), x.new_empty(0), True,
                              torch.empty(2, 48, dtype=torch.int32), 1)
