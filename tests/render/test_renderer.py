"""Renderer, Camera and Lights: geometry of the cameras, the default rig end to end (maps, gradients to the
ARKit parameters), raw meshes, textures, Blinn-Phong, supersampling, PNG output, bad input."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import facecore.ops as ops
from facecore.render import Camera, Lights, Renderer, look_at

from ..meshes import uv_sphere


def sphere(n=12, dtype=torch.float32):
    verts, faces = uv_sphere(n)
    uv = torch.stack(
        [torch.atan2(verts[:, 2], verts[:, 0]) / (2 * math.pi) + 0.5, verts[:, 1] * 0.5 + 0.5], -1
    )
    return verts.to(dtype), faces, uv.to(dtype)


@pytest.fixture(scope="module")
def rig():
    from facecore.rig import default_rig

    return default_rig()


def test_camera_intrinsics_project_to_pixels():
    H, W, fx, fy, cx, cy = 40, 60, 55.0, 50.0, 31.0, 18.5
    cam = Camera.perspective(
        (0, 0, 0), (0, 0, -1), resolution=(H, W), focal_px=(fx, fy), principal=(cx, cy), near=0.1, far=100
    )
    pts = torch.tensor([[0.3, -0.2, -2.0], [-1.0, 0.5, -5.0]], dtype=torch.float64)
    clip = cam.clip(pts)
    ndc = clip[:, :3] / clip[:, 3:]
    px = (ndc[:, 0] + 1) * W / 2
    py = (1 - ndc[:, 1]) * H / 2
    torch.testing.assert_close(px, cx + fx * pts[:, 0] / -pts[:, 2])
    torch.testing.assert_close(py, cy - fy * pts[:, 1] / -pts[:, 2])
    torch.testing.assert_close(clip[:, 3], -pts[:, 2])
    # near and far planes map to z/w = -1 and +1
    z = cam.clip(torch.tensor([[0.0, 0, -0.1], [0.0, 0, -100.0]], dtype=torch.float64))
    torch.testing.assert_close(z[:, 2] / z[:, 3], torch.tensor([-1.0, 1.0], dtype=torch.float64))


def test_look_at_and_orthographic():
    m = look_at((3, 2, 5), (0, 0, 0))
    torch.testing.assert_close(m[:3, :3] @ m[:3, :3].T, torch.eye(3, dtype=torch.float64))
    cam = Camera.orthographic((0, 0, 10), (0, 0, 0), resolution=(20, 40), height=4.0)
    c = cam.clip(torch.tensor([[2.0, 1.0, 0.0], [-4.0, -2.0, 3.0]], dtype=torch.float64))
    torch.testing.assert_close(c[:, :2], torch.tensor([[0.5, 0.5], [-1.0, -1.0]], dtype=torch.float64))
    torch.testing.assert_close(cam.eye, torch.tensor([0.0, 0, 10], dtype=torch.float64))
    with pytest.raises(ValueError, match="up must not be parallel"):
        look_at((0, 5, 0), (0, 0, 0), up=(0, 1, 0))
    with pytest.raises(ValueError, match="fov_y"):
        Camera.perspective(fov_y=200)


def test_default_rig_renders_all_maps(rig, tmp_path):
    r = Renderer(rig, resolution=(48, 40))
    params = torch.zeros(2, 61)
    params[1, 24] = 0.8  # a jaw/mouth channel in the second frame
    out = r(params)
    assert out.image.shape == (2, 48, 40, 3) and out.alpha.shape == (2, 48, 40, 1)
    assert out.depth.shape == (2, 48, 40, 1) and out.normal.shape == (2, 48, 40, 3)
    assert out.triangle_id.shape == (2, 48, 40) and out.rgba.shape == (2, 48, 40, 4)
    cov = out.triangle_id >= 0
    assert 0.1 < float(cov.float().mean()) < 0.9
    assert bool((out.alpha >= 0).all()) and bool((out.alpha <= 1 + 1e-6).all())
    assert bool((out.depth[cov] > 0).all()) and bool((out.depth[~cov] == 0).all())
    torch.testing.assert_close(out.normal[cov].norm(dim=-1), torch.ones(int(cov.sum())), atol=1e-5, rtol=0)
    # the triangle ids are the rasterizer's
    verts = ops.deform(params, rig)
    rast = ops.rasterize(r.camera.clip(verts), rig.triangles, (48, 40))
    assert torch.equal(out.triangle_id, rast[..., 3].long() - 1)
    # PNG output
    png = out.save_png(tmp_path / "frame.png", index=1)
    import imageio.v3 as iio

    img = iio.imread(png)
    assert img.shape == (48, 40, 4) and img.dtype.name == "uint8"
    assert torch.equal(torch.from_numpy(img), out.to_uint8()[1])


def test_gradients_reach_params(rig):
    r = Renderer(rig, resolution=40, lights=Lights(model="blinn_phong"))
    params = torch.full((1, 61), 0.1, requires_grad=True)
    out = r(params)
    target = torch.rand(out.image.shape, generator=torch.Generator().manual_seed(0))
    loss = ((out.image - target) ** 2).mean() + out.alpha.mean()
    loss.backward()
    g = params.grad
    assert bool(torch.isfinite(g).all()) and float(g.abs().max()) > 0
    assert float(g[0, 52:55].abs().sum()) > 0  # head pose moves the silhouette


def _slope_and_mean_grad(r, verts, direction, w):
    """Least-squares slope of the weighted alpha sum over shifts in [-0.1, 0.1] (world units; the pixel
    jumps average out) and the mean analytic derivative over the same shifts."""
    xs = torch.linspace(-0.1, 0.1, 11, dtype=torch.float64)
    d = torch.tensor(direction, dtype=torch.float64).view(1, 1, 3)
    losses, grads = [], []
    for x in xs:
        s = (d * x).requires_grad_()
        loss = (r.render_vertices(verts + s).alpha * w).sum()
        (g,) = torch.autograd.grad(loss, s)
        losses.append(float(loss.detach()))
        grads.append(float((g * d).sum()))
    A = torch.stack([xs, torch.ones_like(xs)], 1)
    slope = torch.linalg.lstsq(A, torch.tensor(losses, dtype=torch.float64).unsqueeze(1)).solution[0, 0]
    return float(slope), sum(grads) / len(grads)


def test_silhouette_gradient_matches_finite_differences():
    """Moving a mesh sideways: d(sum of alpha * weight)/dx from antialias against the slope of the loss."""
    cam = Camera.perspective((0, 0, 6), (0, 0, 0), resolution=64, fov_y=30)
    w = torch.linspace(0, 1, 64, dtype=torch.float64).view(1, 1, 64, 1)  # weight increasing to the right
    # one triangle with a steep and a shallow edge: the analytic derivative is the slope (discretisation ~1%)
    verts = torch.tensor([[-1.0, -0.8, 0], [1.1, -0.5, 0], [0.2, 1.0, 0]], dtype=torch.float64)
    r = Renderer(verts=verts, triangles=torch.tensor([[0, 1, 2]], dtype=torch.int32), camera=cam)
    slope, grad = _slope_and_mean_grad(r, verts, (1.0, 0, 0), w)
    assert grad == pytest.approx(slope, rel=0.02)
    # a closed sphere: edges are found by walking across the thin triangles along the contour. Measured
    # here: the analytic derivative is ~10% below the slope (pairs whose segment misses the silhouette
    # polyline's corners contribute nothing; Laine et al.'s scheme has the same approximation).
    verts, tri, _ = sphere(16, torch.float64)
    r = Renderer(verts=verts, triangles=tri, camera=cam)
    slope, grad = _slope_and_mean_grad(r, verts, (1.0, 0, 0), w)
    assert grad == pytest.approx(slope, rel=0.15)


def test_raw_mesh_texture_supersampling_and_duck_typed_rig():
    verts, tri, uv = sphere(10)
    cam = Camera.framing(verts, resolution=32)
    tex = torch.zeros(8, 8, 3)
    tex[:4, :, 0] = 1.0  # top half (v > 1/2) red, bottom half blue
    tex[4:, :, 2] = 1.0
    r = Renderer(
        verts=verts,
        triangles=tri,
        camera=cam,
        texture=tex,
        uvs=uv,
        uv_triangles=tri,
        lights=Lights(ambient=(1, 1, 1), colors=[[0, 0, 0]]),
        supersample=2,
    )
    out = r.render_vertices(verts)
    cov = out.alpha[0, ..., 0] > 0.99
    rgb = out.image[0][cov]
    # texels are red or blue; only pixels at the colour boundary and the uv seam mix them
    pure = (rgb[:, 0] > 0.9) | (rgb[:, 2] > 0.9)
    assert float(pure.double().mean()) > 0.8
    top = torch.arange(32).view(32, 1).expand(32, 32)[cov] < 16
    assert (
        float((rgb[top, 0] > 0.9).double().mean()) > 0.8 and float((rgb[~top, 2] > 0.9).double().mean()) > 0.8
    )
    # supersampling gives fractional alpha on the silhouette even without antialias
    r2 = Renderer(verts=verts, triangles=tri, camera=cam, supersample=3, antialias=False)
    a = r2.render_vertices(verts).alpha
    assert bool(((a > 0.05) & (a < 0.95)).any())
    # a duck-typed rig with per-vertex colours renders raw vertices too
    duck = SimpleNamespace(neutral=verts, triangles=tri, colors=torch.rand(len(verts), 3))
    out = Renderer(duck, camera=cam).render_vertices(verts.unsqueeze(0).repeat(3, 1, 1))
    assert out.image.shape == (3, 32, 32, 3)


def test_orthographic_camera_renders():
    verts, tri, _ = sphere(8)
    cam = Camera.framing(verts, resolution=24, orthographic=True)
    out = Renderer(verts=verts, triangles=tri, camera=cam).render_vertices(verts)
    cov = out.alpha[0, ..., 0] > 0.5
    # an orthographic unit sphere is a disc of radius r = 1 / half-height in NDC: pi r^2 / 4 of the image
    r = float(
        cam.clip(torch.tensor([[0.0, 1.0, 0.0]]))[0, 1] - cam.clip(torch.tensor([[0.0, 0.0, 0.0]]))[0, 1]
    )
    assert float(cov.float().mean()) == pytest.approx(math.pi * r * r / 4, rel=0.1)


def test_bad_input(rig):
    verts, tri, _ = sphere(6)
    with pytest.raises(ValueError, match="verts and triangles"):
        Renderer()
    with pytest.raises(ValueError, match="triangles index outside"):
        Renderer(verts=verts, triangles=tri + 1000)
    r = Renderer(verts=verts, triangles=tri, resolution=16)
    with pytest.raises(ValueError, match="must have .* vertices"):
        r.render_vertices(verts[:-1])
    with pytest.raises(ValueError, match="needs a rig"):
        r(torch.zeros(1, 61))
    with pytest.raises(ValueError, match="supersample"):
        Renderer(verts=verts, triangles=tri, supersample=0)
    with pytest.raises(TypeError, match="rig must have"):
        Renderer(object())
