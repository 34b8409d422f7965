"""Rasterize / interpolate / antialias on the CPU: facecore against the plain-torch reference (small scenes),
software OpenGL (moderngl + Mesa llvmpipe through EGL; forward only, including reading the image back) and
DEODR (a CPU differentiable renderer; forward + backward), on the face rigs; plus scaling to large meshes.

    pytest benchmarks/test_rasterize.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref
from facecore.render import Camera, Renderer

from .conftest import load_rig


@functools.cache
def rig_clip(rig_name: str, res: int, B: int):
    """Clip-space positions of B slightly different poses of a rig, framed by a camera; and triangles."""
    rig = load_rig(rig_name)
    cam = Camera.framing(rig.neutral, res)
    g = torch.Generator().manual_seed(0)
    verts = rig.neutral.unsqueeze(0) + 0.05 * torch.randn(B, *rig.neutral.shape, generator=g)
    return cam.clip(verts).contiguous(), rig.triangles, verts, cam


@functools.cache
def sphere_mesh(n_tri: int):
    """A UV sphere with about n_tri triangles, clip space, filling most of the image."""
    n = max(4, int(round(math.sqrt(n_tri / 4))))
    theta = torch.linspace(0, math.pi, n + 1, dtype=torch.float64)[1:-1]
    phi = torch.linspace(0, 2 * math.pi, 2 * n + 1, dtype=torch.float64)[:-1]
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    verts = torch.cat(
        [
            torch.tensor([[0.0, 1, 0]], dtype=torch.float64),
            ring,
            torch.tensor([[0.0, -1, 0]], dtype=torch.float64),
        ]
    )
    m = 2 * n
    i = torch.arange(n - 2).view(-1, 1)
    j = torch.arange(m).view(1, -1)
    a, b = 1 + i * m + j, 1 + i * m + (j + 1) % m
    quads = torch.stack([torch.stack([a, b, a + m], -1), torch.stack([b, b + m, a + m], -1)], 2).reshape(
        -1, 3
    )
    top = torch.stack([torch.zeros(m, dtype=torch.long), 1 + (j[0] + 1) % m, 1 + j[0]], -1)
    last = len(verts) - 1
    bot = torch.stack([torch.full((m,), last), 1 + (n - 2) * m + j[0], 1 + (n - 2) * m + (j[0] + 1) % m], -1)
    tri = torch.cat([top, quads, bot]).to(torch.int32)
    cam = Camera.perspective((0, 0, 3.2), (0, 0, 0), fov_y=45)
    return cam.clip(verts.float()).unsqueeze(0).contiguous(), tri


def small_scene(T=200, res=64):
    g = torch.Generator().manual_seed(1)
    w = 1.0 + 0.5 * torch.rand(1, T, 3, generator=g)
    xy = (torch.rand(1, T, 1, 2, generator=g) * 2 - 1) * 0.8 + 0.2 * torch.randn(1, T, 3, 2, generator=g)
    z = torch.rand(1, T, 3, generator=g) * 1.6 - 0.8
    pos = torch.cat([xy * w.unsqueeze(-1), (z * w).unsqueeze(-1), w.unsqueeze(-1)], -1).reshape(1, 3 * T, 4)
    return pos.contiguous(), torch.arange(3 * T, dtype=torch.int32).view(T, 3)


# ---------------------------------------------------------------------------------------------------
# facecore against the reference (small scenes: the reference is per pixel x per triangle)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["facecore", "reference"])
@pytest.mark.parametrize("op", ["rasterize", "interpolate", "antialias"])
def test_vs_reference_small(benchmark, op, impl):
    pos, tri = small_scene()
    res = (64, 64)
    lib = ops if impl == "facecore" else ref
    benchmark.group = f"{op} fwd+bwd cpu small scene T=200 64x64"
    pos = pos.clone().requires_grad_()
    rast = ops.rasterize(pos.detach(), tri, res)
    attr = torch.rand(1, pos.shape[1], 3, requires_grad=True)
    color = torch.rand(1, 64, 64, 3, requires_grad=True)

    def step():
        if op == "rasterize":
            out = lib.rasterize(pos, tri, res)
        elif op == "interpolate":
            out = lib.interpolate(attr, lib.rasterize(pos, tri, res), tri)
        else:
            out = lib.antialias(color, rast, pos, tri)
        out.sum().backward()

    benchmark.pedantic(step, rounds=5 if impl == "reference" else 30, warmup_rounds=1)


# ---------------------------------------------------------------------------------------------------
# scaling: 512^2 / 1024^2 with ~50k and ~500k triangles
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("res", [512, 1024])
@pytest.mark.parametrize("n_tri", [50_000, 500_000])
@pytest.mark.parametrize("op", ["rasterize", "interpolate", "antialias"])
def test_scaling(benchmark, op, n_tri, res):
    pos, tri = sphere_mesh(n_tri)
    benchmark.group = f"{op} forward cpu sphere {res}x{res}"
    benchmark.extra_info.update(T=int(tri.shape[0]), res=res)
    with torch.no_grad():
        rast = ops.rasterize(pos, tri, res)
        if op == "rasterize":
            benchmark.pedantic(ops.rasterize, (pos, tri, res), rounds=5, warmup_rounds=1)
        elif op == "interpolate":
            attr = torch.rand(1, pos.shape[1], 3)
            benchmark.pedantic(ops.interpolate, (attr, rast, tri), rounds=5, warmup_rounds=1)
        else:
            color = torch.rand(1, res, res, 3)
            benchmark.pedantic(ops.antialias, (color, rast, pos, tri), rounds=5, warmup_rounds=1)


# ---------------------------------------------------------------------------------------------------
# peers on the rigs: software OpenGL (forward) and DEODR (forward + backward)
# ---------------------------------------------------------------------------------------------------


@functools.cache
def gl_context():
    moderngl = pytest.importorskip("moderngl")
    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no headless OpenGL (EGL) context: {e}")


def gl_frames(clip: torch.Tensor, tri: torch.Tensor, res: int):
    """A callable drawing every frame of clip [B, V, 4] with OpenGL (triangle id + depth test) and
    reading the id image back: the same work as facecore.ops.rasterize."""
    ctx = gl_context()
    prog = ctx.program(
        vertex_shader="""
        #version 330
        in vec4 in_pos; void main() { gl_Position = in_pos; }""",
        fragment_shader="""
        #version 330
        layout(location = 0) out vec4 o; void main() { o = vec4(0, 0, 0, float(gl_PrimitiveID + 1)); }""",
    )
    frames = [c.float().numpy().astype("f4") for c in clip]
    vbo = ctx.buffer(reserve=frames[0].nbytes)
    ibo = ctx.buffer(tri.numpy().astype("i4").tobytes())
    vao = ctx.vertex_array(prog, [(vbo, "4f", "in_pos")], index_buffer=ibo, index_element_size=4)
    fbo = ctx.framebuffer(
        color_attachments=[ctx.texture((res, res), 4, dtype="f4")],
        depth_attachment=ctx.depth_texture((res, res)),
    )
    ctx.enable(ctx.DEPTH_TEST)

    def run():
        out = []
        for f in frames:
            vbo.write(f.tobytes())
            fbo.use()
            fbo.clear(0, 0, 0, 0, depth=1.0)
            vao.render()
            out.append(np.frombuffer(fbo.read(components=4, dtype="f4"), dtype="f4"))
        return out

    return run


@pytest.mark.parametrize("impl", ["facecore", "opengl"])
@pytest.mark.parametrize("B", [1, 16])
@pytest.mark.parametrize("res", [64, 256, 512])
@pytest.mark.parametrize("rig_name", ["ict", "default"])
def test_rasterize_vs_opengl(benchmark, rig_name, res, B, impl):
    clip, tri, _, _ = rig_clip(rig_name, res, B)
    benchmark.group = f"rasterize forward cpu {rig_name} {res}x{res} B={B}"
    benchmark.extra_info.update(T=int(tri.shape[0]))
    if impl == "facecore":
        with torch.no_grad():
            benchmark(ops.rasterize, clip, tri, res)
    else:
        benchmark(gl_frames(clip, tri, res))


def deodr_frames(rig_name: str, verts: torch.Tensor, res: int, backward: bool):
    pytest.importorskip("trimesh")  # deodr 0.2.3 needs it at import time
    deodr = pytest.importorskip("deodr")
    from deodr.differentiable_renderer import Scene3D, default_camera
    from deodr.triangulated_mesh import ColoredTriMesh

    rig = load_rig(rig_name)
    faces = rig.triangles.numpy().astype(np.int32)
    colors = (rig.colors if rig.colors is not None else torch.full_like(rig.neutral, 0.75)).double().numpy()
    frames = [v.double().numpy() for v in verts]
    mesh = ColoredTriMesh(faces, frames[0].copy(), colors=colors)
    scene = Scene3D(sigma=1.0)
    scene.set_mesh(mesh)
    scene.set_light(light_directional=np.array([0.3, 0.4, -1.0]), light_ambient=0.35)
    scene.set_background_color(np.zeros(3))
    cam = default_camera(res, res, 20, frames[0], np.diag([1.0, -1.0, -1.0]))
    del deodr

    def run():
        for f in frames:
            mesh.set_vertices(f)
            img = scene.render(cam)
            if backward:
                scene.clear_gradients()
                scene.render_backward(np.ones_like(img))

    return run


@pytest.mark.parametrize("impl", ["facecore", "deodr"])
@pytest.mark.parametrize("B", [1, 16])
@pytest.mark.parametrize("res", [64, 256, 512])
@pytest.mark.parametrize("rig_name", ["ict", "default"])
def test_render_fwd_bwd_vs_deodr(benchmark, rig_name, res, B, impl):
    """Shaded, antialiased image of posed vertices and the gradient of its sum to the vertices."""
    clip, tri, verts, cam = rig_clip(rig_name, res, B)
    benchmark.group = f"render fwd+bwd cpu {rig_name} {res}x{res} B={B}"
    benchmark.extra_info.update(T=int(tri.shape[0]))
    if impl == "deodr":
        benchmark.pedantic(deodr_frames(rig_name, verts, res, True), rounds=3, warmup_rounds=1)
        return
    r = Renderer(load_rig(rig_name), camera=cam)
    v = verts.clone().requires_grad_()

    def step():
        v.grad = None
        r.render_vertices(v).image.sum().backward()

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


def test_renderer_animation_default_rig(benchmark):
    """The animation demo's workload: 16 frames of ARKit parameters -> RGBA at 256x256, no gradients."""
    rig = load_rig("default")
    r = Renderer(rig, resolution=256)
    params = torch.rand(16, 61, generator=torch.Generator().manual_seed(0)) * 0.3
    benchmark.group = "renderer forward cpu default 256x256 B=16"

    def run():
        with torch.no_grad():
            return r(params)

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
