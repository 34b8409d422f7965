"""Vertex normals: facecore against the plain-torch reference (index_add scatter), forward and backward."""

from __future__ import annotations

import pytest
import torch

import facecore.ops as ops
import facecore.reference as ref

from .conftest import load_rig


@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
@pytest.mark.parametrize("impl", ["facecore", "reference"])
@pytest.mark.parametrize("B", (1, 16))
@pytest.mark.parametrize("rig_name", ["ict", "default"])
def test_vertex_normals_cpu(benchmark, rig_name, B, impl, mode):
    rig = load_rig(rig_name)
    verts = rig.neutral.expand(B, -1, -1).contiguous() + 0.01 * torch.randn(B, rig.neutral.shape[0], 3)
    faces = rig.triangles
    op = ops.vertex_normals if impl == "facecore" else ref.vertex_normals
    f = lambda v: op(v, faces)  # noqa: E731
    benchmark.group = f"vertex_normals cpu {rig_name} B={B} {mode}"
    benchmark.extra_info.update(V=verts.shape[1], F=faces.shape[0])
    if mode == "forward":
        with torch.no_grad():
            benchmark(f, verts)
        return
    v = verts.clone().requires_grad_(True)
    grad = torch.randn_like(verts)

    def step():
        v.grad = None
        f(v).backward(grad)

    benchmark(step)
