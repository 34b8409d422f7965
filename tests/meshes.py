"""Small procedural meshes shared by the tests."""

from __future__ import annotations

import math

import torch


def uv_sphere(n: int = 10, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed unit UV sphere (poles on ±y) with outward counter-clockwise faces: verts, int32 faces."""
    theta = torch.linspace(0, math.pi, n + 1, dtype=torch.float64)[1:-1]
    phi = torch.linspace(0, 2 * math.pi, 2 * n + 1, dtype=torch.float64)[:-1]
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    pole = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    verts = torch.cat([pole, ring, -pole])
    m, faces = 2 * n, []
    for j in range(m):
        faces.append([0, 1 + (j + 1) % m, 1 + j])
    for i in range(n - 2):
        for j in range(m):
            a, b = 1 + i * m + j, 1 + i * m + (j + 1) % m
            faces += [[a, b, a + m], [b, b + m, a + m]]
    last = len(verts) - 1
    for j in range(m):
        faces.append([last, 1 + (n - 2) * m + j, 1 + (n - 2) * m + (j + 1) % m])
    return verts.to(dtype), torch.tensor(faces, dtype=torch.int32)
