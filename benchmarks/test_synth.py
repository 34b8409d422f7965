"""Synthetic data throughput (images/s): facecore.synth against the OpenGL pipeline a user would write,
and where facecore's time goes.

    pytest benchmarks/test_synth.py --benchmark-only --benchmark-group-by=group

Rows (``extra_info["batch"]`` images per call; images/s = batch / median):

* ``facecore-synth-2t``: ``sample_params`` + ``render_batch`` (the "clean" preset: sampled identity,
  camera, lights, landmarks + visibility, mask; uint8 sRGB images), ``torch.set_num_threads(2)``.
* ``facecore-renderer-2t``: the plain ``Renderer`` (deform, normals, rasterize, interpolate, Lambert +
  ambient, antialias, uint8) with one fixed camera: the like-for-like counterpart of the OpenGL row.
* ``opengl-2t``: moderngl 5 on Mesa llvmpipe (EGL, standalone context) in a spawned process with
  ``LP_NUM_THREADS=2`` (read when Mesa loads) and torch at 2 threads, doing what a user's pipeline does
  per batch of the same sampled parameters: ``rig.deform`` on the CPU (facecore's deform kernel),
  vertex normals (facecore's kernel), one orphan + upload of the B posed meshes (positions + normals),
  one clear, B indexed draws (one vertex-array object per pose into its viewport of one tall
  ``res x (B * res)`` RGBA8 + depth framebuffer), Lambert + ambient in the fragment shader with the rig's
  per-vertex albedo, sRGB-ish gamma, and ONE read-back of the batch. It does less than the facecore rows
  (no antialiasing, no landmarks, masks or sampled scenes) and leaves rows bottom-up. The worker times
  each batch with ``perf_counter``; setup checks its coverage against facecore's rasterizer.
* GPU (skipped without CUDA): ``facecore-synth-cuda`` at a large batch.
* Breakdown (``synth breakdown`` groups, CPU 2 threads, 128^2, B=64): sampling, deform, normals,
  raster, render_vertices (normals + raster + interpolate + shade + antialias), render_batch (the
  whole in-memory sample), encode (PNG + .npy + JSON per sample), io (tar write + fsync of the encoded
  bytes), write_dataset (a whole shard end to end). Shading etc. = render_vertices - raster - normals.

Triton is imported before moderngl in the GL worker (both bring an LLVM; loading Mesa's first has
crashed processes that import Triton later).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import facecore.ops as ops
from benchmarks.gl_process import GLProcess
from benchmarks.threads import torch_threads
from facecore.render import Camera, Renderer

CPU_THREADS = 2
RIGS = ("ict", "stylized")
RESOLUTIONS = (128, 256)
B_CPU = 64
B_GPU = 1024
ROUNDS = 5


@functools.cache
def rig_of(name: str, device: str = "cpu"):
    from facecore.rig import builtin_rig

    return builtin_rig(name, device=device)


@functools.cache
def params_of(B: int, seed: int = 0) -> torch.Tensor:
    from facecore.synth import sample_params

    return sample_params(B, seed)


def rows(benchmark, group: str, impl: str, batch: int, **info) -> None:
    benchmark.group = group
    benchmark.extra_info.update(batch=batch, impl=impl, **info)


# ---------------------------------------------------------------------------------------------------
# software OpenGL, in a spawned worker process
# ---------------------------------------------------------------------------------------------------
_GL_VERTEX = """
#version 330
uniform mat4 mvp;
in vec3 in_pos; in vec3 in_normal; in vec3 in_color;
out vec3 v_normal; out vec3 v_color;
void main() { gl_Position = mvp * vec4(in_pos, 1.0); v_normal = in_normal; v_color = in_color; }
"""
_GL_FRAGMENT = """
#version 330
uniform vec3 light_dir; uniform vec3 light_color; uniform vec3 ambient;
in vec3 v_normal; in vec3 v_color;
layout(location = 0) out vec4 color;
void main() {
    float ndl = max(dot(normalize(v_normal), light_dir), 0.0);
    vec3 rgb = clamp(v_color * (ambient + ndl * light_color), 0.0, 1.0);
    color = vec4(pow(rgb, vec3(1.0 / 2.2)), 1.0);
}
"""


def _gl_pipeline(ctx, rig_name: str, mvps: np.ndarray, lights: dict, res: int):
    """GL objects for the batch pipeline of B = len(mvps) samples (per-sample world -> clip matrices
    [B, 4, 4] and lights {"direction", "color", "ambient": [B, 3]}); -> run(params [B, 61]) -> uint8
    [B * res, res, 4], release()."""
    import moderngl

    rig = rig_of(rig_name)
    tri = rig.triangles
    B, V = len(mvps), rig.num_vertices
    colors = (rig.colors if rig.colors is not None else torch.full_like(rig.neutral, 0.75)).float().numpy()
    prog = ctx.program(vertex_shader=_GL_VERTEX, fragment_shader=_GL_FRAGMENT)
    uniforms = [(np.ascontiguousarray(m.T, dtype="f4").tobytes(),  # GL matrices are column-major
                 *(tuple(float(x) for x in lights[k][b]) for k in ("direction", "color", "ambient")))
                for b, m in enumerate(mvps)]
    vbo = ctx.buffer(reserve=B * V * 24)
    cbo = ctx.buffer(np.ascontiguousarray(colors, dtype="f4"))
    ibo = ctx.buffer(np.ascontiguousarray(tri.numpy(), dtype="i4"))
    locs = [prog[a].location for a in ("in_pos", "in_normal", "in_color")]
    vaos = []
    for b in range(B):  # one vertex-array object per pose: the shared buffers at the pose's offset
        vao = ctx.vertex_array(prog, [], index_buffer=ibo, index_element_size=4)
        vao.bind(locs[0], "f", vbo, "3f", offset=b * V * 24, stride=24)
        vao.bind(locs[1], "f", vbo, "3f", offset=b * V * 24 + 12, stride=24)
        vao.bind(locs[2], "f", cbo, "3f")
        vaos.append(vao)
    fbo = ctx.framebuffer(color_attachments=[ctx.texture((res, B * res), 4)],
                          depth_attachment=ctx.depth_texture((res, B * res)))
    out = np.empty((B * res, res, 4), np.uint8)
    ctx.enable(moderngl.DEPTH_TEST)
    n_index = 3 * tri.shape[0]

    def run(params: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            verts = rig.deform(torch.from_numpy(params))  # [B, V, 3], facecore's deform on the CPU
            normals = ops.vertex_normals(verts, tri)
        vbo.orphan()
        vbo.write(torch.cat([verts, normals], -1).numpy().astype("f4", copy=False))  # one upload
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        for b, vao in enumerate(vaos):  # the sample's camera and light, its viewport, one draw
            mvp, prog["light_dir"].value, prog["light_color"].value, prog["ambient"].value = uniforms[b]
            prog["mvp"].write(mvp)
            fbo.viewport = (0, b * res, res, res)
            vao.render(moderngl.TRIANGLES, vertices=n_index)
        fbo.read_into(out, components=4)  # one read-back for the batch
        return out

    def release():
        for obj in [*vaos, fbo, *fbo.color_attachments, fbo.depth_attachment, vbo, cbo, ibo, prog]:
            obj.release()

    return run, release


class GLWorker:
    def __init__(self, threads: int):
        self.gl = GLProcess(threads, _gl_pipeline)
        self.ok, self.info = self.gl.ok, self.gl.info
        self.clock = 0.0
        self.params: np.ndarray | None = None

    def setup(self, rig_name: str, mvps: np.ndarray, lights: dict, res: int, params: torch.Tensor
              ) -> np.ndarray:
        """Build the pipeline; returns the first batch's images [B, res, res, 4], rows top-down."""
        self.params = params.numpy().astype(np.float32)
        self.gl.setup(rig_name, mvps, lights, res)
        _, img = self.gl.run(self.params, image=True)
        return img.reshape(params.shape[0], res, res, 4)[:, ::-1]

    def run(self) -> None:
        self.clock += self.gl.run(self.params)[0]

    def close(self) -> None:
        self.gl.close()


@pytest.fixture(scope="session")
def gl_worker():
    pytest.importorskip("moderngl")
    worker = GLWorker(CPU_THREADS)
    if not worker.ok:
        pytest.skip(worker.info)
    yield worker
    worker.close()


def _gl_scene(out: dict) -> tuple[np.ndarray, dict]:
    """render_batch's per-sample cameras and (first directional + ambient) lights, for the GL pipeline."""
    lights = out["lights"]
    return out["camera"]["projection"].cpu().numpy(), {
        "direction": lights["directions"][:, 0].cpu().numpy(), "color": lights["colors"][:, 0].cpu().numpy(),
        "ambient": lights["ambient"].reshape(-1, 3).cpu().numpy()}


# ---------------------------------------------------------------------------------------------------
# throughput: facecore against OpenGL (CPU, 2 threads)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.timeout(600)
@pytest.mark.parametrize("impl", [f"facecore-synth-{CPU_THREADS}t", f"facecore-renderer-{CPU_THREADS}t",
                                  f"opengl-{CPU_THREADS}t"])
@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("rig_name", RIGS)
def test_synth_throughput_cpu(benchmark, request, rig_name, res, impl):
    from facecore.synth import load_preset, render_batch, sample_params

    B = B_CPU
    rig = rig_of(rig_name)
    scene = load_preset("clean")
    params = params_of(B)
    rows(benchmark, f"synth images cpu {rig_name} {res}x{res} B={B}", impl, B, threads=CPU_THREADS,
         V=rig.num_vertices, T=rig.num_triangles)
    if impl.startswith("facecore-synth"):
        batches = iter(range(10**9))

        def step():  # a new batch of samples every call, from sampling to uint8 images and labels
            i0 = next(batches) * B
            with torch.no_grad():
                return render_batch(sample_params(B, 0, index0=i0), rig, scene, res, 0, index0=i0)

        with torch_threads(CPU_THREADS):
            benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=1)
        return
    if impl.startswith("facecore-renderer"):
        r = Renderer(rig, camera=Camera.framing(rig.neutral, res), resolution=res)

        def step():
            with torch.no_grad():
                return r(params).to_uint8(alpha=False)

        with torch_threads(CPU_THREADS):
            benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=1)
        return
    gl = request.getfixturevalue("gl_worker")
    with torch.no_grad():
        mvps, lights = _gl_scene(render_batch(params, rig, scene, res, 0))
        clip = torch.einsum("bij,bvj->bvi", torch.from_numpy(mvps),
                            torch.nn.functional.pad(rig.deform(params), (0, 1), value=1.0)).contiguous()
        ours = ops.rasterize(clip, rig.triangles, res)[..., 3].numpy() > 0
    img = gl.setup(rig_name, mvps, lights, res, params)
    differ = float(((img[..., 3] > 0) != ours).sum()) / max(1, int(ours.sum()))
    assert differ < 0.01, f"OpenGL covers different pixels than facecore ({differ:.1%})"
    benchmark.extra_info["gl"] = gl.info
    benchmark._timer = lambda: gl.clock  # the worker's own perf_counter intervals (no pipe round trip)
    benchmark.pedantic(gl.run, rounds=ROUNDS, warmup_rounds=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("rig_name", RIGS)
def test_synth_throughput_gpu(benchmark, rig_name, res):
    """render_batch on the GPU (issue-12 goal on an H200: >= 20,000 images/s at 128^2, default rig)."""
    from facecore.synth import load_preset, render_batch, sample_params

    B = B_GPU if res == 128 else B_GPU // 4
    rig = rig_of(rig_name, "cuda")
    scene = load_preset("clean")
    params = sample_params(B, 0).cuda()

    def step():
        with torch.no_grad():
            out = render_batch(params, rig, scene, res, 0)
        torch.cuda.synchronize()
        return out

    step()
    rows(benchmark, f"synth images gpu {rig_name} {res}x{res} B={B}", "facecore-synth-cuda", B,
         device=torch.cuda.get_device_name(), **({"target_images_per_s": 20000} if res == 128 else {}))
    benchmark.pedantic(step, rounds=10, warmup_rounds=2)


# ---------------------------------------------------------------------------------------------------
# where the time goes (CPU, 2 threads, 128^2, B = 64)
# ---------------------------------------------------------------------------------------------------
STAGES = ("sampling", "deform", "normals", "raster", "render_vertices", "render_batch", "encode", "io",
          "write_dataset")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("rig_name", RIGS)
def test_synth_breakdown(benchmark, rig_name, stage, tmp_path):
    import facecore.synth.dataset as ds
    from facecore.synth import load_preset, render_batch, sample_params

    B, res = B_CPU, 128
    rig = rig_of(rig_name)
    scene = load_preset("clean")
    params = params_of(B)
    cam = Camera.framing(rig.neutral, res)
    r = Renderer(rig, camera=cam, resolution=res)
    with torch.no_grad():
        verts = rig.deform(params)
        clip = cam.clip(verts).contiguous()
    rows(benchmark, f"synth breakdown cpu {rig_name} {res}x{res} B={B}", stage, B, threads=CPU_THREADS)
    spec = ds.DatasetSpec(n=B, rig=rig_name, resolution=res, samples_per_shard=B)
    samples = None
    if stage in ("encode", "io"):
        with torch.no_grad():
            samples = ds._split(render_batch(params, rig, scene, res, 0), B)
        for s in samples:
            s.update(index=0, seed=0, domain="clean", rig=rig_name)
    encoded = [ds._encode(s, spec) for s in samples] if stage == "io" else None

    def run_io():
        shard = ds._ShardFile(tmp_path / "shard-000000.tar")
        for i, members in enumerate(encoded):
            for ext, data in members:
                shard.add(f"{i:09d}.{ext}", data)
        shard.commit()

    write_round = [0]

    def run_write():
        write_round[0] += 1
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            ds.write_dataset(Path(d) / "out", B, rig=rig_name, resolution=res, samples_per_shard=B, batch=B)

    fns = {
        "sampling": lambda: sample_params(B, 0),
        "deform": lambda: rig.deform(params),
        "normals": lambda: ops.vertex_normals(verts, rig.triangles),
        "raster": lambda: ops.rasterize(clip, rig.triangles, res),
        "render_vertices": lambda: r.render_vertices(verts).to_uint8(alpha=False),
        "render_batch": lambda: render_batch(params, rig, scene, res, 0),
        "encode": lambda: [ds._encode(s, spec) for s in samples],
        "io": run_io,
        "write_dataset": run_write,
    }
    fn = fns[stage]

    def step():
        with torch.no_grad():
            return fn()

    with torch_threads(CPU_THREADS):
        benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=1)
