"""Preference losses against their formulas (float64 values and gradients), stability, ties, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import facecore.reference as ref
from facecore.losses import (
    KINDS,
    bradley_terry_loss,
    fused_linear_preference_loss,
    kto_loss,
    preference_loss,
    sequence_logprobs,
)

B = 13


def _logps(gen, dtype=torch.float64, scale=3.0, n=B):
    """policy/ref log-probs per pair; negative (ORPO needs probabilities < 1)."""
    return [(-scale * torch.rand(n, generator=gen, dtype=dtype) - 0.01).requires_grad_() for _ in range(4)]


def _grads(loss, xs):
    return torch.autograd.grad(loss, [x for x in xs if x is not None], allow_unused=True)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_matches_reference(kind, gen):
    pc, pr, rc, rr = _logps(gen)
    eps = 0.1 if kind in ("sigmoid", "robust", "simpo") else 0.0
    labels = (torch.rand(B, generator=gen) > 0.3).double()
    if kind in ("sigmoid", "ipo"):
        labels[:3] = 0.5  # ties
    for lab in (None, labels):
        loss, info = preference_loss(
            pc, pr, rc, rr, beta=0.3, kind=kind, label_smoothing=eps, gamma=0.7, labels=lab
        )
        want, winfo = ref.losses.preference_loss(
            pc, pr, rc, rr, beta=0.3, kind=kind, label_smoothing=eps, gamma=0.7, labels=lab
        )
        torch.testing.assert_close(loss, want, atol=1e-12, rtol=1e-12)
        for x, y in zip(_grads(loss, [pc, pr, rc, rr]), _grads(want, [pc, pr, rc, rr])):
            if y is None:
                assert x is None or bool((x == 0).all())
            else:
                torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-12)
        for key in ("chosen_rewards", "rejected_rewards", "losses"):
            torch.testing.assert_close(info[key], winfo[key], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(info["accuracy"], winfo["accuracy"], equal_nan=True)


def test_dpo_closed_forms(gen):
    """The issue's formulas written out literally (log of sigmoid is fine at these magnitudes in float64)."""
    pc, pr, rc, rr = _logps(gen)
    beta, eps = 0.5, 0.2
    d = (pc - rc) - (pr - rr)
    sig = torch.sigmoid
    cases = {
        ("sigmoid", 0.0): -torch.log(sig(beta * d)),
        ("sigmoid", eps): -(1 - eps) * torch.log(sig(beta * d)) - eps * torch.log(sig(-beta * d)),
        ("hinge", 0.0): torch.relu(1 - beta * d),
        ("ipo", 0.0): (d - 1 / (2 * beta)) ** 2,
        ("robust", eps): (-(1 - eps) * torch.log(sig(beta * d)) + eps * torch.log(sig(-beta * d)))
        / (1 - 2 * eps),
        ("simpo", 0.0): -torch.log(sig(beta * (pc - pr) - 0.5)),
    }
    for (kind, e), want in cases.items():
        loss, info = preference_loss(pc, pr, rc, rr, beta=beta, kind=kind, label_smoothing=e)
        torch.testing.assert_close(loss, want.mean(), atol=1e-12, rtol=1e-12)
        g1 = torch.autograd.grad(loss, [pc, pr], retain_graph=True)
        g2 = torch.autograd.grad(want.mean(), [pc, pr])
        for x, y in zip(g1, g2):
            torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-12)
    # ORPO odds ratio: log odds(p) = log p - log(1 - p) on the probability scale
    loss, _ = preference_loss(pc, pr, kind="orpo", beta=beta)
    p, q = pc.exp(), pr.exp()
    ratio = torch.log(p / (1 - p)) - torch.log(q / (1 - q))
    torch.testing.assert_close(loss, (-beta * torch.log(sig(ratio))).mean(), atol=1e-12, rtol=1e-12)
    # rewards and accuracy for logging
    loss, info = preference_loss(pc, pr, rc, rr, beta=beta)
    torch.testing.assert_close(info["chosen_rewards"], beta * (pc - rc).detach())
    torch.testing.assert_close(info["accuracy"], (d > 0).double().mean())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_float32_stable_at_extreme_margins(kind, sign):
    """|βΔ| ~ 1e4: no NaN or inf in loss or gradients (log-sigmoid, never log of sigmoid)."""
    n = 6
    pc = torch.full((n,), -1.0, requires_grad=True)
    pr = torch.full((n,), -1.0 - sign * 1e5 if kind != "orpo" else -1.0, requires_grad=True)
    rc = torch.full((n,), -1.0, requires_grad=True)
    rr = torch.full((n,), -1.0, requires_grad=True)
    if kind == "orpo":  # odds ratios of probabilities near 1 and near 0
        with torch.no_grad():
            pc.fill_(-1e-30 if sign > 0 else -1e4)
            pr.fill_(-1e4 if sign > 0 else -1e-30)
    loss, info = preference_loss(pc, pr, rc, rr, beta=0.1, kind=kind)
    assert torch.isfinite(loss), (kind, loss)
    grads = [g for g in _grads(loss, [pc, pr, rc, rr]) if g is not None]
    assert all(bool(torch.isfinite(g).all()) for g in grads), kind
    if kind in ("sigmoid", "robust", "simpo") and sign > 0:
        assert float(loss.detach()) < 1e-6  # decisively right: (almost) no loss
    if kind == "sigmoid" and sign < 0:
        torch.testing.assert_close(loss, torch.tensor(0.1 * 1e5))  # -log σ(-x) = x for large x


def test_label_smoothing_and_ties():
    pc, pr, rc, rr = (torch.tensor([-1.0, -2.0], dtype=torch.float64, requires_grad=True) for _ in range(4))
    with torch.no_grad():
        pr.sub_(torch.tensor([0.0, 1.0], dtype=torch.float64))  # pair 0: Δ = 0, pair 1: Δ = 1
    # ε = 0.25 on hard labels equals the soft label 0.75
    a, _ = preference_loss(pc, pr, rc, rr, label_smoothing=0.25)
    b, _ = preference_loss(pc, pr, rc, rr, labels=torch.full((2,), 0.75, dtype=torch.float64))
    torch.testing.assert_close(a, b)
    # a tie has zero gradient exactly where Δ = 0 (pair 0), and pulls Δ back towards 0 elsewhere
    tie = torch.full((2,), 0.5, dtype=torch.float64)
    for kind in ("sigmoid", "ipo"):
        loss, info = preference_loss(pc, pr, rc, rr, kind=kind, labels=tie)
        (g,) = torch.autograd.grad(loss, [pc])
        assert abs(float(g[0])) < 1e-15 and float(g[1]) > 0, kind
        assert math.isnan(float(info["accuracy"]))  # no decisive pair to be right about
    # label 0 flips the pair
    flip, _ = preference_loss(pc, pr, rc, rr, kind="hinge", labels=torch.zeros(2, dtype=torch.float64))
    swap, _ = preference_loss(pr, pc, rr, rc, kind="hinge")
    torch.testing.assert_close(flip, swap)


def test_kto_unpaired_and_paired(gen):
    pol, refl = (
        (-3 * torch.rand(B, generator=gen, dtype=torch.float64)).requires_grad_(),
        -3 * torch.rand(B, generator=gen, dtype=torch.float64),
    )
    desirable = torch.rand(B, generator=gen) > 0.5
    loss, info = kto_loss(pol, refl, desirable, beta=0.2, desirable_weight=1.5)
    want = ref.losses.kto_loss(pol, refl, desirable, beta=0.2, desirable_weight=1.5)
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(torch.autograd.grad(loss, pol)[0], torch.autograd.grad(want, pol)[0])
    loss, info = kto_loss(pol, refl, desirable, kl=0.3)
    r = (pol - refl).detach()
    manual = torch.where(
        desirable, 1 - torch.sigmoid(0.1 * (r - 0.3)), 1 - torch.sigmoid(0.1 * (0.3 - r))
    ).mean()
    torch.testing.assert_close(loss.detach(), manual)


def test_bradley_terry(gen):
    rc, rr = (torch.randn(B, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(2))
    margin = torch.rand(B, generator=gen, dtype=torch.float64)
    labels = (torch.rand(B, generator=gen) > 0.4).double()
    labels[:4] = 0.5
    for kw in (
        dict(),
        dict(margin=margin),
        dict(margin=0.3, center_coef=0.01),
        dict(labels=labels),
        dict(labels=labels, margin=margin, center_coef=0.1),
    ):
        loss, info = bradley_terry_loss(rc, rr, **kw)
        want = ref.losses.bradley_terry_loss(rc, rr, **kw)
        torch.testing.assert_close(loss, want, atol=1e-12, rtol=1e-12)
        for x, y in zip(torch.autograd.grad(loss, [rc, rr]), torch.autograd.grad(want, [rc, rr])):
            torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-12)
    # the formula, literally: -log σ(r_c - r_r - m) + c mean((r_c + r_r)^2)
    loss, _ = bradley_terry_loss(rc, rr, margin=margin, center_coef=0.05)
    want = -torch.log(torch.sigmoid(rc - rr - margin)).mean() + 0.05 * ((rc + rr) ** 2).mean()
    torch.testing.assert_close(loss, want)
    # ties: optimum at equal rewards; extreme gaps stay finite in float32
    t, _ = bradley_terry_loss(torch.zeros(1, requires_grad=True), torch.zeros(1), labels=torch.tensor([0.5]))
    torch.testing.assert_close(t, torch.tensor(math.log(2)))
    big = torch.tensor([1e4, -1e4], requires_grad=True)
    loss, _ = bradley_terry_loss(big, torch.zeros(2))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    torch.testing.assert_close(loss, torch.tensor(5e3))


def test_bad_inputs():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="same batch size"):
        preference_loss(x, torch.zeros(5), x, x)
    with pytest.raises(ValueError, match="beta must be"):
        preference_loss(x, x, x, x, beta=-0.1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 0.5\)"):
        preference_loss(x, x, x, x, label_smoothing=0.5)
    with pytest.raises(ValueError, match="label_smoothing is used by"):
        preference_loss(x, x, x, x, kind="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="kind must be one of"):
        preference_loss(x, x, x, x, kind="dpo")
    with pytest.raises(ValueError, match="needs ref_chosen"):
        preference_loss(x, x, kind="sigmoid")
    with pytest.raises(ValueError, match="hard labels"):
        preference_loss(x, x, x, x, kind="hinge", labels=torch.full((4,), 0.5))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        preference_loss(x, x, x, x, labels=torch.full((4,), 2.0))
    with pytest.raises(ValueError, match="shape \\[B\\]"):
        preference_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        preference_loss(torch.zeros(4, dtype=torch.long), x, x, x)
    with pytest.raises(ValueError, match="average log-probs < 0"):
        preference_loss(x, x, kind="orpo")
    with pytest.raises(ValueError, match="same batch size"):
        bradley_terry_loss(x, torch.zeros(3))


# ---- fused linear preference loss -----------------------------------------------------------------


def _sequences(gen, Bq=3, T=(7, 5), H=11, V=97, dtype=torch.float64):
    hc = torch.randn(Bq, T[0], H, generator=gen, dtype=dtype).requires_grad_()
    hr = torch.randn(Bq, T[1], H, generator=gen, dtype=dtype).requires_grad_()
    w = (torch.randn(V, H, generator=gen, dtype=dtype) / H**0.5).requires_grad_()
    b = torch.randn(V, generator=gen, dtype=dtype).requires_grad_()
    tc = torch.randint(0, V, (Bq, T[0]), generator=gen)
    tr = torch.randint(0, V, (Bq, T[1]), generator=gen)
    tc[:, :2] = -100  # prompt tokens
    tr[0, -1] = -100  # padding
    return hc, hr, w, b, tc, tr


def _materialised_logps(h, w, b, t, average):
    tok = ref.linear_logprobs(h.reshape(-1, h.shape[-1]), w, t.reshape(-1), b).reshape(t.shape)
    return ref.sequence_logprobs(tok, t != -100, average=average)


@pytest.mark.parametrize("kind", ["sigmoid", "ipo", "simpo"])
def test_fused_matches_materialised_reference(kind, gen):
    hc, hr, w, b, tc, tr = _sequences(gen)
    w_ref = (w + 0.1 * torch.randn(w.shape, generator=gen, dtype=w.dtype)).detach()
    loss, info = fused_linear_preference_loss(
        hc, hr, w, tc, tr, b, ref_weight=w_ref, kind=kind, beta=0.2, backend="cpu"
    )
    avg = kind == "simpo"
    c, r = _materialised_logps(hc, w, b, tc, avg), _materialised_logps(hr, w, b, tr, avg)
    with torch.no_grad():
        rc, rr = _materialised_logps(hc, w_ref, None, tc, avg), _materialised_logps(hr, w_ref, None, tr, avg)
    want, _ = ref.losses.preference_loss(c, r, rc, rr, beta=0.2, kind=kind)
    torch.testing.assert_close(loss, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(info["chosen_logps"], c.detach(), atol=1e-12, rtol=1e-12)
    for x, y in zip(torch.autograd.grad(loss, [hc, hr, w, b]), torch.autograd.grad(want, [hc, hr, w, b])):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-12)


def test_sequence_logprobs_and_precomputed_reference(gen):
    hc, hr, w, b, tc, tr = _sequences(gen, dtype=torch.float32)
    mask = torch.rand(tc.shape, generator=gen) > 0.3
    got = sequence_logprobs(hc, w, tc, b, mask=mask, average=True)
    masked = torch.where(mask, tc, -100)
    torch.testing.assert_close(got, _materialised_logps(hc, w, b, masked, True), atol=2e-5, rtol=1e-5)
    rc, rr = -torch.rand(3) * 30, -torch.rand(3) * 30
    loss, info = fused_linear_preference_loss(hc, hr, w, tc, tr, b, ref_chosen=rc, ref_rejected=rr)
    want, _ = preference_loss(
        _materialised_logps(hc, w, b, tc, False), _materialised_logps(hr, w, b, tr, False), rc, rr
    )
    torch.testing.assert_close(loss, want, atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="needs the reference model"):
        fused_linear_preference_loss(hc, hr, w, tc, tr)
    with pytest.raises(ValueError, match="must be pairs"):
        fused_linear_preference_loss(hc, hr[:2], w, tc, tr[:2], ref_weight=w)
    with pytest.raises(ValueError, match="targets_chosen must have shape"):
        fused_linear_preference_loss(hc, hr, w, tc[:, :3], tr, ref_weight=w)


def test_logsigmoid_is_what_keeps_float32_finite():
    """Sanity of the premise: log(sigmoid(x)) underflows to -inf in float32, logsigmoid does not."""
    x = torch.tensor([-200.0])
    assert torch.isinf(torch.log(torch.sigmoid(x))).all() and torch.isfinite(F.logsigmoid(x)).all()


# ---- half-precision inputs: log-probs accumulate and come back in float32 ----------------------------


def _long_half_sequences(dtype, T=300, H=16, V=50):
    """Two pairs of 300-token answers whose sequence log-probs are about -2000 (fixed seed: the
    assertion that a half-precision sum misses is about these numbers)."""
    g = torch.Generator().manual_seed(11)
    hc, hr = ((1.6 * torch.randn(2, T, H, generator=g)).to(dtype) for _ in range(2))
    w = torch.randn(V, H, generator=g).to(dtype)
    tc, tr = (torch.randint(0, V, (2, T), generator=g) for _ in range(2))
    tc[:, :5] = tr[:, :5] = -100  # prompt tokens
    return hc, hr, w, tc, tr


def _float64_sequence_logps(h, w, t):
    """The exact answer for the (already rounded) half-precision inputs, and what a half-precision
    pipeline returns: token log-probs rounded to the input dtype and summed in it."""
    tok = ref.linear_logprobs(h.double().reshape(-1, h.shape[-1]), w.double(), t.reshape(-1)).reshape(t.shape)
    return ref.sequence_logprobs(tok, t != -100), tok.to(h.dtype).sum(-1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_half_precision_sequence_logprobs_are_float32(backend, dtype):
    hc, hr, w, tc, tr = _long_half_sequences(dtype)
    exact, half_sum = _float64_sequence_logps(hc, w, tc)
    assert bool((exact < -1500).all())
    got = sequence_logprobs(hc, w, tc, backend=backend)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=0)
    # the premise: the same sum kept in the input dtype misses by far more than that
    assert float(((half_sum.double() - exact) / exact).abs().max()) > 1e-4
    tok16 = ref.linear_logprobs(hc.reshape(-1, hc.shape[-1]), w, tc.reshape(-1)).reshape(tc.shape).to(dtype)
    assert ref.sequence_logprobs(tok16, tc != -100).dtype == torch.float32  # the reference sum upcasts too


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_half_precision_dpo_margin_survives(backend):
    """bf16 policy: an O(1) DPO margin between -2000 sequence log-probs must come out right (a bf16 sum
    has spacing 8 there)."""
    hc, hr, w, tc, tr = _long_half_sequences(torch.bfloat16)
    (c, c_half), (r, r_half) = _float64_sequence_logps(hc, w, tc), _float64_sequence_logps(hr, w, tr)
    ref_c, ref_r = (c - 0.3).float(), (r + 0.2).float()  # true margin Δ = 0.5
    loss, info = fused_linear_preference_loss(
        hc, hr, w, tc, tr, ref_chosen=ref_c, ref_rejected=ref_r, beta=1.0, backend=backend
    )
    assert info["chosen_logps"].dtype == info["rejected_logps"].dtype == torch.float32
    want = -F.logsigmoid((c - ref_c.double()) - (r - ref_r.double())).mean()
    assert abs(float(loss) - float(want)) < 1e-3
    half_margin = (c_half.double() - ref_c.double()) - (r_half.double() - ref_r.double())
    assert float((half_margin - 0.5).abs().max()) > 0.5  # what bf16 sequence sums would have given
