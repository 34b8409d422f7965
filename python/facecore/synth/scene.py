"""Scenes: what surrounds a sampled face -- camera, lighting, background, sensor, identity range and
materials -- as documented data (``presets/<name>.json``), and its per-sample sampling.

A :class:`Scene` holds ranges; :func:`sample_cameras` / :func:`sample_lights` turn them into one camera
and one light set per sample, reproducibly from ``(seed, index)`` (stream ``STREAM_SCENE``). Every
range is ``[lo, hi]``, sampled uniformly. The keys of a preset file are exactly the fields of the
dataclasses below (unknown keys are errors, missing keys keep the defaults).

Camera model: a pinhole on the +z axis in front of the rig's face box (the bounding box of its 68
landmarks, or of its skin when it has none), looking down -z. ``fov_deg`` is the vertical field of
view; the distance makes the face box ``face_fill`` of the image height (as a face detector's crop
would); ``offset`` shifts the principal point by up to that fraction of the image in x and y (an
off-centre crop). Head pose comes from the parameters, not from the camera.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .prior import STREAM_SCENE, sample_uniforms

PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESETS: tuple[str, ...] = ("clean", "studio", "wild", "toon")
# "alpha" draws a group as one semi-transparent layer over the opaque surface ("alpha:0.3" sets its
# opacity, default DEFAULT_OPACITY); see parse_material and facecore.synth.render.
MATERIALS = ("opaque", "hidden", "alpha")
DEFAULT_OPACITY = 0.5
# Groups whose geometry is not a surface to shade: ICT-FaceKit's eye occlusion, lacrimal fluid and
# eye-blend shells and its lash cards (opaque they draw black rims around the eyes).
DEFAULT_MATERIALS = {
    "eye_occlusion": "hidden",
    "lacrimal_fluid": "hidden",
    "eye_blend": "hidden",
    "eyelashes": "hidden",
}


def _range(what: str, v, lo: float = -math.inf, hi: float = math.inf) -> tuple[float, float]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = (v, v)
    if (
        not isinstance(v, (list, tuple))
        or len(v) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    ):
        raise ValueError(f"Scene: {what} must be [lo, hi] (two numbers), got {v!r}")
    a, b = float(v[0]), float(v[1])
    if not (math.isfinite(a) and math.isfinite(b) and lo <= a <= b <= hi):
        raise ValueError(f"Scene: {what} must satisfy {lo} <= lo <= hi <= {hi}, got {v!r}")
    return a, b


@dataclass
class CameraSpec:
    fov_deg: tuple[float, float] = (14.0, 18.0)
    face_fill: tuple[float, float] = (0.6, 0.7)
    offset: float = 0.0

    def __post_init__(self):
        self.fov_deg = _range("camera.fov_deg", self.fov_deg, 1.0, 120.0)
        self.face_fill = _range("camera.face_fill", self.face_fill, 0.05, 2.0)
        self.offset = _range("camera.offset", self.offset, 0.0, 0.5)[0]


@dataclass
class LightingSpec:
    """``model`` lambert | blinn_phong | toon (``bands`` levels); ``ambient`` grey level; ``sh`` the
    strength of random order-1/2 SH environment terms relative to the ambient (0: uniform);
    ``tint`` the colour spread of ambient and lights; ``lights`` directional lights, each with an
    ``intensity``, ``azimuth_deg`` (about the camera axis, 0 = from the camera's right) and
    ``elevation_deg`` (angle from the camera axis towards the face); ``specular``, ``shininess``."""

    model: str = "lambert"
    bands: int = 3
    ambient: tuple[float, float] = (0.35, 0.35)
    sh: tuple[float, float] = (0.0, 0.0)
    tint: float = 0.0
    lights: int = 1
    intensity: tuple[float, float] = (0.7, 0.7)
    azimuth_deg: tuple[float, float] = (0.0, 360.0)
    elevation_deg: tuple[float, float] = (15.0, 30.0)
    specular: tuple[float, float] = (0.0, 0.0)
    shininess: tuple[float, float] = (32.0, 32.0)

    def __post_init__(self):
        from ..render.lights import MODELS

        if self.model not in MODELS:
            raise ValueError(f"Scene: lighting.model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if isinstance(self.bands, bool) or not isinstance(self.bands, int) or self.bands < 1:
            raise ValueError(f"Scene: lighting.bands must be a positive int, got {self.bands!r}")
        if isinstance(self.lights, bool) or not isinstance(self.lights, int) or not 0 <= self.lights <= 8:
            raise ValueError(f"Scene: lighting.lights must be an int in [0, 8], got {self.lights!r}")
        for name, lo, hi in (
            ("ambient", 0, 4),
            ("sh", 0, 4),
            ("intensity", 0, 8),
            ("azimuth_deg", -720, 720),
            ("elevation_deg", 0, 90),
            ("specular", 0, 4),
            ("shininess", 1, 10_000),
        ):
            setattr(self, name, _range(f"lighting.{name}", getattr(self, name), lo, hi))
        self.tint = _range("lighting.tint", self.tint, 0, 1)[0]


@dataclass
class BackgroundSpec:
    """``kinds``: relative weights of ``solid``, ``gradient``, ``noise`` (procedural value noise) and
    ``image`` (a random crop of an image from ``image_dir``; its weight counts only when a folder is
    given); ``brightness`` the linear grey level range; ``saturation`` how coloured backgrounds are."""

    kinds: dict[str, float] = field(default_factory=lambda: {"solid": 1.0})
    brightness: tuple[float, float] = (0.2, 0.2)
    saturation: float = 0.0
    image_dir: str | None = None

    def __post_init__(self):
        from .sensor import BACKGROUNDS

        if not isinstance(self.kinds, dict) or not self.kinds:
            raise ValueError(f"Scene: background.kinds must be a non-empty object, got {self.kinds!r}")
        for k, w in self.kinds.items():
            if k not in BACKGROUNDS:
                raise ValueError(f"Scene: unknown background kind {k!r}; expected {', '.join(BACKGROUNDS)}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
                raise ValueError(f"Scene: background.kinds[{k!r}] must be a weight >= 0, got {w!r}")
        self.brightness = _range("background.brightness", self.brightness, 0, 1)
        self.saturation = _range("background.saturation", self.saturation, 0, 1)[0]
        if self.image_dir is not None and not isinstance(self.image_dir, str):
            raise ValueError(
                f"Scene: background.image_dir must be a folder path or null, got {self.image_dir!r}"
            )


@dataclass
class SensorSpec:
    """``exposure`` gain; ``white_balance`` max per-channel gain deviation; ``saturation`` factor;
    ``blur`` Gaussian sigma in pixels; ``noise`` Gaussian read-noise s.d. (linear);
    ``jpeg`` probability of JPEG compression at a ``jpeg_quality`` in the range (sRGB, after encoding)."""

    exposure: tuple[float, float] = (1.0, 1.0)
    white_balance: float = 0.0
    saturation: tuple[float, float] = (1.0, 1.0)
    blur: tuple[float, float] = (0.0, 0.0)
    noise: tuple[float, float] = (0.0, 0.0)
    jpeg: float = 0.0
    jpeg_quality: tuple[float, float] = (90.0, 90.0)

    def __post_init__(self):
        for name, lo, hi in (
            ("exposure", 0.05, 20),
            ("saturation", 0, 4),
            ("blur", 0, 8),
            ("noise", 0, 1),
            ("jpeg_quality", 1, 100),
        ):
            setattr(self, name, _range(f"sensor.{name}", getattr(self, name), lo, hi))
        self.white_balance = _range("sensor.white_balance", self.white_balance, 0, 0.9)[0]
        self.jpeg = _range("sensor.jpeg", self.jpeg, 0, 1)[0]


_SECTIONS = {
    "camera": CameraSpec,
    "lighting": LightingSpec,
    "background": BackgroundSpec,
    "sensor": SensorSpec,
}


@dataclass
class Scene:
    """A domain: camera, lighting, background and sensor ranges, ``identity_scale`` (s.d. of identity
    coefficients), ``skin_tone`` (span of :data:`facecore.synth.identity.SKIN_TONES`),
    ``albedo_variation`` (s.d. of the smooth albedo field), ``materials`` (rig group -> ``opaque``,
    ``hidden`` or ``alpha[:opacity]`` (:func:`parse_material`), over :data:`DEFAULT_MATERIALS` and the
    rig's ``metadata["materials"]``) and the name of
    the parameter ``prior`` the preset pairs with."""

    name: str = "custom"
    description: str = ""
    prior: str = "default"
    camera: CameraSpec = field(default_factory=CameraSpec)
    lighting: LightingSpec = field(default_factory=LightingSpec)
    background: BackgroundSpec = field(default_factory=BackgroundSpec)
    sensor: SensorSpec = field(default_factory=SensorSpec)
    identity_scale: float = 1.0
    skin_tone: tuple[float, float] = (0.0, 1.0)
    albedo_variation: float = 0.05
    materials: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for key, cls in _SECTIONS.items():
            v = getattr(self, key)
            if isinstance(v, dict):
                setattr(self, key, _section(cls, v, key))
            elif not isinstance(v, cls):
                raise ValueError(
                    f"Scene: {key} must be a {cls.__name__} or an object, got {type(v).__name__}"
                )
        self.identity_scale = _range("identity_scale", self.identity_scale, 0, 5)[0]
        self.skin_tone = _range("skin_tone", self.skin_tone, 0, 1)
        self.albedo_variation = _range("albedo_variation", self.albedo_variation, 0, 1)[0]
        if not isinstance(self.materials, dict):
            raise ValueError(f"Scene: materials must be an object group -> material, got {self.materials!r}")
        for g, m in self.materials.items():
            parse_material(m, f"Scene: materials[{g!r}]")
        from .prior import get_prior

        get_prior(self.prior)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "scene") -> Scene:
        if not isinstance(d, dict):
            raise ValueError(f"{source}: a scene must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"$comment"})
        if unknown:
            raise ValueError(f"{source}: unknown scene keys {unknown}; expected {sorted(names)}")
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _section(cls, d: dict, key: str):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names - {"$comment"})
    if unknown:
        raise ValueError(f"Scene: unknown {key} keys {unknown}; expected {sorted(names)}")
    return cls(**{k: v for k, v in d.items() if k in names})


def load_preset(name: str | Path) -> Scene:
    """The preset ``name`` (one of :data:`PRESETS`) or a scene JSON file path."""
    if isinstance(name, Scene):
        return name
    if isinstance(name, str) and name in PRESETS:
        path = PRESET_DIR / f"{name}.json"
    elif isinstance(name, (str, Path)) and str(name).endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"load_preset: no such scene file: {path}")
    else:
        raise ValueError(
            f"unknown preset {name!r}; expected one of {', '.join(PRESETS)} or a .json scene file"
        )
    from ..io.errors import FormatError

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FormatError(f"cannot read the scene ({e})", path=path) from None
    return Scene.from_dict(data, source=str(path))


def resolve_scene(scene) -> Scene:
    """``scene``: a Scene, a preset name, a JSON path, a dict, or None (the ``clean`` preset)."""
    if scene is None:
        return load_preset("clean")
    if isinstance(scene, Scene):
        return scene
    if isinstance(scene, dict):
        return Scene.from_dict(scene)
    if isinstance(scene, (str, Path)):
        return load_preset(scene)
    raise ValueError(
        f"scene must be a Scene, a preset name ({', '.join(PRESETS)}), a .json path or a dict, "
        f"got {type(scene).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# Per-sample sampling
# ---------------------------------------------------------------------------------------------
_K_CAMERA, _K_LIGHT_BASE, _K_PER_LIGHT = 4, 6 + 24, 6


def _scene_uniforms(seed: int, indices, lighting: LightingSpec) -> np.ndarray:
    return sample_uniforms(seed, indices, STREAM_SCENE, _K_CAMERA + _K_LIGHT_BASE + _K_PER_LIGHT * 8)


def _lerp(r, u):
    return r[0] + (r[1] - r[0]) * u


def face_box(rig) -> tuple[np.ndarray, float]:
    """Centre ``[3]`` and height of the rig's face box (68 landmarks, else the skin vertices)."""
    from .landmarks import landmark_indices

    pts = rig.neutral.detach().double().cpu()
    idx = landmark_indices(rig, required=False)
    if idx is not None:
        pts = pts[idx.cpu()]
    elif "skin" in rig.groups:
        pts = pts[rig.groups["skin"].cpu()]
    lo, hi = pts.min(0).values.numpy(), pts.max(0).values.numpy()
    centre = (lo + hi) / 2
    return centre, float(max(hi[1] - lo[1], 1e-6))


def sample_cameras(
    spec: CameraSpec, u: np.ndarray, rig, resolution: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Per-sample cameras from uniforms ``u [B, 4]``: ``intrinsics [B, 3, 3]`` (pixels; x right, y down,
    pixel centres at i + 0.5), ``extrinsics [B, 4, 4]`` world -> camera in the OpenCV convention (x right,
    y down, z forward), ``projection [B, 4, 4]`` world -> OpenGL clip space as rasterized, ``eye [B, 3]``."""
    H, W = resolution
    centre, height = face_box(rig)
    radius = float((rig.neutral.detach().double().cpu() - torch.from_numpy(centre)).norm(dim=1).max())
    fov = np.radians(_lerp(spec.fov_deg, u[:, 0]))
    fill = _lerp(spec.face_fill, u[:, 1])
    fy = H / 2 / np.tan(fov / 2)
    fx = fy
    dist = fy * height / (fill * H)
    cx = W / 2 + spec.offset * W * (2 * u[:, 2] - 1)
    cy = H / 2 + spec.offset * H * (2 * u[:, 3] - 1)
    near = np.maximum(dist - 1.5 * radius, dist * 0.05)
    far = dist + 1.5 * radius
    B = u.shape[0]
    eye = np.tile(centre, (B, 1))
    eye[:, 2] += dist
    view = np.tile(np.eye(4), (B, 1, 1))  # world -> GL camera: a translation (camera axes = world axes)
    view[:, :3, 3] = -eye
    proj = np.zeros((B, 4, 4))
    proj[:, 0, 0], proj[:, 0, 2] = 2 * fx / W, -(2 * cx / W - 1)
    proj[:, 1, 1], proj[:, 1, 2] = 2 * fy / H, -(1 - 2 * cy / H)
    proj[:, 2, 2], proj[:, 2, 3] = -(far + near) / (far - near), -2 * far * near / (far - near)
    proj[:, 3, 2] = -1.0
    K = np.zeros((B, 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = fx, fy, cx, cy, 1.0
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    return {
        "intrinsics": t(K),
        "extrinsics": t(flip @ view),
        "projection": t(proj @ view),
        "eye": t(eye),
        "near": t(near),
        "far": t(far),
    }


def sample_lights(spec: LightingSpec, u: np.ndarray):
    """A batched :class:`facecore.render.Lights` from uniforms ``u [B, _K_LIGHT_BASE + 6 * 8]``."""
    from ..render.lights import Lights
    from .prior import normal_from_uniform

    B = u.shape[0]
    amb_level = _lerp(spec.ambient, u[:, 0])
    tint = 1 + spec.tint * (u[:, 1:4] - 0.5) * 2  # [B, 3]
    ambient = amb_level[:, None] * tint
    sh_strength = _lerp(spec.sh, u[:, 4])
    # random order-1 and order-2 terms (RGB, correlated through a shared grey part), DC from the ambient
    z = normal_from_uniform(u[:, 6:30]).reshape(B, 8, 3)
    grey = z[:, :, :1]
    terms = (0.8 * grey + 0.2 * z) * (sh_strength * amb_level)[:, None, None] / 0.488603
    terms[:, 4:] *= 0.5
    sh = np.concatenate([np.zeros((B, 1, 3)), terms], 1)
    L = max(spec.lights, 1)
    base = _K_LIGHT_BASE
    dirs, cols = np.zeros((B, L, 3)), np.zeros((B, L, 3))
    for j in range(L):
        v = u[:, base + _K_PER_LIGHT * j : base + _K_PER_LIGHT * (j + 1)]
        az = np.radians(_lerp(spec.azimuth_deg, v[:, 0]))
        el = np.radians(_lerp(spec.elevation_deg, v[:, 1]))
        # el = 0: from the camera; el = 90: from the side (perpendicular to the viewing axis)
        dirs[:, j] = np.stack([np.sin(el) * np.cos(az), np.sin(el) * np.sin(az), np.cos(el)], 1)
        level = _lerp(spec.intensity, v[:, 2]) if spec.lights > 0 else np.zeros(B)
        cols[:, j] = level[:, None] * (1 + spec.tint * (v[:, 3:6] - 0.5) * 2)
    spec_w = _lerp(spec.specular, u[:, 5])
    shin = _lerp(spec.shininess, u[:, 5] * 0.5 + 0.25)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float64))  # noqa: E731
    return Lights(
        ambient=t(ambient),
        directions=t(dirs),
        colors=t(cols),
        model=spec.model,
        specular=t(spec_w),
        shininess=t(shin),
        sh=t(sh) if spec.sh[1] > 0 else None,
        bands=spec.bands,
    )


def parse_material(material, what: str = "material") -> tuple[str, float]:
    """``"opaque"`` | ``"hidden"`` | ``"alpha"`` | ``"alpha:<opacity>"`` -> ``(kind, opacity)``.

    Opacity is 1 for opaque, 0 for hidden and in (0, 1] for alpha (default :data:`DEFAULT_OPACITY`)."""
    if isinstance(material, str):
        kind, sep, rest = material.partition(":")
        if kind in ("opaque", "hidden") and not sep:
            return kind, 1.0 if kind == "opaque" else 0.0
        if kind == "alpha":
            if not sep:
                return kind, DEFAULT_OPACITY
            try:
                a = float(rest)
            except ValueError:
                a = math.nan
            if 0.0 < a <= 1.0:
                return kind, a
    raise ValueError(f"{what} must be one of opaque, hidden, alpha or alpha:<opacity in (0, 1]>, "
                     f"got {material!r}")


def materials_for(rig, scene: Scene) -> dict[str, str]:
    """Group -> material: :data:`DEFAULT_MATERIALS`, then the rig's ``metadata["materials"]``, then the
    scene's ``materials`` (later wins); only groups the rig has."""
    out = dict(DEFAULT_MATERIALS)
    meta = rig.metadata.get("materials", {})
    if isinstance(meta, dict):
        out.update({str(k): str(v) for k, v in meta.items()})
    out.update(scene.materials)
    for g, m in out.items():
        parse_material(m, f"materials[{g!r}]")
    return {g: m for g, m in out.items() if g in rig.groups}


def _in_groups(rig, materials: dict[str, str], *kinds: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per triangle: whether all three vertices lie in groups of a material in ``kinds``, and the
    opacity of its first vertex's group."""
    tri = rig.triangles
    member = torch.zeros(rig.num_vertices, dtype=torch.bool, device=tri.device)
    opacity = torch.zeros(rig.num_vertices, dtype=torch.float32, device=tri.device)
    for g, m in materials.items():
        k, a = parse_material(m)
        if k in kinds:
            idx = rig.groups[g].to(tri.device)
            member[idx] = True
            opacity[idx] = a
    return member[tri.long()].all(1), opacity[tri[:, 0].long()]


def drawn_triangles(rig, materials: dict[str, str]) -> torch.Tensor:
    """``[T', 3]`` int32: the rig's opaque triangles, i.e. less those whose three vertices all lie in
    hidden or alpha groups (alpha layers are composited over these and never occlude a label)."""
    drop, _ = _in_groups(rig, materials, "hidden", "alpha")
    return rig.triangles if not bool(drop.any()) else rig.triangles[~drop].contiguous()


def blended_triangles(rig, materials: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The alpha layer: ``[Ta, 3]`` int32 triangles whose three vertices lie in alpha groups, and their
    opacities ``[Ta]`` (of the group of each triangle's first vertex)."""
    alpha, opacity = _in_groups(rig, materials, "alpha")
    return rig.triangles[alpha].contiguous(), opacity[alpha].contiguous()
