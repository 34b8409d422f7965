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
    """rast held fixed, the antialiased image is piecewise smooth in pos: central differences in float64.
    Where a coordinate sits on a kink (a pair's crossing at exactly half a pixel switches which pixel is
    blended), the two one-sided differences disagree and the gradient must equal one of them."""
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
    kinks = []
    with torch.no_grad():
        l0 = loss(pos)
        for i in torch.cat([idx, extra]).unique().tolist():
            d = torch.zeros(pos.numel(), dtype=torch.float64)
            d[i] = h
            d = d.view_as(pos)
            up, down = (loss(pos + d) - l0) / h, (l0 - loss(pos - d)) / h
            fd.view(-1)[i] = (up + down) / 2
            if abs(float(up - down)) > 1e-3 * max(1.0, abs(float(up))):
                kinks.append((i, float(up), float(down)))
    sel = torch.zeros(pos.numel(), dtype=torch.bool)
    sel[torch.cat([idx, extra])] = True
    for i, up, down in kinks:
        sel[i] = False
        gi = float(grad.flatten()[i])
        assert min(abs(gi - up), abs(gi - down)) <= 1e-4 * max(1.0, abs(gi)), (i, gi, up, down)
    assert len(kinks) <= 2  # a kink is a measure-zero event: at most a couple per random scene
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


# Two 4-word blocks with the same 64-bit FNV-1a state (found by a Pollard-rho search). The CPU topology cache
# used to be keyed on an FNV-1a hash of the triangle buffer: these two meshes collided under it.
_COLLIDING_A = [16580, 7479, 25141, 61448]
_COLLIDING_B = [58291, 47170, 473, 42508]


def test_topology_cache_never_serves_another_mesh(gen):
    """Mesh A is a quad (two triangles sharing the edge 7479-25141); mesh B, with the same size and the same
    hash, is two separate triangles. After antialiasing A, B must still be antialiased with B's topology: its
    edges are silhouettes, not the interior edge of A's quad."""
    a0, a1, a2, a3 = _COLLIDING_A
    b0, b1, b2, b3 = _COLLIDING_B
    tri_a = torch.tensor([[a0, a1, a2], [a3, a2, a1]], dtype=torch.int32)
    tri_b = torch.tensor([[b0, b1, b2], [b3, a2, a1]], dtype=torch.int32)
    pos = torch.zeros(1, 65536, 4, dtype=torch.float64)
    pos[..., 3] = 1
    corners = {b0: (-0.8, -0.6), b1: (-0.1, -0.6), b2: (-0.45, 0.7), b3: (0.1, -0.6), a2: (0.8, -0.6),
               a1: (0.45, 0.7), a0: (0.0, 0.9)}
    for v, (x, y) in corners.items():
        pos[0, v, :2] = torch.tensor([x, y], dtype=torch.float64)
    rast = ops.rasterize(pos, tri_b, 32)
    color = torch.rand(1, 32, 32, 3, generator=gen, dtype=torch.float64)
    want = ref.antialias(color, rast, pos, tri_b)
    other = tri_b[:1]  # a third mesh (T = 1): antialiasing it replaces whatever the cache holds
    ops.antialias(color, rast, pos, other)
    fresh = ops.antialias(color, rast, pos, tri_b)
    ops.antialias(color, rast, pos, other)
    ops.antialias(color, rast, pos, tri_a)  # the cache now holds A's topology
    after_a = ops.antialias(color, rast, pos, tri_b)
    torch.testing.assert_close(fresh, want, atol=1e-12, rtol=1e-10)
    assert torch.equal(after_a, fresh)
    # the backward shares the cache
    ops.antialias(color, rast, pos, other)
    ops.antialias(color, rast, pos, tri_a)
    p = pos.clone().requires_grad_()
    (g1,) = torch.autograd.grad(ops.antialias(color, rast, p, tri_b).sum(), p)
    (g2,) = torch.autograd.grad(ref.antialias(color, rast, p, tri_b).sum(), p)
    torch.testing.assert_close(g1, g2, atol=1e-10, rtol=1e-8)


def test_triangle_checks_run_inside_the_op():
    pos, tri = sphere_scene(torch.Generator().manual_seed(0), B=1, n=4)
    rast = ops.rasterize(pos, tri, 8)
    color = torch.rand(1, 8, 8, 3, dtype=torch.float64)
    bad = tri.long()
    bad[3, 1] = 2**32 + 1  # would wrap to 1 in int32
    with pytest.raises(ValueError, match=r"antialias: tri\[3\].*outside"):
        ops.antialias(color, rast, pos, bad)
    fn = torch.compile(lambda c, p, t: ops.antialias(c, rast, p, t), fullgraph=True, backend="eager")
    with pytest.raises(ValueError, match=r"tri\[3\].*outside"):
        fn(color, pos, bad)
    with pytest.raises(ValueError, match=r"antialias_backward: tri\[3\].*outside"):
        torch.ops.facecore.antialias_backward(color, color, rast, pos, bad)
    many = torch.tensor([[0, 1, 2]], dtype=torch.int32).expand(2**24, 3)  # never materialised
    with pytest.raises(ValueError, match=r"antialias: tri has 16777216 triangles, more than the 16777215"):
        ops.antialias(color.float(), rast.float(), pos.float(), many)


@pytest.mark.timeout(60)
def test_thread_scratch_is_released_after_a_big_call():
    """The per-thread pair buffers (~17 bytes per pixel) must not stay allocated after a big image."""
    from .test_rasterize import rss_growth_in_fresh_thread

    pos, tri = sphere_scene(torch.Generator().manual_seed(0), B=1, n=4, dtype=torch.float32)
    H, W = 2048, 2304
    color, rast = torch.rand(1, H, W, 1), ops.rasterize(pos, tri, (H, W))
    small = color[:, :64, :64], ops.rasterize(pos, tri, 64)
    grown, out = rss_growth_in_fresh_thread(lambda: ops.antialias(small[0], small[1], pos, tri),
                                            lambda: ops.antialias(color, rast, pos, tri))
    grown -= out.numel() * out.element_size()  # the output itself stays
    assert bool((out != color).any())
    assert grown < 40e6, f"RSS grew by {grown / 1e6:.0f} MB besides the output"


@pytest.mark.timeout(180)
def test_cpu_kernels_stay_inside_their_arrays():
    """antialias forward and backward with every array ending at a PROT_NONE page (tests/guard_pages.py)."""
    from .test_rasterize import run_guarded

    run_guarded("""
        for dtype in (torch.float32, torch.float64):
            for pos, tri in scenes(dtype):
                for H, W, C in ((13, 17, 3), (1, 1, 2), (16, 5, 1)):
                    B = pos.shape[0]
                    rast = torch.empty(B, H, W, 4, dtype=dtype)
                    _C.rasterize_forward(pos, tri, rast, torch.empty(0, dtype=dtype), False, False, 2, 0)
                    color = torch.rand(B, H, W, C, dtype=dtype)
                    out = g(torch.empty_like(color))
                    _C.antialias_forward(g(color), g(rast), g(pos), g(tri), out, 2, 0)
                    gc, go = g(torch.empty_like(color)), g(torch.randn_like(color))
                    gp = g(torch.empty_like(pos))
                    _C.antialias_backward(g(color), g(rast), g(pos), g(tri), go, gc, gp, 2, 0)
                    assert bool(torch.isfinite(gp).all())
    """)


def test_same_bytes_alone_in_a_batch_and_on_any_thread_count(gen):
    """rasterize and antialias give an image the same bytes alone (threads inside the image: parallel
    vertex, setup and tile passes, and the parallel silhouette growth on a mesh above its 16k-triangle
    threshold), in a batch (one whole image per thread, frontier growth) and on one thread."""
    pos, tri = sphere_scene(gen, B=3, n=92, dtype=torch.float32)  # 33k triangles
    assert tri.shape[0] > 16384
    color = torch.rand(3, 61, 67, 3, generator=gen)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rast = ops.rasterize(pos, tri, (61, 67))
        out = ops.antialias(color, rast, pos, tri)
        alone = [(ops.rasterize(pos[i : i + 1], tri, (61, 67)),) for i in range(3)]
        alone = [(r, ops.antialias(color[i : i + 1], r, pos[i : i + 1], tri)) for i, (r,) in enumerate(alone)]
        torch.set_num_threads(1)
        rast1 = ops.rasterize(pos, tri, (61, 67))
        out1 = ops.antialias(color, rast1, pos, tri)
    finally:
        torch.set_num_threads(n)
    assert bool((out != color).any())  # there are silhouettes to blend
    assert torch.equal(rast1, rast) and torch.equal(out1, out)
    for i, (r, o) in enumerate(alone):
        assert torch.equal(r[0], rast[i]) and torch.equal(o[0], out[i]), i
