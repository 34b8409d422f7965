"""Turning parameter frames into images: deform the rig, render, and lay out contact sheets.

Rendering goes through :mod:`facecore.render` (deform -> rasterize -> shade) when it is available;
otherwise through the numpy orthographic rasteriser of :mod:`facecore.rig.sheet`. Either way the
rig is deformed by facecore's ``deform`` kernel, in batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def load_rig(rig: Any = "default"):
    """``"default"`` / None -> the embedded rig; a path -> ``FaceRig.load`` or a glTF/OBJ loader;
    a FaceRig passes through. Raises ValueError with a one-line reason when it does not load."""
    from ..rig import FaceRig

    if isinstance(rig, FaceRig):
        return rig
    if rig is None or rig == "default":
        from ..rig import default_rig

        return default_rig()
    from pathlib import Path

    path = Path(rig)
    if not path.exists():
        raise FileNotFoundError(f"rig not found: {path}")
    try:
        if path.is_dir():
            from .. import rig as rigmod

            if (path / "generic_neutral_mesh.obj").exists() or (path / "FaceXModel").is_dir():
                return rigmod.load_ict(path)
            return rigmod.load_obj_folder(path)
        if path.suffix.lower() in (".glb", ".gltf"):
            from .. import rig as rigmod

            return rigmod.load_gltf(path)
        return FaceRig.load(path)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError, AttributeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"rig {path} does not load: {msg}") from None


class FrameRenderer:
    """Render ``[B, 61]`` parameter frames of a rig into ``[B, H, W, 3]`` uint8 images."""

    def __init__(self, rig: Any = "default", size: tuple[int, int] = (320, 320), backend: str = "auto",
                 batch: int = 32) -> None:
        w, h = size
        if not (isinstance(w, int) and isinstance(h, int) and 16 <= w <= 4096 and 16 <= h <= 4096):
            raise ValueError(f"size must be (width, height) with sides in 16..4096, got {size!r}")
        self.rig = load_rig(rig).to("cpu", torch.float32)
        self.size = (w, h)
        self.batch = batch
        self.backend = backend
        # Frame the face: from above the brows to below the chin, centred a little below the eyes.
        eyes = self.rig.eye_centers.numpy().astype(np.float64)
        ipd = float(np.linalg.norm(eyes[0] - eyes[1])) or 1.0
        self.center = np.array([0.0, eyes[:, 1].mean() - 0.75 * ipd, eyes[:, 2].mean()])
        self.extent = 1.7 * ipd  # half the height of the view, in rig units
        self.background = (0.12, 0.13, 0.15)
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
        return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()

    def _render_numpy(self, verts: np.ndarray) -> np.ndarray:
        from ..rig.sheet import render_orthographic

        w, h = self.size
        side = max(w, h)  # render a square whose middle h rows span the view's height, then crop
        out = np.empty((verts.shape[0], h, w, 3), np.uint8)
        for i, v in enumerate(verts):
            img = render_orthographic(v, self.triangles, self.colors, size=side, center=self.center,
                                      extent=self.extent * side / h, background=self.background)
            y0, x0 = (side - h) // 2, (side - w) // 2
            out[i] = (np.clip(img[y0:y0 + h, x0:x0 + w], 0, 1) * 255 + 0.5).astype(np.uint8)
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
    """Tiles ``[K, H, W, 3]`` with a caption strip under each -> one uint8 image."""
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
    for i, label in enumerate(labels):
        r, c = divmod(i, columns)
        lines = _wrap(label, max(8, w // max(6, cap // 5)))[:2]
        for j, line in enumerate(lines):
            draw.text((c * w + 4, r * (h + cap) + h + 2 + j * (cap // 2 - 1)), line, fill=(20, 20, 20),
                      font=font)
    return np.asarray(im)


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for wd in words:
        if cur and len(cur) + 1 + len(wd) > width:
            lines.append(cur)
            cur = wd
        else:
            cur = f"{cur} {wd}".strip()
    if cur:
        lines.append(cur)
    return lines
