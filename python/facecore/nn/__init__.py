"""Neural-network building blocks on top of facecore's kernels, reused by the pipelines.

``Attention`` (multi-head / grouped-query attention through :func:`facecore.ops.attention`, with an
optional learned relative-position bias for 1-D sequences or 2-D patch grids) and ``TransformerBlock``
(pre-norm attention + MLP); ``straight_through_clamp``, the head into the ARKit ranges that keeps the
gradient of a channel at its edge, and ``head_start``, the checked vector such a head starts at.
"""

from .attention import Attention, RelativePositionBias1d, RelativePositionBias2d, TransformerBlock
from .heads import head_start, straight_through_clamp

__all__ = ["Attention", "RelativePositionBias1d", "RelativePositionBias2d", "TransformerBlock",
           "head_start", "straight_through_clamp"]
