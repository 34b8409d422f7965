"""Rendering: cameras, lights and the differentiable :class:`Renderer` (deform -> normals -> rasterize ->
interpolate -> shade -> antialias) built on the facecore ops. Shading is in linear light; images
become sRGB only when quantised to uint8 (:mod:`facecore.render.color`)."""

from .camera import Camera, intrinsics_projection, look_at
from .color import linear_to_srgb, srgb_to_linear, to_uint8
from .lights import Lights
from .renderer import Renderer, RenderResult

__all__ = ["Camera", "Lights", "RenderResult", "Renderer", "intrinsics_projection", "linear_to_srgb",
           "look_at", "srgb_to_linear", "to_uint8"]
