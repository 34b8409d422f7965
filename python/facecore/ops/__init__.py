"""facecore kernels as PyTorch custom ops (``torch.ops.facecore.*``).

One module per op family; each exposes a public function taking ``backend="auto"`` and registers
its custom ops, autograd and fake implementations on import.
"""

from .antialias import antialias
from .attention import attention
from .blendshape import SparseDeltas, blendshape, deform, sparse_deltas
from .blur import gaussian_blur
from .interpolate import interpolate
from .linear_logprobs import linear_logprobs
from .rasterize import rasterize
from .shade import shade
from .srgb import srgb_uint8
from .vertex_normals import vertex_normals

__all__ = ["antialias", "attention", "blendshape", "deform", "gaussian_blur", "interpolate",
    "linear_logprobs", "rasterize", "shade", "sparse_deltas", "srgb_uint8", "SparseDeltas", "vertex_normals"]
