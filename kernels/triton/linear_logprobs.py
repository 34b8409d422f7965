"""Triton fused linear log-probs: ``logp[n] = logits[n, t_n] - logsumexp_v logits[n, v]`` with
``logits = hidden @ weight.T + bias``, never storing ``[N, V]``.

Forward (one program per block of rows): walk the vocabulary in tiles of BLOCK_V, each tile's logits
``[BLOCK_N, BLOCK_V]`` accumulated over H in tiles of BLOCK_H with ``tl.dot``, folded into an online
log-sum-exp (running max ``m`` and rescaled sum ``s``, as in FlashAttention / Liger-Kernel's fused
linear cross entropy). Saves ``lse [N]`` (float32).

Backward recomputes each logits tile from ``lse`` and forms ``d = g (onehot - exp(logits - lse))``:
``_bwd_hidden`` (one program per row block) accumulates ``dhidden = d @ weight``; ``_bwd_weight`` (one
program per vocab tile) accumulates ``dweight = d^T @ hidden`` and ``dbias = sum_n d``. Each output
tile has exactly one writing program (no atomics, deterministic). Statistics and accumulators are
float32 for every input dtype; float32 dots use IEEE precision (no TF32) to match the reference.
``logp`` is returned in float32 for every input dtype (a half-precision sequence sum loses the margin).

Ignored rows (``targets == ignore_index``) and padding rows never load their hidden row (masked to 0)
and their ``d`` is *selected* to 0, never multiplied by a 0 mask: their stored ``lse`` is 0, so
``exp(logits - lse)`` may be inf and ``0 * inf`` would put NaN into ``dhidden``/``dweight``/``dbias``.
Runs under ``TRITON_INTERPRET=1`` on the CPU for the tests.
"""

from __future__ import annotations

import os

import torch
import triton.language as tl

import triton


@triton.jit
def _logits_tile(
    h_ptr,
    w_ptr,
    b_ptr,
    rows,
    cols,
    rmask,
    cmask,
    H,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PREC: tl.constexpr,
):
    acc = tl.zeros([BLOCK_N, BLOCK_V], dtype=tl.float32)
    for k0 in range(0, H, BLOCK_H):
        ks = k0 + tl.arange(0, BLOCK_H)
        kmask = ks < H
        a = tl.load(h_ptr + rows[:, None] * H + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        b = tl.load(w_ptr + cols[:, None] * H + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PREC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    return acc


@triton.jit
def _fwd(
    h_ptr,
    w_ptr,
    b_ptr,
    t_ptr,
    logp_ptr,
    lse_ptr,
    N,
    H,
    V,
    ignore_index,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PREC: tl.constexpr,
):
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    rmask = rows < N
    tgt = tl.load(t_ptr + rows, mask=rmask, other=ignore_index)
    valid = rmask & (tgt != ignore_index)  # ignored rows' hidden is never read (may hold inf)
    m = tl.full([BLOCK_N], float("-inf"), dtype=tl.float32)
    s = tl.zeros([BLOCK_N], dtype=tl.float32)
    picked = tl.zeros([BLOCK_N], dtype=tl.float32)
    for v0 in range(0, V, BLOCK_V):
        cols = (v0 + tl.arange(0, BLOCK_V)).to(tl.int64)
        cmask = cols < V
        logits = _logits_tile(
            h_ptr, w_ptr, b_ptr, rows, cols, valid, cmask, H, HAS_BIAS, BLOCK_N, BLOCK_V, BLOCK_H, PREC
        )
        logits = tl.where(cmask[None, :], logits, float("-inf"))
        picked += tl.sum(tl.where(cols[None, :] == tgt[:, None], logits, 0.0), 1)
        m_new = tl.maximum(m, tl.max(logits, 1))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(logits - m_new[:, None]), 1)
        m = m_new
    lse = m + tl.log(s)
    tl.store(logp_ptr + rows, tl.where(valid, picked - lse, 0.0), mask=rmask)
    tl.store(lse_ptr + rows, tl.where(valid, lse, 0.0), mask=rmask)


@triton.jit
def _dlogits(
    h_ptr,
    w_ptr,
    b_ptr,
    t_ptr,
    g_ptr,
    lse_ptr,
    rows,
    cols,
    rmask,
    cmask,
    H,
    ignore_index,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PREC: tl.constexpr,
):
    """d = g (onehot - softmax) for a [BLOCK_N, BLOCK_V] tile; 0 outside the valid rows/cols.

    Selects, not products with a mask: an invalid row has lse = 0, so its p may be inf (large bias).
    """
    tgt = tl.load(t_ptr + rows, mask=rmask, other=ignore_index)
    valid = rmask & (tgt != ignore_index)
    g = tl.load(g_ptr + rows, mask=valid, other=0.0).to(tl.float32)
    lse = tl.load(lse_ptr + rows, mask=valid, other=0.0)
    logits = _logits_tile(
        h_ptr, w_ptr, b_ptr, rows, cols, valid, cmask, H, HAS_BIAS, BLOCK_N, BLOCK_V, BLOCK_H, PREC
    )
    p = tl.exp(tl.where(valid[:, None] & cmask[None, :], logits - lse[:, None], float("-inf")))
    onehot = tl.where(cols[None, :] == tgt[:, None], 1.0, 0.0)
    return tl.where(valid[:, None] & cmask[None, :], g[:, None] * (onehot - p), 0.0)


@triton.jit
def _bwd_hidden(
    h_ptr,
    w_ptr,
    b_ptr,
    t_ptr,
    g_ptr,
    lse_ptr,
    dh_ptr,
    N,
    H,
    V,
    ignore_index,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PREC: tl.constexpr,
):
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    rmask = rows < N
    for v0 in range(0, V, BLOCK_V):
        cols = (v0 + tl.arange(0, BLOCK_V)).to(tl.int64)
        cmask = cols < V
        d = _dlogits(
            h_ptr,
            w_ptr,
            b_ptr,
            t_ptr,
            g_ptr,
            lse_ptr,
            rows,
            cols,
            rmask,
            cmask,
            H,
            ignore_index,
            HAS_BIAS,
            BLOCK_N,
            BLOCK_V,
            BLOCK_H,
            PREC,
        )
        for k0 in range(0, H, BLOCK_H):
            ks = k0 + tl.arange(0, BLOCK_H)
            kmask = ks < H
            w = tl.load(
                w_ptr + cols[:, None] * H + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0
            )
            out = dh_ptr + rows[:, None] * H + ks[None, :]
            omask = rmask[:, None] & kmask[None, :]
            acc = tl.load(out, mask=omask, other=0.0)  # this program owns these rows: plain read-modify-write
            acc = tl.dot(d.to(w.dtype), w, acc, input_precision=PREC)
            tl.store(out, acc, mask=omask)


@triton.jit
def _bwd_weight(
    h_ptr,
    w_ptr,
    b_ptr,
    t_ptr,
    g_ptr,
    lse_ptr,
    dw_ptr,
    db_ptr,
    N,
    H,
    V,
    ignore_index,
    HAS_BIAS: tl.constexpr,
    NEED_W: tl.constexpr,
    NEED_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PREC: tl.constexpr,
):
    cols = (tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)).to(tl.int64)
    cmask = cols < V
    db = tl.zeros([BLOCK_V], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rows = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        rmask = rows < N
        d = _dlogits(
            h_ptr,
            w_ptr,
            b_ptr,
            t_ptr,
            g_ptr,
            lse_ptr,
            rows,
            cols,
            rmask,
            cmask,
            H,
            ignore_index,
            HAS_BIAS,
            BLOCK_N,
            BLOCK_V,
            BLOCK_H,
            PREC,
        )
        if NEED_B:
            db += tl.sum(d, 0)
        if NEED_W:
            # d is 0 on ignored rows, but 0 * inf is NaN in the dot: do not load their hidden at all
            valid = rmask & (tl.load(t_ptr + rows, mask=rmask, other=ignore_index) != ignore_index)
            for k0 in range(0, H, BLOCK_H):
                ks = k0 + tl.arange(0, BLOCK_H)
                kmask = ks < H
                h = tl.load(
                    h_ptr + rows[:, None] * H + ks[None, :], mask=valid[:, None] & kmask[None, :], other=0.0
                )
                out = dw_ptr + cols[:, None] * H + ks[None, :]
                omask = cmask[:, None] & kmask[None, :]
                acc = tl.load(out, mask=omask, other=0.0)
                acc = tl.dot(tl.trans(d).to(h.dtype), h, acc, input_precision=PREC)
                tl.store(out, acc, mask=omask)
    if NEED_B:
        tl.store(db_ptr + cols, db, mask=cmask)


def _config(hidden: torch.Tensor) -> dict:
    if os.environ.get("TRITON_INTERPRET") == "1" and not hidden.is_cuda:
        blocks = dict(
            BLOCK_N=32, BLOCK_V=256, BLOCK_H=32
        )  # the interpreter pays per program and per loop step
    else:
        blocks = dict(BLOCK_N=64, BLOCK_V=64, BLOCK_H=64)
    return dict(blocks, PREC="ieee" if hidden.dtype == torch.float32 else "tf32")


def forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    ignore_index: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logp [N] float32, lse [N] float32)`` for every input dtype; inputs contiguous, targets int64
    (validated)."""
    N, H = hidden.shape
    V = weight.shape[0]
    logp = torch.empty(N, dtype=torch.float32, device=hidden.device)
    lse = torch.empty(N, dtype=torch.float32, device=hidden.device)
    if N == 0:
        return logp, lse
    cfg = _config(hidden)
    grid = (triton.cdiv(N, cfg["BLOCK_N"]),)
    _fwd[grid](
        hidden,
        weight,
        bias if bias is not None else hidden,
        targets,
        logp,
        lse,
        N,
        H,
        V,
        ignore_index,
        HAS_BIAS=bias is not None,
        **cfg,
    )
    return logp, lse


def backward(
    grad_logp: torch.Tensor,
    lse: torch.Tensor,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    ignore_index: int,
    need_hidden: bool,
    need_weight: bool,
    need_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients for hidden, weight, bias (empty tensors where not requested)."""
    N, H = hidden.shape
    V = weight.shape[0]
    cfg = _config(hidden)
    g = grad_logp.contiguous()
    b_arg = bias if bias is not None else hidden
    gh, gw, gb = hidden.new_empty(0), hidden.new_empty(0), hidden.new_empty(0)  # distinct: no aliasing
    if need_hidden:
        dh = torch.zeros(N, H, dtype=torch.float32, device=hidden.device)
        if N:
            _bwd_hidden[(triton.cdiv(N, cfg["BLOCK_N"]),)](
                hidden,
                weight,
                b_arg,
                targets,
                g,
                lse,
                dh,
                N,
                H,
                V,
                ignore_index,
                HAS_BIAS=bias is not None,
                **cfg,
            )
        gh = dh.to(hidden.dtype)
    need_bias = need_bias and bias is not None
    if need_weight or need_bias:
        dw = torch.zeros(V, H, dtype=torch.float32, device=hidden.device) if need_weight else lse
        db = torch.zeros(V, dtype=torch.float32, device=hidden.device) if need_bias else lse
        if N:
            _bwd_weight[(triton.cdiv(V, cfg["BLOCK_V"]),)](
                hidden,
                weight,
                b_arg,
                targets,
                g,
                lse,
                dw,
                db,
                N,
                H,
                V,
                ignore_index,
                HAS_BIAS=bias is not None,
                NEED_W=need_weight,
                NEED_B=need_bias,
                **cfg,
            )
        if need_weight:
            gw = dw.to(weight.dtype)
        if need_bias:
            gb = db.to(bias.dtype)
    return gh, gw, gb
