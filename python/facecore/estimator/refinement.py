"""``refine``: analysis-by-synthesis -- optimise the 61 parameters so facecore's render matches the images.

One iteration renders every image in one batched call (deform -> vertex normals -> rasterize ->
interpolate -> shade -> antialias, the :mod:`facecore.ops` kernels with their gradients), scores it and
takes an Adam step; parameters are clamped to their valid ranges after every step. Per image ``b``:

    loss_b = w_photo * mean_{p in M_b} |I_b(p) - R_b(p)|        (linear light; L1, or squared with "l2")
           + w_sil   * mean_p (alpha_b(p) - mask_b(p))^2          (when ``mask`` is given)
           + w_lmk   * mean_k v_bk |x_bk(theta) - l_bk|^2 / iod_b^2   (when ``landmarks`` are given)
           + w_prior * mean_c ((theta_bc - mu_bc) / sigma_bc)^2 / 2   (when ``prior = (mu, log_sigma)``)

``R_b`` is the rendered face composited over the image itself, so pixels the face does not cover cost
nothing and the antialiased silhouette edge carries the gradient that moves the outline; ``M_b`` is the
given mask (else every pixel). ``x_bk`` are the rig's 68 landmarks projected with the image's camera
(:mod:`facecore.synth.landmarks`), ``v_bk`` their visibility, ``iod_b`` the inter-ocular distance of the
target landmarks. Optionally, per image, a light gain ``g``, an ambient offset ``a`` and an RGB albedo
scale ``s`` are optimised too: ``colour = g * shade(s * albedo) + a * s * albedo``.

Each image's loss depends only on its own variables, and Adam is elementwise, so an image refines the
same way alone or in a batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import arkit, ops
from ..ops.rasterize import MAX_TRIANGLES

__all__ = ["RefineResult", "RefineWeights", "refine"]

_EYE_CORNERS = (36, 45)


@dataclasses.dataclass
class RefineWeights:
    """Weights of the loss terms (module docstring). ``init``: a weak pull toward ``init_params`` (mean
    squared difference) that keeps channels the image cannot see where they started; 0 turns it off."""

    photometric: float = 1.0
    silhouette: float = 1.0
    landmarks: float = 0.5
    prior: float = 0.01
    init: float = 0.01

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"RefineWeights.{f.name} must be a finite number >= 0, got {v!r}")


@dataclasses.dataclass
class RefineResult:
    """``params [B, 61]`` refined (detached, in range); ``loss [B]`` the final total per image (at the
    returned parameters); ``history [iters + 1, B]`` the total per image before each step and at the end;
    ``terms``: the final per-image value of each active term; ``light_gain``/``ambient [B]`` and
    ``albedo_scale [B, 3]`` as optimised (1, 0, 1 when not)."""

    params: torch.Tensor
    loss: torch.Tensor
    history: torch.Tensor
    terms: dict[str, torch.Tensor]
    light_gain: torch.Tensor
    ambient: torch.Tensor
    albedo_scale: torch.Tensor


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _images(images, device) -> torch.Tensor:
    """uint8 sRGB or float linear ``[B, H, W, 3]`` -> float32 linear."""
    from ..render.color import srgb_to_linear

    t = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[-1] != 3 or t.shape[0] == 0:
        raise ValueError(f"images must be [B, H, W, 3] (uint8 sRGB or float linear), got {list(t.shape)}")
    if t.dtype == torch.uint8:
        return srgb_to_linear(t.to(device, torch.float32) / 255.0)
    if not t.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {t.dtype}")
    return t.to(device, torch.float32)


def _batched(name: str, x, B: int, tail: tuple[int, ...], device, dtype=torch.float32) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() == len(tail):
        t = t.unsqueeze(0).expand(B, *tail)
    if tuple(t.shape) != (B, *tail):
        want = ", ".join(str(d) for d in tail)
        raise ValueError(f"{name} must have shape [B={B}, {want}] or [{want}], got {list(t.shape)}")
    t = t.to(device, dtype)
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _camera(camera, B: int, device) -> tuple[Any, torch.Tensor]:
    """-> (world -> clip function, eye [B, 3])."""
    from ..render import Camera

    if isinstance(camera, Camera):
        eye = camera.eye.to(device, torch.float32).reshape(1, 3).expand(B, 3)
        return (lambda p: camera.clip(p)), eye
    if isinstance(camera, Mapping) and "projection" in camera:
        P = _batched("camera['projection']", camera["projection"], B, (4, 4), device)
        if camera.get("eye") is not None:
            eye = _batched("camera['eye']", camera["eye"], B, (3,), device)
        else:  # the camera centre is the null vector of the projection
            eye = torch.linalg.solve(P[:, :3, :3].double(), -P[:, :3, 3:].double()).squeeze(-1).float()

        def clip(p: torch.Tensor) -> torch.Tensor:
            return torch.einsum("bij,bnj->bni", P[..., :3], p) + P[:, None, :, 3]
        return clip, eye
    raise ValueError("camera must be a facecore.render.Camera or a dict with 'projection' [B, 4, 4] (and "
                     "'eye' [B, 3]), as in render_batch's result['camera']")


def _lights(lights, device):
    from ..render import Lights

    if lights is None:
        return Lights()
    if isinstance(lights, Lights):
        return lights
    if isinstance(lights, Mapping):
        keys = ("ambient", "directions", "colors", "model", "specular", "shininess", "sh")
        kw = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in lights.items()
              if k in keys and v is not None}
        return Lights(**kw)
    raise ValueError(f"lights must be a facecore.render.Lights or render_batch's result['lights'], got "
                     f"{type(lights).__name__}")


def _triangles(rig, triangles) -> torch.Tensor:
    if triangles is not None:
        return torch.as_tensor(triangles).to(rig.device, torch.int32).contiguous()
    from ..synth import Scene, drawn_triangles, materials_for

    # The data engine's default materials (ICT's occlusion shells hidden), so renders match its images.
    return drawn_triangles(rig, materials_for(rig, Scene())).to(rig.device, torch.int32).contiguous()


# ---------------------------------------------------------------------------------------------
# The batched differentiable render
# ---------------------------------------------------------------------------------------------


class _Scene:
    """Everything fixed during the optimisation; :meth:`render` maps parameters to images."""

    def __init__(self, rig, target, clip, eye, lights, albedo, identity, tri):
        self.rig, self.target, self.clip_of, self.eye = rig, target, clip, eye
        self.lights, self.albedo, self.identity, self.tri = lights, albedo, identity, tri
        B, H, W, _ = target.shape
        self.B, self.H, self.W, self.V, self.T = B, H, W, rig.num_vertices, tri.shape[0]
        off = torch.arange(B, dtype=torch.int32, device=tri.device).mul_(self.V).view(B, 1, 1)
        self.stacked = (tri.unsqueeze(0) + off).reshape(-1, 3)  # [B*T, 3]: image b's copy indexes rows b*V..
        self.one_call = B * self.T <= MAX_TRIANGLES[torch.float32]
        lm = rig.metadata.get("landmarks68")
        if lm is None:
            self.lm = None
        else:
            from ..synth import landmark_indices

            self.lm = landmark_indices(rig)


    def posed(self, params: torch.Tensor) -> torch.Tensor:
        from .metrics import posed_vertices

        return posed_vertices(params, self.rig, self.identity)

    def render(self, params, gain, ambient, albedo_scale):
        """-> (composited linear image [B, H, W, 3], antialiased alpha [B, H, W], clip-space verts)."""
        B, H, W, V, T = self.B, self.H, self.W, self.V, self.T
        verts = self.posed(params)
        clip = self.clip_of(verts).contiguous()
        normals = ops.vertex_normals(verts, self.tri)
        rast = ops.rasterize(clip, self.tri, (H, W))
        flat = (rast[..., 3] > 0).reshape(-1).nonzero().squeeze(1)  # covered pixels only
        rc = rast.reshape(-1, 4).index_select(0, flat)
        alb = self.albedo * albedo_scale[:, None, :]  # [B, V, 3]
        attr = torch.cat([normals, verts, alb], -1)
        C = attr.shape[-1]
        batch = flat // (H * W)
        if self.one_call:
            ids = rc[:, 3:].detach() + (batch * T).to(rc.dtype).unsqueeze(1)
            f = ops.interpolate(attr.reshape(1, B * V, C), torch.cat([rc[:, :3], ids], 1).view(1, 1, -1, 4),
                                self.stacked).view(-1, C)
        else:
            f = ops.interpolate(attr, rast, self.tri).view(-1, C).index_select(0, flat)
        n, P, a = f[:, 0:3], f[:, 3:6], f[:, 6:9]
        view = self.eye.index_select(0, batch) - P
        shaded = self.lights.shade(a, n, view, batch=batch).to(torch.float32)
        rgb = gain.index_select(0, batch)[:, None] * shaded + ambient.index_select(0, batch)[:, None] * a
        # Composite over the image itself: uncovered pixels match by construction.
        base = torch.cat([self.target, self.target.new_zeros(B, H, W, 1)], -1).reshape(B * H * W, 4)
        rgba = base.index_put((flat,), torch.cat([rgb, rgb.new_ones(rgb.shape[0], 1)], -1)).view(B, H, W, 4)
        rgba = ops.antialias(rgba, rast, clip, self.tri)
        return rgba[..., :3], rgba[..., 3], verts

    def landmarks(self, verts: torch.Tensor) -> torch.Tensor:
        from ..synth import project_landmarks as project

        return project(self.clip_of(verts[:, self.lm]), (self.H, self.W))


# ---------------------------------------------------------------------------------------------
# refine
# ---------------------------------------------------------------------------------------------


def refine(images, init_params, rig, *, camera, iters: int = 50, lr: float = 0.02, prior=None,
           landmarks=None, landmarks_visible=None, mask=None, lights=None, albedo=None, identity=None,
           triangles=None, weights: RefineWeights | Mapping[str, float] | None = None, loss: str = "l1",
           optimize_lighting: bool = True, optimize_albedo: bool = True, channels=None) -> RefineResult:
    """Refine ``init_params [B, 61]`` so the render of ``rig`` matches ``images`` (module docstring).

    ``images``: ``[B, H, W, 3]`` uint8 sRGB (as :func:`facecore.synth.render_batch` writes) or float
    linear. ``rig``: a FaceRig or built-in rig name. ``camera``: ``render_batch``'s ``result["camera"]``
    (``projection [B, 4, 4]``, ``eye [B, 3]``) or a :class:`facecore.render.Camera`. ``prior``:
    ``(mean, log_std)`` ``[B, 61]`` each (an :class:`Estimator`'s output). ``landmarks``: ``[B, 68, 2]``
    pixels (x right, y down), ``landmarks_visible [B, 68]`` bool. ``mask``: ``[B, H, W]`` face mask
    (bool or float). ``lights``: :class:`facecore.render.Lights` or ``result["lights"]`` (default
    ``Lights()``). ``albedo``: per-vertex linear albedo ``[V, 3]`` / ``[B, V, 3]`` (default the rig's
    colours). ``identity``: ``[B, I]`` identity coefficients of the rig (default the rig's own).
    ``triangles``: the drawn triangles (default: the data engine's, hidden shells left out).
    ``channels``: names (any convention) or group names to optimise (default all 61). ``loss``:
    ``"l1"`` or ``"l2"`` photometric. Adam with learning rate ``lr``; ``iters`` steps.
    """
    from ..synth import resolve_rig

    rig = resolve_rig(rig)
    dev = rig.device
    if rig.dtype != torch.float32:
        raise ValueError(f"rig must be float32 (rig.to(dtype=torch.float32)), got {rig.dtype}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be an integer >= 0, got {iters!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and np.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if loss not in ("l1", "l2"):
        raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}")
    w = weights if isinstance(weights, RefineWeights) else RefineWeights(**dict(weights or {}))

    target = _images(images, dev)
    B, H, W, _ = target.shape
    init = _batched("init_params", init_params, B, (arkit.NUM_CHANNELS,), dev)
    lo = torch.tensor(arkit.LOW, device=dev)
    hi = torch.tensor(arkit.HIGH, device=dev)
    init = torch.maximum(torch.minimum(init, hi), lo)
    clip_of, eye = _camera(camera, B, dev)
    V = rig.num_vertices
    if albedo is None:
        base = rig.colors if rig.colors is not None else torch.full((V, 3), 0.75)
        albedo = base
    alb = _batched("albedo", albedo, B, (V, 3), dev)
    ident = None
    if identity is not None:
        from ..synth import num_identity

        ident = _batched("identity", identity, B, (num_identity(rig),), dev)
    scene = _Scene(rig, target, clip_of, eye, _lights(lights, dev), alb, ident, _triangles(rig, triangles))

    m = None if mask is None else _batched("mask", mask, B, (H, W), dev)
    lmk = vis = iod = None
    if landmarks is not None and w.landmarks > 0:
        if scene.lm is None:
            raise ValueError("landmarks given but the rig has no metadata['landmarks68']")
        lmk = _batched("landmarks", landmarks, B, (68, 2), dev)
        vis = (torch.ones(B, 68, device=dev) if landmarks_visible is None
               else _batched("landmarks_visible", landmarks_visible, B, (68,), dev))
        iod = (lmk[:, _EYE_CORNERS[0]] - lmk[:, _EYE_CORNERS[1]]).norm(dim=-1).clamp_min(1.0)
    mu = inv_std = None
    if prior is not None and w.prior > 0:
        if not isinstance(prior, (tuple, list)) or len(prior) != 2:
            raise ValueError("prior must be a pair (mean [B, 61], log_std [B, 61])")
        mu = _batched("prior mean", prior[0], B, (arkit.NUM_CHANNELS,), dev)
        inv_std = torch.exp(-_batched("prior log_std", prior[1], B, (arkit.NUM_CHANNELS,), dev))

    free = torch.ones(arkit.NUM_CHANNELS, device=dev)
    if channels is not None:
        from .pseudo import _channel_indices

        free = torch.zeros(arkit.NUM_CHANNELS, device=dev)
        free[torch.as_tensor(_channel_indices(channels), device=dev)] = 1.0

    theta = init.clone().requires_grad_(True)
    log_gain = torch.zeros(B, device=dev, requires_grad=optimize_lighting)
    amb = torch.zeros(B, device=dev, requires_grad=optimize_lighting)
    log_scale = torch.zeros(B, 3, device=dev, requires_grad=optimize_albedo)
    variables = [theta] + ([log_gain, amb] if optimize_lighting else [])
    variables += [log_scale] if optimize_albedo else []
    opt = torch.optim.Adam(variables, lr=lr)

    def objective() -> dict[str, torch.Tensor]:
        params = theta * free + init * (1 - free)
        image, alpha, verts = scene.render(params, log_gain.exp(), amb, log_scale.exp())
        terms: dict[str, torch.Tensor] = {}
        diff = image - target
        per_pixel = diff.abs().mean(-1) if loss == "l1" else diff.square().mean(-1)  # [B, H, W]
        if m is not None:
            terms["photometric"] = (per_pixel * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
        else:
            terms["photometric"] = per_pixel.flatten(1).mean(1)
        terms["photometric"] = w.photometric * terms["photometric"]
        if m is not None and w.silhouette > 0:
            terms["silhouette"] = w.silhouette * (alpha - m).square().flatten(1).mean(1)
        if lmk is not None:
            d2 = (scene.landmarks(verts) - lmk).square().sum(-1)  # [B, 68]
            terms["landmarks"] = w.landmarks * (d2 * vis).sum(1) / vis.sum(1).clamp_min(1.0) / iod.square()
        if mu is not None:
            terms["prior"] = w.prior * 0.5 * ((params - mu) * inv_std).square().mean(1)
        if w.init > 0:
            terms["init"] = w.init * (params - init).square().mean(1)
        return terms

    history = []
    for _ in range(iters):
        opt.zero_grad(set_to_none=True)
        terms = objective()
        total = torch.stack(list(terms.values())).sum(0)  # [B]
        history.append(total.detach())
        total.sum().backward()  # images are independent: the sum gives each its own gradient
        opt.step()
        with torch.no_grad():
            theta.copy_(torch.maximum(torch.minimum(theta, hi), lo))
    with torch.no_grad():
        terms = objective()
        total = torch.stack(list(terms.values())).sum(0)
    history.append(total)
    params = (theta * free + init * (1 - free)).detach()
    return RefineResult(params=params, loss=total.detach(), history=torch.stack(history),
                        terms={k: v.detach() for k, v in terms.items()}, light_gain=log_gain.detach().exp(),
                        ambient=amb.detach().clone(), albedo_scale=log_scale.detach().exp())
