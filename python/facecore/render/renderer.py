"""Renderer: ARKit parameters (or posed vertices) -> shaded, antialiased images, differentiable end to end.

    params [B, 61] --deform--> verts [B, V, 3] --vertex_normals--> normals
        --camera--> clip [B, V, 4] --rasterize--> rast --interpolate--> normal, position, albedo (or uv)
        --shade (Lights)--> RGB over the background --antialias--> image, alpha

Every stage is a facecore op with a backward, so gradients reach ``params`` (and the vertices, colours,
texture and camera-independent inputs that require grad).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import ops
from ..ops.rasterize import MAX_TRIANGLES
from .camera import Camera
from .lights import Lights


@dataclass
class RenderResult:
    """Maps at the output resolution. ``image`` ``[B, H, W, 3]`` (composited over the background),
    ``alpha`` ``[B, H, W, 1]`` (fractional at antialiased silhouettes), ``depth`` ``[B, H, W, 1]`` (distance
    along the viewing axis, 0 on the background), ``normal`` ``[B, H, W, 3]`` (unit world-space normals,
    0 on the background), ``triangle_id`` ``[B, H, W]`` int64 (-1 on the background), and ``rast``, the raw
    rasterizer output at the rendering (supersampled) resolution."""

    image: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    triangle_id: torch.Tensor
    rast: torch.Tensor

    @property
    def rgba(self) -> torch.Tensor:
        """``[B, H, W, 4]`` float RGBA."""
        return torch.cat([self.image, self.alpha], -1)

    def to_uint8(self, alpha: bool = True, *, srgb: bool = True) -> torch.Tensor:
        """``[B, H, W, 4]`` (or ``[B, H, W, 3]``) uint8 on the CPU: values clamped to [0, 1], the colour
        sRGB-encoded (``srgb=True``, what displays expect; ``image`` itself is linear light), alpha
        kept linear, rounded (:func:`facecore.render.color.to_uint8`)."""
        from .color import to_uint8

        rgb = to_uint8(self.image, srgb=srgb)
        if alpha:
            rgb = torch.cat([rgb, to_uint8(self.alpha, srgb=False)], -1)
        return rgb.cpu()

    def save_png(self, path: str | Path, index: int = 0, alpha: bool = True, *, srgb: bool = True) -> Path:
        """Write image ``index`` of the batch as a PNG (sRGB-encoded unless ``srgb=False``)."""
        import imageio.v3 as iio

        path = Path(path)
        iio.imwrite(path, self.to_uint8(alpha, srgb=srgb)[index].numpy())
        return path


class _Lazy:
    """A RenderResult field computed on first access from ``obj._make[name]`` and then stored."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        d = obj.__dict__
        if self.name not in d:
            d[self.name] = d["_make"].pop(self.name)()
        return d[self.name]

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value


class _LazyRenderResult(RenderResult):
    """What :class:`Renderer` returns: a RenderResult whose ``depth``, ``normal`` and ``triangle_id`` are
    built when first read."""

    depth = _Lazy()
    normal = _Lazy()
    triangle_id = _Lazy()

    def __init__(self, image, alpha, depth=None, normal=None, triangle_id=None, rast=None, *, _make=None):
        self.__dict__["_make"] = dict(_make or {})
        self.image, self.alpha, self.rast = image, alpha, rast
        for name, v in (("depth", depth), ("normal", normal), ("triangle_id", triangle_id)):
            if v is not None or name not in self._make:
                setattr(self, name, v)

    def __getstate__(self):  # pickling materialises the lazy maps (closures do not pickle)
        for name in ("depth", "normal", "triangle_id"):
            getattr(self, name)
        state = dict(self.__dict__)
        state.pop("_make", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _make={})


def _as_batch(name: str, t: torch.Tensor, last: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"Renderer: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[-1] != last:
        raise ValueError(
            f"Renderer: {name} must have shape [B, V, {last}] or [V, {last}], got {list(t.shape)}"
        )
    return t


class Renderer:
    """Render a rig (anything with ``.neutral [V, 3]``, ``.triangles [F, 3]``, optional ``.colors [V, 3]``,
    ``.uvs``/``.uv_triangles``; with ``__call__(params)`` it must also work with :func:`facecore.ops.deform`)
    or a raw mesh (``verts``/``triangles``).

    ``camera`` defaults to :meth:`Camera.framing` of the rest mesh; ``resolution`` (int or ``(H, W)``) to the
    camera's. ``colors`` (per-vertex albedo ``[V, 3]`` or ``[B, V, 3]``) or ``texture`` (``[Ht, Wt, 3]`` or
    ``[B, Ht, Wt, 3]``, sampled bilinearly at the rig's uvs, v up) give the albedo; default light grey.
    ``supersample = s`` renders at ``s x`` the resolution and box-downsamples.
    """

    def __init__(
        self,
        rig=None,
        camera: Camera | None = None,
        resolution=None,
        *,
        verts: torch.Tensor | None = None,
        triangles: torch.Tensor | None = None,
        colors: torch.Tensor | None = None,
        texture: torch.Tensor | None = None,
        uvs: torch.Tensor | None = None,
        uv_triangles: torch.Tensor | None = None,
        lights: Lights | None = None,
        background=(0.0, 0.0, 0.0),
        supersample: int = 1,
        antialias: bool = True,
        cull_backfaces: bool = False,
        backend: str = "auto",
    ):
        if rig is not None:
            for attr in ("neutral", "triangles"):
                if not hasattr(rig, attr):
                    raise TypeError(f"Renderer: rig must have .{attr} (got {type(rig).__name__})")
            verts = rig.neutral if verts is None else verts
            triangles = rig.triangles if triangles is None else triangles
            if colors is None and texture is None:
                colors = getattr(rig, "colors", None)
            if texture is not None and uvs is None:
                uvs, uv_triangles = getattr(rig, "uvs", None), getattr(rig, "uv_triangles", None)
        if verts is None or triangles is None:
            raise ValueError("Renderer: give a rig, or verts and triangles")
        if not isinstance(triangles, torch.Tensor) or triangles.dim() != 2 or triangles.shape[1] != 3:
            raise ValueError(
                "Renderer: triangles must be a [F, 3] integer tensor, "
                f"got {getattr(triangles, 'shape', triangles)}"
            )
        self.rig = rig
        self.rest = _as_batch("verts", verts, 3)[0]
        V = self.rest.shape[0]
        self.triangles = triangles.to(device=self.rest.device, dtype=torch.int32).contiguous()
        if self.triangles.numel() and (int(self.triangles.min()) < 0 or int(self.triangles.max()) >= V):
            raise ValueError(f"Renderer: triangles index outside [0, V={V})")
        if texture is not None:
            if uvs is None or uv_triangles is None:
                raise ValueError("Renderer: a texture needs uvs and uv_triangles (from the rig or given)")
            if texture.dim() not in (3, 4) or texture.shape[-1] not in (3, 4):
                raise ValueError(
                    f"Renderer: texture must be [Ht, Wt, 3] or [B, Ht, Wt, 3], got {list(texture.shape)}"
                )
            uv_triangles = uv_triangles.to(device=self.rest.device, dtype=torch.int32).contiguous()
            if uv_triangles.shape != self.triangles.shape:
                raise ValueError("Renderer: uv_triangles must have the shape of triangles")
        if colors is not None:
            colors = _as_batch("colors", colors, 3)
            if colors.shape[1] != V:
                raise ValueError(
                    f"Renderer: colors must have {V} rows (one per vertex), got {colors.shape[1]}"
                )
        self.colors, self.texture, self.uvs, self.uv_triangles = colors, texture, uvs, uv_triangles
        if camera is None:
            camera = Camera.framing(self.rest, resolution if resolution is not None else 256)
        self.camera = camera
        res = camera.resolution if resolution is None else resolution
        self.resolution = (res, res) if isinstance(res, int) else (int(res[0]), int(res[1]))
        if int(supersample) < 1:
            raise ValueError(f"Renderer: supersample must be >= 1, got {supersample}")
        self.supersample = int(supersample)
        self.lights = lights if lights is not None else Lights()
        self.background = torch.as_tensor(background, dtype=torch.float64).flatten()
        if self.background.numel() != 3:
            raise ValueError(f"Renderer: background must be an RGB triple, got {background!r}")
        self.antialias, self.cull_backfaces, self.backend = antialias, cull_backfaces, backend

    def __call__(self, params: torch.Tensor) -> RenderResult:
        """Render ARKit parameters ``[B, 61]`` (or ``[61]``) through the rig."""
        if self.rig is None:
            raise ValueError("Renderer: calling with params needs a rig; use render_vertices for raw meshes")
        if params.dim() == 1:
            params = params.unsqueeze(0)
        verts = ops.deform(params, self.rig)
        return self.render_vertices(verts)

    def render_vertices(self, verts: torch.Tensor, colors: torch.Tensor | None = None) -> RenderResult:
        """Render posed vertices ``[B, V, 3]`` (or ``[V, 3]``) with the renderer's triangles."""
        verts = _as_batch("verts", verts, 3)
        B, V = verts.shape[:2]
        if V != self.rest.shape[0]:
            raise ValueError(f"Renderer: verts must have {self.rest.shape[0]} vertices, got {V}")
        tri, be = self.triangles.to(verts.device), self.backend
        s = self.supersample
        H, W = self.resolution[0] * s, self.resolution[1] * s
        clip = self.camera.clip(verts).contiguous()  # [B, V, 4]
        normals = ops.vertex_normals(verts, tri, backend=be)  # [B, V, 3]
        rast = ops.rasterize(clip, tri, (H, W), cull_backfaces=self.cull_backfaces, backend=be)
        albedo = colors if colors is not None else self.colors
        parts = [normals, verts, clip[..., 3:]]
        if self.texture is None:
            if albedo is None:
                albedo = torch.full((1, V, 3), 0.75, dtype=verts.dtype, device=verts.device)
            albedo = _as_batch("colors", albedo, 3).to(verts)
            parts.append(albedo.expand(B, -1, -1))
        attr = torch.cat(parts, -1)  # [B, V, 7 (+3)]
        C = attr.shape[-1]
        # Shade only covered pixels (a face fills a fraction of the frame): gather the covered rast rows once
        # and interpolate, shade and differentiate in [N, C], never through full-image feature maps.
        flat = (rast[..., 3] > 0).reshape(-1).nonzero().squeeze(1)  # [N] into B*H*W
        rc = rast.reshape(-1, 4).index_select(0, flat)  # [N, 4], differentiable in u, v, z/w
        T = tri.shape[0]
        if B == 1:
            f = ops.interpolate(attr, rc.view(1, 1, -1, 4), tri, backend=be).view(-1, C)
        elif rc.dtype == torch.float64 or B * T <= MAX_TRIANGLES[torch.float32]:
            # One call for the whole batch: image b's ids move to rows b*T.. of a batch-stacked triangle list
            # (exact: the ids stay integers representable in the float type).
            ids = rc[:, 3:].detach() + (flat // (H * W) * T).to(rc.dtype).unsqueeze(1)
            rcb = torch.cat([rc[:, :3], ids], 1).view(1, 1, -1, 4)
            f = ops.interpolate(attr.reshape(1, B * V, C), rcb, self._stacked(tri, B, V), backend=be)
            f = f.view(-1, C)
        else:
            f = ops.interpolate(attr, rast, tri, backend=be).view(-1, C).index_select(0, flat)
        n, P = f[:, 0:3], f[:, 3:6]
        if self.texture is None:
            alb = f[:, 7:10]
        else:
            uv = ops.interpolate(self.uvs.to(verts), rast, self.uv_triangles.to(verts.device), backend=be)
            tex = self.texture.to(verts)
            tex = tex.unsqueeze(0) if tex.dim() == 3 else tex
            tex = tex[..., :3].permute(0, 3, 1, 2).expand(B, -1, -1, -1)
            grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1)
            alb = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)
            alb = alb.permute(0, 2, 3, 1).reshape(-1, 3).index_select(0, flat)
        view = (
            (self.camera.eye.to(verts) - P)
            if self.camera.kind == "perspective"
            else (-self.camera.forward).to(verts).expand_as(P)
        )
        rgb = self.lights.shade(alb, n, view)
        bg = self.background.to(verts)
        # In place into a fresh (non-view: no CopySlices in backward) background image, no clone.
        rgba = torch.cat([bg, bg.new_zeros(1)]).expand(B * H * W, 4).contiguous()
        rgba = rgba.index_put_((flat,), torch.cat([rgb, rgb.new_ones(rgb.shape[0], 1)], -1)).view(B, H, W, 4)
        if self.antialias:
            rgba = ops.antialias(rgba, rast, clip, tri, backend=be)
        if s > 1:
            rgba = F.avg_pool2d(rgba.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)

        # depth, normal and triangle_id are built on first access (a loss on the image never pays for them),
        # under the grad mode of this call.
        grad_mode = torch.is_grad_enabled()

        def depth():
            with torch.set_grad_enabled(grad_mode):
                d = torch.index_put(f.new_zeros(B * H * W, 1), (flat,), f[:, 6:7]).view(B, H, W, 1)
                return F.avg_pool2d(d.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1) if s > 1 else d

        def normal():
            with torch.set_grad_enabled(grad_mode):
                nm = torch.index_put(f.new_zeros(B * H * W, 3), (flat,), F.normalize(n, dim=-1))
                nm = nm.view(B, H, W, 3)
                if s > 1:
                    nm = F.avg_pool2d(nm.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)
                    nm = F.normalize(nm, dim=-1)
                return nm

        def triangle_id():
            tid = rast[..., 3].detach().round().to(torch.int64) - 1
            return tid[:, s // 2 :: s, s // 2 :: s] if s > 1 else tid

        # Contiguous maps: a loss reduces them several times faster than strided views of rgba.
        return _LazyRenderResult(
            image=rgba[..., :3].contiguous(),
            alpha=rgba[..., 3:].contiguous(),
            rast=rast,
            _make={"depth": depth, "normal": normal, "triangle_id": triangle_id},
        )

    @staticmethod
    def _stacked(tri: torch.Tensor, B: int, V: int) -> torch.Tensor:
        """``[B*T, 3]``: tri repeated B times, copy b indexing vertices b*V.. of batch-stacked vertices."""
        off = torch.arange(B, dtype=torch.int32, device=tri.device).mul_(V).view(B, 1, 1)
        return (tri.unsqueeze(0) + off).reshape(-1, 3)
