"""``render_batch``: sampled parameters -> rendered faces with exact labels, batched on the rig's device.

    params [B, 61] + identity [B, I] --deform--> verts --camera [B, 4, 4]--> clip --rasterize--> rast
        --interpolate (covered pixels only)--> normal, position, albedo --shade (batched Lights)-->
        RGB over the background --antialias--> linear image --sensor--> sRGB uint8

Everything random (identity, appearance, camera, lights, background, sensor) comes from per-sample
generators keyed by ``(seed, index0 + i)`` (:mod:`facecore.synth.prior`), and all per-sample
arithmetic is independent of the batch, so sample i of a batch is byte-identical to sample i rendered
alone. See :func:`render_batch` for the fields of the result.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .. import ops
from . import scene as scn
from .identity import deform_batch, num_identity, sample_appearance, sample_identity, vertex_albedo
from .landmarks import landmark_indices, project, visibility
from .sensor import _K_BG, apply_sensor, make_backgrounds, sensor_uniforms

_RIGS: dict[str, object] = {}


def resolve_rig(rig):
    """A FaceRig, or anything :func:`facecore.rig.load_rig` takes (a built-in rig name, a rig file, a
    glTF, an OBJ or ICT-FaceKit folder), loaded once per process."""
    from ..rig import BUILTIN_RIGS, FaceRig, load_rig

    if isinstance(rig, FaceRig):
        return rig
    if isinstance(rig, (str, Path)):
        key = str(rig)
        if key not in _RIGS:
            try:
                r = load_rig(key)
            except FileNotFoundError:
                raise ValueError(f"rig must be a FaceRig, a built-in rig name ({', '.join(BUILTIN_RIGS)}) "
                                 f"or an existing rig file or folder, got {key!r}") from None
            r.metadata.setdefault("name", key)
            _RIGS[key] = r
        return _RIGS[key]
    raise ValueError(f"rig must be a FaceRig or a built-in rig name, got {type(rig).__name__}")


def rig_name(rig) -> str:
    return str(rig.metadata.get("name", "custom"))


def _check_params(params, device) -> torch.Tensor:
    if not isinstance(params, torch.Tensor):
        try:
            params = torch.as_tensor(np.asarray(params, dtype=np.float32))
        except (TypeError, ValueError):
            raise ValueError(f"params must be a [B, 61] tensor, got {type(params).__name__}") from None
    if params.dim() == 1:
        params = params.unsqueeze(0)
    if params.dim() != 2 or params.shape[1] != 61 or params.shape[0] == 0:
        raise ValueError(f"params must have shape [B, 61] (B >= 1) or [61], got {list(params.shape)}")
    if not params.is_floating_point():
        raise ValueError(f"params must be floating point, got {params.dtype}")
    if not bool(torch.isfinite(params).all()):
        bad = (~torch.isfinite(params)).nonzero()[0].tolist()
        raise ValueError(f"params contains NaN or infinite values (first at row {bad[0]}, channel {bad[1]})")
    return params.to(device=device, dtype=torch.float32).contiguous()


def _resolution(resolution) -> tuple[int, int]:
    if isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool):
        resolution = (int(resolution), int(resolution))
    try:
        H, W = (int(r) for r in resolution)
    except (TypeError, ValueError):
        raise ValueError(f"resolution must be an int or (height, width), got {resolution!r}") from None
    if not (4 <= H <= 8192 and 4 <= W <= 8192):
        raise ValueError(f"resolution must be between 4 and 8192 pixels per side, got {(H, W)}")
    return H, W


def _check_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 0:
        raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    return int(v)


def _transform(M: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``[B, 4, 4] x [B, V, 3] -> [B, V, 4]`` written out elementwise (batch-independent sums)."""
    M = M.to(p)[:, None]
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    return torch.stack(
        [M[..., i, 0] * x + M[..., i, 1] * y + M[..., i, 2] * z + M[..., i, 3] for i in range(4)], -1
    )


def _per_sample(x, B: int, dev) -> torch.Tensor:
    """A scalar or ``[B]`` light parameter as ``[B]`` float32."""
    return torch.as_tensor(x).to(dev, torch.float32).reshape(-1).expand(B).clone()


def _shade_layer(rast: torch.Tensor, tri: torch.Tensor, attr: torch.Tensor, eye: torch.Tensor, lights):
    """Interpolate ``attr`` (normal, position, w, albedo) at the covered pixels of ``rast`` and shade
    them -> (flat pixel indices, normals, w, linear RGB). Only covered pixels are shaded (a face
    fills part of the frame), as facecore.render.Renderer does."""
    B, H, W, _ = rast.shape
    C = attr.shape[-1]
    flat = (rast[..., 3] > 0).reshape(-1).nonzero().squeeze(1)
    batch = flat // (H * W)
    # the whole image (the kernel skips background pixels), then the covered rows: cheaper than gathering
    # the covered rast rows into one stacked mesh first, and the same values
    f = ops.interpolate(attr, rast, tri).view(-1, C).index_select(0, flat)
    n, P, w, alb = f[:, 0:3], f[:, 3:6], f[:, 6], f[:, 7:10]
    view = eye.index_select(0, batch) - P
    return flat, n, w, lights.shade(alb, n, view, batch=batch).to(torch.float32)


def _composite_alpha(rgb_img, rast, clip, tri_a, opacity, attr, eye, lights) -> torch.Tensor:
    """One semi-transparent layer (the alpha groups' nearest surface) over the opaque image ``[B, H, W,
    3]``, where it lies in front of the opaque surface: ``rgb = a * layer + (1 - a) * below``. Labels
    (mask, depth, landmarks) stay those of the opaque surface."""
    B, H, W, _ = rgb_img.shape
    rast_a = ops.rasterize(clip, tri_a, (H, W))
    covered = rast[..., 3] > 0
    front = (rast_a[..., 3] > 0) & (~covered | (rast_a[..., 2] < rast[..., 2]))
    rast_a = rast_a * front.unsqueeze(-1)  # pixels behind the opaque surface count as uncovered
    flat, _, _, rgb = _shade_layer(rast_a, tri_a, attr, eye, lights)
    tid = rast_a.reshape(-1, 4)[flat, 3].round().long() - 1
    a = opacity.index_select(0, tid).unsqueeze(1)
    out = rgb_img.reshape(B * H * W, 3)
    below = out.index_select(0, flat)
    return out.index_put((flat,), a * rgb + (1 - a) * below).view(B, H, W, 3)


def render_batch(
    params, rig, scene, resolution=128, seed: int = 0, *, index0: int = 0, identity=None, maps: bool = False
) -> dict:
    """Render ``params [B, 61]`` (:data:`facecore.arkit.NAMES` order) through ``rig`` in ``scene``.

    ``rig``: a :class:`facecore.rig.FaceRig` or a built-in name (``"ict"``, ``"stylized"``); rendering runs
    on its device. ``scene``: a :class:`Scene`, a preset name (:data:`PRESETS`), a scene JSON path, a dict,
    or None (``"clean"``). ``resolution``: int or ``(H, W)``. Sample i uses the generators of
    ``(seed, index0 + i)``. ``identity``: ``[B, I]`` (or ``[I]``) absolute coefficients in
    ``rig.identity_names`` order; None samples them (s.d. ``scene.identity_scale``).

    Returns a dict (tensors on the rig's device unless noted):

    * ``image`` uint8 ``[B, H, W, 3]`` sRGB; ``mask`` bool ``[B, H, W]`` (a triangle is drawn there);
    * ``params`` float32 ``[B, 61]``; ``identity`` float32 ``[B, I]``; ``skin_tone`` ``[B, 3]`` linear;
    * ``camera``: ``intrinsics [B, 3, 3]`` (pixels, x right, y down, pixel centres at i + 0.5),
      ``extrinsics [B, 4, 4]`` world -> camera (OpenCV axes: x right, y down, z forward; world = rig
      units, y up, the face toward +z), ``projection [B, 4, 4]`` world -> OpenGL clip space exactly as
      rasterized, ``eye [B, 3]``, ``near``/``far [B]``; pixel = K (R X + t) / z;
    * ``lights``: ``model``, ``ambient [B, 3]``, ``directions``/``colors [B, L, 3]`` (towards the
      lights, world space), ``sh [B, 9, 3]`` (or None), ``specular``/``shininess [B]``;
    * ``background`` (list of kinds), ``sensor`` (per-sample effect parameters);
    * ``landmarks2d`` float32 ``[B, 68, 2]`` pixels and ``landmarks_visible`` bool ``[B, 68]``
      (:mod:`facecore.synth.landmarks`; NaN / False for a rig without ``metadata["landmarks68"]``),
      ``landmarks3d [B, 68, 3]`` posed world positions;
    * with ``maps=True``: ``depth`` float32 ``[B, H, W]`` (distance along the viewing axis, 0 on the
      background) and ``normal`` ``[B, H, W, 3]`` (unit world-space normals, 0 on the background);
    * ``rig`` (its name), ``scene`` (its name), ``seed``, ``index`` int64 ``[B]``.
    """
    rig = resolve_rig(rig)
    sc = scn.resolve_scene(scene)
    H, W = _resolution(resolution)
    seed = _check_int("seed", seed)
    index0 = _check_int("index0", index0)
    dev = rig.device
    params = _check_params(params, dev)
    if rig.dtype != torch.float32:
        raise ValueError(f"rig must be float32 (rig.to(dtype=torch.float32)), got {rig.dtype}")
    B = params.shape[0]
    indices = range(index0, index0 + B)
    n_id = num_identity(rig)
    if identity is None:
        coeffs = sample_identity(rig, B, seed, scale=sc.identity_scale, index0=index0)
    else:
        coeffs = torch.as_tensor(identity, dtype=torch.float32, device=dev)
        if coeffs.dim() == 1:
            coeffs = coeffs.unsqueeze(0).expand(B, -1)
        if coeffs.shape != (B, n_id):
            raise ValueError(
                f"identity must have shape [B={B}, I={n_id}] or [{n_id}], got {list(coeffs.shape)}"
            )
        if not bool(torch.isfinite(coeffs).all()):
            raise ValueError("identity contains NaN or infinite values")
    appearance = sample_appearance(B, seed, tone=sc.skin_tone, variation=sc.albedo_variation, index0=index0)
    albedo = vertex_albedo(rig, appearance)  # [B, V, 3]
    verts = deform_batch(params, rig, coeffs if n_id else None)  # [B, V, 3]

    su = scn._scene_uniforms(seed, indices, sc.lighting)
    cam = {k: v.to(dev) for k, v in scn.sample_cameras(sc.camera, su[:, :4], rig, (H, W)).items()}
    lights = scn.sample_lights(sc.lighting, su[:, 4:])
    bu = sensor_uniforms(seed, indices)
    background, bg_kinds = make_backgrounds(sc.background, bu[:, :_K_BG], (H, W), dev)

    mats = scn.materials_for(rig, sc)
    tri = scn.drawn_triangles(rig, mats).to(dev)
    tri_a, opacity = scn.blended_triangles(rig, mats)
    tri_a = tri_a.to(dev)
    clip = _transform(cam["projection"], verts).contiguous()  # [B, V, 4]
    normals = ops.vertex_normals(verts, torch.cat([tri, tri_a]) if tri_a.shape[0] else tri)
    attr = torch.cat([normals, verts, clip[..., 3:], albedo.expand(B, -1, -1)], -1)  # [B, V, 10]
    rast = ops.rasterize(clip, tri, (H, W))
    flat, n, w, rgb = _shade_layer(rast, tri, attr, cam["eye"], lights)
    # colour only (the mask and the other labels come from rast): the face over the background, its
    # silhouette antialiased (channels are independent), then the alpha layer
    rgb_img = background.reshape(B * H * W, 3).index_put((flat,), rgb).view(B, H, W, 3)
    rgb_img = ops.antialias(rgb_img, rast, clip, tri)
    if tri_a.shape[0]:
        rgb_img = _composite_alpha(rgb_img, rast, clip, tri_a, opacity.to(dev), attr, cam["eye"], lights)
    image, sensor_info = apply_sensor(rgb_img, sc.sensor, bu[:, _K_BG:], seed, indices)

    triangle_id = rast[..., 3].round().to(torch.int64) - 1
    out = {
        "image": image,
        "mask": triangle_id >= 0,
        "params": params,
        "identity": coeffs,
        "skin_tone": appearance["skin_tone"].to(dev),
        "camera": cam,
        "lights": {
            "model": lights.model,
            # Lights may drop a batch dim of 1; the record always has one (B = 1 included).
            "ambient": lights.ambient.to(dev, torch.float32).reshape(B, 3),
            "directions": lights.directions.to(dev, torch.float32).reshape(B, -1, 3),
            "colors": lights.colors.to(dev, torch.float32).reshape(B, -1, 3),
            "sh": None if lights.sh is None else lights.sh.to(dev, torch.float32).reshape(B, -1, 3),
            "specular": _per_sample(lights.specular, B, dev),
            "shininess": _per_sample(lights.shininess, B, dev),
        },
        "background": bg_kinds,
        "sensor": sensor_info,
        "rig": rig_name(rig),
        "scene": sc.name,
        "seed": seed,
        "index": torch.arange(index0, index0 + B, dtype=torch.int64, device=dev),
    }
    depth = torch.zeros(B * H * W, device=dev).index_put((flat,), w).view(B, H, W)
    lm = landmark_indices(rig, required=False)
    if lm is not None:
        xy = project(clip[:, lm], (H, W))
        out["landmarks2d"] = xy
        out["landmarks3d"] = verts[:, lm]
        out["landmarks_visible"] = visibility(xy, triangle_id, tri, lm, depth, clip[:, lm, 3])
    else:
        out["landmarks2d"] = torch.full((B, 68, 2), math.nan, device=dev)
        out["landmarks3d"] = torch.full((B, 68, 3), math.nan, device=dev)
        out["landmarks_visible"] = torch.zeros(B, 68, dtype=torch.bool, device=dev)
    if maps:
        nm = torch.nn.functional.normalize(n, dim=-1)
        out["depth"] = depth
        out["normal"] = torch.zeros(B * H * W, 3, device=dev).index_put((flat,), nm).view(B, H, W, 3)
    return out
