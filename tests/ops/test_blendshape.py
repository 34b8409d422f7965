"""blendshape and deform: every backend against facecore.reference, values and gradients."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref
from facecore.pose import pose_rotations

from .conftest import backend_params, device_for

BACKENDS = backend_params()


def random_deltas(K: int, V: int, gen: torch.Generator, dtype=torch.float64, density: float = 0.3):
    """Deltas where each shape moves a random contiguous vertex range, like real rigs do."""
    d = torch.zeros(K, V, 3, dtype=dtype)
    for k in range(K):
        n = max(1, int(V * density))
        start = int(torch.randint(0, max(1, V - n + 1), (1,), generator=gen))
        d[k, start:start + n] = torch.randn(n, 3, generator=gen, dtype=dtype)
    return d


def random_rig(V: int, gen: torch.Generator, dtype=torch.float64):
    """A duck-typed FaceRig with eyeball groups, for testing deform without any rig asset."""
    neutral = torch.randn(V, 3, generator=gen, dtype=dtype) * 5
    deltas = random_deltas(52, V, gen, dtype)
    idx = torch.randperm(V, generator=gen)
    n_eye = max(1, V // 10)
    rig = SimpleNamespace(
        neutral=neutral,
        groups={"left_eye": idx[:n_eye].sort().values, "right_eye": idx[n_eye:2 * n_eye].sort().values},
        eye_centers=torch.randn(2, 3, generator=gen, dtype=dtype),
        neck_pivot=torch.randn(3, generator=gen, dtype=dtype),
        dense_deltas=lambda: deltas,
    )
    sparse = ops.sparse_deltas(deltas)
    rig.sparse_deltas = lambda: sparse
    return rig


def tolerance(dtype: torch.dtype, K: int = 52) -> dict:
    # float32 sums of K products of O(1) numbers: rounding grows like sqrt(K) * eps32 * |terms|.
    if dtype == torch.float32:
        return dict(atol=1e-4 * math.sqrt(K), rtol=1e-5)
    return dict(atol=1e-10, rtol=1e-10)


def dtypes_for(backend: str):
    return [torch.float32] if backend in ("cuda", "triton") else [torch.float32, torch.float64]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("B,K,V", [(1, 1, 1), (1, 7, 33), (5, 13, 101), (3, 52, 257), (0, 4, 40)])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_blendshape_forward_backward(backend, B, K, V, sparse, gen):
    device = device_for(backend)
    for dtype in dtypes_for(backend):
        w = torch.randn(B, K, generator=gen, dtype=dtype).to(device).requires_grad_()
        n = torch.randn(V, 3, generator=gen, dtype=dtype).to(device).requires_grad_()
        dense = random_deltas(K, V, gen, dtype).to(device)
        if sparse:
            sd = ops.sparse_deltas(dense)
            values = sd.values.clone().requires_grad_()
            deltas = ops.SparseDeltas(values, sd.block_ptr, sd.block_shape, K, V)
        else:
            deltas = values = dense.clone().requires_grad_()
        out = ops.blendshape(w, n, deltas, backend=backend)
        expected = ref.blendshape(w, n, deltas)
        torch.testing.assert_close(out, expected, **tolerance(dtype, K))
        g = torch.randn(out.shape, generator=gen, dtype=dtype).to(device)
        got = torch.autograd.grad(out, (w, n, values), g)
        want = torch.autograd.grad(expected, (w, n, values), g)
        for name, a, b in zip(("weights", "neutral", "deltas"), got, want):
            # gradients sum over B * V terms
            torch.testing.assert_close(a, b, **tolerance(dtype, K + B * V)), name


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_blendshape_gradcheck_cpu_float64(sparse, gen):
    B, K, V = 3, 5, 37
    w = torch.randn(B, K, generator=gen, dtype=torch.float64, requires_grad=True)
    n = torch.randn(V, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    dense = random_deltas(K, V, gen)
    if sparse:
        sd = ops.sparse_deltas(dense)
        values = sd.values.clone().requires_grad_()
        fn = lambda w, n, v: ops.blendshape(w, n, ops.SparseDeltas(v, sd.block_ptr, sd.block_shape, K, V),
                                            backend="cpu")
    else:
        values = dense.requires_grad_()
        fn = lambda w, n, d: ops.blendshape(w, n, d, backend="cpu")
    assert torch.autograd.gradcheck(fn, (w, n, values))


def test_sparse_deltas_is_lossless_and_prunes_on_request(gen):
    dense = random_deltas(9, 200, gen)
    sd = ops.sparse_deltas(dense)
    assert torch.equal(sd.to_dense(), dense)
    assert sd.density < 1.0
    small = dense.clone()
    small[0, :5] = 1e-6
    pruned = ops.sparse_deltas(small, threshold=1e-3).to_dense()
    assert torch.equal(pruned[0, :5], torch.zeros(5, 3, dtype=dense.dtype))
    assert torch.equal(pruned[1:], small[1:] * (small[1:].norm(dim=-1, keepdim=True) > 1e-3))


def test_sparse_deltas_rejects_inconsistent_structure(gen):
    sd = ops.sparse_deltas(random_deltas(4, 70, gen))
    with pytest.raises(ValueError, match="block_shape entries must lie in"):
        ops.SparseDeltas(sd.values, sd.block_ptr, sd.block_shape + 10, 4, 70)
    with pytest.raises(ValueError, match="block_ptr must have"):
        ops.SparseDeltas(sd.values, sd.block_ptr[:-1], sd.block_shape, 4, 70)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        ops.sparse_deltas(random_deltas(2, 5, gen), threshold=-1)


def test_blendshape_strided_and_broadcast_inputs(gen):
    """Non-contiguous and stride-0 (expanded) inputs give the same result as contiguous ones."""
    B, K, V = 4, 6, 45
    w_t = torch.randn(K, B, generator=gen).T                        # transposed view
    n = torch.randn(1, 3, generator=gen).expand(V, 3)               # stride 0 along V
    d = random_deltas(K, V, gen, torch.float32)[:, :, [2, 1, 0]]    # gathered copy, then a strided slice
    d = torch.cat([d, d], 1)[:, ::2]
    out = ops.blendshape(w_t, n, d, backend="cpu")
    torch.testing.assert_close(out, ref.blendshape(w_t.contiguous(), n.contiguous(), d.contiguous()))


def test_blendshape_bad_inputs(gen):
    w = torch.randn(2, 5)
    n = torch.randn(10, 3)
    d = torch.randn(5, 10, 3)
    with pytest.raises(ValueError, match=r"deltas must have shape \[K, V, 3\] = \[4, 10, 3\]"):
        ops.blendshape(w[:, :4], n, d)
    with pytest.raises(TypeError, match="weights must have dtype"):
        ops.blendshape(w.int(), n, d)
    with pytest.raises(TypeError, match="neutral has dtype torch.float64"):
        ops.blendshape(w, n.double(), d)
    with pytest.raises(ValueError, match="neutral must have shape"):
        ops.blendshape(w, torch.randn(10, 2), d)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        ops.blendshape(w, n.to("meta"), d)
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.blendshape(w, n, d, backend="gpu")
    with pytest.raises(ValueError, match="backend='cuda' needs CUDA tensors"):
        ops.blendshape(w, n, d, backend="cuda")
    with pytest.raises(TypeError, match="weights must be a torch.Tensor"):
        ops.blendshape(w.numpy(), n, d)


def test_blendshape_empty_batch():
    out = ops.blendshape(torch.zeros(0, 3), torch.randn(8, 3), torch.randn(3, 8, 3))
    assert out.shape == (0, 8, 3)


# ----------------------------------------------------------------------------------------------
# deform
# ----------------------------------------------------------------------------------------------
def random_params(B: int, gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    return torch.cat([torch.rand(B, 52, generator=gen, dtype=dtype),
                      torch.rand(B, 9, generator=gen, dtype=dtype) * 2 - 1], 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("B,V", [(1, 31), (4, 203)])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_deform_forward_backward(backend, B, V, sparse, gen):
    device = device_for(backend)
    for dtype in dtypes_for(backend):
        rig = random_rig(V, gen, dtype)
        rig.neutral = rig.neutral.to(device).requires_grad_()
        for key in ("left_eye", "right_eye"):
            rig.groups[key] = rig.groups[key].to(device)
        rig.eye_centers, rig.neck_pivot = rig.eye_centers.to(device), rig.neck_pivot.to(device)
        dense, sp = rig.dense_deltas().to(device), rig.sparse_deltas().to(device)
        rig.dense_deltas, rig.sparse_deltas = (lambda d=dense: d), (lambda s=sp: s)
        params = random_params(B, gen, dtype).to(device).requires_grad_()
        out = ops.deform(params, rig, backend=backend, sparse=sparse)
        expected = ref.deform(params, rig)
        torch.testing.assert_close(out, expected, **tolerance(dtype))
        g = torch.randn(out.shape, generator=gen, dtype=dtype).to(device)
        got = torch.autograd.grad(out, (params, rig.neutral), g)
        want = torch.autograd.grad(expected, (params, rig.neutral), g)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **tolerance(dtype, 52 + B * V))


def test_deform_gradcheck_cpu_float64(gen):
    rig = random_rig(23, gen)
    rig.neutral.requires_grad_()
    params = random_params(2, gen).requires_grad_()
    dense = rig.dense_deltas().clone().requires_grad_()
    rig.dense_deltas = lambda: dense
    assert torch.autograd.gradcheck(lambda p, n, d: ops.deform(p, rig, backend="cpu", sparse=False),
                                    (params, rig.neutral, dense))


def test_deform_pose_semantics(gen):
    """HeadYaw > 0 turns the face (+z) toward the subject's left (+x); eye pitch < 0 looks down."""
    rig = random_rig(40, gen)
    rig.neutral = torch.zeros(40, 3, dtype=torch.float64)
    rig.neutral[:, 2] = 1.0                     # every vertex one unit in front of the pivots
    rig.neck_pivot = torch.zeros(3, dtype=torch.float64)
    rig.eye_centers = torch.zeros(2, 3, dtype=torch.float64)
    params = torch.zeros(2, 61, dtype=torch.float64)
    params[0, 52] = 0.5                         # HeadYaw: 45 degrees
    params[1, 56] = -0.5                        # LeftEyePitch: 22.5 degrees down
    out = ops.deform(params, rig, backend="cpu")
    assert torch.allclose(out[0, :, 0], torch.full((40,), math.sin(math.pi / 4), dtype=torch.float64))
    left = rig.groups["left_eye"]
    want = torch.full((len(left),), -math.sin(math.pi / 8), dtype=torch.float64)
    assert torch.allclose(out[1, left, 1], want)
    others = torch.ones(40, dtype=torch.bool)
    others[left] = False
    assert torch.allclose(out[1, others], rig.neutral[others])


def test_pose_rotations_are_rotations(gen):
    R = pose_rotations(torch.rand(7, 9, generator=gen, dtype=torch.float64) * 2 - 1)
    eye = torch.eye(3, dtype=torch.float64).expand(7, 3, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(7, 3, dtype=torch.float64))


def test_deform_bad_inputs(gen):
    rig = random_rig(10, gen, torch.float32)
    with pytest.raises(ValueError, match=r"params must have shape \[B, 61\]"):
        ops.deform(torch.zeros(2, 52), rig)
    with pytest.raises(ValueError, match="use rig.to"):
        ops.deform(torch.zeros(2, 61, dtype=torch.float64), rig)


def test_ops_trace_under_torch_compile(gen):
    """fake + autograd registrations let torch.compile(fullgraph=True) trace the ops."""
    rig = random_rig(50, gen, torch.float32)
    faces = torch.randint(0, 50, (30, 3), generator=gen, dtype=torch.int32)

    def f(params):
        verts = ops.deform(params, rig)
        return (ops.vertex_normals(verts, faces) * verts).sum()

    params = random_params(3, gen, torch.float32).requires_grad_()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    loss = compiled(params)
    (grad,) = torch.autograd.grad(loss, params)
    loss_ref = f(params)
    (grad_ref,) = torch.autograd.grad(loss_ref, params)
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(grad, grad_ref)


def test_opcheck_blendshape(gen):
    w = torch.randn(3, 4, generator=gen, requires_grad=True)
    n = torch.randn(40, 3, generator=gen, requires_grad=True)
    sd = ops.sparse_deltas(random_deltas(4, 40, gen, torch.float32))
    torch.library.opcheck(torch.ops.facecore.blendshape.default,
                          (w, n, sd.values.requires_grad_(), sd.block_ptr, sd.block_shape, "cpu"))


# ----------------------------------------------------------------------------------------------
# the ICT-FaceKit rig from ../shared (skipped when absent)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", backend_params(triton=False))
def test_blendshape_and_deform_on_ict_rig(backend, ict_dir, gen):
    import facecore.rig

    device = device_for(backend)
    rig = facecore.rig.load_ict(ict_dir).to(device)
    V = rig.neutral.shape[0]
    assert V == 26719
    dense = rig.dense_deltas().clone().requires_grad_()
    neutral = rig.neutral.clone().requires_grad_()
    sparse = ops.sparse_deltas(dense)
    sparse_values = sparse.values.clone().requires_grad_()
    sparse = ops.SparseDeltas(sparse_values, sparse.block_ptr, sparse.block_shape, 52, V)
    weights = torch.rand(3, 52, generator=gen).to(device).requires_grad_()
    expected = ref.blendshape(weights, neutral, dense)
    g = torch.randn(expected.shape, generator=gen).to(device)
    want = torch.autograd.grad(expected, (weights, neutral, dense), g)
    # ICT coordinates are in centimetres (|x| up to ~20) and K = 52 terms: float32 rounding ~1e-5 relative.
    tol = dict(atol=2e-4, rtol=1e-4)
    for deltas, leaf in ((dense, dense), (sparse, sparse_values)):
        out = ops.blendshape(weights, neutral, deltas, backend=backend)
        torch.testing.assert_close(out, expected, **tol)
        got = torch.autograd.grad(out, (weights, neutral, leaf), g)
        torch.testing.assert_close(got[0], want[0], atol=5e-2, rtol=1e-4)  # sums over 80k products
        torch.testing.assert_close(got[1], want[1], **tol)
        if leaf is dense:
            torch.testing.assert_close(got[2], want[2], **tol)
        else:  # sparse gradients exist for the stored blocks only
            stored = ops.SparseDeltas(torch.ones_like(got[2]), sparse.block_ptr, sparse.block_shape, 52, V)
            mask = stored.to_dense().bool()
            got_dense = ops.SparseDeltas(got[2], sparse.block_ptr, sparse.block_shape, 52, V).to_dense()
            torch.testing.assert_close(got_dense[mask], want[2][mask], **tol)
    params = random_params(2, gen, torch.float32).to(device).requires_grad_()
    out = ops.deform(params, rig, backend=backend)
    expected = ref.deform(params, rig)
    torch.testing.assert_close(out, expected, **tol)
    g = torch.randn(out.shape, generator=gen).to(device)
    torch.testing.assert_close(torch.autograd.grad(out, params, g)[0],
                               torch.autograd.grad(expected, params, g)[0], atol=5e-2, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# Safety: non-finite deltas, bad rigid groups, bad sparse structure, absurd thread counts
# ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # Triton interpreter (numpy)
@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("B", [1, 2, 5])
def test_zero_weight_times_nan_delta_is_nan_on_every_backend(backend, sparse, B, gen):
    """IEEE semantics everywhere: no zero-weight skip hides a NaN/inf delta (0 * NaN = 0 * inf = NaN)."""
    device = device_for(backend) if backend != "reference" else torch.device("cpu")
    K, V = 6, 77
    w = torch.rand(B, K, generator=gen).to(device)
    w[:, 2] = 0.0  # every row: shape 2 has weight 0 ...
    dense = random_deltas(K, V, gen, torch.float32, density=1.0).to(device)
    dense[2, 5, 1] = float("nan")  # ... and a NaN delta at vertex 5,
    dense[2, 70, 0] = float("inf")  # an inf one at vertex 70 (in the partial last block)
    n = torch.randn(V, 3, generator=gen).to(device)
    deltas = ops.sparse_deltas(dense) if sparse else dense
    out = ops.blendshape(w, n, deltas, backend=backend)
    assert torch.isnan(out[:, 5, 1]).all() and torch.isnan(out[:, 70, 0]).all()
    finite = torch.ones(V, 3, dtype=torch.bool, device=device)
    finite[5, 1] = finite[70, 0] = False
    assert torch.isfinite(out[:, finite]).all()
    want = ref.blendshape(w, n, dense)
    torch.testing.assert_close(out, want, equal_nan=True, **tolerance(torch.float32, K))


def _rigid_args(B, V, G, gen):
    out = torch.randn(B, V, 3, generator=gen)
    rot = pose_rotations(torch.rand(B, 9, generator=gen) * 2 - 1).contiguous()[:, :G]
    pivots = torch.randn(G, 3, generator=gen)
    return out, rot.contiguous(), pivots


@pytest.mark.parametrize("bad", [3, -1, 10**6])
def test_rigid_groups_out_of_range_are_rejected(bad, gen):
    """deform_backward (public custom op) and deform check every group id before any work."""
    B, V, G = 2, 40, 3
    out, rot, pivots = _rigid_args(B, V, G, gen)
    group = torch.zeros(V, dtype=torch.int32)
    group[17] = bad
    w, neutral = torch.rand(B, 4, generator=gen), torch.randn(V, 3, generator=gen)
    deltas = torch.randn(4, V, 3, generator=gen)
    msg = rf"group\[17\] = {bad} is outside \[0, G=3\)"
    with pytest.raises(ValueError, match="rigid_backward: " + msg):
        torch.ops.facecore.deform_backward(torch.randn_like(out), out, w, neutral, deltas, None, None, rot,
                                           pivots, group, [True, True, True, True], "cpu")
    with pytest.raises(ValueError, match="deform_forward: " + msg):
        torch.ops.facecore.deform(w, neutral, deltas, None, None, rot, pivots, group, "cpu")


def test_malicious_block_structure_is_rejected_before_use(gen):
    """The custom op can be called with any block_ptr / block_shape: the CPU kernel validates them."""
    K, V, B = 4, 70, 3
    sd = ops.sparse_deltas(random_deltas(K, V, gen, torch.float32))
    w, n = torch.rand(B, K, generator=gen), torch.randn(V, 3, generator=gen)
    nnzb = sd.block_shape.shape[0]
    rising_past_end = sd.block_ptr.clone()
    rising_past_end[1] = nnzb + 1000
    non_monotone = sd.block_ptr.clone()
    non_monotone[1], non_monotone[2] = non_monotone[2], non_monotone[1] - 1
    ends_past_end = sd.block_ptr.clone()
    ends_past_end[-1] = nnzb + 7
    cases = [(rising_past_end, "be non-decreasing"), (non_monotone, "be non-decreasing"),
             (sd.block_ptr + 1, "start at 0"), (ends_past_end, rf"start at 0 and end at .*\({nnzb}\)")]
    for bp, msg in cases:
        with pytest.raises(ValueError, match="blendshape: block_ptr must " + msg):
            torch.ops.facecore.blendshape(w, n, sd.values, bp, sd.block_shape, "cpu")
    with pytest.raises(ValueError, match=r"blendshape: block_shape\[0\] = -5 is outside \[0, K=4\)"):
        bad_shape = sd.block_shape - 5 - sd.block_shape[0]
        torch.ops.facecore.blendshape(w, n, sd.values, sd.block_ptr, bad_shape, "cpu")


@pytest.mark.timeout(120)
def test_absurd_thread_counts_are_clamped():
    """threads=100000 straight into the bindings used to make libgomp abort (thread creation failed)."""
    from tests.guard_pages import run_isolated

    rc, log = run_isolated("""
import torch
from facecore import _C
N = 100000
w, n, d = torch.rand(5, 3), torch.rand(70, 3), torch.rand(3, 70, 3)
_C.blendshape_forward(w, n, d, None, None, torch.empty(5, 70, 3), N, 0)
_C.blendshape_backward(w, n, d, None, None, torch.rand(5, 70, 3), torch.empty(5, 3), None, None, N, 0)
faces = torch.tensor([[0, 1, 2], [2, 3, 4]], dtype=torch.int32)
_C.vertex_normals_forward(n[None], faces, torch.empty(1, 70, 3), N, 0)
q = torch.randn(2, 4, 300, 64)
_C.attention_forward(q, q, q, None, None, False, 0.125, torch.empty_like(q), torch.empty(2, 4, 300), N)
print("ok")
""")
    assert rc == 0 and log.rstrip().endswith("ok"), f"exit code {rc}\n{log[-2000:]}"
