"""Triton blendshape / deform kernels (float32), the contracts of csrc/include/facecore/blendshape.h.

    out[b, v] = neutral[v] + sum_k weights[b, k] * deltas[k, v]            (blendshape)
    then eyeball groups rotated about their pivots and every vertex about the neck (deform)

Deltas are dense ``[K, V, 3]`` or block-sparse (facecore.ops.SparseDeltas: vertex blocks of 32, per
block the list of shapes that move it, each stored as 96 contiguous values). One program handles
one vertex block for a tile of batch rows, so each stored entry is loaded once and reused by every
row of the tile. Coordinates are handled as three [rows, 32] planes so that the rigid transforms are
elementwise. Gradients of weights and rotations are reductions over vertices and use atomics.
"""

from __future__ import annotations

import torch
import triton.language as tl

import triton

BLOCK = 32  # vertices per block; must equal facecore._C.BLENDSHAPE_BLOCK
ROWS = 16   # batch rows per program


@triton.jit
def _entry(block_shape, first, j, t, K, V, SPARSE: tl.constexpr):
    """Shape index (clamped into [0, K)), start offset and whether the stored index was in [0, K), for
    entry t of vertex block j. Callers zero the weight of an invalid entry with a select."""
    if SPARSE:
        e = first + t
        k = tl.load(block_shape + e).to(tl.int64)
        base = e * 96
    else:
        k = tl.full((), 0, tl.int64) + t
        base = (k * V + j * 32) * 3
    return tl.minimum(tl.maximum(k, 0), K - 1), base, (k >= 0) & (k < K)


@triton.jit
def _entries(block_ptr, j, K, NNZB, SPARSE: tl.constexpr):
    """(first entry, number of entries) of vertex block j. The sparse structure is validated on the
    host (SparseDeltas), but a custom op can be called with anything: clamped into [0, NNZB] so that a
    bad block_ptr can never index outside the stored entries."""
    if SPARSE:
        lo = tl.minimum(tl.maximum(tl.load(block_ptr + j).to(tl.int64), 0), NNZB)
        hi = tl.minimum(tl.maximum(tl.load(block_ptr + j + 1).to(tl.int64), lo), NNZB)
        return lo, hi - lo
    return tl.full((), 0, tl.int64), K


@triton.jit
def _rotate_about(rot, piv, ridx, gidx, mask, x, y, z):
    """(x, y, z) <- R (p - c) + c with R = rot[ridx * 9 ...], c = piv[gidx * 3 ...] (elementwise)."""
    cx = tl.load(piv + gidx * 3 + 0, mask=mask, other=0.0)
    cy = tl.load(piv + gidx * 3 + 1, mask=mask, other=0.0)
    cz = tl.load(piv + gidx * 3 + 2, mask=mask, other=0.0)
    a, b, d = x - cx, y - cy, z - cz
    r = rot + ridx * 9
    nx = tl.load(r + 0, mask=mask, other=0.0) * a + tl.load(r + 1, mask=mask, other=0.0) * b \
        + tl.load(r + 2, mask=mask, other=0.0) * d + cx
    ny = tl.load(r + 3, mask=mask, other=0.0) * a + tl.load(r + 4, mask=mask, other=0.0) * b \
        + tl.load(r + 5, mask=mask, other=0.0) * d + cy
    nz = tl.load(r + 6, mask=mask, other=0.0) * a + tl.load(r + 7, mask=mask, other=0.0) * b \
        + tl.load(r + 8, mask=mask, other=0.0) * d + cz
    return nx, ny, nz


@triton.jit
def _forward_kernel(weights, neutral, deltas, block_ptr, block_shape, rot, piv, group, out,
                    B, K, V, G, NNZB,
                    SPARSE: tl.constexpr, RIGID: tl.constexpr, ROWS_: tl.constexpr):
    j = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64) * ROWS_ + tl.arange(0, ROWS_).to(tl.int64)  # [R]
    v = j * 32 + tl.arange(0, 32).to(tl.int64)                                      # [32]
    vmask = v < V
    bmask = b < B
    m2 = bmask[:, None] & vmask[None, :]
    x = tl.load(neutral + v * 3 + 0, mask=vmask, other=0.0)[None, :] + tl.zeros((ROWS_, 32), tl.float32)
    y = tl.load(neutral + v * 3 + 1, mask=vmask, other=0.0)[None, :] + tl.zeros((ROWS_, 32), tl.float32)
    z = tl.load(neutral + v * 3 + 2, mask=vmask, other=0.0)[None, :] + tl.zeros((ROWS_, 32), tl.float32)
    lane = tl.arange(0, 32).to(tl.int64)
    first, n = _entries(block_ptr, j, K, NNZB, SPARSE)
    for t in range(0, n):
        k, base, k_ok = _entry(block_shape, first, j, t, K, V, SPARSE)
        w = tl.where(k_ok, tl.load(weights + b * K + k, mask=bmask, other=0.0), 0.0)[:, None]  # [R, 1]
        dx = tl.load(deltas + base + lane * 3 + 0, mask=vmask, other=0.0)[None, :]
        dy = tl.load(deltas + base + lane * 3 + 1, mask=vmask, other=0.0)[None, :]
        dz = tl.load(deltas + base + lane * 3 + 2, mask=vmask, other=0.0)[None, :]
        x += w * dx
        y += w * dy
        z += w * dz
    if RIGID:
        g = tl.load(group + v, mask=vmask, other=0).to(tl.int64)[None, :] + tl.zeros((ROWS_, 32), tl.int64)
        eye = m2 & (g > 0) & (g < G)
        ex, ey, ez = _rotate_about(rot, piv, b[:, None] * G + g, g, eye, x, y, z)
        x = tl.where(eye, ex, x)
        y = tl.where(eye, ey, y)
        z = tl.where(eye, ez, z)
        head = b[:, None] * G + tl.zeros((ROWS_, 32), tl.int64)
        x, y, z = _rotate_about(rot, piv, head, head * 0, m2, x, y, z)
    o = out + (b[:, None] * V + v[None, :]) * 3
    tl.store(o + 0, x, mask=m2)
    tl.store(o + 1, y, mask=m2)
    tl.store(o + 2, z, mask=m2)


@triton.jit
def _grad_weights_kernel(deltas, block_ptr, block_shape, grad_out, grad_weights, B, K, V, NNZB,
                         SPARSE: tl.constexpr, ROWS_: tl.constexpr):
    """grad_weights[b, k] += <grad_out[b, block j], deltas[entry]> (grad_weights zeroed)."""
    j = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64) * ROWS_ + tl.arange(0, ROWS_).to(tl.int64)
    v = j * 32 + tl.arange(0, 32).to(tl.int64)
    vmask = v < V
    bmask = b < B
    m2 = bmask[:, None] & vmask[None, :]
    go = grad_out + (b[:, None] * V + v[None, :]) * 3
    gx = tl.load(go + 0, mask=m2, other=0.0)
    gy = tl.load(go + 1, mask=m2, other=0.0)
    gz = tl.load(go + 2, mask=m2, other=0.0)
    lane = tl.arange(0, 32).to(tl.int64)
    first, n = _entries(block_ptr, j, K, NNZB, SPARSE)
    for t in range(0, n):
        k, base, k_ok = _entry(block_shape, first, j, t, K, V, SPARSE)
        dx = tl.load(deltas + base + lane * 3 + 0, mask=vmask, other=0.0)[None, :]
        dy = tl.load(deltas + base + lane * 3 + 1, mask=vmask, other=0.0)[None, :]
        dz = tl.load(deltas + base + lane * 3 + 2, mask=vmask, other=0.0)[None, :]
        s = tl.sum(gx * dx + gy * dy + gz * dz, axis=1)  # [R]
        tl.atomic_add(grad_weights + b * K + k, tl.where(k_ok, s, 0.0), mask=bmask)


@triton.jit
def _grad_deltas_kernel(weights, block_ptr, block_shape, grad_out, grad_deltas, B, K, V, NNZB,
                        SPARSE: tl.constexpr, ROWS_: tl.constexpr):
    """grad_deltas[entry] = sum_b weights[b, k] grad_out[b, block j]; one program per (block, entry)."""
    j = tl.program_id(0).to(tl.int64)
    t = tl.program_id(1)
    first, n = _entries(block_ptr, j, K, NNZB, SPARSE)
    if t < n:
        k, base, k_ok = _entry(block_shape, first, j, t, K, V, SPARSE)
        lane = tl.arange(0, 32).to(tl.int64)
        v = j * 32 + lane
        vmask = v < V
        ax = tl.zeros((32,), tl.float32)
        ay = tl.zeros((32,), tl.float32)
        az = tl.zeros((32,), tl.float32)
        for b0 in range(0, B, ROWS_):
            b = b0 + tl.arange(0, ROWS_).to(tl.int64)
            bmask = b < B
            m2 = bmask[:, None] & vmask[None, :]
            w = tl.where(k_ok, tl.load(weights + b * K + k, mask=bmask, other=0.0), 0.0)[:, None]
            go = grad_out + (b[:, None] * V + v[None, :]) * 3
            ax += tl.sum(w * tl.load(go + 0, mask=m2, other=0.0), axis=0)
            ay += tl.sum(w * tl.load(go + 1, mask=m2, other=0.0), axis=0)
            az += tl.sum(w * tl.load(go + 2, mask=m2, other=0.0), axis=0)
        # Sparse entries are padded to full blocks: the padding gets exact zeros.
        smask = (lane < 32) if SPARSE else vmask
        tl.store(grad_deltas + base + lane * 3 + 0, ax, mask=smask)
        tl.store(grad_deltas + base + lane * 3 + 1, ay, mask=smask)
        tl.store(grad_deltas + base + lane * 3 + 2, az, mask=smask)


@triton.jit
def _rt(R, i: tl.constexpr, x, y, z):
    """Component i of R^T (x, y, z)."""
    return tl.load(R + i) * x + tl.load(R + 3 + i) * y + tl.load(R + 6 + i) * z


@triton.jit
def _rt_gather(rot, ridx, i: tl.constexpr, mask, x, y, z):
    r = rot + ridx * 9
    return tl.load(r + i, mask=mask, other=0.0) * x + tl.load(r + 3 + i, mask=mask, other=0.0) * y \
        + tl.load(r + 6 + i, mask=mask, other=0.0) * z


@triton.jit
def _rigid_backward_kernel(out, grad_out, rot, piv, group, grad_points, grad_rot, V, G,
                           TILE: tl.constexpr):
    """Backward of the rigid part for batch row b and a tile of vertices (algebra as in the CPU kernel).

    out = R0 (q - c0) + c0, q = Rg (p - cg) + cg for eyeball vertices (g > 0), q = p otherwise.
    """
    b = tl.program_id(0).to(tl.int64)
    v = tl.program_id(1).to(tl.int64) * TILE + tl.arange(0, TILE).to(tl.int64)
    vm = v < V
    o = out + (b * V + v) * 3
    go = grad_out + (b * V + v) * 3
    c0x, c0y, c0z = tl.load(piv + 0), tl.load(piv + 1), tl.load(piv + 2)
    ox = tl.load(o + 0, mask=vm, other=0.0) - c0x
    oy = tl.load(o + 1, mask=vm, other=0.0) - c0y
    oz = tl.load(o + 2, mask=vm, other=0.0) - c0z
    R0 = rot + b * G * 9
    q0, q1, q2 = _rt(R0, 0, ox, oy, oz), _rt(R0, 1, ox, oy, oz), _rt(R0, 2, ox, oy, oz)  # q - c0
    g0 = tl.load(go + 0, mask=vm, other=0.0)
    g1 = tl.load(go + 1, mask=vm, other=0.0)
    g2 = tl.load(go + 2, mask=vm, other=0.0)
    # dL/dR0[a, e] = sum_v go[a] (q - c0)[e]
    G0 = grad_rot + b * G * 9
    tl.atomic_add(G0 + 0, tl.sum(g0 * q0))
    tl.atomic_add(G0 + 1, tl.sum(g0 * q1))
    tl.atomic_add(G0 + 2, tl.sum(g0 * q2))
    tl.atomic_add(G0 + 3, tl.sum(g1 * q0))
    tl.atomic_add(G0 + 4, tl.sum(g1 * q1))
    tl.atomic_add(G0 + 5, tl.sum(g1 * q2))
    tl.atomic_add(G0 + 6, tl.sum(g2 * q0))
    tl.atomic_add(G0 + 7, tl.sum(g2 * q1))
    tl.atomic_add(G0 + 8, tl.sum(g2 * q2))
    gq0, gq1, gq2 = _rt(R0, 0, g0, g1, g2), _rt(R0, 1, g0, g1, g2), _rt(R0, 2, g0, g1, g2)
    g = tl.load(group + v, mask=vm, other=0).to(tl.int64)
    eye = vm & (g > 0) & (g < G)
    gidx = tl.where(eye, g, 0)
    ridx = b * G + gidx
    cgx = tl.load(piv + gidx * 3 + 0, mask=eye, other=0.0)
    cgy = tl.load(piv + gidx * 3 + 1, mask=eye, other=0.0)
    cgz = tl.load(piv + gidx * 3 + 2, mask=eye, other=0.0)
    yx, yy, yz = q0 + c0x - cgx, q1 + c0y - cgy, q2 + c0z - cgz  # q - cg
    p0 = _rt_gather(rot, ridx, 0, eye, yx, yy, yz)  # p - cg
    p1 = _rt_gather(rot, ridx, 1, eye, yx, yy, yz)
    p2 = _rt_gather(rot, ridx, 2, eye, yx, yy, yz)
    for gg in range(1, G):
        sel = eye & (g == gg)
        Gg = grad_rot + (b * G + gg) * 9
        tl.atomic_add(Gg + 0, tl.sum(tl.where(sel, gq0 * p0, 0.0)))
        tl.atomic_add(Gg + 1, tl.sum(tl.where(sel, gq0 * p1, 0.0)))
        tl.atomic_add(Gg + 2, tl.sum(tl.where(sel, gq0 * p2, 0.0)))
        tl.atomic_add(Gg + 3, tl.sum(tl.where(sel, gq1 * p0, 0.0)))
        tl.atomic_add(Gg + 4, tl.sum(tl.where(sel, gq1 * p1, 0.0)))
        tl.atomic_add(Gg + 5, tl.sum(tl.where(sel, gq1 * p2, 0.0)))
        tl.atomic_add(Gg + 6, tl.sum(tl.where(sel, gq2 * p0, 0.0)))
        tl.atomic_add(Gg + 7, tl.sum(tl.where(sel, gq2 * p1, 0.0)))
        tl.atomic_add(Gg + 8, tl.sum(tl.where(sel, gq2 * p2, 0.0)))
    e0 = _rt_gather(rot, ridx, 0, eye, gq0, gq1, gq2)
    e1 = _rt_gather(rot, ridx, 1, eye, gq0, gq1, gq2)
    e2 = _rt_gather(rot, ridx, 2, eye, gq0, gq1, gq2)
    gp = grad_points + (b * V + v) * 3
    tl.store(gp + 0, tl.where(eye, e0, gq0), mask=vm)
    tl.store(gp + 1, tl.where(eye, e1, gq1), mask=vm)
    tl.store(gp + 2, tl.where(eye, e2, gq2), mask=vm)


# ----------------------------------------------------------------------------------------------
# Launchers: same argument order as facecore._C (outputs preallocated by facecore.ops.blendshape).
# ----------------------------------------------------------------------------------------------
def _grid_rows(B: int) -> int:
    return max(1, triton.cdiv(B, ROWS))


def _forward(weights, neutral, deltas, block_ptr, block_shape, out, rigid=None) -> None:
    B, K = weights.shape
    V = neutral.shape[0]
    if B == 0 or V == 0:
        return
    sparse = block_ptr is not None
    dummy_i = block_ptr if sparse else torch.zeros(1, dtype=torch.int32, device=weights.device)
    bp, bs = (block_ptr, block_shape) if sparse else (dummy_i, dummy_i)
    if rigid is None:
        rot, piv, group, G = weights, weights, dummy_i, 1
    else:
        rot, piv, group = rigid
        G = rot.shape[1]
    grid = (triton.cdiv(V, BLOCK), _grid_rows(B))
    _forward_kernel[grid](weights, neutral, deltas, bp, bs, rot, piv, group, out, B, K, V, G, bs.shape[0],
                          SPARSE=sparse, RIGID=rigid is not None, ROWS_=ROWS)


def blendshape_forward(weights, neutral, deltas, block_ptr, block_shape, out) -> None:
    _forward(weights, neutral, deltas, block_ptr, block_shape, out)


def deform_forward(weights, neutral, deltas, block_ptr, block_shape, rotations, pivots, group, out) -> None:
    _forward(weights, neutral, deltas, block_ptr, block_shape, out, rigid=(rotations, pivots, group))


def blendshape_backward(weights, neutral, deltas, block_ptr, block_shape, grad_out,
                        grad_weights, grad_neutral, grad_deltas) -> None:
    B, K = weights.shape
    V = neutral.shape[0]
    sparse = block_ptr is not None
    dummy_i = torch.zeros(1, dtype=torch.int32, device=weights.device)
    bp, bs = (block_ptr, block_shape) if sparse else (dummy_i, dummy_i)
    nblk = triton.cdiv(V, BLOCK)
    if grad_neutral is not None:
        torch.sum(grad_out, dim=0, out=grad_neutral)  # a plain reduction over the batch
    if grad_weights is not None:
        grad_weights.zero_()
        if B > 0 and nblk > 0:
            _grad_weights_kernel[(nblk, _grid_rows(B))](deltas, bp, bs, grad_out, grad_weights, B, K, V,
                                                        bs.shape[0], SPARSE=sparse, ROWS_=ROWS)
    if grad_deltas is not None:
        if B == 0:
            grad_deltas.zero_()
        elif nblk > 0 and K > 0:
            _grad_deltas_kernel[(nblk, K)](weights, bp, bs, grad_out, grad_deltas, B, K, V, bs.shape[0],
                                           SPARSE=sparse, ROWS_=ROWS)


def rigid_backward(out, grad_out, rotations, pivots, group, grad_points, grad_rotations) -> None:
    B, V, _ = out.shape
    G = rotations.shape[1]
    grad_rotations.zero_()
    if B == 0 or V == 0:
        return
    tile = 256
    _rigid_backward_kernel[(B, triton.cdiv(V, tile))](out, grad_out, rotations, pivots, group, grad_points,
                                                      grad_rotations, V, G, TILE=tile)
