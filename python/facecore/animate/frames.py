"""Turning parameter frames into images: deform the rig, render, and lay out contact sheets.

Rendering goes through :mod:`facecore.render` (deform -> rasterize -> shade) when it is available;
otherwise through the numpy orthographic rasteriser of :mod:`facecore.rig.sheet`. Either way the
rig is deformed by facecore's ``deform`` kernel, in batches. Every path shades in linear light and
sRGB-encodes when it quantises to uint8 (:func:`facecore.render.color.to_uint8`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


def load_rig(rig: Any = "default"):
    """:func:`facecore.rig.load_rig` (kept here for existing callers)."""
    from ..rig import load_rig as load

    return load(rig)


class FrameRenderer:
    """Render ``[B, 61]`` parameter frames of a rig into ``[B, H, W, 3]`` uint8 sRGB images."""

    def __init__(self, rig: Any = "default", size: tuple[int, int] = (320, 320), backend: str = "auto",
                 batch: int = 32) -> None:
        w, h = size
        if not (isinstance(w, int) and isinstance(h, int) and 16 <= w <= 4096 and 16 <= h <= 4096):
            raise ValueError(f"size must be (width, height) with sides in 16..4096, got {size!r}")
        self.rig = load_rig(rig).to("cpu", torch.float32)
        self.size = (w, h)
        self.batch = batch
        self.backend = backend
        # Frame the whole face, from the chin to above the hairline, centred a little below the eyes.
        eyes = self.rig.eye_centers.numpy().astype(np.float64)
        ipd = float(np.linalg.norm(eyes[0] - eyes[1])) or 1.0
        self.center = np.array([0.0, eyes[:, 1].mean() - 0.43 * ipd, eyes[:, 2].mean()])
        self.extent = 2.05 * ipd  # half the height of the view, in rig units
        from ..render.color import srgb_to_linear

        self.background = tuple(float(c) for c in srgb_to_linear(np.array([0.12, 0.13, 0.15])))  # dark slate
        if backend not in ("auto", "facecore", "kernels", "numpy"):
            raise ValueError(f"backend must be 'auto', 'facecore', 'kernels' or 'numpy', got {backend!r}")
        self._renderer = None
        if backend in ("auto", "facecore"):
            try:
                self._renderer = self._facecore_renderer()
            except (ValueError, TypeError, RuntimeError):
                if backend == "facecore":
                    raise
                self._renderer = None  # e.g. a rig the renderer cannot take: use the kernels directly
            if self._renderer is None and backend == "facecore":
                raise RuntimeError("facecore.render is not available in this build")
        if self._renderer is not None:
            self.backend_used = "facecore"
        elif backend in ("auto", "kernels") and _has_kernels():
            self.backend_used = "kernels"
        else:
            self.backend_used = "numpy"
        self.colors = self.rig.colors.numpy() if self.rig.colors is not None else None
        self.triangles = self.rig.triangles.numpy()
        self._tri = self.rig.triangles.to(torch.int32).contiguous()
        col = self.colors if self.colors is not None else np.full((self.rig.num_vertices, 3), 0.8)
        self._colors = torch.as_tensor(np.asarray(col, np.float32))[None]
        span = self.rig.neutral.max(0).values - self.rig.neutral.min(0).values
        self._depth = float(span.max()) * 1.5  # z range that holds the head in any pose
        self._light = torch.nn.functional.normalize(torch.tensor([0.35, 0.45, 1.0]), dim=0)
        self._fill = torch.nn.functional.normalize(torch.tensor([-0.6, -0.1, 0.5]), dim=0)

    def _facecore_renderer(self):
        """facecore.render.Renderer with a perspective camera on the face (None if unavailable)."""
        try:
            from ..render import Camera, Renderer
        except ImportError:
            return None
        w, h = self.size
        fov = 20.0
        dist = self.extent / math.tan(math.radians(fov) / 2)
        c = self.center
        cam = Camera.perspective(eye=(c[0], c[1], c[2] + dist), target=tuple(c), resolution=(h, w),
                                 fov_y=fov, near=dist * 0.5, far=dist * 2.0)
        renderer = Renderer(self.rig, cam, background=self.background, cull_backfaces=True)

        def run(params: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = renderer(torch.as_tensor(params))
            return out.to_uint8(alpha=False).numpy()

        return run

    def deform(self, params: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.rig.deform(torch.as_tensor(np.asarray(params, np.float32)))

    def render(self, params: np.ndarray) -> np.ndarray:
        """``[B, 61]`` -> ``[B, H, W, 3]`` uint8."""
        params = np.asarray(params, np.float32)
        if params.ndim != 2 or params.shape[1] != 61:
            raise ValueError(f"params must be [B, 61], got {list(params.shape)}")
        if self._renderer is not None:
            return self._renderer(params)
        verts = self.deform(params)
        if self.backend_used == "kernels":
            return self._render_kernels(verts)
        return self._render_numpy(verts.numpy())

    def _render_kernels(self, verts: torch.Tensor) -> np.ndarray:
        """facecore's rasterize + interpolate kernels, orthographic camera, Lambert shading."""
        from ..ops import interpolate, rasterize, vertex_normals
        from ..render.color import to_uint8

        w, h = self.size
        c = torch.as_tensor(self.center, dtype=torch.float32)
        ext = float(self.extent)
        sx, sy = ext * w / h, ext  # the view's half-height is ext; square pixels
        q = verts - c
        depth = float(self._depth)
        pos = torch.stack([q[..., 0] / sx, q[..., 1] / sy, -q[..., 2] / depth,
                           torch.ones_like(q[..., 0])], -1)
        with torch.no_grad():
            rast = rasterize(pos.contiguous(), self._tri, (h, w), cull_backfaces=True)
            nrm = vertex_normals(verts.contiguous(), self._tri)
            attr = torch.cat([nrm, self._colors.expand(verts.shape[0], -1, -1)], -1).contiguous()
            pix = interpolate(attr, rast, self._tri)
        n = torch.nn.functional.normalize(pix[..., :3], dim=-1)
        key = (n @ self._light).clamp_min(0.0)
        fill = (n @ self._fill).clamp_min(0.0)
        rgb = pix[..., 3:] * (0.28 + 0.62 * key + 0.18 * fill)[..., None]
        mask = (rast[..., 3:] > 0).float()
        bg = torch.tensor(self.background, dtype=torch.float32)
        img = rgb * mask + bg * (1 - mask)
        return to_uint8(img).numpy()  # shaded in linear light, written as sRGB

    def _render_numpy(self, verts: np.ndarray) -> np.ndarray:
        from ..render.color import to_uint8
        from ..rig.sheet import render_orthographic

        w, h = self.size
        side = max(w, h)  # render a square whose middle h rows span the view's height, then crop
        out = np.empty((verts.shape[0], h, w, 3), np.uint8)
        for i, v in enumerate(verts):
            img = render_orthographic(v, self.triangles, self.colors, size=side, center=self.center,
                                      extent=self.extent * side / h, background=self.background)
            y0, x0 = (side - h) // 2, (side - w) // 2
            out[i] = to_uint8(img[y0:y0 + h, x0:x0 + w])
        return out

    def frames(self, params: np.ndarray, progress: Any = None) -> Iterator[np.ndarray]:
        """Yield frames one by one, rendering in batches; ``progress(n)`` is called per batch."""
        for s in range(0, params.shape[0], self.batch):
            imgs = self.render(params[s:s + self.batch])
            yield from imgs
            if progress is not None:
                progress(imgs.shape[0])


def _has_kernels() -> bool:
    try:
        from ..ops import interpolate, rasterize, vertex_normals  # noqa: F401
    except ImportError:
        return False
    return True


def _font(size: int):
    try:
        from PIL import ImageFont

        return ImageFont.load_default(size=size)
    except Exception:  # noqa: BLE001 - old Pillow: the bitmap default font
        from PIL import ImageFont

        return ImageFont.load_default()


def contact_sheet(images: np.ndarray, labels: list[str], columns: int | None = None) -> np.ndarray:
    """Tiles ``[K, H, W, 3]`` with a caption strip under each -> one uint8 image.

    Captions wrap at word boundaries to the tile's width, measured in the font, on at most two lines;
    a caption that does not fit ends in an ellipsis ("…", or "..." where the font has no such glyph).
    """
    k, h, w, _ = images.shape
    columns = columns or min(k, 4)
    rows = math.ceil(k / columns)
    cap = max(28, h // 6)
    sheet = np.full((rows * (h + cap), columns * w, 3), 245, np.uint8)
    for i in range(k):
        r, c = divmod(i, columns)
        sheet[r * (h + cap):r * (h + cap) + h, c * w:(c + 1) * w] = images[i]
    try:
        from PIL import Image, ImageDraw
    except ImportError:  # captions are a nicety
        return sheet
    im = Image.fromarray(sheet)
    draw = ImageDraw.Draw(im)
    font = _font(max(10, cap // 3))
    ellipsis = _ellipsis(font)
    for i, label in enumerate(labels[:k]):
        r, c = divmod(i, columns)
        lines = caption_lines(label, lambda t: draw.textlength(t, font=font), w - 8, 2, ellipsis)
        for j, line in enumerate(lines):
            draw.text((c * w + 4, r * (h + cap) + h + 2 + j * (cap // 2 - 1)), line, fill=(20, 20, 20),
                      font=font)
    return np.asarray(im)


def _ellipsis(font) -> str:
    """"…" when ``font`` draws it as a glyph of its own, else "..." (bitmap fonts, fonts without it)."""
    try:
        glyph = font.getmask("\u2026")
        missing = font.getmask("\U0010fffd")  # a private-use code point: the font's "no glyph" box
    except (UnicodeError, ValueError, OSError):
        return "..."
    if glyph.getbbox() is None or (glyph.size == missing.size and bytes(glyph) == bytes(missing)):
        return "..."
    return "\u2026"


def caption_lines(text: str, width_of: Callable[[str], float], max_width: float, max_lines: int,
                  ellipsis: str = "\u2026") -> list[str]:
    """``text`` wrapped at spaces into at most ``max_lines`` lines no wider than ``max_width``
    (``width_of(s)`` measures a string); a word longer than a line is broken. When the text does not
    fit, the last line holds as much of the rest as fits before ``ellipsis``."""
    flat = " ".join(text.split())
    lines: list[str] = []
    cur = ""
    for word in flat.split(" ") if flat else ():
        cand = f"{cur} {word}" if cur else word
        if width_of(cand) <= max_width:
            cur = cand
            continue
        if cur:
            lines.append(cur)
        while width_of(word) > max_width and len(word) > 1:  # break a word wider than the line
            cut = 1
            while cut < len(word) and width_of(word[:cut + 1]) <= max_width:
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        cur = word
    if cur:
        lines.append(cur)
    if len(lines) <= max_lines:
        return lines
    # Lines are consecutive pieces of ``flat``: the last line shown starts where line max_lines-1 does.
    at = 0
    for line in lines[: max_lines - 1]:
        at = flat.index(line, at) + len(line)
    rest = flat[at:].lstrip()

    def shown(n: int) -> str:
        return rest[:n].rstrip(" ,;:.-") + ellipsis

    lo, hi = 0, len(rest)  # the longest prefix that fits with the ellipsis (width grows with n)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if width_of(shown(mid)) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return lines[: max_lines - 1] + [shown(lo)]
