"""facecore kernels as PyTorch custom ops (``torch.ops.facecore.*``).

One module per op family; each exposes a public function taking ``backend="auto"`` and registers
its custom ops, autograd and fake implementations on import.
"""

from .blendshape import SparseDeltas, blendshape, deform, sparse_deltas
from .vertex_normals import vertex_normals

__all__ = ["SparseDeltas", "blendshape", "deform", "sparse_deltas", "vertex_normals"]
