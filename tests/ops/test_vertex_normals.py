"""vertex_normals: every backend against facecore.reference, values and gradients."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref

from ..meshes import uv_sphere
from .conftest import backend_params, device_for


@pytest.mark.parametrize("backend", backend_params(triton=False))
@pytest.mark.parametrize("B,V,F", [(1, 3, 1), (2, 57, 91), (3, 400, 1001)])
def test_vertex_normals_forward_backward(backend, B, V, F, gen):
    device = device_for(backend)
    dtypes = [torch.float32] if backend == "cuda" else [torch.float32, torch.float64]
    for dtype in dtypes:
        verts = torch.randn(B, V, 3, generator=gen, dtype=dtype).to(device).requires_grad_()
        faces = torch.randint(0, V, (F, 3), generator=gen, dtype=torch.int32).to(device)
        out = ops.vertex_normals(verts, faces, backend=backend)
        expected = ref.vertex_normals(verts, faces)
        tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(out, expected, **tol)
        g = torch.randn(out.shape, generator=gen, dtype=dtype).to(device)
        (got,) = torch.autograd.grad(out, verts, g)
        (want,) = torch.autograd.grad(expected, verts, g)
        # random meshes have near-degenerate vertices where 1/|m| is large: relative tolerance
        torch.testing.assert_close(got, want, atol=tol["atol"] * 10, rtol=tol["rtol"] * 10)


def test_vertex_normals_gradcheck_cpu_float64(gen):
    verts, faces = uv_sphere(4)
    verts = (verts + 0.05 * torch.randn(verts.shape, generator=gen, dtype=verts.dtype)).unsqueeze(0)
    assert torch.autograd.gradcheck(lambda v: ops.vertex_normals(v, faces, backend="cpu"),
                                    (verts.requires_grad_(),))


def test_sphere_normals_point_outward():
    verts, faces = uv_sphere(12)
    n = ops.vertex_normals(verts, faces)
    # Area weighting on a 12-ring sphere deviates from the analytic normal by a few degrees at the
    # poles' fan triangles; within 8 degrees everywhere, and exactly unit length.
    cos = (n * verts / verts.norm(dim=-1, keepdim=True)).sum(-1)
    assert bool((cos > 0.99).all())
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(len(verts), dtype=verts.dtype))


def test_degenerate_triangles_are_safe():
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2], [5, 5, 5]]], requires_grad=True)
    faces = torch.tensor([[0, 1, 2], [3, 3, 4], [3, 3, 3]], dtype=torch.int32)  # one good, two degenerate
    out = ops.vertex_normals(verts, faces)
    torch.testing.assert_close(out[0, :3], torch.tensor([[0.0, 0, 1]] * 3))
    assert torch.equal(out[0, 3:], torch.zeros(2, 3))            # no area: zero normal
    out.sum().backward()
    assert torch.isfinite(verts.grad).all()


def test_unbatched_input_and_int64_faces():
    verts, faces = uv_sphere(5)
    torch.testing.assert_close(ops.vertex_normals(verts, faces.long()),
                               ops.vertex_normals(verts[None], faces)[0])


def test_vertex_normals_bad_inputs():
    verts = torch.randn(1, 4, 3)
    with pytest.raises(ValueError, match=r"faces\[1\] has vertex index 7 outside \[0, V=4\)"):
        ops.vertex_normals(verts, torch.tensor([[0, 1, 2], [1, 2, 7]], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"faces\[0\] has vertex index -1"):
        ops.vertex_normals(verts, torch.tensor([[-1, 1, 2]], dtype=torch.int32))
    with pytest.raises(TypeError, match="faces must have dtype"):
        ops.vertex_normals(verts, torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"verts must be \[B, V, 3\]"):
        ops.vertex_normals(torch.randn(1, 4, 2), torch.zeros(1, 3, dtype=torch.int32))


@pytest.mark.parametrize("backend", backend_params(triton=False) + ["reference"])
def test_int64_faces_past_int32_are_rejected_not_wrapped(backend):
    """2**32 + 1 used to be cast to int32 (-> 1, a valid-looking index) before any check."""
    device = device_for(backend) if backend != "reference" else torch.device("cpu")
    verts = torch.randn(1, 4, 3, device=device)
    for big in (2**32 + 1, 2**31, -(2**32) + 2):
        faces = torch.tensor([[0, 1, 2], [1, 2, big]], dtype=torch.int64, device=device)
        msg = rf"vertex_normals: faces\[1\] = \[1, 2, {big}\] has a vertex index outside \[0, V=4\)"
        with pytest.raises(ValueError, match=msg):
            ops.vertex_normals(verts, faces, backend=backend)


def test_vertex_normals_ops_and_bindings_check_indices():
    """The public custom ops (forward and backward) and the C++ bindings reject bad indices themselves."""
    from facecore import _C

    verts = torch.randn(1, 4, 3)
    bad64 = torch.tensor([[0, 1, 2**32 + 3]], dtype=torch.int64)
    with pytest.raises(ValueError, match=r"vertex_normals: faces\[0\] = \[0, 1, 4294967299\]"):
        torch.ops.facecore.vertex_normals(verts, bad64)
    with pytest.raises(ValueError, match=r"vertex_normals_backward: faces\[0\] = \[0, 1, 4294967299\]"):
        torch.ops.facecore.vertex_normals_backward(torch.randn(1, 4, 3), verts, bad64)
    bad32 = torch.tensor([[0, 1, 2], [3, 4, 0]], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"faces\[1\] has vertex index 4 outside \[0, V=4\)"):
        _C.vertex_normals_forward(verts, bad32, torch.empty_like(verts), 1, 0)
    with pytest.raises(ValueError, match=r"faces\[1\] has vertex index 4 outside \[0, V=4\)"):
        _C.vertex_normals_backward(verts, bad32, torch.randn(1, 4, 3), torch.empty_like(verts), 1, 0)
