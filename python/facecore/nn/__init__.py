"""Neural-network building blocks on top of facecore's kernels, reused by the pipelines.

``Attention`` (multi-head / grouped-query attention through :func:`facecore.ops.attention`, with an
optional learned relative-position bias for 1-D sequences or 2-D patch grids) and ``TransformerBlock``
(pre-norm attention + MLP).
"""

from .attention import Attention, RelativePositionBias1d, RelativePositionBias2d, TransformerBlock

__all__ = ["Attention", "RelativePositionBias1d", "RelativePositionBias2d", "TransformerBlock"]
