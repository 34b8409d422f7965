"""attention: every backend against the float64 reference (facecore.reference.attention), values and
gradients of q, k, v and the bias (reduced to its broadcast shape), lse included."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref

from .conftest import HAS_CUDA, HAS_TRITON, device_for

requires_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")

# Tolerances: float64 kernels agree with the float64 reference to rounding (sums of <= 1000 terms);
# float32 kernels accumulate in float32 (eps 1.2e-7) over up to 1000 keys of O(1) values, giving
# errors ~1e-6 and gradient errors a few times larger; float16 inputs/outputs carry eps 9.8e-4.
TOL = {
    torch.float64: dict(atol=1e-10, rtol=1e-9),
    torch.float32: dict(atol=5e-5, rtol=1e-4),
    torch.float16: dict(atol=5e-3, rtol=1e-2),
}


def make_inputs(gen, B, Hq, Hkv, Lq, Lk, D, bias_shape=None, pad=False, dtype=torch.float64, device="cpu"):
    def rnd(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype).requires_grad_()

    q, k, v = rnd(B, Hq, Lq, D), rnd(B, Hkv, Lk, D), rnd(B, Hkv, Lk, D)
    bias = rnd(*bias_shape) if bias_shape is not None else None
    kpm = (torch.rand(B, Lk, generator=gen) < 0.3).to(device) if pad else None
    return q, k, v, bias, kpm


def check_against_reference(backend, gen, B, Hq, Hkv, Lq, Lk, D, bias_shape=None, causal=False, pad=False,
                            dtype=torch.float64, kpm=None):
    device = device_for(backend)
    q, k, v, bias, kpm_r = make_inputs(gen, B, Hq, Hkv, Lq, Lk, D, bias_shape, pad, dtype, device)
    kpm = kpm_r if kpm is None else kpm.to(device)
    inputs = [t for t in (q, k, v, bias) if t is not None]
    out, lse = ops.attention(q, k, v, bias, causal, kpm, return_lse=True, backend=backend)
    assert out.dtype == dtype and out.shape == q.shape and lse.shape == q.shape[:3]

    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    rq, rk, rv = ref_inputs[:3]
    rbias = ref_inputs[3] if bias is not None else None
    want, want_lse = ref.attention(rq, rk, rv, rbias, causal, kpm, return_lse=True)
    tol = TOL[dtype]
    torch.testing.assert_close(out.double(), want, **tol)
    torch.testing.assert_close(lse.double(), want_lse, **tol)  # -inf rows must match exactly

    # Random upstream gradients for out and lse (lse is differentiable too).
    g_out = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    g_lse = torch.randn(want_lse.shape, generator=gen, dtype=torch.float64)
    finite = torch.isfinite(want_lse)
    loss = (out.double() * g_out.to(device)).sum() + (lse.double()[finite] * g_lse.to(device)[finite]).sum()
    got = torch.autograd.grad(loss, inputs)
    want_loss = (want * g_out).sum() + (want_lse[finite] * g_lse[finite]).sum()
    expected = torch.autograd.grad(want_loss, ref_inputs)
    for name, a, b in zip(("dq", "dk", "dv", "dbias"), got, expected):
        assert a.shape == b.shape, name
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a.double(), b, **tol, msg=lambda m, n=name: f"{n}: {m}")


# (B, Hq, Hkv, Lq, Lk, D, bias_shape, causal, pad)
CPU_CASES = [
    (1, 1, 1, 1, 1, 16, None, False, False),
    (2, 3, 3, 17, 17, 40, (2, 3, 17, 17), False, False),
    (2, 4, 2, 17, 33, 64, (4, 17, 33), True, True),            # GQA, causal Lq < Lk, padding
    (1, 4, 1, 129, 70, 16, (1, 1, 129, 70), True, False),       # Lq > Lk causal: fully masked rows
    (2, 2, 2, 129, 129, 128, (2, 1, 1, 129), True, True),       # bias per key (mask-like)
    (2, 4, 4, 33, 129, 40, (1, 4, 33, 1), False, True),         # bias per query row
    (1, 2, 1, 1, 129, 64, (2, 1, 129), True, False),            # decoding: one query sees every key
    (2, 2, 1, 65, 3, 16, (), False, True),                      # scalar bias
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: "x".join(map(str, c[:6])) + f"-c{c[7]:d}p{c[8]:d}")
def test_cpu_matches_reference(case, dtype, gen):
    B, Hq, Hkv, Lq, Lk, D, bias_shape, causal, pad = case
    check_against_reference("cpu", gen, B, Hq, Hkv, Lq, Lk, D, bias_shape, causal, pad, dtype)


@pytest.mark.parametrize("causal", [False, True])
def test_cpu_long_sequence(causal, gen):
    """L = 1000 (not a block multiple) with a learnable per-head bias, float32, kept cheap (D = 16)."""
    check_against_reference("cpu", gen, 1, 2, 1, 1000, 1000, 16, (2, 1000, 1000), causal, True, torch.float32)


def test_cpu_gradcheck_float64(gen):
    q, k, v, bias, kpm = make_inputs(gen, 1, 4, 2, 5, 7, 16, (4, 5, 7), pad=True)
    kpm[0, :2] = True
    kpm[0, 2:] = False

    def f(q, k, v, bias):
        out, lse = ops.attention(q, k, v, bias, True, kpm, return_lse=True, backend="cpu")
        return out, lse.nan_to_num(neginf=0.0)

    assert torch.autograd.gradcheck(f, (q, k, v, bias))
    # broadcast bias: gradient summed over batch and heads
    q, k, v, bias, _ = make_inputs(gen, 2, 2, 2, 4, 6, 16, (1, 1, 4, 6))
    f = lambda q, k, v, b: ops.attention(q, k, v, b, backend="cpu")
    assert torch.autograd.gradcheck(f, (q, k, v, bias))


@pytest.mark.parametrize("backend", ["cpu", pytest.param("triton", marks=requires_triton)])
def test_fully_masked_rows_give_zeros_and_finite_gradients(backend, gen):
    device = device_for(backend)
    dtype = torch.float64 if backend == "cpu" else torch.float32
    q, k, v, bias, _ = make_inputs(gen, 2, 2, 1, 6, 4, 16, (2, 1, 6, 4), dtype=dtype, device=device)
    kpm = torch.zeros(2, 4, dtype=torch.bool, device=device)
    kpm[1] = True                       # batch 1: every key is padding
    out, lse = ops.attention(q, k, v, bias, causal=True, key_padding_mask=kpm, return_lse=True,
                             backend=backend)
    # causal with Lq = 6 > Lk = 4: queries 0 and 1 see no key
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.equal(out[0, :, :2], torch.zeros_like(out[0, :, :2]))
    assert torch.isneginf(lse[1]).all() and torch.isneginf(lse[0, :, :2]).all()
    assert torch.isfinite(lse[0, :, 2:]).all()
    grads = torch.autograd.grad(out.sum(), (q, k, v, bias))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.equal(grads[0][1], torch.zeros_like(grads[0][1]))
    assert torch.equal(grads[1][1], torch.zeros_like(grads[1][1]))
    check_against_reference(backend, gen, 2, 2, 1, 6, 4, 16, (2, 1, 6, 4), True, False, dtype, kpm=kpm)


TRITON_CASES = [
    (1, 1, 1, 1, 1, 16, None, False, False),
    (2, 4, 2, 17, 33, 40, (2, 4, 17, 33), True, True),
    (1, 2, 1, 20, 9, 64, (1, 20, 9), True, False),
    (2, 2, 2, 5, 20, 24, (2, 1, 1, 20), False, True),
]


@requires_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("case", TRITON_CASES, ids=lambda c: "x".join(map(str, c[:6])))
def test_triton_matches_reference(case, dtype, gen):
    """Under TRITON_INTERPRET=1 without a GPU (the interpreter computes bfloat16 wrongly: not tested here)."""
    B, Hq, Hkv, Lq, Lk, D, bias_shape, causal, pad = case
    check_against_reference("triton", gen, B, Hq, Hkv, Lq, Lk, D, bias_shape, causal, pad, dtype)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_triton_gpu_dtypes(dtype, gen):
    B, Hq, Hkv, Lq, Lk, D = 2, 8, 2, 300, 1000, 128
    q, k, v, bias, kpm = make_inputs(gen, B, Hq, Hkv, Lq, Lk, D, (Hq, Lq, Lk), True, dtype, "cuda")
    out = ops.attention(q, k, v, bias, True, kpm)
    want = ref.attention(*(t.detach().double() for t in (q, k, v, bias)), True, kpm)
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else TOL[torch.float16]
    torch.testing.assert_close(out.double(), want, **tol)
    g = torch.autograd.grad(out.float().square().sum(), (q, k, v, bias))
    assert all(torch.isfinite(x).all() for x in g)


def test_cpu_half_inputs_compute_in_float32(gen):
    q, k, v, bias, _ = make_inputs(gen, 1, 2, 2, 9, 11, 16, (2, 9, 11), dtype=torch.float32)
    for dtype in (torch.bfloat16, torch.float16):
        qh, kh, vh, bh = (t.detach().to(dtype).requires_grad_() for t in (q, k, v, bias))
        out = ops.attention(qh, kh, vh, bh, causal=True)
        assert out.dtype == dtype
        want = ref.attention(*(t.detach().double() for t in (qh, kh, vh, bh)), True)
        torch.testing.assert_close(out.double(), want, atol=2e-2, rtol=2e-2)
        out.float().sum().backward()
        assert bh.grad.dtype == dtype and bh.grad.shape == bh.shape


def test_backward_is_deterministic_and_thread_independent(gen):
    q, k, v, bias, kpm = make_inputs(gen, 1, 2, 1, 150, 200, 40, (1, 1, 150, 200), pad=True,
                                     dtype=torch.float32)
    g = torch.randn(q.shape, generator=gen)

    def grads():
        out = ops.attention(q, k, v, bias, True, kpm)
        return torch.autograd.grad(out, (q, k, v, bias), g)

    first, second = grads(), grads()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = grads()
    finally:
        torch.set_num_threads(n)
    for a, b in zip(first, single):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_reference_backend_and_default_scale(gen):
    q, k, v, bias, _ = make_inputs(gen, 1, 2, 2, 5, 6, 16, (5, 6), dtype=torch.float64)
    torch.testing.assert_close(ops.attention(q, k, v, bias, backend="reference"),
                               ops.attention(q, k, v, bias))
    # scale is applied to q k^T only: scale=1 on q / 4 equals the default 1 / sqrt(16)
    torch.testing.assert_close(ops.attention(q / 4, k, v, bias, scale=1.0), ops.attention(q, k, v, bias))
    # causal with Lq == Lk agrees with PyTorch's (top-left) is_causal
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k[:, :, :5], v[:, :, :5], is_causal=True)
    torch.testing.assert_close(ops.attention(q, k[:, :, :5], v[:, :, :5], causal=True), sdpa)


def test_traces_under_torch_compile(gen):
    q, k, v, bias, kpm = make_inputs(gen, 2, 4, 2, 9, 13, 16, (4, 9, 13), pad=True, dtype=torch.float32)
    f = lambda q, k, v, b: ops.attention(q, k, v, b, causal=True, key_padding_mask=kpm, return_lse=True)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out, lse = compiled(q, k, v, bias)
    want, want_lse = f(q, k, v, bias)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(lse, want_lse)
    got = torch.autograd.grad(out.sum() + lse.nan_to_num(neginf=0).sum(), (q, k, v, bias))
    exp = torch.autograd.grad(want.sum() + want_lse.nan_to_num(neginf=0).sum(), (q, k, v, bias))
    for a, b in zip(got, exp):
        torch.testing.assert_close(a, b)


def test_bad_inputs():
    q, k, v = torch.randn(2, 4, 5, 16), torch.randn(2, 2, 7, 16), torch.randn(2, 2, 7, 16)
    with pytest.raises(ValueError, match=r"k must have shape \[B, Hkv, Lk, D\] with B=2 and D=16"):
        ops.attention(q, torch.randn(2, 2, 7, 8), v)
    with pytest.raises(ValueError, match="v must have the shape of k"):
        ops.attention(q, k, torch.randn(2, 2, 6, 16))
    with pytest.raises(ValueError, match="q has 4 heads, which must be a multiple of the 3 heads"):
        ops.attention(q, torch.randn(2, 3, 7, 16), torch.randn(2, 3, 7, 16))
    with pytest.raises(ValueError, match=r"bias must broadcast to \[B, Hq, Lq, Lk\] = \[2, 4, 5, 7\], got"):
        ops.attention(q, k, v, torch.randn(5, 6))
    with pytest.raises(ValueError, match="bias must have shape"):
        ops.attention(q, k, v, torch.randn(1, 2, 4, 5, 7))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \[B, Lk\] = \[2, 7\], got"):
        ops.attention(q, k, v, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask must have dtype bool"):
        ops.attention(q, k, v, key_padding_mask=torch.zeros(2, 7))
    with pytest.raises(TypeError, match="k has dtype torch.float64 but q has torch.float32"):
        ops.attention(q, k.double(), v)
    with pytest.raises(TypeError, match="bias has dtype torch.float64"):
        ops.attention(q, k, v, torch.randn(7, dtype=torch.float64))
    with pytest.raises(ValueError, match="q must have shape"):
        ops.attention(q[0], k, v)
    with pytest.raises(TypeError, match="q must have dtype"):
        ops.attention(q.int(), k, v)
    with pytest.raises(TypeError, match="v must be a torch.Tensor"):
        ops.attention(q, k, None)
    with pytest.raises(ValueError, match="every size must be >= 1"):
        ops.attention(q[:, :, :0], k, v)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        ops.attention(q, k, v, scale=float("nan"))
    with pytest.raises(TypeError, match="causal must be a bool"):
        ops.attention(q, k, v, causal=1)
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.attention(q, k, v, backend="flash")
    # no hand-written CUDA kernel: the GPU path is backend="triton" (chosen by "auto" on a GPU)
    with pytest.raises(ValueError, match="no CUDA kernel for this op; use backend='triton'" if HAS_CUDA
                       else "backend='cuda' needs CUDA tensors"):
        dev = "cuda" if HAS_CUDA else "cpu"
        ops.attention(q.to(dev), k.to(dev), v.to(dev), backend="cuda")
    if HAS_TRITON:
        with pytest.raises(TypeError, match="triton backend takes float32, float16 or bfloat16"):
            ops.attention(q.double(), k.double(), v.double(), backend="triton")
    if HAS_CUDA:
        with pytest.raises(ValueError, match="k is on cuda:0 but q is on cpu"):
            ops.attention(q, k.cuda(), v)


def test_kernel_binding_checks_name_the_argument():
    from facecore import _C

    q, k, v = torch.randn(1, 2, 3, 16), torch.randn(1, 2, 4, 16), torch.randn(1, 2, 4, 16)
    out, lse = torch.empty_like(q), torch.empty(1, 2, 3)
    with pytest.raises(ValueError, match=r"attention_forward: v must have shape \[B, Hkv, Lk, D\]"):
        _C.attention_forward(q, k, v[:, :, :3].contiguous(), None, None, False, 0.25, out, lse, 1)
    with pytest.raises(ValueError, match=r"attention_forward: lse must have shape \[B, Hq, Lq\]"):
        _C.attention_forward(q, k, v, None, None, False, 0.25, out, torch.empty(1, 2), 1)
    with pytest.raises(ValueError, match=r"bias must broadcast to \[B, Hq, Lq, Lk\] = \[1, 2, 3, 4\]"):
        _C.attention_forward(q, k, v, torch.randn(1, 2, 2, 4), None, False, 0.25, out, lse, 1)
    with pytest.raises(ValueError, match="key_padding_mask must be bool"):
        _C.attention_forward(q, k, v, None, torch.zeros(1, 4, dtype=torch.uint8), False, 0.25, out, lse, 1)
    with pytest.raises(ValueError, match="q must be float32 or float64"):
        _C.attention_forward(q.half(), k.half(), v.half(), None, None, False, 0.25, out.half(), lse.half(), 1)


# ------------------------------------------------------------------------------------------------
# Non-finite values: padding keys routinely hold garbage; a NaN query must stay in its own row.
ALL_BACKENDS = ["cpu", pytest.param("triton", marks=requires_triton), "reference"]


def _dtype_for(backend):
    return torch.float32 if backend == "triton" else torch.float64


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("D,causal", [(20, False), (32, True)])
def test_garbage_in_padding_keys_never_reaches_real_rows(backend, D, causal, gen):
    """NaN/inf in the k, v and bias of padding keys: the same outputs and gradients as with finite
    padding (masked_fill semantics, not s + -inf), and exactly zero gradient for the padding keys."""
    device, dtype = device_for(backend), _dtype_for(backend)
    B, Hq, Hkv, Lq, Lk = 2, 2, 1, 7, 37
    q, k, v, bias, _ = make_inputs(gen, B, Hq, Hkv, Lq, Lk, D, (B, Hq, Lq, Lk), dtype=dtype, device=device)
    kpm = torch.zeros(B, Lk, dtype=torch.bool)
    kpm[0, [3, 17, 36]] = True
    kpm[1, 20:] = True
    kpm = kpm.to(device)
    pad = kpm[:, None, :, None]

    def run(garbage: bool):
        kk, vv, bb = k, v, bias
        if garbage:
            kk = k.masked_fill(pad, float("nan"))
            vv = v.masked_fill(pad, float("inf")).masked_fill(pad & (torch.arange(D, device=device) % 2 == 0),
                                                                float("nan"))
            bb = bias.masked_fill(kpm[:, None, None, :], float("nan"))
        out, lse = ops.attention(q, kk, vv, bb, causal, kpm, return_lse=True, backend=backend)
        grads = torch.autograd.grad((out * out).sum() + lse.sum(), (q, k, v, bias))
        return out, lse, grads

    out, lse, grads = run(garbage=True)
    clean_out, clean_lse, clean_grads = run(garbage=False)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    torch.testing.assert_close(out, clean_out, **TOL[dtype])
    torch.testing.assert_close(lse, clean_lse, **TOL[dtype])
    for name, a, b in zip(("dq", "dk", "dv", "dbias"), grads, clean_grads):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m, n=name: f"{n}: {m}")
    for g in grads[1:3]:  # padding keys get exactly zero gradient
        assert torch.equal(g.masked_select(pad), torch.zeros_like(g.masked_select(pad)))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_nan_query_gives_a_nan_row_of_its_own(backend, gen):
    device, dtype = device_for(backend), _dtype_for(backend)
    q, k, v, bias, kpm = make_inputs(gen, 2, 2, 2, 9, 21, 24, (2, 2, 9, 21), pad=True, dtype=dtype,
                                     device=device)
    kpm[:, 0] = False  # every row sees a key
    bad = torch.zeros(q.shape[:3], dtype=torch.bool, device=device)
    bad[0, 1, 4] = True
    qn = q.masked_fill(bad[..., None], float("nan"))
    out, lse = ops.attention(qn, k, v, bias, False, kpm, return_lse=True, backend=backend)
    assert torch.isnan(out[bad]).all() and torch.isnan(lse[bad]).all()  # not zeros / -inf
    clean_out, clean_lse = ops.attention(q, k, v, bias, False, kpm, return_lse=True, backend=backend)
    torch.testing.assert_close(out[~bad], clean_out[~bad], **TOL[dtype])
    torch.testing.assert_close(lse[~bad], clean_lse[~bad], **TOL[dtype])
    dq, dk, dv = torch.autograd.grad(out[~bad].sum(), (q, k, v))
    assert torch.isfinite(dq[~bad]).all()
    pad = kpm[:, None, :, None].expand_as(dk)
    assert torch.equal(dk[pad], torch.zeros_like(dk[pad])) and torch.equal(dv[pad], torch.zeros_like(dv[pad]))
