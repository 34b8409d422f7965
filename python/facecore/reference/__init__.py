"""Plain-torch implementations of every facecore op: the specification the kernels are tested against.

Each function has the same signature as its op in :mod:`facecore.ops` (minus ``backend``), works in
float64, and is differentiable by torch autograd.
"""

from . import losses
from .attention import attention
from .blendshape import blendshape, deform, rigid
from .blur import gaussian_blur
from .linear_logprobs import linear_logprobs, sequence_logprobs
from .rasterize import antialias, interpolate, rasterize
from .shade import MODELS as shade_models
from .shade import shade
from .srgb import srgb_uint8
from .vertex_normals import vertex_normals

__all__ = ["antialias", "attention", "blendshape", "deform", "gaussian_blur", "interpolate",
    "linear_logprobs", "losses", "rasterize", "rigid", "sequence_logprobs", "shade", "shade_models",
    "srgb_uint8", "vertex_normals"]
