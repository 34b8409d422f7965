"""Reference area-weighted vertex normals: the specification of facecore.ops.vertex_normals."""

from __future__ import annotations

import torch

EPS = 1e-12


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Written out (not torch.linalg.cross, which may fuse multiply-adds): a degenerate triangle with
    # two equal edges then gives exactly zero instead of rounding noise that would be normalised.
    return torch.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                        a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                        a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], -1)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``verts [B, V, 3]``, ``faces [F, 3]`` -> unit normals ``[B, V, 3]``.

    ``m[v] = sum_{f ∋ v} cross(p1 - p0, p2 - p0)`` (area-weighted), ``n = m / |m|``; a vertex with no
    area around it (isolated, or only degenerate triangles) gets a zero normal and no gradient.
    """
    f = faces.long()
    p0, p1, p2 = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
    fn = _cross(p1 - p0, p2 - p0)                                   # [B, F, 3]
    m = torch.zeros_like(verts)
    for c in range(3):
        m = m.index_add(1, f[:, c], fn)
    length = m.norm(dim=-1, keepdim=True)
    safe = torch.where(length > EPS, length, torch.ones_like(length))  # no 0/0 in the unused branch
    return torch.where(length > EPS, m / safe, torch.zeros_like(m))
