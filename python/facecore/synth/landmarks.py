"""68-point landmark labels (the iBUG-300W layout: 0-16 jaw line from the subject's right ear to the
left, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 lips; index 0 appears on the left of a frontal image).

The landmarks are rig vertices, ``rig.metadata["landmarks68"]``: ICT-FaceKit's own 68 for the ``ict``
rig, the ones ``tools/build_default_rig.py`` picks from its construction for the ``stylized`` rig.
Their 2-D labels are the projections of the posed vertices with the very clip-space positions that
were rasterized (pixel units, x right, y down, pixel centres at ``i + 0.5``).

Visibility (:func:`visibility`): a landmark is visible when its pixel is inside the image and either
a triangle that has the landmark vertex as a corner is what was drawn at that pixel or one of its 8
neighbours (a vertex lies on the border of its triangles, so the nearest pixel centre may belong to a
neighbour), or the nearest surface drawn in those pixels is at most ``tolerance`` (default
:data:`DEPTH_TOLERANCE` = 0.5 rig units, 5 mm for the cm rigs) in front of the landmark. The depth
test keeps landmarks that iBUG annotators mark visible although their exact vertex is covered by a
few millimetres: the lid margins (the eyeball bulges over them) and the inner lip line (the lips
curl over it). A landmark behind the nose or the far cheek is centimetres behind what is drawn.
"""

from __future__ import annotations

import torch

NUM_LANDMARKS = 68
DEPTH_TOLERANCE = 0.5


def landmark_indices(rig, required: bool = True) -> torch.Tensor | None:
    """``int64 [68]`` landmark vertex indices of ``rig`` (None, or ValueError when ``required``, for a rig
    without ``metadata["landmarks68"]``)."""
    lm = rig.metadata.get("landmarks68")
    if lm is None:
        if required:
            raise ValueError("rig has no metadata['landmarks68'] (the 68 iBUG landmark vertex indices)")
        return None
    idx = torch.as_tensor(lm)
    if idx.shape != (NUM_LANDMARKS,) or idx.is_floating_point():
        raise ValueError(
            f"rig metadata['landmarks68'] must be 68 vertex indices, got shape {list(idx.shape)}"
        )
    if int(idx.min()) < 0 or int(idx.max()) >= rig.num_vertices:
        raise ValueError(f"rig metadata['landmarks68'] has indices outside [0, {rig.num_vertices})")
    return idx.to(device=rig.device, dtype=torch.int64)


def project(clip: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """Clip-space points ``[..., 4]`` -> pixel coordinates ``[..., 2]`` (x right, y down)."""
    H, W = resolution
    w = clip[..., 3]
    x = (clip[..., 0] / w + 1) * (W / 2)
    y = (1 - clip[..., 1] / w) * (H / 2)
    return torch.stack([x, y], -1)


def visibility(
    xy: torch.Tensor,
    triangle_id: torch.Tensor,
    triangles: torch.Tensor,
    vertex: torch.Tensor,
    depth: torch.Tensor | None = None,
    vertex_depth: torch.Tensor | None = None,
    tolerance: float = DEPTH_TOLERANCE,
) -> torch.Tensor:
    """``[B, N]`` bool (module docstring). ``xy [B, N, 2]`` pixel positions of the vertices ``vertex [N]``;
    ``triangle_id [B, H, W]`` int64 (-1 background) indexes ``triangles [T, 3]``; optional ``depth [B, H,
    W]`` (distance along the viewing axis, 0 on the background) and ``vertex_depth [B, N]`` enable the
    depth test."""
    B, H, W = triangle_id.shape
    ix = torch.floor(xy[..., 0]).long()
    iy = torch.floor(xy[..., 1]).long()
    inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    d = torch.tensor([-1, 0, 1], device=xy.device)
    nx = (ix[..., None, None] + d[None, None, None, :]).expand(-1, -1, 3, 3)
    ny = (iy[..., None, None] + d[None, None, :, None]).expand(-1, -1, 3, 3)
    ok = (nx >= 0) & (nx < W) & (ny >= 0) & (ny < H)
    flat = (torch.arange(B, device=xy.device)[:, None, None, None] * H + ny.clamp(0, H - 1)) * W + nx.clamp(
        0, W - 1
    )
    flat = flat.reshape(-1)
    tid = triangle_id.reshape(-1)[flat].view(B, -1, 3, 3)
    corners = triangles.long()[tid.clamp_min(0)]  # [B, N, 3, 3, 3]
    drawn = (tid >= 0) & ok
    has = (corners == vertex.view(1, -1, 1, 1, 1)).any(-1) & drawn
    vis = has.flatten(2).any(-1)
    if depth is not None and vertex_depth is not None:
        dd = depth.reshape(-1)[flat].view(B, -1, 3, 3)
        nearest = torch.where(drawn, dd, torch.full_like(dd, float("inf"))).flatten(2).min(-1).values
        vis = vis | (nearest >= vertex_depth - tolerance)
    return inside & vis
