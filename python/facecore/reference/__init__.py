"""Plain-torch implementations of every facecore op: the specification the kernels are tested against.

Each function has the same signature as its op in :mod:`facecore.ops` (minus ``backend``), works in
float64, and is differentiable by torch autograd.
"""

from .blendshape import blendshape, deform, rigid
from .vertex_normals import vertex_normals

__all__ = ["blendshape", "deform", "rigid", "vertex_normals"]
