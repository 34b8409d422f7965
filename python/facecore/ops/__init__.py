"""facecore kernels as PyTorch custom ops (``torch.ops.facecore.*``).

One module per op family; each exposes a public function taking ``backend="auto"`` and registers
its custom ops, autograd and fake implementations on import.
"""

from .blendshape import SparseDeltas, blendshape, deform, sparse_deltas
from .linear_logprobs import linear_logprobs
from .vertex_normals import vertex_normals

__all__ = ["blendshape", "deform", "linear_logprobs", "sparse_deltas", "SparseDeltas", "vertex_normals"]
