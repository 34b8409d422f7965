"""interpolate: every backend against facecore.reference (values, gradients to attr and through rast to
pos), finite differences in float64 on the CPU kernel, broadcasting, background, bad input."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref

from .conftest import backend_params, device_for
from .test_rasterize import big_triangles, random_scene

BACKENDS = backend_params(triton=False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("C,res", [(1, (9, 13)), (5, (31, 27)), (3, (1, 1))])
def test_matches_reference(backend, C, res, gen):
    device = device_for(backend)
    for dtype in [torch.float32] if backend == "cuda" else [torch.float32, torch.float64]:
        pos, tri = random_scene(gen, B=2, dtype=dtype)
        attr = torch.randn(2, pos.shape[1], C, generator=gen, dtype=dtype)
        p1, p2 = pos.to(device).requires_grad_(), pos.clone().requires_grad_()
        a1, a2 = attr.to(device).requires_grad_(), attr.clone().requires_grad_()
        got = ops.interpolate(
            a1, ops.rasterize(p1, tri.to(device), res, backend=backend), tri.to(device), backend=backend
        )
        want = ref.interpolate(a2, ref.rasterize(p2, tri, res), tri)
        tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(got.cpu(), want, **tol)
        g = torch.randn(want.shape, generator=gen, dtype=dtype)
        gp1, ga1 = torch.autograd.grad(got, (p1, a1), g.to(device))
        gp2, ga2 = torch.autograd.grad(want, (p2, a2), g)
        torch.testing.assert_close(ga1.cpu(), ga2, **tol)
        scale = gp2.abs().max().clamp_min(1.0)
        torch.testing.assert_close(gp1.cpu() / scale, gp2 / scale, atol=tol["atol"] * 10, rtol=0)


def test_gradcheck_cpu_float64(gen):
    pos, tri = big_triangles()
    attr = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    rast = ops.rasterize(pos, tri, (5, 6))

    def f(a, r):
        return ops.interpolate(a, r, tri, backend="cpu")

    # u, v of rast are differentiable inputs; the id channel must stay fixed, so perturb only u, v
    uv = rast[..., :2].clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, uv: f(a, torch.cat([uv, rast[..., 2:]], -1)), (attr.requires_grad_(), uv)
    )
    # and the full chain to pos
    assert torch.autograd.gradcheck(
        lambda p: f(attr.detach(), ops.rasterize(p, tri, (5, 6))), (pos.clone().requires_grad_(),)
    )


def test_shared_attr_broadcasts_and_background_is_zero(gen):
    pos, tri = random_scene(gen, B=3, T=10)
    attr = torch.randn(pos.shape[1], 4, generator=gen, dtype=torch.float64, requires_grad=True)
    rast = ops.rasterize(pos, tri, (16, 12))
    out = ops.interpolate(attr, rast, tri)
    want = ref.interpolate(attr, rast, tri)
    torch.testing.assert_close(out, want)
    assert bool((out[rast[..., 3] == 0] == 0).all())
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (ga,) = torch.autograd.grad(out, attr, g)
    (gw,) = torch.autograd.grad(want, attr, g)
    torch.testing.assert_close(ga, gw)


def test_bad_input():
    pos, tri = big_triangles()
    rast = ops.rasterize(pos, tri, 4)
    attr = torch.rand(6, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"tri\[1\].*outside \[0, V=6\)"):
        ops.interpolate(attr, rast, torch.tensor([[0, 1, 2], [3, 4, 6]], dtype=torch.int32))
    with pytest.raises(TypeError, match="must match"):
        ops.interpolate(attr.float(), rast, tri)
    with pytest.raises(ValueError, match="rast must have shape"):
        ops.interpolate(attr, rast[..., :3], tri)
    with pytest.raises(ValueError, match="batch"):
        ops.interpolate(torch.rand(2, 6, 2, dtype=torch.float64), rast, tri)
    with pytest.raises(TypeError, match="attr must be a torch.Tensor"):
        ops.interpolate([1, 2], rast, tri)
    # a rast whose ids do not belong to tri: ids past T are background, never an out-of-bounds read
    bad = rast.clone()
    bad[..., 3] = 99
    assert not bool(ops.interpolate(attr, bad, tri).any())


def test_opcheck(gen):
    pos, tri = random_scene(gen, B=1, T=6, dtype=torch.float32)
    rast = ops.rasterize(pos, tri, (7, 9))
    attr = torch.randn(1, pos.shape[1], 3, generator=gen)
    torch.library.opcheck(torch.ops.facecore.interpolate.default, (attr, rast, tri))


def test_triangle_checks_run_inside_the_op():
    pos, tri = big_triangles()
    rast = ops.rasterize(pos, tri, 4)
    attr = torch.rand(6, 2, dtype=torch.float64)
    bad = tri.long()
    bad[1, 2] = 2**32 + 3  # would wrap to 3 in int32
    with pytest.raises(ValueError, match=r"interpolate: tri\[1\].*outside \[0, V=6\)"):
        ops.interpolate(attr, rast, bad)
    fn = torch.compile(lambda a, r, t: ops.interpolate(a, r, t), fullgraph=True, backend="eager")
    with pytest.raises(ValueError, match=r"tri\[1\].*outside"):
        fn(attr, rast, bad)
    with pytest.raises(ValueError, match=r"interpolate_backward: tri\[1\].*outside"):
        grad = torch.zeros(1, 4, 4, 2, dtype=torch.float64)
        torch.ops.facecore.interpolate_backward(grad, attr[None], rast, bad)
    many = torch.tensor([[0, 1, 2]], dtype=torch.int32).expand(2**24, 3)  # never materialised
    with pytest.raises(ValueError, match=r"interpolate: tri has 16777216 triangles, more than the 16777215"):
        ops.interpolate(attr.float(), rast.float(), many)


@pytest.mark.timeout(180)
def test_cpu_kernels_stay_inside_their_arrays():
    """interpolate forward and backward with every array ending at a PROT_NONE page (tests/guard_pages.py)."""
    from .test_rasterize import run_guarded

    run_guarded("""
        for dtype in (torch.float32, torch.float64):
            for pos, tri in scenes(dtype):
                for H, W, C in ((13, 17, 3), (1, 1, 1), (16, 5, 7)):
                    B, V = pos.shape[:2]
                    rast = torch.empty(B, H, W, 4, dtype=dtype)
                    _C.rasterize_forward(pos, tri, rast, torch.empty(0, dtype=dtype), False, False, 2, 0)
                    attr = torch.randn(B, V, C, dtype=dtype)
                    out = g(torch.empty(B, H, W, C, dtype=dtype))
                    _C.interpolate_forward(g(attr), g(rast), g(tri), out, 2, 0)
                    ga, gr = g(torch.empty_like(attr)), g(torch.empty_like(rast))
                    _C.interpolate_backward(g(attr), g(rast), g(tri), g(torch.randn_like(out)), ga, gr, 2, 0)
    """)
