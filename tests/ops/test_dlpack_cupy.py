"""DLPack interop: arrays of another library in through ``torch.from_dlpack``, through a facecore op,
back out through ``xp.from_dlpack``, without copies, compared with the reference.

The GPU rows use CuPy (skipped without CuPy or a CUDA device); the same code runs on the CPU with
NumPy, so a mistake in it shows up without a GPU too.
"""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref

from ..meshes import uv_sphere
from .conftest import HAS_CUDA, HAS_TRITON

_GPU = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]
ROWS = [
    pytest.param("numpy", "cpu", id="numpy-cpu"),
    pytest.param("cupy", "cuda", id="cupy-cuda", marks=_GPU),
    pytest.param(
        "cupy",
        "triton",
        id="cupy-triton",
        marks=[*_GPU, pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")],
    ),
]


def _xp(name: str):
    return pytest.importorskip(name)


def _ptr(a) -> int:
    """Address of an array's first element (CuPy: a.data.ptr; NumPy: the array interface)."""
    return a.data.ptr if hasattr(a.data, "ptr") else a.__array_interface__["data"][0]


def _rng(xp, gen: torch.Generator):
    return xp.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))


def _to_torch(a) -> torch.Tensor:
    t = torch.from_dlpack(a)
    assert t.data_ptr() == _ptr(a), "torch.from_dlpack copied the array"
    return t


def _from_torch(xp, t: torch.Tensor):
    a = xp.from_dlpack(t.detach())
    assert _ptr(a) == t.data_ptr(), "from_dlpack copied the tensor"
    return a


@pytest.mark.parametrize("lib,backend", ROWS)
def test_blendshape_through_dlpack(lib, backend, gen):
    xp = _xp(lib)
    rng = _rng(xp, gen)
    B, K, V = 5, 52, 1001
    w_xp = rng.random((B, K), dtype=xp.float32)
    n_xp = rng.standard_normal((V, 3), dtype=xp.float32)
    d_xp = rng.standard_normal((K, V, 3), dtype=xp.float32)
    w, n, d = (_to_torch(a) for a in (w_xp, n_xp, d_xp))
    assert w.device.type == ("cpu" if lib == "numpy" else "cuda")
    w.requires_grad_()
    out = ops.blendshape(w, n, d, backend=backend)
    expected = ref.blendshape(w.detach().double(), n.double(), d.double())
    out_xp = _from_torch(xp, out)
    err = float(xp.abs(out_xp.astype(xp.float64) - _from_torch(xp, expected)).max())
    assert err < 1e-4 * K**0.5, f"max |out - reference| = {err}"  # float32 sums of K terms
    # the gradient leaves through DLPack too: d out / d w[b, k] summed over V = sum of delta k
    out.sum().backward()
    gw_xp = _from_torch(xp, w.grad)
    want = d_xp.astype(xp.float64).sum(axis=(1, 2))
    err = float(xp.abs(gw_xp.astype(xp.float64) - want[None, :]).max())
    assert err < 1e-3 * float(xp.abs(want).max() + 1), f"max |grad - reference| = {err}"


@pytest.mark.parametrize("lib,backend", [r for r in ROWS if r.id != "cupy-triton"])
def test_vertex_normals_through_dlpack(lib, backend, gen):
    xp = _xp(lib)
    verts, faces = uv_sphere(16, dtype=torch.float32)
    # arrays owned by xp (a host-to-device copy for CuPy), jittered so that no normal is analytic
    noise = _rng(xp, gen).standard_normal((3, *verts.shape), dtype=xp.float32)
    v_xp = xp.asarray(verts.numpy())[None] + 0.05 * noise
    f_xp = xp.asarray(faces.numpy())
    v, f = _to_torch(v_xp), _to_torch(f_xp)
    assert v.device.type == ("cpu" if lib == "numpy" else "cuda") and f.dtype == torch.int32
    out_xp = _from_torch(xp, ops.vertex_normals(v, f, backend=backend))
    expected = _from_torch(xp, ref.vertex_normals(v.double(), f))
    err = float(xp.abs(out_xp.astype(xp.float64) - expected).max())
    assert err < 1e-4, f"max |normals - reference| = {err}"
    assert float(xp.abs(xp.linalg.norm(out_xp, axis=-1) - 1).max()) < 1e-5
