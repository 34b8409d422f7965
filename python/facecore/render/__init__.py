"""Rendering: cameras, lights and the differentiable :class:`Renderer` (deform -> normals -> rasterize ->
interpolate -> shade -> antialias) built on the facecore ops."""

from .camera import Camera, intrinsics_projection, look_at
from .lights import Lights
from .renderer import Renderer, RenderResult

__all__ = ["Camera", "Lights", "RenderResult", "Renderer", "intrinsics_projection", "look_at"]
