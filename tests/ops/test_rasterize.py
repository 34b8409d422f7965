"""rasterize: every backend against facecore.reference (ids exactly, values and gradients), the fill rule,
watertightness, depth order and ties, near-plane clipping, edge cases, bad input; and against an
independent rasterizer (moderngl on Mesa's software OpenGL through EGL) when that is installed."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref
from facecore.reference.rasterize import barycentrics, pixel_ndc

from ..meshes import uv_sphere
from .conftest import backend_params, device_for

BACKENDS = backend_params(triton=False)


def random_scene(gen, B=2, V=40, T=30, dtype=torch.float64, spread=0.7, layered=True):
    """Random clip-space triangles in front of the camera. With ``layered`` each triangle gets its own
    depth band (no two triangles intersect), so the nearest one is unambiguous at every pixel."""
    w = 1.0 + 0.5 * torch.rand(B, T, 3, generator=gen, dtype=dtype)
    xy = (torch.rand(B, T, 1, 2, generator=gen, dtype=dtype) * 2 - 1) * spread + 0.35 * torch.randn(
        B, T, 3, 2, generator=gen, dtype=dtype
    )
    if layered:
        base = torch.randperm(T, generator=gen).to(dtype).view(1, T, 1) / T
        z = base + 0.2 / T * torch.rand(B, T, 3, generator=gen, dtype=dtype)
    else:
        z = torch.rand(B, T, 3, generator=gen, dtype=dtype)
    z = z * 1.6 - 0.8
    pos = torch.cat([xy * w.unsqueeze(-1), (z * w).unsqueeze(-1), w.unsqueeze(-1)], -1).reshape(B, 3 * T, 4)
    tri = torch.arange(3 * T, dtype=torch.int32).view(T, 3)
    # shuffle vertex order inside the buffer so that triangles do not index consecutively
    perm = torch.randperm(3 * T, generator=gen)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(3 * T)
    return pos[:, perm].contiguous(), inv[tri.long()].to(torch.int32)


def grid_mesh(nx, ny, x0=-0.8, x1=0.8, y0=-0.7, y1=0.7, dtype=torch.float64, jitter=None, gen=None):
    """A tessellated rectangle ``(nx x ny`` quads, two triangles each), counter-clockwise in NDC."""
    xs = torch.linspace(x0, x1, nx + 1, dtype=dtype)
    ys = torch.linspace(y0, y1, ny + 1, dtype=dtype)
    Y, X = torch.meshgrid(ys, xs, indexing="ij")
    if jitter:
        inner = torch.zeros_like(X, dtype=torch.bool)
        inner[1:-1, 1:-1] = True
        X = X + inner * jitter * (x1 - x0) / nx * (torch.rand(X.shape, generator=gen, dtype=dtype) - 0.5)
        Y = Y + inner * jitter * (y1 - y0) / ny * (torch.rand(Y.shape, generator=gen, dtype=dtype) - 0.5)
    pos = torch.stack([X, Y, torch.zeros_like(X), torch.ones_like(X)], -1).reshape(-1, 4)
    faces = []
    for j in range(ny):
        for i in range(nx):
            a, b = j * (nx + 1) + i, j * (nx + 1) + i + 1
            c, d = a + nx + 1, b + nx + 1
            faces += [[a, b, d], [a, d, c]] if (i + j) % 2 else [[a, b, c], [b, d, c]]
    return pos, torch.tensor(faces, dtype=torch.int32)


def coverage_counts(pos, tri, res, **kw):
    """How many triangles cover each pixel when each is rasterized alone."""
    count = torch.zeros(res, dtype=torch.int64)
    for t in range(tri.shape[0]):
        count += (ops.rasterize(pos, tri[t : t + 1], res, **kw)[0, ..., 3] > 0).long()
    return count


# ---------------------------------------------------------------------------------------------------
# against the reference
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("res", [(37, 45), (16, 16), (1, 1), (5, 64)])
def test_forward_matches_reference(backend, res, gen):
    device = device_for(backend)
    for dtype in [torch.float32] if backend == "cuda" else [torch.float32, torch.float64]:
        pos, tri = random_scene(gen, dtype=dtype)
        got, db = ops.rasterize(pos.to(device), tri.to(device), res, return_db=True, backend=backend)
        # The oracle runs in float64 on the same inputs: the float32 reference's own rounding reaches
        # 2e-5 on thin triangles (seed 27329949), while the kernel stays within 3e-8 of float64.
        want, dbw = (t.to(dtype) for t in ref.rasterize(pos.double(), tri, res, return_db=True))
        got, db = got.cpu(), db.cpu()
        # coverage and ids are exact (integer edge functions on identically snapped corners)
        assert torch.equal(got[..., 3], want[..., 3])
        tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(got, want, **tol)
        torch.testing.assert_close(db, dbw, atol=tol["atol"] * 100, rtol=tol["rtol"] * 100)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_matches_reference(backend, gen):
    device = device_for(backend)
    for dtype in [torch.float32] if backend == "cuda" else [torch.float32, torch.float64]:
        pos, tri = random_scene(gen, B=3, T=25, dtype=dtype)
        p1 = pos.to(device).requires_grad_()
        # the oracle runs in float64 on the same (float32) values: a float32 reference has its own rounding
        # error, which exceeded the tolerance for about 1 seed in 130
        p2 = pos.double().requires_grad_()
        got = ops.rasterize(p1, tri.to(device), (31, 27), backend=backend)
        want = ref.rasterize(p2, tri, (31, 27))
        g = torch.randn(want.shape, generator=gen, dtype=dtype)
        (g1,) = torch.autograd.grad(got, p1, g.to(device))
        (g2,) = torch.autograd.grad(want, p2, g.double())
        # gradients scale like 1/(triangle area in NDC); compare relative to the largest
        scale = g2.abs().max()
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(g1.cpu().double() / scale, g2 / scale, atol=tol, rtol=0)


def big_triangles(dtype=torch.float64):
    """Two large overlapping triangles covering the whole image, tilted in depth, with w varying."""
    pos = torch.tensor(
        [
            [-3.0, -3.0, 0.2, 1.0],
            [4.0, -2.5, 0.4, 1.6],
            [-2.0, 4.0, 0.1, 1.2],
            [-3.5, -2.0, 0.5, 1.1],
            [3.0, 3.5, -0.2, 1.4],
            [-2.5, 3.0, 0.3, 0.9],
        ],
        dtype=dtype,
    )
    pos[:, :3] *= pos[:, 3:]
    return pos.unsqueeze(0), torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)


def test_gradcheck_cpu_float64():
    # Pixel centres lie far from every edge, so coverage is constant under the finite-difference steps.
    pos, tri = big_triangles()
    assert torch.autograd.gradcheck(
        lambda p: ops.rasterize(p, tri, (6, 7), backend="cpu")[..., :3], (pos.requires_grad_(),)
    )


def test_perspective_correct_barycentrics():
    """Interpolating clip-space positions reproduces each pixel's own ray: x/w = px, y/w = py."""
    pos, tri = big_triangles()
    rast = ops.rasterize(pos, tri, (9, 13))
    xyzw = ops.interpolate(pos[0], rast, tri)
    px, py = pixel_ndc(9, 13)
    hit = rast[0, ..., 3] > 0
    assert int(hit.sum()) > 100
    ndc = xyzw[0][hit] / xyzw[0][hit][:, 3:]
    torch.testing.assert_close(ndc[:, 0], px.expand(9, 13)[hit], atol=1e-12, rtol=0)
    torch.testing.assert_close(ndc[:, 1], py.view(9, 1).expand(9, 13)[hit], atol=1e-12, rtol=0)
    torch.testing.assert_close(ndc[:, 2], rast[0, ..., 2][hit], atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------------
# fill rule, watertightness, depth
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [None, 0.6])
def test_fill_rule_tessellated_quad(jitter, gen):
    # Without jitter every grid line passes exactly through pixel centres (32 px, grid step 2 px):
    # the top-left rule must give each such pixel to exactly one triangle.
    H = W = 32
    pos, tri = grid_mesh(
        8, 8, -0.5 + 1 / 32, 0.5 + 1 / 32, -0.5 + 1 / 32, 0.5 + 1 / 32, jitter=jitter, gen=gen
    )
    count = coverage_counts(pos, tri, (H, W))
    assert int(count.max()) == 1
    full = ops.rasterize(pos, tri, (H, W))[0, ..., 3] > 0
    assert torch.equal(full, count == 1)
    if jitter is None:  # the outline is known exactly: the pixel centres inside the half-open square
        px, py = pixel_ndc(H, W)
        lo, hi = -0.5 + 1 / 32, 0.5 + 1 / 32
        inside_x = (px >= lo) & (px < hi)  # left edge included, right excluded
        inside_y = (py > lo) & (py <= hi)  # top edge included, bottom excluded
        assert torch.equal(full, inside_y.view(H, 1) & inside_x.view(1, W))


def perspective(verts, dist=3.0, f=1.8, near=0.5, far=10.0):
    """World points (camera looking down -z from z = dist) -> clip space (OpenGL conventions)."""
    x, y, z = verts.unbind(-1)
    ze = z - dist
    return torch.stack(
        [f * x, f * y, -(far + near) / (far - near) * ze - 2 * far * near / (far - near), -ze], -1
    )


def test_closed_mesh_is_watertight(gen):
    verts, faces = uv_sphere(12)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))[0]
    pos = perspective(verts @ rot.T).unsqueeze(0)
    res = (40, 40)
    full = ops.rasterize(pos, faces, res)[0, ..., 3] > 0
    front = coverage_counts(pos, faces, res, cull_backfaces=True)
    # seen from outside, the front faces cover the silhouette exactly once: no cracks, no overlaps
    assert int(front.max()) == 1
    assert torch.equal(front == 1, full)
    # and the silhouette is a filled disc-like region: no background pixel has covered pixels on all 4 sides
    bg = ~full[1:-1, 1:-1]
    enclosed = full[:-2, 1:-1] & full[2:, 1:-1] & full[1:-1, :-2] & full[1:-1, 2:]
    assert not bool((bg & enclosed).any())


def test_depth_order_and_tie_rule():
    near = [[-0.5, -0.5, -0.2, 1], [0.5, -0.5, -0.2, 1], [0, 0.5, -0.2, 1]]
    far = [[-0.6, -0.6, 0.5, 1], [0.6, -0.6, 0.5, 1], [0, 0.6, 0.5, 1]]
    pos = torch.tensor([near + far], dtype=torch.float64)
    for tri, nearest in (([[0, 1, 2], [3, 4, 5]], 1), ([[3, 4, 5], [0, 1, 2]], 2)):
        rast = ops.rasterize(pos, torch.tensor(tri, dtype=torch.int32), (16, 16))
        assert int(rast[0, 8, 8, 3]) == nearest
        assert float(rast[0, 8, 8, 2]) == pytest.approx(-0.2)
    # identical triangles: the lower id wins, whatever the order in the buffer
    pos2 = torch.tensor([near + near], dtype=torch.float64)
    rast = ops.rasterize(pos2, torch.tensor([[3, 4, 5], [0, 1, 2], [0, 1, 2]], dtype=torch.int32), (16, 16))
    covered = rast[0, ..., 3] > 0
    assert bool(covered.any()) and bool((rast[0, ..., 3][covered] == 1).all())


def test_cull_backfaces():
    ccw = torch.tensor([[[-0.5, -0.5, 0, 1], [0.5, -0.5, 0, 1], [0, 0.5, 0, 1]]])
    cw = ccw[:, [0, 2, 1]]
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    assert bool((ops.rasterize(ccw, tri, 8, cull_backfaces=True)[..., 3] > 0).any())
    assert not bool((ops.rasterize(cw, tri, 8, cull_backfaces=True)[..., 3] > 0).any())
    assert bool((ops.rasterize(cw, tri, 8)[..., 3] > 0).any())


@pytest.mark.parametrize("res", [(37, 45), (200, 180), (1100, 960)])
def test_direct_and_binned_paths_agree_bit_for_bit(res, gen):
    """The CPU kernel draws whole images on one thread straight into an image-sized depth buffer (the direct
    path: a batch of at least as many images as threads, images up to 1024 x 1024 pixels) and bins triangles
    into tiles otherwise (threads inside one image). The nearest (z/w, id) wins whatever the order, so both
    give the same rast and db: intersecting triangles, exact depth ties, corners behind the camera
    (clipping), culling on and off, and sizes on both sides of the direct path's limit."""
    pos, tri = random_scene(gen, B=3, T=300, dtype=torch.float32, layered=False, spread=1.2)
    pos[:, :40, 3] *= -0.2  # corners behind the camera
    tri = torch.cat([tri, tri[:25]])  # duplicated triangles: depth ties, the lower id wins
    n = torch.get_num_threads()
    try:
        for cull in (False, True):
            torch.set_num_threads(1)  # one thread: every image on the direct path (below the size limit)
            direct = ops.rasterize(pos, tri, res, cull_backfaces=cull, return_db=True)
            torch.set_num_threads(2)  # one image at a time, two threads inside it: the binned path
            binned = [ops.rasterize(pos[b : b + 1], tri, res, cull_backfaces=cull, return_db=True)
                      for b in range(pos.shape[0])]
            for k in range(2):
                assert torch.equal(direct[k], torch.cat([r[k] for r in binned]))
            assert bool((direct[0][..., 3] > 0).any())
    finally:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------------
# near-plane clipping and edge cases
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_plane_clipping(backend, gen):
    """A floor-like triangle reaching behind the camera. Independent check: a pixel is covered exactly
    when its ray hits the triangle in front of the near plane (away from the boundary)."""
    device = device_for(backend)
    verts = torch.tensor(
        [
            [-4.0, -1.0, 2.0],
            [4.0, -1.0, 2.0],
            [0.0, 0.8, -20.0],
            [-1.0, -2.0, 6.0],
            [1.5, 1.0, 5.0],
            [0.5, -0.5, -5.0],
        ],
        dtype=torch.float64,
    )
    verts = verts + 0.05 * torch.randn(verts.shape, generator=gen, dtype=torch.float64)
    pos = perspective(verts, dist=3.0, near=0.5).unsqueeze(0)  # vertices 0, 1, 3, 4 lie behind the near plane
    assert bool((pos[0, :, 2] < -pos[0, :, 3]).any()) and bool((pos[0, :, 3] < 0).any())
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    H, W = 48, 40
    dtype = torch.float32 if backend == "cuda" else torch.float64
    rast = ops.rasterize(pos.to(device, dtype), tri.to(device), (H, W), backend=backend).cpu().double()
    torch.testing.assert_close(rast, ref.rasterize(pos, tri, (H, W)), atol=1e-4, rtol=1e-4)
    px, py = pixel_ndc(H, W)
    PY, PX = torch.meshgrid(py, px, indexing="ij")
    for t in range(2):
        v = pos[0][tri[t].long()]
        b, zw = barycentrics(v, PX, PY)
        wpt = (b * v[:, 3]).sum(-1)
        margin = torch.minimum(b.min(-1).values, (zw + 1) * 0.5)
        should = (margin > 0) & (wpt > 0)
        mine = rast[0, ..., 3] == t + 1
        clear = margin.abs() > 0.02
        other = rast[0, ..., 3] == 2 - t
        assert bool(should.any())
        assert torch.equal((mine | other)[clear & should], torch.ones_like(mine[clear & should]))
        assert not bool((mine & clear & ~should).any())
        # where this triangle wins, barycentrics are inside and the point is in front of the near plane
        assert bool((rast[0, ..., 0][mine] >= -1e-9).all()) and bool(
            (rast[0, ..., 2][mine] >= -1 - 1e-9).all()
        )


def test_edge_cases():
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    # empty mesh
    r = ops.rasterize(torch.zeros(2, 0, 4), torch.zeros(0, 3, dtype=torch.int32), (4, 6))
    assert r.shape == (2, 4, 6, 4) and not bool(r.any())
    # zero-area and degenerate triangles cover nothing
    pos = torch.tensor([[[0, 0, 0, 1], [0.5, 0.5, 0, 1], [1, 1, 0, 1.0]]])
    assert not bool(ops.rasterize(pos, tri, 16).any())
    assert not bool(ops.rasterize(pos, torch.tensor([[0, 0, 1]], dtype=torch.int32), 16).any())
    # entirely off screen, entirely behind the camera
    off = torch.tensor([[[5, 5, 0, 1], [6, 5, 0, 1], [5, 6, 0, 1.0]]])
    behind = torch.tensor([[[0, 0, 0, -1], [1, 0, 0, -1], [0, 1, 0, -1.0]]])
    assert not bool(ops.rasterize(off, tri, 16).any()) and not bool(ops.rasterize(behind, tri, 16).any())
    # a 1x1 image and a [V, 4] input
    full = torch.tensor([[-3, -3, 0, 1], [3, -3, 0, 1], [0, 3, 0, 1.0]])
    r = ops.rasterize(full, tri, 1)
    assert r.shape == (1, 1, 1, 4) and int(r[0, 0, 0, 3]) == 1
    # non-square: the lower-left half triangle covers exactly the pixel centres with px + py < 0
    r = ops.rasterize(
        torch.tensor([[[-1, -1, 0, 1], [1, -1, 0, 1], [-1, 1, 0, 1.0]]], dtype=torch.float64), tri, (8, 20)
    )
    px, py = pixel_ndc(8, 20)
    assert torch.equal(r[0, ..., 3] > 0, (px.view(1, 20) + py.view(8, 1)) < 0)
    # huge triangles (guard-band clipping) still cover the image exactly
    huge = torch.tensor([[[-1e7, -1e7, 0, 1], [1e7, -1e7, 0, 1], [0, 1e7, 0, 1.0]]])
    assert bool((ops.rasterize(huge, tri, (5, 7))[..., 3] == 1).all())


def test_bad_input():
    pos = torch.rand(1, 3, 4)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"tri\[1\].*outside \[0, V=3\)"):
        ops.rasterize(pos, torch.tensor([[0, 1, 2], [0, 1, 3]], dtype=torch.int32), 8)
    with pytest.raises(ValueError, match=r"tri\[0\]"):
        ops.rasterize(pos, torch.tensor([[0, -1, 2]], dtype=torch.int32), 8)
    with pytest.raises(ValueError, match="pos must have shape"):
        ops.rasterize(torch.rand(1, 3, 3), tri, 8)
    with pytest.raises(TypeError, match="tri must have dtype"):
        ops.rasterize(pos, tri.float(), 8)
    with pytest.raises(TypeError, match="pos must have dtype"):
        ops.rasterize(pos.half(), tri, 8)
    with pytest.raises(ValueError, match="resolution"):
        ops.rasterize(pos, tri, (0, 4))
    with pytest.raises(TypeError, match="resolution"):
        ops.rasterize(pos, tri, "big")
    with pytest.raises(ValueError, match="backend"):
        ops.rasterize(pos, tri, 8, backend="gpu")
    with pytest.raises(ValueError, match=r"rasterize_backward: .*tri\[0\]|tri\[0\]"):
        torch.ops.facecore.rasterize_backward(
            torch.zeros(1, 2, 2, 4),
            pos,
            torch.tensor([[0, 1, 9]], dtype=torch.int32),
            torch.zeros(1, 2, 2, 4),
        )


def test_opcheck_and_compile(gen):
    pos, tri = random_scene(gen, B=1, T=6, dtype=torch.float32)
    torch.library.opcheck(torch.ops.facecore.rasterize.default, (pos, tri, 9, 11, False, True))
    fn = torch.compile(lambda p: ops.rasterize(p, tri, (9, 11)), fullgraph=True, backend="eager")
    torch.testing.assert_close(fn(pos), ops.rasterize(pos, tri, (9, 11)))


# ---------------------------------------------------------------------------------------------------
# against an independent rasterizer: Mesa's software OpenGL (llvmpipe) through moderngl + EGL
# ---------------------------------------------------------------------------------------------------


def _gl_context():
    moderngl = pytest.importorskip("moderngl")
    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as e:  # noqa: BLE001 - no EGL/Mesa on this machine
        pytest.skip(f"no headless OpenGL context: {e}")


def gl_rasterize(ctx, pos, tri, H, W):
    """Triangle ids and perspective-correct (u, v) from OpenGL, rows top to bottom."""
    import numpy as np

    prog = ctx.program(
        vertex_shader="""
        #version 330
        in vec4 in_pos; in vec3 in_bary; out vec3 bary;
        void main() { gl_Position = in_pos; bary = in_bary; }""",
        fragment_shader="""
        #version 330
        in vec3 bary; layout(location = 0) out vec4 out_col;
        void main() { out_col = vec4(bary.x, bary.y, float(gl_PrimitiveID + 1), 1.0); }""",
    )
    v = pos[tri.long()].reshape(-1, 4).float().numpy()
    bary = np.tile(np.eye(3, dtype="f4"), (tri.shape[0], 1))
    vbo = ctx.buffer(np.concatenate([v, bary], 1).astype("f4").tobytes())
    vao = ctx.vertex_array(prog, [(vbo, "4f 3f", "in_pos", "in_bary")])
    fbo = ctx.framebuffer(
        color_attachments=[ctx.texture((W, H), 4, dtype="f4")], depth_attachment=ctx.depth_texture((W, H))
    )
    fbo.use()
    fbo.clear(0, 0, 0, 0, depth=1.0)
    ctx.enable(ctx.DEPTH_TEST)
    ctx.depth_func = "<"
    vao.render()
    img = np.frombuffer(fbo.read(components=4, dtype="f4"), dtype="f4").reshape(H, W, 4)[::-1]
    for o in (vao, vbo, fbo, prog):
        o.release()
    return torch.from_numpy(img.copy()).double()


def own_edge_distance(pos, tri, ids, H, W):
    """Per pixel: screen distance (pixels) from its centre to the nearest edge of triangle ``ids - 1``
    (inf where ids == 0)."""
    px, py = pixel_ndc(H, W)
    X = ((px + 1) * W / 2).view(1, W, 1).expand(H, W, 1)
    Y = ((1 - py) * H / 2).view(H, 1, 1).expand(H, W, 1)
    sx = (pos[:, 0] / pos[:, 3] + 1) * W / 2
    sy = (1 - pos[:, 1] / pos[:, 3]) * H / 2
    c = tri.long()[(ids.long() - 1).clamp_min(0)]  # [H, W, 3]
    ax, ay = sx[c], sy[c]
    bx, by = ax.roll(-1, -1), ay.roll(-1, -1)
    ex, ey = bx - ax, by - ay
    L2 = (ex * ex + ey * ey).clamp_min(1e-30)
    t = (((X - ax) * ex + (Y - ay) * ey) / L2).clamp(0, 1)
    d = torch.hypot(X - ax - t * ex, Y - ay - t * ey).min(-1).values
    return torch.where(ids > 0, d, torch.full_like(d, float("inf")))


def _scene_for_gl(name, gen, request):
    if name == "random":
        pos, tri = random_scene(gen, B=1, T=60, layered=False)
        return pos[0], tri, (64, 80)
    if name == "sphere":
        verts, tri = uv_sphere(7)
        rot = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))[0]
        return perspective(verts @ rot.T, f=2.4), tri, (64, 80)
    from facecore.render import Camera

    if name == "default_rig":
        from facecore.rig import default_rig

        rig = default_rig()
    else:
        from facecore.rig import load_ict

        rig = load_ict(request.getfixturevalue("ict_dir"))
    cam = Camera.framing(rig.neutral, (320, 256), direction=(0.3, 0.1, 1.0))
    return cam.clip(rig.neutral.double()), rig.triangles, (320, 256)


@pytest.mark.parametrize("scene", ["random", "sphere", "default_rig", "ict"])
def test_against_software_opengl(scene, gen, request):
    """Triangle ids identical on >= 99.9% of the covered pixels more than half a pixel away from the
    edges of the triangles either renderer shows there; barycentrics within 1e-4 on those pixels."""
    ctx = _gl_context()
    pos, tri, (H, W) = _scene_for_gl(scene, gen, request)
    ours = ops.rasterize(pos, tri, (H, W))[0]
    gl = gl_rasterize(ctx, pos, tri, H, W)
    clear = (own_edge_distance(pos, tri, ours[..., 3], H, W).clamp_max(1e9) > 0.5) & (
        own_edge_distance(pos, tri, gl[..., 2], H, W).clamp_max(1e9) > 0.5
    )
    covered = (ours[..., 3] > 0) | (gl[..., 2] > 0)
    sel = clear & covered
    assert int(sel.sum()) > 100
    same = ours[..., 3][sel] == gl[..., 2][sel]
    assert float(same.double().mean()) >= 0.999
    both = sel & (ours[..., 3] == gl[..., 2]) & (ours[..., 3] > 0)
    torch.testing.assert_close(ours[..., :2][both], gl[..., :2][both], atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------------
# triangle checks inside the op, limits, memory
# ---------------------------------------------------------------------------------------------------


def test_int64_indices_are_checked_before_the_int32_cast():
    pos = torch.rand(1, 3, 4)
    for bad in (2**32 + 2, -(2**32) + 1, 2**31):  # would wrap to 2, 1 and -2^31 in int32
        tri = torch.tensor([[0, 1, 2], [0, 1, bad]], dtype=torch.int64)
        with pytest.raises(ValueError, match=r"rasterize: tri\[1\].*outside \[0, V=3\)"):
            ops.rasterize(pos, tri, 8)
    # in range, int64 works exactly like int32
    tri = torch.tensor([[0, 1, 2]])
    torch.testing.assert_close(ops.rasterize(pos, tri, 8), ops.rasterize(pos, tri.int(), 8))


def test_index_checks_run_inside_the_op():
    """torch.compile calls the custom op, not the eager-only code of the public wrapper: the op checks."""
    pos = torch.rand(1, 3, 4)
    bad = torch.tensor([[0, 1, 2**32 + 1]])
    fn = torch.compile(lambda p, t: ops.rasterize(p, t, 8), fullgraph=True, backend="eager")
    with pytest.raises(ValueError, match=r"tri\[0\].*outside"):
        fn(pos, bad)
    with pytest.raises(ValueError, match=r"rasterize: tri\[0\].*outside"):
        torch.ops.facecore.rasterize(pos, bad, 8, 8, False, False)
    with pytest.raises(ValueError, match=r"rasterize_backward: tri\[0\].*outside"):
        torch.ops.facecore.rasterize_backward(torch.zeros(1, 2, 2, 4), pos, bad, torch.zeros(1, 2, 2, 4))


def test_more_triangles_than_float32_ids_can_hold():
    """ids travel as floats (id + 1 in rast): a float32 mesh is limited to 2^24 - 1 triangles, checked on the
    shape before anything is copied (the stride-0 [2^24, 3] view below is never materialised)."""
    pos = torch.rand(1, 3, 4)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32).expand(2**24, 3)
    with pytest.raises(ValueError, match=r"rasterize: tri has 16777216 triangles, more than the 16777215"):
        ops.rasterize(pos, tri, 8)
    with pytest.raises(ValueError, match="16777215"):
        torch.ops.facecore.rasterize_backward(torch.zeros(1, 2, 2, 4), pos, tri, torch.zeros(1, 2, 2, 4))


def test_cuda_errors_are_runtime_errors_and_bad_input_value_errors():
    from facecore import _C

    with pytest.raises(RuntimeError, match="an injected CUDA failure") as info:
        _C._raise_cuda_error("an injected CUDA failure")
    assert not isinstance(info.value, ValueError)
    pos, tri, rast = torch.rand(1, 3, 4), torch.zeros(1, 3, dtype=torch.int32), torch.empty(1, 0, 4, 4)
    with pytest.raises(ValueError, match="rasterize_forward: resolution"):
        _C.rasterize_forward(pos, tri, rast, torch.empty(0), False, False, 1, 0)


def grid_mesh_fast(n, dtype=torch.float32):
    """An n x n quad grid over NDC [-0.8, 0.8]^2 (2 n^2 triangles), built without Python loops."""
    xs = torch.linspace(-0.8, 0.8, n + 1, dtype=dtype)
    Y, X = torch.meshgrid(xs, xs, indexing="ij")
    pos = torch.stack([X, Y, torch.zeros_like(X), torch.ones_like(X)], -1).reshape(1, -1, 4)
    a = (torch.arange(n).view(n, 1) * (n + 1) + torch.arange(n).view(1, n)).reshape(-1)
    b, c, d = a + 1, a + n + 1, a + n + 2
    tri = torch.cat([torch.stack([a, b, d], 1), torch.stack([a, d, c], 1)]).to(torch.int32)
    return pos, tri


def rss_growth_in_fresh_thread(warmup, call) -> tuple[float, object]:
    """RSS growth over call(), measured in a new thread right after it returns: the kernels' scratch is
    per calling thread, so earlier calls on other threads cannot have pre-grown it."""
    import threading

    psutil = pytest.importorskip("psutil")
    proc, box = psutil.Process(), {}

    def run():
        warmup()  # OpenMP threads and a small scratch exist
        before = proc.memory_info().rss
        box["out"] = call()
        box["grown"] = proc.memory_info().rss - before

    th = threading.Thread(target=run)
    th.start()
    th.join()
    return box["grown"], box["out"]


@pytest.mark.timeout(60)
def test_thread_scratch_is_released_after_a_big_call():
    """The per-thread scratch (prims + coefficients, ~190 bytes per triangle) must not stay allocated after a
    big call: here 800k triangles would keep ~155 MB."""
    pos, tri = grid_mesh_fast(633)  # 801,378 triangles
    small_pos, small_tri = grid_mesh_fast(4)
    grown, rast = rss_growth_in_fresh_thread(lambda: ops.rasterize(small_pos, small_tri, 16),
                                             lambda: ops.rasterize(pos, tri, (32, 48)))
    assert bool((rast[..., 3] > 0).any())
    assert grown < 40e6, f"RSS grew by {grown / 1e6:.0f} MB"
    # and a small call afterwards still works (fresh scratch)
    torch.testing.assert_close(ops.rasterize(small_pos, small_tri, 16), ref.rasterize(small_pos.double(),
                               small_tri, 16).float(), atol=2e-5, rtol=1e-4)


_GUARD_PRELUDE = """
import torch
from facecore import _C
from tests.guard_pages import guarded as g
from tests.ops.test_rasterize import random_scene
from tests.meshes import uv_sphere
gen = torch.Generator().manual_seed(0)

def scenes(dtype):
    # layered random triangles (some reaching outside the guard band / behind the camera) and a closed mesh
    pos, tri = random_scene(gen, B=2, T=23, dtype=dtype, spread=1.5)
    pos[0, :4, 3] = -pos[0, :4, 3]  # corners behind the camera: the clipping path
    yield pos, tri
    verts, faces = uv_sphere(5, dtype)
    w = verts[:, 2:3] + 3.0
    yield torch.cat([verts[:, :2] * 1.7, verts[:, 2:3] * 0.1, w], 1).expand(2, -1, -1).contiguous(), faces
"""


def run_guarded(body: str):
    import textwrap

    from tests.guard_pages import run_isolated

    rc, log = run_isolated(_GUARD_PRELUDE + textwrap.dedent(body) + "\nprint('ok')\n")
    assert rc == 0 and log.rstrip().endswith("ok"), f"exit code {rc} (-11 = SIGSEGV)\n{log[-3000:]}"


@pytest.mark.timeout(180)
def test_cpu_kernels_stay_inside_their_arrays():
    """rasterize forward (with db) and backward with every array ending at a PROT_NONE page (a read or write
    past the end is a SIGSEGV in the child interpreter); odd sizes, float32 and float64."""
    run_guarded("""
        for dtype in (torch.float32, torch.float64):
            for pos, tri in scenes(dtype):
                for H, W in ((13, 17), (1, 1), (16, 5)):
                    shape = (pos.shape[0], H, W, 4)
                    rast, db = g(torch.empty(shape, dtype=dtype)), g(torch.empty(shape, dtype=dtype))
                    _C.rasterize_forward(g(pos), g(tri), rast, db, True, False, 2, 0)
                    no_db = g(torch.empty(0, dtype=dtype))
                    _C.rasterize_forward(g(pos), g(tri), rast, no_db, False, True, 2, 0)
                    gp, grad = g(torch.empty_like(pos)), g(torch.randn(shape, dtype=dtype))
                    _C.rasterize_backward(g(pos), g(tri), g(rast), grad, gp, 2, 0)
                    assert bool(torch.isfinite(gp).all())
    """)


# ---------------------------------------------------------------------------------------------------
# GPU only: CPU/CUDA agreement, devices, large batches
# ---------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("layered", [True, False])
def test_cpu_and_cuda_agree_bit_for_bit(layered, gen):
    """One triangle setup (raster_common.h) in exact float64 on both sides: from the same float32 input the
    CPU and CUDA kernels give identical rast and db, intersecting triangles and clipped ones included."""
    pos, tri = random_scene(gen, B=3, T=200, dtype=torch.float32, layered=layered, spread=1.3)
    pos[:, :30, 3] *= -0.2  # some corners behind the camera
    for res in [(37, 45), (64, 64), (5, 300)]:
        cpu, dbc = ops.rasterize(pos, tri, res, return_db=True, backend="cpu")
        gpu, dbg = ops.rasterize(pos.cuda(), tri.cuda(), res, return_db=True, backend="cuda")
        assert torch.equal(cpu, gpu.cpu())
        assert torch.equal(dbc, dbg.cpu())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_index_checks_run_inside_the_op():
    pos = torch.rand(1, 3, 4, device="cuda")
    for bad in (torch.tensor([[0, 1, 3]], dtype=torch.int32), torch.tensor([[0, 1, 2**32 + 1]])):
        bad = bad.cuda()
        fn = torch.compile(lambda p, t: ops.rasterize(p, t, 8), fullgraph=True, backend="eager")
        with pytest.raises(ValueError, match=r"tri\[0\].*outside"):
            fn(pos, bad)
        with pytest.raises(ValueError, match=r"rasterize_backward: tri\[0\].*outside"):
            z = torch.zeros(1, 2, 2, 4, device="cuda")
            torch.ops.facecore.rasterize_backward(z, pos, bad, z)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_out_of_memory_is_a_runtime_error():
    """A failing CUDA call (here the scratch allocation, with the device filled up) is a RuntimeError naming
    the op, not a ValueError; the scratch already taken is released and the next call works."""
    pos, tri = grid_mesh_fast(700)  # ~980k triangles: ~180 MB of scratch
    pos, tri = pos.cuda(), tri.cuda()
    want = ops.rasterize(pos, tri, 64, backend="cuda")
    torch.cuda.synchronize()
    try:
        hog = torch.empty(torch.cuda.mem_get_info()[0] - (48 << 20), dtype=torch.uint8, device="cuda")
    except torch.OutOfMemoryError:
        pytest.skip("could not fill the device")
    try:
        with pytest.raises(RuntimeError, match=r"rasterize \(cuda\): cudaMallocAsync") as info:
            ops.rasterize(pos, tri, 64, backend="cuda")
        assert not isinstance(info.value, ValueError)
    finally:
        del hog
        torch.cuda.synchronize()
    assert torch.equal(ops.rasterize(pos, tri, 64, backend="cuda"), want)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tensors_on_a_second_gpu(gen):
    """Every CUDA entry point runs on its tensors' device, whichever device is current."""
    pos, tri = random_scene(gen, B=2, T=20, dtype=torch.float32)
    want = ops.rasterize(pos, tri, (21, 19))
    with torch.cuda.device(0):
        p1 = pos.to("cuda:1").requires_grad_()
        got = ops.rasterize(p1, tri.to("cuda:1"), (21, 19), backend="cuda")
        assert got.device == torch.device("cuda:1")
        (got[..., :3].sum()).backward()
        torch.testing.assert_close(got.cpu(), want)
        attr = torch.randn(2, pos.shape[1], 3, device="cuda:1")
        out = ops.interpolate(attr, got, tri.to("cuda:1"), backend="cuda")
        aa = ops.antialias(out, got, p1, tri.to("cuda:1"), backend="cuda")
        torch.cuda.synchronize(1)
        torch.testing.assert_close(aa.cpu(), ops.antialias(out.cpu(), want, pos, tri), atol=2e-5, rtol=1e-4)
        n = ops.vertex_normals(pos[..., :3].to("cuda:1"), tri.to("cuda:1"), backend="cuda")
        assert n.device == torch.device("cuda:1")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_larger_than_one_scratch_chunk(gen):
    """Images are rasterized in chunks sized to a 1 GB scratch budget: a batch of several chunks gives what
    each image gives alone, and device memory returns to where it was."""
    pos, tri = grid_mesh_fast(230)  # ~106k triangles: ~19 MB of scratch per image, ~55 images per chunk
    B = 130
    pos = pos.cuda().expand(B, -1, -1).clone()
    pos[..., :2] += 0.01 * torch.arange(B, device="cuda").view(B, 1, 1)
    tri = tri.cuda()
    torch.cuda.synchronize()
    free0 = torch.cuda.mem_get_info()[0]
    rast = ops.rasterize(pos, tri, (40, 40), backend="cuda")
    for b in (0, 57, 129):
        assert torch.equal(rast[b], ops.rasterize(pos[b], tri, (40, 40), backend="cuda")[0])
    del rast
    torch.cuda.synchronize()
    assert torch.cuda.mem_get_info()[0] >= free0 - (64 << 20)
