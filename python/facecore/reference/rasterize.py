"""Plain-torch rasterize / interpolate / antialias: the specification the kernels are tested against.

Per-pixel and brute force (every pixel against every triangle), so only for small images and meshes.

Conventions (../shared/DESIGN.md): ``pos`` is clip space ``[B, V, 4]``; ``rast[B, H, W, 4] =
(u, v, z/w, triangle_id + 1)``, all zeros on the background; row 0 is the top row and pixel centres
sit at ``i + 0.5``, i.e. pixel ``(ix, iy)`` is at NDC ``px = 2 (ix + 0.5) / W - 1``,
``py = 1 - 2 (iy + 0.5) / H``.

Coverage (must match the kernels bit for bit):
  * triangles that leave the near plane ``z >= -w``, ``w >= W_EPS`` or the guard band
    ``|x|, |y| <= G w`` are clipped in homogeneous space (Sutherland-Hodgman, each edge's intersection
    computed from its endpoints in a canonical order so neighbours clip a shared edge identically),
    and the clipped polygon is fanned into sub-triangles that keep the original triangle id;
  * vertices are snapped to 1/256 pixel: ``X = round((x/w + 1) W 128)``, ``Y = round((1 - y/w) H 128)``
    (round half to even), in float64 from the float64 value of the input;
  * integer edge functions at pixel centres ``(256 ix + 128, 256 iy + 128)``; a pixel exactly on an edge
    belongs to the triangle for which that edge is a top or left edge (fill rule), so pixels on an edge
    shared by two triangles are covered exactly once;
  * zero-area triangles (after snapping) cover nothing; ``cull_backfaces`` drops triangles that are
    clockwise in NDC (y up), i.e. only counter-clockwise ones are front faces.

Barycentrics are perspective correct and come from the original triangle in homogeneous form: with
``r_i = (x_i - px w_i, y_i - py w_i)`` and ``c_0 = r_1 x r_2``, ``c_1 = r_2 x r_0``, ``c_2 = r_0 x r_1``
(2-D cross products, linear in ``px, py``), ``b_i = c_i / (c_0 + c_1 + c_2)``, ``u = b_0``, ``v = b_1``,
and ``z/w = (sum b_i z_i) / (sum b_i w_i)``. These are differentiable in ``pos``; that is how gradients
of interpolated attributes reach the vertex positions. The nearest ``z/w`` wins; on an exact tie the
lower triangle id wins.
"""

from __future__ import annotations

import torch

SUBPIXEL = 256  # fixed-point vertex snapping: 8 bits of sub-pixel precision
W_EPS = 1e-6  # clip plane w >= W_EPS (only matters for inputs that are not a perspective projection)
GUARD = 2.0**21  # guard band |x/w| <= GUARD / max(H, W) keeps fixed-point products inside int64


def guard_band(H: int, W: int) -> float:
    return GUARD / max(H, W)


# ------------------------------------------------------------------------------------------------
# Triangle setup: clipping and snapping (float64 / int64, exactly as the kernels do it)
# ------------------------------------------------------------------------------------------------


def _planes(v, G: float):
    """Signed distances of a clip-space point (x, y, z, w) to the clip planes, >= 0 means inside."""
    x, y, z, w = v
    return (z + w, w - W_EPS, G * w - x, G * w + x, G * w - y, G * w + y)


def _clip_polygon(poly: list, G: float) -> list:
    """Sutherland-Hodgman against every plane, in homogeneous space, canonical edge intersections."""
    for k in range(6):
        if not poly:
            break
        out = []
        n = len(poly)
        for i in range(n):
            p, q = poly[i], poly[(i + 1) % n]
            dp, dq = _planes(p, G)[k], _planes(q, G)[k]
            if dp >= 0:
                out.append(p)
            if (dp >= 0) != (dq >= 0):
                a, b, da, db = (p, q, dp, dq) if tuple(p) <= tuple(q) else (q, p, dq, dp)
                t = da / (da - db)
                out.append(tuple(a[j] + t * (b[j] - a[j]) for j in range(4)))
        poly = out
    return poly


def _snap(x: float, y: float, w: float, H: int, W: int) -> tuple[int, int]:
    sx, sy = W * (SUBPIXEL / 2), H * (SUBPIXEL / 2)
    return int(round((x / w + 1.0) * sx)), int(round((1.0 - y / w) * sy))


def setup_triangles(pos: torch.Tensor, tri: torch.Tensor, H: int, W: int):
    """One image: ``pos[V, 4]`` -> (prim_tri ``[P]`` int64, prim_xy ``[P, 3, 2]`` int64 snapped corners)."""
    G = guard_band(H, W)
    p = pos.detach().to(torch.float64)
    v = p[tri.long()]  # [T, 3, 4]
    x, y, z, w = v.unbind(-1)
    inside = torch.stack(
        [z + w >= 0, w - W_EPS >= 0, G * w - x >= 0, G * w + x >= 0, G * w - y >= 0, G * w + y >= 0], -1
    )  # [T, 3, 6]
    simple = inside.all(-1).all(-1)
    culled_all = (~inside).all(1).any(-1)  # all corners outside one plane
    ids, xys = [], []
    idx = simple.nonzero().flatten()
    if len(idx):
        vs = v[idx]
        sx, sy = W * (SUBPIXEL / 2), H * (SUBPIXEL / 2)
        X = torch.round((vs[..., 0] / vs[..., 3] + 1.0) * sx)
        Y = torch.round((1.0 - vs[..., 1] / vs[..., 3]) * sy)
        ids.append(idx)
        xys.append(torch.stack([X, Y], -1).to(torch.int64))
    for t in (~simple & ~culled_all).nonzero().flatten().tolist():
        poly = _clip_polygon([tuple(float(c) for c in v[t, k]) for k in range(3)], G)
        if len(poly) < 3:
            continue
        snapped = [_snap(q[0], q[1], q[3], H, W) for q in poly]
        for k in range(1, len(poly) - 1):
            ids.append(torch.tensor([t]))
            xys.append(torch.tensor([[snapped[0], snapped[k], snapped[k + 1]]], dtype=torch.int64))
    if not ids:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, 3, 2, dtype=torch.int64)
    return torch.cat(ids), torch.cat(xys)


def coverage(xy: torch.Tensor, H: int, W: int, cull_backfaces: bool) -> torch.Tensor:
    """``xy[P, 3, 2]`` snapped corners -> ``[P, H, W]`` bool coverage with the top-left fill rule."""
    P = xy.shape[0]
    py = (torch.arange(H, dtype=torch.int64) * SUBPIXEL + SUBPIXEL // 2).view(1, H, 1)
    px = (torch.arange(W, dtype=torch.int64) * SUBPIXEL + SUBPIXEL // 2).view(1, 1, W)
    A, B, C = xy[:, 0], xy[:, 1], xy[:, 2]
    area = (B[:, 0] - A[:, 0]) * (C[:, 1] - A[:, 1]) - (B[:, 1] - A[:, 1]) * (C[:, 0] - A[:, 0])
    sgn = torch.sign(area)  # y points down here: front faces (CCW in NDC) have area < 0
    cov = (area != 0).view(P, 1, 1).expand(P, H, W).clone()
    if cull_backfaces:
        cov &= (area < 0).view(P, 1, 1)
    for s, e in ((A, B), (B, C), (C, A)):
        a = -(e[:, 1] - s[:, 1]) * sgn  # E(p) = a px + b py + c, positive inside
        b = (e[:, 0] - s[:, 0]) * sgn
        c = -(a * s[:, 0] + b * s[:, 1])
        E = a.view(P, 1, 1) * px + b.view(P, 1, 1) * py + c.view(P, 1, 1)
        top_left = (a > 0) | ((a == 0) & (b > 0))
        cov &= (E > 0) | ((E == 0) & top_left.view(P, 1, 1))
    return cov


def pixel_ndc(H: int, W: int, dtype=torch.float64, device=None):
    """NDC of the pixel centres: ``px[W]``, ``py[H]``."""
    px = (torch.arange(W, dtype=dtype, device=device) + 0.5) * (2.0 / W) - 1.0
    py = 1.0 - (torch.arange(H, dtype=dtype, device=device) + 0.5) * (2.0 / H)
    return px, py


def homogeneous_edges(v: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """``v[..., 3, 4]`` clip-space corners, pixel NDC ``px, py`` (broadcast to ``v[..., 0, 0]``) ->
    ``c[..., 3]``: the homogeneous edge functions, linear in (px, py), ``b = c / c.sum()``."""
    rx = v[..., 0] - px.unsqueeze(-1) * v[..., 3]
    ry = v[..., 1] - py.unsqueeze(-1) * v[..., 3]

    def cross(i, j):
        return rx[..., i] * ry[..., j] - ry[..., i] * rx[..., j]

    return torch.stack([cross(1, 2), cross(2, 0), cross(0, 1)], -1)


def barycentrics(v: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
    """Perspective-correct ``(b[..., 3], z/w[...])`` of a clip-space triangle at NDC (px, py)."""
    c = homogeneous_edges(v, px, py)
    b = c / c.sum(-1, keepdim=True)
    zw = (b * v[..., 2]).sum(-1) / (b * v[..., 3]).sum(-1)
    return b, zw


def _batch_pos(pos: torch.Tensor) -> torch.Tensor:
    return pos.unsqueeze(0) if pos.dim() == 2 else pos


def rasterize(
    pos: torch.Tensor, tri: torch.Tensor, resolution, cull_backfaces: bool = False, return_db: bool = False
):
    """``pos[B, V, 4]`` (or ``[V, 4]``), ``tri[T, 3]`` -> ``rast[B, H, W, 4]`` (and ``db[B, H, W, 4]`` =
    ``(du/dX, du/dY, dv/dX, dv/dY)`` per pixel when ``return_db``). Differentiable in ``pos``."""
    H, W = (int(resolution), int(resolution)) if isinstance(resolution, int) else map(int, resolution)
    pos = _batch_pos(pos)
    tri = tri.long()
    B = pos.shape[0]
    px, py = pixel_ndc(H, W, pos.dtype, pos.device)
    PY, PX = torch.meshgrid(py, px, indexing="ij")
    out, dbs = [], []
    for b in range(B):
        ptri, xy = setup_triangles(pos[b].cpu(), tri.cpu(), H, W)
        rast = pos.new_zeros(H, W, 4)
        db = pos.new_zeros(H, W, 4)
        if len(ptri):
            cov = coverage(xy, H, W, cull_backfaces).to(pos.device)  # [P, H, W]
            ptri = ptri.to(pos.device)
            with torch.no_grad():
                _, zw = barycentrics(pos[b][tri[ptri]].unsqueeze(1).unsqueeze(1), PX, PY)  # [P, H, W]
                zw = torch.where(cov, zw, torch.full_like(zw, float("inf")))
                best = zw.min(0).values
                cand = cov & (zw == best)
                big = torch.iinfo(torch.int64).max
                win = (
                    torch.where(cand, ptri.view(-1, 1, 1), torch.full_like(ptri.view(-1, 1, 1), big))
                    .min(0)
                    .values
                )
            hit = win != big
            t = win[hit]
            vv = pos[b][tri[t]]  # [N, 3, 4] differentiable
            bc, zwh = barycentrics(vv, PX[hit], PY[hit])
            vals = torch.stack([bc[:, 0], bc[:, 1], zwh, (t + 1).to(pos.dtype)], -1)
            rast = rast.index_put((hit,), vals)
            if return_db:
                db = db.index_put((hit,), _bary_derivs(vv, PX[hit], PY[hit], bc, H, W).detach())
        out.append(rast)
        dbs.append(db)
    rast = torch.stack(out)
    return (rast, torch.stack(dbs)) if return_db else rast


def _bary_derivs(v, px, py, b, H, W):
    """d(u, v)/d(pixel X, pixel Y) from the linear homogeneous edge functions."""
    w = v[..., 3]
    rx = v[..., 0] - px.unsqueeze(-1) * w
    ry = v[..., 1] - py.unsqueeze(-1) * w
    c = homogeneous_edges(v, px, py)
    S = c.sum(-1, keepdim=True)
    # dc_i/dpx = -w_j ry_k + w_k ry_j ; dc_i/dpy = w_j rx_k - w_k rx_j  for (i, j, k) cyclic
    j, k = [1, 2, 0], [2, 0, 1]
    dcx = -w[..., j] * ry[..., k] + w[..., k] * ry[..., j]
    dcy = w[..., j] * rx[..., k] - w[..., k] * rx[..., j]
    dbx = (dcx - b * dcx.sum(-1, keepdim=True)) / S * (2.0 / W)
    dby = (dcy - b * dcy.sum(-1, keepdim=True)) / S * (-2.0 / H)
    return torch.stack([dbx[:, 0], dby[:, 0], dbx[:, 1], dby[:, 1]], -1)


# ------------------------------------------------------------------------------------------------
# interpolate
# ------------------------------------------------------------------------------------------------


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """``attr[B, V, C]`` (or ``[V, C]``, shared) -> ``[B, H, W, C]``: ``u a_0 + v a_1 + (1-u-v) a_2`` of
    the pixel's triangle, zero on the background. Differentiable in ``attr`` and ``rast[..., :2]``."""
    B, H, W, _ = rast.shape
    if attr.dim() == 2:
        attr = attr.unsqueeze(0).expand(B, -1, -1)
    tid = rast[..., 3].round().long()  # [B, H, W]
    hit = tid > 0
    t = torch.where(hit, tid - 1, torch.zeros_like(tid))
    corners = tri.long()[t]  # [B, H, W, 3]
    bidx = torch.arange(B, device=rast.device).view(B, 1, 1, 1)
    a = attr[bidx, corners]  # [B, H, W, 3, C]
    u, v = rast[..., 0:1], rast[..., 1:2]
    out = u * a[..., 0, :] + v * a[..., 1, :] + (1 - u - v) * a[..., 2, :]
    return out * hit.unsqueeze(-1).to(out.dtype)


# ------------------------------------------------------------------------------------------------
# antialias (analytic silhouette antialiasing after Laine et al. 2020)
# ------------------------------------------------------------------------------------------------

MAX_WALK = 4  # triangles a pair's segment may cross before reaching a silhouette edge


def edge_topology(tri: torch.Tensor) -> torch.Tensor:
    """``[T, 3]`` int64: the triangle across edge k (corners k+1, k+2) of each triangle, or -1 when the
    edge has no neighbour or more than one."""
    tri = tri.long()
    T = tri.shape[0]
    a, b = tri[:, [1, 2, 0]], tri[:, [2, 0, 1]]
    key = (torch.minimum(a, b) * (int(tri.max()) + 1) + torch.maximum(a, b)).flatten()
    _, inv, counts = torch.unique(key, return_inverse=True, return_counts=True)
    order = torch.sort(inv, stable=True).indices
    first = torch.cumsum(counts, 0) - counts
    two = (counts == 2).nonzero().flatten()
    e0, e1 = order[first[two]], order[first[two] + 1]
    nbr = torch.full((3 * T,), -1, dtype=torch.int64, device=tri.device)
    nbr[e0], nbr[e1] = e1 // 3, e0 // 3
    return nbr.view(T, 3)


def orientation(pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` sign of det[(x, y, w) of the corners]: the screen-space facing (float64 cofactors)."""
    v = pos[:, tri.long()].detach().to(torch.float64)
    x, y, w = v[..., 0], v[..., 1], v[..., 3]
    det = (
        x[..., 0] * (y[..., 1] * w[..., 2] - w[..., 1] * y[..., 2])
        - y[..., 0] * (x[..., 1] * w[..., 2] - w[..., 1] * x[..., 2])
        + w[..., 0] * (x[..., 1] * y[..., 2] - y[..., 1] * x[..., 2])
    )
    return torch.sign(det)


def silhouette_edges(orient: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """``[B, T, 3]`` bool: edge k may be on a silhouette: it has no neighbour (or several), a degenerate
    triangle, or its neighbour faces the other way on screen."""
    other = orient[:, nbr.clamp_min(0)]  # [B, T, 3]
    o = orient.unsqueeze(-1)
    return (nbr < 0).unsqueeze(0) | (o == 0) | (other != o)


def _pair_delta(colA, colB, rA, rB, pxA, pyA, pxB, pyB, v, orient, sil, nbr, horizontal, H, W):
    """Delta to add to each pixel of a pair (A, B) of adjacent pixels.

    The nearer triangle F covers one of the two pixel centres. Walking the segment from F's pixel centre
    (s = 0) to the other one (s = 1): in triangle X with edge functions n_i (positive inside), the segment
    leaves X at the smallest ``s_i = n_i(0) / (n_i(0) - n_i(1))`` over edges with ``n_i(0) >= 0`` that
    decrease along it; a silhouette exit edge ends the walk with ``e = s_i``, an interior one hands it to
    the neighbour across (at most MAX_WALK triangles). Each silhouette edge counts for one pair direction
    only: horizontal pairs take edges steeper than 45 degrees on screen, vertical pairs the others (else a
    slanted edge would be blended, and differentiated, twice). Then, as a box filter across the edge, the
    far pixel receives ``(e - 1/2)(c_F - c_other)`` when e > 1/2, otherwise F's pixel receives
    ``(1/2 - e)(c_other - c_F)``."""
    tA, tB = rA[..., 3].round().long(), rB[..., 3].round().long()
    zA, zB = rA[..., 2], rB[..., 2]
    a_front = (tA > 0) & ((tB == 0) | (zA < zB) | ((zA == zB) & (tA < tB)))
    alive = (tA != tB) & ((tA > 0) | (tB > 0))
    cur = torch.where(a_front, tA, tB) - 1
    cur = torch.where(alive, cur, torch.zeros_like(cur))
    pxF, pyF = torch.where(a_front, pxA, pxB), torch.where(a_front, pyA, pyB)
    pxO, pyO = torch.where(a_front, pxB, pxA), torch.where(a_front, pyB, pyA)
    found = torch.zeros_like(alive)
    t_hit, k_hit = torch.zeros_like(cur), torch.zeros_like(cur)
    vd = v.detach()
    with torch.no_grad():
        for _ in range(MAX_WALK):
            vX, o = vd[cur], orient[cur].unsqueeze(-1).to(vd.dtype)
            n0 = o * homogeneous_edges(vX, pxF, pyF)
            n1 = o * homogeneous_edges(vX, pxO, pyO)
            cand = (n0 >= 0) & (n1 < n0)
            s_all = torch.where(
                cand, n0 / torch.where(cand, n0 - n1, torch.ones_like(n0)), torch.full_like(n0, 2.0)
            )
            best, k = s_all.min(-1)
            alive = alive & (best < 1)
            is_sil = sil[cur].gather(-1, k.unsqueeze(-1)).squeeze(-1)
            j2, k2 = (k + 1) % 3, (k + 2) % 3
            pj = vX.gather(-2, j2.view(*j2.shape, 1, 1).expand(*j2.shape, 1, 4)).squeeze(-2).double()
            pk = vX.gather(-2, k2.view(*k2.shape, 1, 1).expand(*k2.shape, 1, 4)).squeeze(-2).double()
            ax = (pj[..., 1] * pk[..., 3] - pj[..., 3] * pk[..., 1]).abs() * H
            ay = (pj[..., 3] * pk[..., 0] - pj[..., 0] * pk[..., 3]).abs() * W
            hit = alive & is_sil & ((ax >= ay) == horizontal)
            t_hit, k_hit = torch.where(hit, cur, t_hit), torch.where(hit, k, k_hit)
            found = found | hit
            nxt = nbr[cur].gather(-1, k.unsqueeze(-1)).squeeze(-1)
            alive = alive & ~is_sil & (nxt >= 0)
            cur = torch.where(alive, nxt, cur)
    # the crossing, differentiable in the corners of the silhouette edge
    vX = v[t_hit]
    c0 = homogeneous_edges(vX, pxF, pyF).gather(-1, k_hit.unsqueeze(-1)).squeeze(-1)
    c1 = homogeneous_edges(vX, pxO, pyO).gather(-1, k_hit.unsqueeze(-1)).squeeze(-1)
    den = torch.where(found, c0 - c1, torch.ones_like(c0))
    e = torch.where(found, c0 / den, torch.zeros_like(c0))
    colF = torch.where(a_front.unsqueeze(-1), colA, colB)
    colO = torch.where(a_front.unsqueeze(-1), colB, colA)
    far = (e > 0.5) & found
    near = (e <= 0.5) & found
    d_far = ((e - 0.5) * far).unsqueeze(-1) * (colF - colO)  # goes to the other pixel
    d_near = ((0.5 - e) * near).unsqueeze(-1) * (colO - colF)  # goes to F's pixel
    dA = torch.where(a_front.unsqueeze(-1), d_near, d_far)
    dB = torch.where(a_front.unsqueeze(-1), d_far, d_near)
    return dA, dB


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """``color[B, H, W, C]`` -> antialiased ``[B, H, W, C]``, differentiable in ``color`` and ``pos``
    (``rast`` is treated as a constant, as in the kernels)."""
    B, H, W, C = color.shape
    pos = _batch_pos(pos)
    if pos.shape[0] == 1 and B > 1:
        pos = pos.expand(B, -1, -1)
    tri = tri.long()
    rast = rast.detach()
    px, py = pixel_ndc(H, W, pos.dtype, pos.device)
    PY, PX = torch.meshgrid(py, px, indexing="ij")
    if tri.shape[0]:
        nbr = edge_topology(tri)
        orient = orientation(pos, tri)
        sil = silhouette_edges(orient, nbr)
    out = []
    for b in range(B):
        if tri.shape[0]:
            v, ob, sb = pos[b][tri], orient[b], sil[b]
        else:  # nothing drawn: one dummy triangle that no pixel refers to
            v, ob, sb = pos.new_zeros(1, 3, 4), torch.zeros(1), torch.zeros(1, 3, dtype=torch.bool)
            nbr = torch.full((1, 3), -1, dtype=torch.int64)
        col, r = color[b], rast[b]
        delta = torch.zeros_like(col)
        # horizontal pairs (x, x+1), then vertical pairs (y, y+1)
        dA, dB = _pair_delta(
            col[:, :-1],
            col[:, 1:],
            r[:, :-1],
            r[:, 1:],
            PX[:, :-1],
            PY[:, :-1],
            PX[:, 1:],
            PY[:, 1:],
            v,
            ob,
            sb,
            nbr,
            True,
            H,
            W,
        )
        delta = delta + torch.nn.functional.pad(dA, (0, 0, 0, 1)) + torch.nn.functional.pad(dB, (0, 0, 1, 0))
        dA, dB = _pair_delta(
            col[:-1], col[1:], r[:-1], r[1:], PX[:-1], PY[:-1], PX[1:], PY[1:], v, ob, sb, nbr, False, H, W
        )
        delta = (
            delta
            + torch.nn.functional.pad(dA, (0, 0, 0, 0, 0, 1))
            + torch.nn.functional.pad(dB, (0, 0, 0, 0, 1, 0))
        )
        out.append(col + delta)
    return torch.stack(out)
