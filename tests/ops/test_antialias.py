"""antialias: every backend against facecore.reference (values and gradients to color and pos), finite
differences of the position gradient in float64 on the CPU kernel, interior edges untouched, bad input."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref

from .conftest import backend_params, device_for
from .test_rasterize import grid_mesh, perspective, random_scene, uv_sphere

BACKENDS = backend_params(triton=False)


def sphere_scene(gen, B=2, n=8, dtype=torch.float64):
    verts, tri = uv_sphere(n, dtype=torch.float64)
    pos = []
    for _ in range(B):
        rot = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))[0]
        shift = 0.3 * torch.randn(3, generator=gen, dtype=torch.float64)
        pos.append(perspective(verts @ rot.T + shift))
    return torch.stack(pos).to(dtype), tri


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "scene,res,C", [("sphere", (33, 41), 3), ("random", (29, 23), 1), ("sphere", (1, 1), 2)]
)
def test_matches_reference(backend, scene, res, C, gen):
    device = device_for(backend)
    for dtype in [torch.float32] if backend == "cuda" else [torch.float32, torch.float64]:
        pos, tri = sphere_scene(gen, dtype=dtype) if scene == "sphere" else random_scene(gen, dtype=dtype)
        rast = ops.rasterize(pos, tri, res)
        color = torch.rand(*rast.shape[:3], C, generator=gen, dtype=dtype)
        p1, p2 = pos.to(device).requires_grad_(), pos.clone().requires_grad_()
        c1, c2 = color.to(device).requires_grad_(), color.clone().requires_grad_()
        got = ops.antialias(c1, rast.to(device), p1, tri.to(device), backend=backend)
        want = ref.antialias(c2, rast, p2, tri)
        tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(got.cpu(), want, **tol)
        if res != (1, 1):
            assert bool((want != color).any())  # the scene has silhouettes to work on
        g = torch.randn(want.shape, generator=gen, dtype=dtype)
        gp1, gc1 = torch.autograd.grad(got, (p1, c1), g.to(device))
        gp2, gc2 = torch.autograd.grad(want, (p2, c2), g)
        torch.testing.assert_close(gc1.cpu(), gc2, **tol)
        scale = gp2.abs().max().clamp_min(1.0)
        torch.testing.assert_close(gp1.cpu() / scale, gp2 / scale, atol=tol["atol"] * 10, rtol=0)


def test_position_gradient_finite_differences(gen):
    """rast held fixed, the antialiased image is smooth in pos: central differences in float64."""
    pos, tri = sphere_scene(gen, B=1, n=6)
    rast = ops.rasterize(pos, tri, (24, 28))
    color = torch.rand(*rast.shape[:3], 3, generator=gen, dtype=torch.float64)
    g = torch.randn(color.shape, generator=gen, dtype=torch.float64)

    def loss(p):
        return (ops.antialias(color, rast, p, tri, backend="cpu") * g).sum()

    p = pos.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(p), p)
    assert float(grad.abs().max()) > 0
    h = 1e-6
    fd = torch.zeros_like(pos)
    # every coordinate that has a gradient, plus a random sample of the others
    idx = (grad.flatten() != 0).nonzero().flatten()
    extra = torch.randint(0, pos.numel(), (20,), generator=gen)
    for i in torch.cat([idx, extra]).unique().tolist():
        d = torch.zeros(pos.numel(), dtype=torch.float64)
        d[i] = h
        d = d.view_as(pos)
        fd.view(-1)[i] = (loss(pos + d) - loss(pos - d)) / (2 * h)
    sel = torch.zeros(pos.numel(), dtype=torch.bool)
    sel[torch.cat([idx, extra])] = True
    torch.testing.assert_close(grad.flatten()[sel], fd.flatten()[sel], atol=1e-6, rtol=1e-5)


def test_gradcheck_color_cpu_float64(gen):
    pos, tri = sphere_scene(gen, B=1, n=5)
    rast = ops.rasterize(pos, tri, (10, 12))
    color = torch.rand(*rast.shape[:3], 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: ops.antialias(c, rast, pos, tri, backend="cpu"), (color,))


def test_interior_edges_are_untouched(gen):
    """A tessellated quad: shared edges between same-facing triangles are not silhouettes."""
    pos, tri = grid_mesh(6, 5, jitter=0.5, gen=gen)
    pos = pos.unsqueeze(0)
    rast = ops.rasterize(pos, tri, (40, 40))
    color = torch.rand(1, 40, 40, 3, generator=gen, dtype=torch.float64)
    out = ops.antialias(color, rast, pos, tri)
    cov = rast[0, ..., 3] > 0
    pad = torch.nn.functional.pad(cov, (1, 1, 1, 1), value=False)
    interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:] & cov
    changed = (out[0] != color[0]).any(-1)
    assert bool(changed.any())  # the outline is antialiased
    assert not bool((changed & interior).any())  # the inside is not
    # a background-only image (nothing rasterized) is returned unchanged
    empty = torch.zeros_like(rast)
    torch.testing.assert_close(ops.antialias(color, empty, pos, tri), color)


def test_shared_pos_broadcasts(gen):
    pos, tri = sphere_scene(gen, B=1, n=5)
    rast = ops.rasterize(pos, tri, (12, 12)).expand(3, -1, -1, -1)
    color = torch.rand(3, 12, 12, 3, generator=gen, dtype=torch.float64)
    p = pos[0].clone().requires_grad_()
    out = ops.antialias(color, rast, p, tri)
    torch.testing.assert_close(out, ref.antialias(color, rast, pos.expand(3, -1, -1), tri))
    out.sum().backward()
    assert p.grad.shape == p.shape


def test_bad_input():
    pos, tri = uv_sphere(4)
    pos = perspective(pos).unsqueeze(0)
    rast = ops.rasterize(pos, tri, 8)
    color = torch.rand(1, 8, 8, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"tri\[0\].*outside"):
        ops.antialias(color, rast, pos, torch.tensor([[0, 1, 999]], dtype=torch.int32))
    with pytest.raises(ValueError, match="rast must have shape"):
        ops.antialias(color, rast[:, :4], pos, tri)
    with pytest.raises(TypeError, match="must match"):
        ops.antialias(color.float(), rast, pos, tri)
    with pytest.raises(ValueError, match="pos has batch"):
        ops.antialias(color, rast, pos.expand(2, -1, -1), tri)
    with pytest.raises(ValueError, match="color must have shape"):
        ops.antialias(color[0], rast, pos, tri)


def test_opcheck(gen):
    pos, tri = sphere_scene(gen, B=1, n=4, dtype=torch.float32)
    rast = ops.rasterize(pos, tri, (9, 8))
    color = torch.rand(1, 9, 8, 3, generator=gen)
    torch.library.opcheck(torch.ops.facecore.antialias.default, (color, rast, pos, tri))
