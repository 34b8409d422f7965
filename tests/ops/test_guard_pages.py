"""Every CPU kernel of the deformation and attention families, with every array (inputs and outputs)
ending exactly at a PROT_NONE page: a read or write past the end is a SIGSEGV, caught because each
kernel runs in its own interpreter (tests/guard_pages.py). Sizes are deliberately odd (V % 32 != 0,
D and Lk not multiples of the SIMD width) so that every tail path runs."""

from __future__ import annotations

import textwrap

import pytest

from tests.guard_pages import run_isolated

_PRELUDE = """
import torch
from facecore import _C
from facecore.ops.blendshape import sparse_deltas
from tests.guard_pages import guarded as g
torch.manual_seed(0)

def blend_inputs(B, K, V, dtype=torch.float32):
    w = torch.rand(B, K, dtype=dtype)
    w[:, ::3] = 0  # zero weights too (skipped tiles)
    neutral = torch.randn(V, 3, dtype=dtype)
    dense = torch.randn(K, V, 3, dtype=dtype) * (torch.rand(K, V, 1) < 0.3)
    return w, neutral, dense

def rigid_inputs(B, V, G=3, dtype=torch.float32):
    rot = torch.linalg.qr(torch.randn(B, G, 3, 3, dtype=dtype))[0].contiguous()
    piv = torch.randn(G, 3, dtype=dtype)
    group = torch.randint(0, G, (V,), dtype=torch.int32)
    return rot, piv, group
"""

_CASES = {
    "blendshape_dense": """
        for B, V in [(1, 1013), (2, 1013), (5, 1013), (3, 64)]:
            w, n, d = blend_inputs(B, 7, V)
            out = g(torch.empty(B, V, 3))
            _C.blendshape_forward(g(w), g(n), g(d), None, None, out, 2, 0)
            ref = n + torch.einsum("bk,kvc->bvc", w, d)
            assert torch.allclose(out, ref, atol=1e-5), (B, V)
            gw, gn, gd = g(torch.empty(B, 7)), g(torch.empty(V, 3)), g(torch.empty(7, V, 3))
            _C.blendshape_backward(g(w), g(n), g(d), None, None, g(torch.randn(B, V, 3)), gw, gn, gd, 2, 0)
    """,
    "blendshape_sparse": """
        for B, V in [(1, 1013), (2, 1013), (5, 1013), (3, 7679), (17, 45)]:
            w, n, d = blend_inputs(B, 7, V)
            s = sparse_deltas(d)
            args = (g(w), g(n), g(s.values), g(s.block_ptr), g(s.block_shape))
            out = g(torch.empty(B, V, 3))
            _C.blendshape_forward(*args, out, 2, 0)
            ref = n + torch.einsum("bk,kvc->bvc", w, d)
            assert torch.allclose(out, ref, atol=1e-5), (B, V)
            gw, gn, gd = g(torch.empty(B, 7)), g(torch.empty(V, 3)), g(torch.empty_like(s.values))
            _C.blendshape_backward(*args, g(torch.randn(B, V, 3)), gw, gn, gd, 2, 0)
    """,
    "deform_default_rig": """
        from facecore.ops.blendshape import rig_vertex_groups
        from facecore.pose import pose_rotations
        from facecore.rig import default_rig
        rig = default_rig()
        V = rig.neutral.shape[0]
        assert V % 32 != 0
        for B in (1, 2, 5):
            params = torch.rand(B, 61) * 2 - 1
            params[:, :52] = params[:, :52].clamp(min=0)
            s = rig.sparse_deltas()
            rot = pose_rotations(params[:, 52:]).contiguous()
            piv = torch.cat([rig.neck_pivot.reshape(1, 3), rig.eye_centers.reshape(2, 3)]).contiguous()
            group = rig_vertex_groups(rig, torch.device("cpu"))
            out = g(torch.empty(B, V, 3))
            _C.deform_forward(g(params[:, :52]), g(rig.neutral), g(s.values), g(s.block_ptr),
                              g(s.block_shape), g(rot), g(piv), g(group), out, 2, 0)
            gp, gr = g(torch.empty(B, V, 3)), g(torch.empty_like(rot))
            _C.rigid_backward(g(out), g(torch.randn(B, V, 3)), g(rot), g(piv), g(group), gp, gr, 2, 0)
    """,
    "deform_dense": """
        for B, V in [(1, 1013), (5, 1013), (2, 33)]:
            w, n, d = blend_inputs(B, 7, V, torch.float64)
            rot, piv, group = rigid_inputs(B, V, dtype=torch.float64)
            out = g(torch.empty(B, V, 3, dtype=torch.float64))
            _C.deform_forward(g(w), g(n), g(d), None, None, g(rot), g(piv), g(group), out, 2, 0)
            gp, gr = g(torch.empty_like(out)), g(torch.empty_like(rot))
            _C.rigid_backward(g(out), g(torch.randn_like(out)), g(rot), g(piv), g(group), gp, gr, 2, 0)
    """,
    "vertex_normals": """
        from tests.meshes import uv_sphere
        verts, faces = uv_sphere(7, torch.float32)
        for B in (1, 3):
            x = verts.expand(B, -1, -1).contiguous()
            nrm = g(torch.empty_like(x))
            _C.vertex_normals_forward(g(x), g(faces), nrm, 2, 0)
            gv = g(torch.empty_like(x))
            _C.vertex_normals_backward(g(x), g(faces), g(torch.randn_like(x)), gv, 2, 0)
    """,
    "attention": """
        for dtype in (torch.float32, torch.float64):
            for B, Hq, Hkv, Lq, Lk, D in [(2, 4, 2, 29, 37, 20), (1, 2, 1, 5, 130, 32), (2, 1, 1, 70, 3, 7)]:
                q = torch.randn(B, Hq, Lq, D, dtype=dtype)
                k, v = torch.randn(B, Hkv, Lk, D, dtype=dtype), torch.randn(B, Hkv, Lk, D, dtype=dtype)
                kpm = torch.rand(B, Lk) < 0.3
                for bias_shape in [None, (B, Hq, Lq, Lk), (1, 1, 1, Lk), (1, Hq, Lq, 1)]:
                    for causal in (False, True):
                        bias = None if bias_shape is None else g(torch.randn(bias_shape, dtype=dtype))
                        gq, gk, gvv = g(q), g(k), g(v)
                        out, lse = g(torch.empty_like(q)), g(torch.empty(B, Hq, Lq, dtype=dtype))
                        _C.attention_forward(gq, gk, gvv, bias, g(kpm), causal, 0.3, out, lse, 2)
                        dq, dk, dv = g(torch.empty_like(q)), g(torch.empty_like(k)), g(torch.empty_like(v))
                        db = None if bias is None else g(torch.empty_like(bias))
                        _C.attention_backward(gq, gk, gvv, bias, g(kpm), causal, 0.3, out, lse,
                                              g(torch.randn_like(q)), g(torch.randn(B, Hq, Lq, dtype=dtype)),
                                              dq, dk, dv, db, 2)
                        _C.attention_forward(gq, gk, gvv, bias, None, causal, 0.3, out, lse, 2)
    """,
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", sorted(_CASES))
def test_kernel_stays_inside_its_arrays(case):
    code = _PRELUDE + "\n" + textwrap.dedent(_CASES[case]) + "\nprint('ok')\n"
    rc, log = run_isolated(code)
    assert rc == 0 and log.rstrip().endswith("ok"), f"{case}: exit code {rc} (-11 = SIGSEGV)\n{log[-3000:]}"


def test_guard_page_catches_an_overread():
    # The harness itself: reading one element past a guarded tensor must crash the child.
    rc, _ = run_isolated("import ctypes, torch\nfrom tests.guard_pages import guarded\n"
                         "x = guarded(torch.zeros(5))\n"
                         "ctypes.c_float.from_address(x.data_ptr() + 20).value\n")
    assert rc == -11
