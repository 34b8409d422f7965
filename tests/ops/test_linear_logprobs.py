"""linear_logprobs: every backend against the materialised-logits reference, values and gradients."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref

from .conftest import backend_params, device_for


def _inputs(N, H, V, dtype, device, gen, *, bias=True, ignore_every=0, scale=1.0):
    h = (scale * torch.randn(N, H, generator=gen, dtype=dtype)).to(device).requires_grad_()
    w = (torch.randn(V, H, generator=gen, dtype=dtype) / H**0.5).to(device).requires_grad_()
    b = torch.randn(V, generator=gen, dtype=dtype).to(device).requires_grad_() if bias else None
    t = torch.randint(0, V, (N,), generator=gen)
    if ignore_every:
        t[::ignore_every] = -100
    return h, w, b, t.to(device)


def _tol(dtype):
    # float32: sums of H products and a V-term log-sum-exp in a different order than BLAS; float64: exact-ish
    return dict(atol=2e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)


# odd sizes everywhere; (130, 64, 300) spans several CPU row blocks and vocab chunks (too slow to
# interpret, the Triton kernel's tiling is covered by the other two with its interpreter block sizes)
_CASES = [(37, 19, 1001, True, 3), (5, 3, 7, False, 0)]


@pytest.mark.parametrize(
    "backend,N,H,V,bias,ignore_every",
    [
        pytest.param(b.values[0], *c, marks=b.marks, id=f"{b.id}-{c[0]}x{c[1]}x{c[2]}")
        for b in backend_params(cuda=False)
        for c in _CASES
    ]
    + [("cpu", 130, 64, 300, False, 4)],
)
def test_matches_reference(backend, N, H, V, bias, ignore_every, gen):
    device = device_for(backend)
    dtypes = [torch.float32] if backend == "triton" else [torch.float32, torch.float64]
    for dtype in dtypes:
        h, w, b, t = _inputs(N, H, V, dtype, device, gen, bias=bias, ignore_every=ignore_every)
        out = ops.linear_logprobs(h, w, t, b, backend=backend)
        expected = ref.linear_logprobs(h, w, t, b)
        torch.testing.assert_close(out, expected, **_tol(dtype))
        assert bool((out[t == -100] == 0).all())
        g = torch.randn(N, generator=gen, dtype=dtype).to(device)
        params = [h, w] + ([b] if bias else [])
        got = torch.autograd.grad(out, params, g)
        want = torch.autograd.grad(expected, params, g)
        for name, x, y in zip(("hidden", "weight", "bias"), got, want):
            torch.testing.assert_close(x, y, **_tol(dtype), msg=lambda m, name=name: f"grad {name}: {m}")
        if ignore_every:  # ignored rows get exactly zero gradient
            assert bool((got[0][t == -100] == 0).all())


@pytest.mark.parametrize("backend", backend_params(cuda=False))
def test_all_ignored_and_large_logits(backend, gen):
    device = device_for(backend)
    h, w, b, t = _inputs(9, 17, 70, torch.float32, device, gen)
    none = torch.full_like(t, -5)
    out = ops.linear_logprobs(h, w, none, b, ignore_index=-5, backend=backend)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert torch.equal(h.grad, torch.zeros_like(h)) and torch.equal(w.grad, torch.zeros_like(w))
    # logits of order 1e3: the online log-sum-exp must not overflow in float32
    big = (h.detach() * 300).requires_grad_()
    out = ops.linear_logprobs(big, w, t, b, backend=backend)
    expected = ref.linear_logprobs(big.double(), w.double(), t, b.double())
    assert torch.isfinite(out).all()
    # float32 logits of size ~1e3 carry ~1e-4 rounding each (the float32 reference does no better)
    torch.testing.assert_close(out.double(), expected, atol=2e-3, rtol=1e-5)


_ALL_BACKENDS = backend_params(cuda=False) + [pytest.param("reference", id="reference")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("backend", _ALL_BACKENDS)
def test_ignored_rows_with_huge_values_do_not_poison_gradients(backend, dtype, gen):
    """Ignored rows whose hidden is huge or inf, and a bias large enough that exp(logit - 0) overflows
    for rows whose saved lse is 0 (ignored and padding rows): 0 * inf = NaN if the kernel multiplies
    by a 0 mask instead of selecting. Everything must equal the same call with harmless ignored rows
    (bit for bit: ignored rows contribute nothing), ignored rows get exactly 0 gradient, and the
    result must match the reference. (bf16 is not checked here: the Triton interpreter computes it
    wrongly; the GPU test covers it.)"""
    device = device_for(backend)
    N, H, V = 13, 64, 300
    h, w, b, t = _inputs(N, H, V, torch.float32, "cpu", gen, ignore_every=3)
    with torch.no_grad():
        b[7] = 120.0  # every valid row's lse ~ 120; exp(120) overflows float32 where lse = 0
    huge = 6e4 if dtype == torch.float16 else 1e30  # logits far beyond exp's range (and fp16's)
    hidden = h.detach().clone()
    ignored = (t == -100).nonzero()[:, 0]
    hidden[ignored[0]] = float("inf")
    hidden[ignored[1:]] = huge
    g = torch.randn(N, generator=gen)
    runs = []
    for hid in (hidden, h.detach()):  # poisoned ignored rows, then harmless ones
        hx, wx, bx = (x.detach().to(device, dtype).requires_grad_() for x in (hid, w, b))
        out = ops.linear_logprobs(hx, wx, t.to(device), bx, backend=backend)
        runs.append((out, *torch.autograd.grad(out, (hx, wx, bx), g.to(device, out.dtype))))
    (out, gh, _, _), clean = runs[0], runs[1]
    for name, x in zip(("logp", "dhidden", "dweight", "dbias"), runs[0]):
        assert bool(torch.isfinite(x).all()), f"{backend} {dtype}: {name} is not finite"
    assert bool((out[ignored.to(device)] == 0).all()) and bool((gh[ignored.to(device)] == 0).all())
    for name, x, y in zip(("logp", "dhidden", "dweight", "dbias"), runs[0], clean):
        assert torch.equal(x, y), f"{backend} {dtype}: {name} depends on the ignored rows' hidden"
    # against the float64 reference on the same (rounded) inputs; fp16: half-precision dlogits tiles
    h64, w64, b64 = (x.detach().to(dtype).double() for x in (h, w, b))
    tol = _tol(torch.float32) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    expected = ref.linear_logprobs(h64, w64, t, b64)
    torch.testing.assert_close(out.double().cpu(), expected, **{**tol, "atol": max(tol["atol"], 1e-4)})


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_half_inputs_give_float32_logprobs_on_cpu(backend, dtype, gen):
    """fp16/bf16 inputs on the CPU backends: computed in float32, returned in float32 (not rounded
    back to the input dtype), gradients in the inputs' dtypes; compiles with the right fake dtype."""
    h, w, b, t = _inputs(37, 19, 1001, torch.float32, "cpu", gen, ignore_every=3)
    hx, wx, bx = (x.detach().to(dtype).requires_grad_() for x in (h, w, b))
    out = ops.linear_logprobs(hx, wx, t, bx, backend=backend)
    assert out.dtype == torch.float32
    expected = ref.linear_logprobs(*(x.detach().double() for x in (hx, wx)), t, bx.detach().double())
    torch.testing.assert_close(out.double(), expected, atol=2e-5, rtol=1e-5)  # float32 compute, exact inputs
    grads = torch.autograd.grad(out, (hx, wx, bx), torch.randn(37, generator=gen))
    assert [x.dtype for x in grads] == [dtype] * 3
    if backend == "cpu":
        compiled = torch.compile(
            lambda h, w, t, b: ops.linear_logprobs(h, w, t, b, backend="cpu"), fullgraph=True, backend="eager"
        )
        torch.testing.assert_close(compiled(hx, wx, t, bx), out)


@pytest.mark.timeout(120)
def test_triton_float16_returns_float32_logprobs(gen):
    """The Triton kernel returns its float32 log-probs as they are (fp16 is interpreted correctly)."""
    pytest.importorskip("triton")
    device = device_for("triton")
    h, w, b, t = _inputs(21, 32, 300, torch.float32, "cpu", gen, ignore_every=4)
    hx, wx, bx = (x.detach().to(device, torch.float16) for x in (h, w, b))
    out = ops.linear_logprobs(hx, wx, t.to(device), bx, backend="triton")
    assert out.dtype == torch.float32
    expected = ref.linear_logprobs(hx.double(), wx.double(), t.to(device), bx.double())
    # fp16 operands are exact in float32; the dots accumulate in float32 (tf32 on GPU for fp16: 1e-3)
    torch.testing.assert_close(out.double(), expected, atol=1e-3, rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16/fp16 Triton path needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision_on_gpu(dtype, gen):
    h, w, b, t = _inputs(77, 64, 3001, torch.float32, "cuda", gen, ignore_every=5)
    h16, w16, b16 = (x.detach().to(dtype).requires_grad_() for x in (h, w, b))
    out = ops.linear_logprobs(h16, w16, t, b16, backend="triton")
    assert out.dtype == torch.float32  # log-probs stay float32 for sequence sums
    # reference on the same rounded inputs, in float32: the kernel accumulates in float32 too
    h32, w32, b32 = (x.detach().float().requires_grad_() for x in (h16, w16, b16))
    expected = ref.linear_logprobs(h32, w32, t, b32)
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    g = torch.randn(77, generator=gen).cuda()
    got = torch.autograd.grad(out, (h16, w16, b16), g)
    assert [x.dtype for x in got] == [dtype] * 3
    want = torch.autograd.grad(expected, (h32, w32, b32), g)
    for x, y in zip(got, want):  # half-precision dlogits tiles feed the gradient dots
        torch.testing.assert_close(x.float(), y, atol=3e-2, rtol=3e-2)


def test_gradcheck_cpu_float64(gen):
    h, w, b, t = _inputs(11, 5, 23, torch.float64, "cpu", gen, ignore_every=4)
    assert torch.autograd.gradcheck(lambda h, w, b: ops.linear_logprobs(h, w, t, b, backend="cpu"), (h, w, b))


def test_threads_and_partial_gradients(gen):
    """Row/vocab splits differ with the thread count; results must not (beyond float rounding)."""
    h, w, b, t = _inputs(70, 33, 517, torch.float64, "cpu", gen, ignore_every=5)
    old = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 3):
            torch.set_num_threads(n)
            out = ops.linear_logprobs(h, w, t, b, backend="cpu")
            outs.append((out, *torch.autograd.grad(out.sum(), (h, w, b))))
    finally:
        torch.set_num_threads(old)
    for x, y in zip(*outs):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-12)
    # only the weight needs a gradient (frozen hidden): the kernel skips the hidden gradient
    wonly = ops.linear_logprobs(h.detach(), w, t, backend="cpu")
    (gw,) = torch.autograd.grad(wonly.sum(), w)
    (gw_ref,) = torch.autograd.grad(ref.linear_logprobs(h.detach(), w, t).sum(), w)
    torch.testing.assert_close(gw, gw_ref, atol=1e-12, rtol=1e-12)


def test_batched_shape_and_compile(gen):
    h, w, b, t = _inputs(12, 8, 40, torch.float32, "cpu", gen)
    out = ops.linear_logprobs(h.reshape(3, 4, 8), w, t.reshape(3, 4), b)
    assert out.shape == (3, 4)
    torch.testing.assert_close(out.reshape(-1), ref.linear_logprobs(h, w, t, b), **_tol(torch.float32))
    compiled = torch.compile(
        lambda h, w, t, b: ops.linear_logprobs(h, w, t, b), fullgraph=True, backend="eager"
    )
    torch.testing.assert_close(compiled(h, w, t, b), out.reshape(-1))


@pytest.mark.parametrize("backend", backend_params(cuda=False))
def test_bad_inputs(backend):
    device = device_for(backend)
    h, w = torch.randn(4, 3, device=device), torch.randn(10, 3, device=device)
    t = torch.tensor([1, 2, 10, 3], device=device)
    with pytest.raises(ValueError, match=r"targets\[2\] = 10 is outside \[0, V=10\)"):
        ops.linear_logprobs(h, w, t, backend=backend)
    with pytest.raises(ValueError, match=r"targets\[0\] = -1"):
        ops.linear_logprobs(h, w, torch.tensor([-1, 0, 0, 0], device=device), backend=backend)
    ok = torch.tensor([1, 2, 3, 4], device=device)
    with pytest.raises(ValueError, match="weight must have shape"):
        ops.linear_logprobs(h, torch.randn(10, 4, device=device), ok, backend=backend)
    with pytest.raises(ValueError, match="targets must have the shape"):
        ops.linear_logprobs(h, w, ok[:3], backend=backend)
    with pytest.raises(ValueError, match="bias must have shape"):
        ops.linear_logprobs(h, w, ok, torch.zeros(9, device=device), backend=backend)
    with pytest.raises(TypeError, match="targets must have dtype"):
        ops.linear_logprobs(h, w, ok.float(), backend=backend)
    with pytest.raises(TypeError, match="weight has dtype"):
        ops.linear_logprobs(h, w.double(), ok, backend=backend)


def test_cpu_binding_checks_targets_itself():
    """The C++ kernel bounds-checks targets even when called without the Python checks."""
    from facecore import _C

    h, w = torch.randn(3, 2), torch.randn(5, 2)
    logp, lse = torch.empty(3), torch.empty(3)
    with pytest.raises(ValueError, match=r"targets\[1\] = 99"):
        _C.linear_logprobs_forward(h, w, None, torch.tensor([0, 99, 1]), -100, logp, lse, 1)
    with pytest.raises(ValueError, match="weight must have shape"):
        _C.linear_logprobs_forward(h, torch.randn(5, 3), None, torch.tensor([0, 1, 1]), -100, logp, lse, 1)
