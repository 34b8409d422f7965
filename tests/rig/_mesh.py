"""Mesh checks shared by the rig tests."""

from __future__ import annotations

import numpy as np


def edge_use(tris: np.ndarray):
    """Directed edges -> counts; returns (undirected edge -> count, directed edge set)."""
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    und = np.sort(e, 1)
    uniq, counts = np.unique(und, axis=0, return_counts=True)
    return uniq, counts, e


def boundary_loops(tris: np.ndarray) -> list[list[int]]:
    """Boundary edges (used by one triangle) chained into loops (directed as in the triangles)."""
    uniq, counts, e = edge_use(tris)
    bset = {tuple(x) for x in uniq[counts == 1]}
    nxt = {}
    for a, b in e:
        if (min(a, b), max(a, b)) in bset:
            assert a not in nxt, "boundary vertex with two outgoing boundary edges (non-manifold)"
            nxt[int(a)] = int(b)
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        assert v == start, "boundary edges do not form closed loops"
        loops.append(loop)
    return loops


def signed_volume(v: np.ndarray, tris: np.ndarray) -> float:
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def close_loops(v: np.ndarray, tris: np.ndarray):
    """Caps every boundary loop with a fan to its centroid (so a volume can be measured)."""
    v = v.copy()
    extra = []
    for loop in boundary_loops(tris):
        c = len(v)
        v = np.concatenate([v, v[loop].mean(0, keepdims=True)])
        # boundary edge a->b belongs to a triangle; the cap uses b->a.
        for a, b in zip(loop, loop[1:] + loop[:1]):
            extra.append((c, b, a))
    return v, np.concatenate([tris, np.array(extra, dtype=tris.dtype).reshape(-1, 3)])


def consistently_oriented(tris: np.ndarray) -> bool:
    """Every directed edge appears at most once (neighbours traverse shared edges oppositely)."""
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    return len(np.unique(e, axis=0)) == len(e)


def submesh(tris: np.ndarray, vertex_ids: np.ndarray) -> np.ndarray:
    return tris[np.isin(tris, vertex_ids).all(1)]
