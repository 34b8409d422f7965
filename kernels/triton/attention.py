"""Triton FlashAttention-2 with a learnable additive bias: the GPU path of facecore.ops.attention.

    S = scale * Q K^T + bias,  S = -inf where masked,  P = softmax(S),  O = P V,  lse = logsumexp(S)

Algorithm: FlashAttention-2 (Dao, 2023, arXiv:2307.08691). Forward: one program per (query block,
batch x head) streams key blocks through an online softmax in base 2 (exp2, with log2(e) folded into
the scale) and stores O and lse. Backward recomputes P = exp(S - lse):
    delta_i = rowsum(dO * O)_i - dlse_i,   dS = P * (dO V^T - delta)
    dV = P^T dO,   dK = scale dS^T Q   (one program per key block and kv head, looping over the
                                        query heads of its group: no atomics, deterministic)
    dQ = scale dS K                    (one program per query block and query head)
    dbias = dS, written once per [b, h, i, j] into a float32 buffer that torch then sums over the
            bias's broadcast dimensions (the only [Lq, Lk]-sized memory, needed only for a bias
            that requires grad; the bias itself is already that size).
Conventions are those of facecore.reference.attention: causal aligned bottom-right (query i sees
keys j <= i + Lk - Lq), key_padding_mask True = padding, query head h reads kv head h // (Hq // Hkv),
fully masked rows give O = 0, lse = -inf and zero gradients; padding keys' K/V rows are read as
zeros and get exactly zero gradient (NaN/inf there never reaches a real row); a NaN query gives a
NaN row of its own. Any Lq, Lk >= 1 and D <= 256 (D is padded to a power of two >= 16 inside the
kernel, with masked loads). float32 inputs use IEEE fp32 matrix products (no TF32),
float16/bfloat16 accumulate in float32.

Block sizes are autotuned on GPU; under TRITON_INTERPRET=1 (CPU interpreter) one small fixed
configuration is used, and FACECORE_TRITON_AUTOTUNE=0 pins one GPU configuration (64 x 64 tiles, valid
for every D) so that a correctness run compiles each kernel once instead of once per candidate.
"""

from __future__ import annotations

import os

import torch
import triton.language as tl

import triton

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
_NO_AUTOTUNE = os.environ.get("FACECORE_TRITON_AUTOTUNE", "1") == "0"
LOG2E = 1.4426950408889634
MAX_D = 256


def _configs(fwd: bool):
    if _INTERPRET:
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1)]
    if _NO_AUTOTUNE:
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=2)]
    out = []
    for bm, bn in ([(128, 64), (128, 32), (64, 64), (64, 32), (128, 128)] if fwd
                   else [(64, 64), (128, 64), (64, 32), (32, 64), (32, 32)]):
        for warps in (4, 8):
            for stages in (2, 3):
                out.append(triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages))
    return out


def _prune(configs, named_args, **kwargs):
    # Large head dims exhaust shared memory with the biggest tiles.
    bd = kwargs.get("BLOCK_D", named_args.get("BLOCK_D", 64))
    keep = [c for c in configs if bd <= 128 or c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] <= 64 * 64]
    return keep or configs[-1:]


@triton.jit
def _key_ok(Kpm, kpm_off, cols, Lk, HAS_KPM: tl.constexpr):
    """Keys that exist and are not padding. K and V rows are loaded through this mask, so padding rows
    read as zeros: NaN/inf held by padding keys never meets P = 0 as 0 * NaN."""
    ok = cols < Lk
    if HAS_KPM:
        ok = ok & (tl.load(Kpm + kpm_off + cols, mask=ok, other=1) == 0)
    return ok


@triton.jit
def _scores(qk, Bias, bias_off, Kpm, kpm_off, rows, cols, Lq, Lk, qk_scale,
            HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr,
            sb_i, sb_j):
    """Scores in base 2 for a [rows x cols] tile (rows/cols may be a column/row vector): masked -> -inf,
    a select (masked_fill), so a NaN bias or key at a masked position leaves no trace."""
    s = qk * qk_scale
    valid = (cols < Lk) & (rows < Lq)
    if HAS_BIAS:
        b = tl.load(Bias + bias_off + rows * sb_i + cols * sb_j, mask=valid, other=0.0)
        s += b.to(tl.float32) * 1.4426950408889634
    if HAS_KPM:
        pad = tl.load(Kpm + kpm_off + cols, mask=cols < Lk, other=1)
        valid = valid & (pad == 0)
    if CAUSAL:
        valid = valid & (cols <= rows + (Lk - Lq))
    return tl.where(valid, s, float("-inf"))


@triton.autotune(configs=_configs(True), key=["Lq", "Lk", "BLOCK_D", "HAS_BIAS", "CAUSAL"],
                 prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _fwd(Q, K, V, Bias, Kpm, Out, Lse,
         sb_b, sb_h, sb_i, sb_j, Hq, G, Lq, Lk, D, qk_scale,
         HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr,
         BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b, h = bh // Hq, bh % Hq
    kvh = b * (Hq // G) + h // G
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dd = tl.arange(0, BLOCK_D)
    nn = tl.arange(0, BLOCK_N)
    q = tl.load(Q + (bh * Lq + rows[:, None]) * D + dd[None, :],
                mask=(rows[:, None] < Lq) & (dd[None, :] < D), other=0.0)
    kbase = K + kvh * Lk * D
    vbase = V + kvh * Lk * D
    bias_off = b * sb_b + h * sb_h
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = Lk
    if CAUSAL:  # keys past the block's last query's limit are never seen
        hi = tl.minimum(Lk, (pid_m + 1) * BLOCK_M + (Lk - Lq))
    for start in range(0, hi, BLOCK_N):
        cols = start + nn
        kv_ok = _key_ok(Kpm, b * Lk, cols, Lk, HAS_KPM)
        kt = tl.load(kbase + cols[None, :] * D + dd[:, None], mask=kv_ok[None, :] & (dd[:, None] < D),
                     other=0.0)
        s = _scores(tl.dot(q, kt, input_precision=DOT_PREC), Bias, bias_off, Kpm, b * Lk,
                    rows[:, None], cols[None, :], Lq, Lk, qk_scale, HAS_BIAS, HAS_KPM, CAUSAL, sb_i, sb_j)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # all masked so far: P = 0, no NaN
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(vbase + cols[:, None] * D + dd[None, :], mask=kv_ok[:, None] & (dd[None, :] < D),
                    other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new
    # l_i is 0 for a fully masked row (O = 0, lse = -inf) and NaN for a NaN query (O = lse = NaN).
    masked = l_i == 0.0
    out = acc / tl.where(masked, 1.0, l_i)[:, None]
    lse = tl.where(masked, float("-inf"),
                   (m_i + tl.math.log2(tl.where(masked, 1.0, l_i))) * 0.6931471805599453)
    tl.store(Out + (bh * Lq + rows[:, None]) * D + dd[None, :], out.to(Out.dtype.element_ty),
             mask=(rows[:, None] < Lq) & (dd[None, :] < D))
    tl.store(Lse + bh * Lq + rows, lse, mask=rows < Lq)


@triton.autotune(configs=_configs(False), key=["Lq", "Lk", "BLOCK_D", "HAS_BIAS", "CAUSAL", "BIAS_GRAD"],
                 prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _bwd_dkdv(Q, K, V, Bias, Kpm, dO, Lse, Delta, dK, dV, dBias,
              sb_b, sb_h, sb_i, sb_j, Hq, G, Lq, Lk, D, qk_scale, scale,
              HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, BIAS_GRAD: tl.constexpr,
              DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dK, dV of one key block of one kv head (summed over its G query heads); dS -> dBias."""
    pid_n = tl.program_id(0)
    bkv = tl.program_id(1).to(tl.int64)
    Hkv = Hq // G
    b, hk = bkv // Hkv, bkv % Hkv
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    dd = tl.arange(0, BLOCK_D)
    mm = tl.arange(0, BLOCK_M)
    kv_ok = _key_ok(Kpm, b * Lk, cols, Lk, HAS_KPM)
    kv_mask = kv_ok[:, None] & (dd[None, :] < D)
    k = tl.load(K + (bkv * Lk + cols[:, None]) * D + dd[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + (bkv * Lk + cols[:, None]) * D + dd[None, :], mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    lo = 0
    if CAUSAL:  # queries i with i + Lk - Lq < first key see nothing of this block
        lo = tl.maximum(pid_n * BLOCK_N - (Lk - Lq), 0)
        lo = (lo // BLOCK_M) * BLOCK_M
    for g in range(0, G):
        h = hk * G + g
        bh = b * Hq + h
        bias_off = b * sb_b + h * sb_h
        for start in range(lo, Lq, BLOCK_M):
            rows = start + mm
            q_mask = (rows[:, None] < Lq) & (dd[None, :] < D)
            q = tl.load(Q + (bh * Lq + rows[:, None]) * D + dd[None, :], mask=q_mask, other=0.0)
            do = tl.load(dO + (bh * Lq + rows[:, None]) * D + dd[None, :], mask=q_mask, other=0.0)
            lse = tl.load(Lse + bh * Lq + rows, mask=rows < Lq, other=float("-inf"))
            lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)  # -> P = 0
            delta = tl.load(Delta + bh * Lq + rows, mask=rows < Lq, other=0.0)
            # Transposed tiles [keys, queries], as in the FlashAttention-2 Triton tutorial.
            kq = tl.dot(k, tl.trans(q), input_precision=DOT_PREC)
            sT = _scores(kq, Bias, bias_off, Kpm, b * Lk, rows[None, :], cols[:, None], Lq, Lk, qk_scale,
                         HAS_BIAS, HAS_KPM, CAUSAL, sb_i, sb_j)
            pT = tl.math.exp2(sT - lse2[None, :])
            dv += tl.dot(pT.to(do.dtype), do, input_precision=DOT_PREC)
            dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
            dsT = pT * (dpT - delta[None, :])
            dk += tl.dot(dsT.to(q.dtype), q, input_precision=DOT_PREC)
            if BIAS_GRAD:
                tl.store(dBias + (bh * Lq + rows[None, :]) * Lk + cols[:, None], dsT,
                         mask=(rows[None, :] < Lq) & (cols[:, None] < Lk))
    # Padding keys get exactly zero gradient (masked_fill semantics), even next to a NaN query row.
    kv_off = (bkv * Lk + cols[:, None]) * D + dd[None, :]
    st_mask = (cols[:, None] < Lk) & (dd[None, :] < D)
    tl.store(dK + kv_off, tl.where(kv_mask, dk * scale, 0.0).to(dK.dtype.element_ty), mask=st_mask)
    tl.store(dV + kv_off, tl.where(kv_mask, dv, 0.0).to(dV.dtype.element_ty), mask=st_mask)


@triton.autotune(configs=_configs(False), key=["Lq", "Lk", "BLOCK_D", "HAS_BIAS", "CAUSAL"],
                 prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _bwd_dq(Q, K, V, Bias, Kpm, dO, Lse, Delta, dQ,
            sb_b, sb_h, sb_i, sb_j, Hq, G, Lq, Lk, D, qk_scale, scale,
            HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr,
            BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dQ of one query block of one query head."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b, h = bh // Hq, bh % Hq
    kvh = b * (Hq // G) + h // G
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    dd = tl.arange(0, BLOCK_D)
    nn = tl.arange(0, BLOCK_N)
    q_mask = (rows[:, None] < Lq) & (dd[None, :] < D)
    q = tl.load(Q + (bh * Lq + rows[:, None]) * D + dd[None, :], mask=q_mask, other=0.0)
    do = tl.load(dO + (bh * Lq + rows[:, None]) * D + dd[None, :], mask=q_mask, other=0.0)
    lse = tl.load(Lse + bh * Lq + rows, mask=rows < Lq, other=float("-inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
    delta = tl.load(Delta + bh * Lq + rows, mask=rows < Lq, other=0.0)
    kbase = K + kvh * Lk * D
    vbase = V + kvh * Lk * D
    bias_off = b * sb_b + h * sb_h
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = Lk
    if CAUSAL:
        hi = tl.minimum(Lk, (pid_m + 1) * BLOCK_M + (Lk - Lq))
    for start in range(0, hi, BLOCK_N):
        cols = start + nn
        kv_mask = _key_ok(Kpm, b * Lk, cols, Lk, HAS_KPM)[:, None] & (dd[None, :] < D)
        k = tl.load(kbase + cols[:, None] * D + dd[None, :], mask=kv_mask, other=0.0)
        v = tl.load(vbase + cols[:, None] * D + dd[None, :], mask=kv_mask, other=0.0)
        s = _scores(tl.dot(q, tl.trans(k), input_precision=DOT_PREC), Bias, bias_off, Kpm, b * Lk,
                    rows[:, None], cols[None, :], Lq, Lk, qk_scale, HAS_BIAS, HAS_KPM, CAUSAL, sb_i, sb_j)
        p = tl.math.exp2(s - lse2[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    tl.store(dQ + (bh * Lq + rows[:, None]) * D + dd[None, :], (dq * scale).to(dQ.dtype.element_ty),
             mask=q_mask)


# ------------------------------------------------------------------------------------------------
# Launchers (inputs already validated and made contiguous by facecore.ops.attention)

def _block_d(D: int) -> int:
    if D > MAX_D:
        raise ValueError(f"attention: the triton backend supports head dims up to {MAX_D}, got D={D}")
    return max(16, triton.next_power_of_2(D))


def _bias_strides(bias: torch.Tensor | None, full: tuple[int, int, int, int]):
    """Element strides of a contiguous 4-D bias, 0 along broadcast (size-1) dimensions."""
    if bias is None:
        return 0, 0, 0, 0
    return tuple(0 if (n == 1 and f != 1) else s for n, f, s in zip(bias.shape, full, bias.stride()))


def _prec(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"  # "tf32" only matters for fp32 operands


def attention_forward(q, k, v, bias, key_padding_mask, causal: bool, scale: float):
    """Returns (out [B, Hq, Lq, D] in q's dtype, lse [B, Hq, Lq] float32)."""
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    out = torch.empty_like(q)
    lse = torch.empty((B, Hq, Lq), device=q.device, dtype=torch.float32)
    kpm = None if key_padding_mask is None else key_padding_mask.view(torch.uint8)
    sb = _bias_strides(bias, (B, Hq, Lq, Lk))
    grid = lambda meta: (triton.cdiv(Lq, meta["BLOCK_M"]), B * Hq)
    _fwd[grid](q, k, v, bias if bias is not None else q, kpm if kpm is not None else q, out, lse,
               *sb, Hq, Hq // Hkv, Lq, Lk, D, scale * LOG2E,
               HAS_BIAS=bias is not None, HAS_KPM=kpm is not None, CAUSAL=causal, DOT_PREC=_prec(q.dtype),
               BLOCK_D=_block_d(D))
    return out, lse


def attention_backward(grad_out, grad_lse, q, k, v, bias, key_padding_mask, out, lse, causal: bool,
                       scale: float, bias_grad: bool):
    """Returns (dq, dk, dv, dbias or None); dbias has the bias's shape and dtype."""
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(-1)
    if grad_lse is not None:
        delta = delta - grad_lse.float()
    delta = delta.contiguous()
    lse = lse.float().contiguous()
    kpm = None if key_padding_mask is None else key_padding_mask.view(torch.uint8)
    sb = _bias_strides(bias, (B, Hq, Lq, Lk))
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    # Entries of causally skipped blocks are never written: zeros.
    dbias_full = torch.zeros((B, Hq, Lq, Lk), device=q.device, dtype=torch.float32) if bias_grad else None
    common = dict(HAS_BIAS=bias is not None, HAS_KPM=kpm is not None, CAUSAL=causal, DOT_PREC=_prec(q.dtype),
                  BLOCK_D=_block_d(D))
    bias_arg = bias if bias is not None else q
    kpm_arg = kpm if kpm is not None else q
    args = (sb[0], sb[1], sb[2], sb[3], Hq, Hq // Hkv, Lq, Lk, D, scale * LOG2E, scale)
    _bwd_dkdv[lambda meta: (triton.cdiv(Lk, meta["BLOCK_N"]), B * Hkv)](
        q, k, v, bias_arg, kpm_arg, grad_out, lse, delta, dk, dv,
        dbias_full if dbias_full is not None else q, *args, BIAS_GRAD=bias_grad, **common)
    _bwd_dq[lambda meta: (triton.cdiv(Lq, meta["BLOCK_M"]), B * Hq)](
        q, k, v, bias_arg, kpm_arg, grad_out, lse, delta, dq, *args, **common)
    dbias = None
    if bias_grad:
        dims = [i for i in range(4) if bias.shape[i] == 1 and dbias_full.shape[i] != 1]
        dbias = (dbias_full.sum(dims, keepdim=True) if dims else dbias_full).to(bias.dtype)
    return dq, dk, dv, dbias


__all__ = ["MAX_D", "attention_backward", "attention_forward"]
