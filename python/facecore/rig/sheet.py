"""Contact sheet of a rig: the neutral face plus each of the 52 ARKit shapes at weight 1, one PNG.

``main(out_path, rig_path=None)`` is the body of ``facecore rig-sheet``; ``contact_sheet(rig)``
returns the image as a ``[H, W, 3]`` uint8 array. Rendering uses :mod:`facecore.render` when it
provides a ``Renderer`` usable here; otherwise a small orthographic numpy z-buffer rasteriser
(:func:`render_orthographic`) with per-vertex colours and Lambert shading, which needs nothing but
numpy. Shading is in linear light (rig colours are linear); tiles are sRGB-encoded when quantised.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .._names import BLENDSHAPES
from .face_rig import FaceRig, vertex_normals_np


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return ry @ rx


def render_orthographic(
    vertices: np.ndarray,
    triangles: np.ndarray,
    colors: np.ndarray | None,
    *,
    size: int = 256,
    center: np.ndarray | None = None,
    extent: float | None = None,
    yaw: float = 0.0,
    pitch: float = 0.0,
    background=(1.0, 1.0, 1.0),
) -> np.ndarray:
    """Orthographic view along -z (after yaw/pitch in degrees) -> ``[size, size, 3]`` float image.

    Vectorised rasteriser: every (triangle, pixel) pair inside each triangle's bounding box is tested
    at once; the nearest fragment wins (z-buffer by sorting). Back faces are culled. Shading: ambient
    plus a head light (Lambert) on interpolated vertex normals.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(triangles, np.int64)
    col = np.full((len(v), 3), 0.8) if colors is None else np.asarray(colors, np.float64)
    R = _rotation(yaw, pitch)
    c = v.mean(0) if center is None else np.asarray(center, np.float64)
    q = (v - c) @ R.T
    n = vertex_normals_np(v, f) @ R.T
    ext = (np.abs(q[:, :2]).max() * 1.05) if extent is None else extent
    px = (q[:, 0] / ext * 0.5 + 0.5) * size
    py = (0.5 - q[:, 1] / ext * 0.5) * size  # row 0 at the top
    a, b, cc = f[:, 0], f[:, 1], f[:, 2]
    area = (px[b] - px[a]) * (py[cc] - py[a]) - (px[cc] - px[a]) * (py[b] - py[a])
    keep = area < 0  # counter-clockwise on screen (y down)
    f, area = f[keep], area[keep]
    a, b, cc = f[:, 0], f[:, 1], f[:, 2]
    x0 = np.clip(np.floor(np.minimum(np.minimum(px[a], px[b]), px[cc]) - 0.5), 0, size - 1).astype(np.int64)
    x1 = np.clip(np.ceil(np.maximum(np.maximum(px[a], px[b]), px[cc]) - 0.5), 0, size - 1).astype(np.int64)
    y0 = np.clip(np.floor(np.minimum(np.minimum(py[a], py[b]), py[cc]) - 0.5), 0, size - 1).astype(np.int64)
    y1 = np.clip(np.ceil(np.maximum(np.maximum(py[a], py[b]), py[cc]) - 0.5), 0, size - 1).astype(np.int64)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    cnt = w * h
    tri = np.repeat(np.arange(len(f)), cnt)
    local = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    pxs = x0[tri] + local % w[tri]
    pys = y0[tri] + local // w[tri]
    sx, sy = pxs + 0.5, pys + 0.5
    A, Bv, C = f[tri, 0], f[tri, 1], f[tri, 2]
    w0 = ((px[Bv] - sx) * (py[C] - sy) - (px[C] - sx) * (py[Bv] - sy)) / area[tri]
    w1 = ((px[C] - sx) * (py[A] - sy) - (px[A] - sx) * (py[C] - sy)) / area[tri]
    w2 = 1 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    tri, pxs, pys, w0, w1, w2 = tri[inside], pxs[inside], pys[inside], w0[inside], w1[inside], w2[inside]
    A, Bv, C = f[tri, 0], f[tri, 1], f[tri, 2]
    z = w0 * q[A, 2] + w1 * q[Bv, 2] + w2 * q[C, 2]
    pix = pys * size + pxs
    order = np.lexsort((-z, pix))  # per pixel, nearest (largest z) first
    first = np.ones(len(order), bool)
    first[1:] = pix[order][1:] != pix[order][:-1]
    sel = order[first]
    W = np.stack([w0[sel], w1[sel], w2[sel]], 1)
    idx = np.stack([A[sel], Bv[sel], C[sel]], 1)
    nrm = (n[idx] * W[..., None]).sum(1)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    light = normalize_np(np.array([0.3, 0.4, 1.0]))
    shade = 0.35 + 0.65 * np.clip(nrm @ light, 0, 1)
    rgb = (col[idx] * W[..., None]).sum(1) * shade[:, None]
    img = np.tile(np.asarray(background, np.float64), (size * size, 1))
    img[pix[sel]] = rgb
    return img.reshape(size, size, 3)


def normalize_np(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    try:
        from PIL import Image, ImageDraw
    except ImportError:  # labels are a nicety
        return img
    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((4, 2), text, fill=(20, 20, 20))
    return np.asarray(im)


def _render_facecore(
    rig, shapes: np.ndarray, size: int, center, extent, yaw: float, pitch: float
) -> np.ndarray:
    """All shapes in one batch through :class:`facecore.render.Renderer` (perspective, head light)."""
    from ..render import Camera, Renderer

    v = torch.from_numpy(shapes.astype(np.float32))
    if center is None:
        center = shapes[0].mean(0)
        extent = float(np.abs(shapes[0] - center).max())
    R = _rotation(yaw, pitch)
    dist = 8.0 * extent
    eye = np.asarray(center) + R @ np.array([0.0, 0.0, dist])
    fov = 2 * math.degrees(math.atan(extent / dist))
    cam = Camera.perspective(
        tuple(eye), tuple(center), resolution=size, fov_y=fov, near=dist * 0.5, far=dist * 2
    )
    r = Renderer(
        verts=v[0],
        triangles=rig.triangles,
        colors=rig.colors,
        camera=cam,
        background=(1.0, 1.0, 1.0),
        supersample=2,
    )
    out = [r.render_vertices(v[i : i + 8]).image.detach().numpy() for i in range(0, len(v), 8)]
    return np.concatenate(out, 0).astype(np.float64)


def contact_sheet(
    rig,
    *,
    size: int = 256,
    columns: int = 9,
    yaw: float = 18.0,
    pitch: float = 0.0,
    crop_to_face: bool = True,
    renderer: str = "auto",
) -> np.ndarray:
    """Neutral + the 52 shapes at weight 1 as one ``[H, W, 3]`` uint8 image (labelled tiles).

    ``renderer``: ``"facecore"`` (facecore.render), ``"numpy"`` (the orthographic fallback) or
    ``"auto"`` (facecore.render when it works here, else the fallback).
    """
    if renderer not in ("auto", "facecore", "numpy"):
        raise ValueError(f"contact_sheet: renderer must be 'auto', 'facecore' or 'numpy', got {renderer!r}")
    from ..render.color import to_uint8  # here: the numpy fallback must not need facecore.render at import
    rig = rig.to("cpu", torch.float32)
    V = rig.num_vertices
    neutral = rig.neutral.numpy().astype(np.float64)
    deltas = rig.dense_deltas().numpy()
    f = rig.triangles.numpy()
    colors = rig.colors.numpy() if rig.colors is not None else None
    # Frame the face: the region in front of the eyes down to below the chin.
    eyes = rig.eye_centers.numpy()
    ipd = float(np.linalg.norm(eyes[0] - eyes[1])) or 1.0
    if crop_to_face:
        center = np.array([0.0, eyes[:, 1].mean() - 0.6 * ipd, eyes[:, 2].mean()])
        extent = 1.55 * ipd
    else:
        center, extent = None, None
    tiles = []
    names = ("Neutral",) + BLENDSHAPES
    shapes = np.concatenate([neutral[None], neutral[None] + deltas], 0)
    images = None
    if renderer in ("auto", "facecore"):
        try:
            images = _render_facecore(rig, shapes, size, center, extent, yaw, pitch)
        except Exception:  # noqa: BLE001 - the renderer may be absent or not built; fall back
            if renderer == "facecore":
                raise
    for i, name in enumerate(names):
        if images is not None:
            img = images[i]
        else:
            img = render_orthographic(
                shapes[i], f, colors, size=size, center=center, extent=extent, yaw=yaw, pitch=pitch
            )
        img8 = to_uint8(img)  # rendered in linear light, shown as sRGB
        missing = i > 0 and name not in rig.channels
        tiles.append(_label(img8, name + (" (missing)" if missing else "")))
    rows = math.ceil(len(tiles) / columns)
    sheet = np.full((rows * size, columns * size, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = t
    del V
    return sheet


def main(
    out_path: str | Path, rig_path: str | Path | FaceRig | None = None, *, size: int = 256,
    renderer: str = "auto"
) -> Path:
    """Write the contact sheet PNG of a rig: a FaceRig, a saved rig file, or None for the default
    built-in rig (:data:`facecore.rig.DEFAULT_RIG`)."""
    import imageio.v3 as iio

    from .default import builtin_rig

    if isinstance(rig_path, FaceRig):
        rig = rig_path
    else:
        rig = builtin_rig() if rig_path is None else FaceRig.load(rig_path)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, contact_sheet(rig, size=size, renderer=renderer))
    return out
