"""glTF 2.0 binary (GLB) export of a rig with its 52 ARKit morph targets and an animation.

Pure numpy + struct. The file holds one mesh (neutral positions, normals, triangles, optional
vertex colours) with one morph target per ARKit blendshape (sparse accessors where a shape moves
few vertices, so files stay small), the target names in ``mesh.extras.targetNames`` (what Blender,
three.js and facecore.rig.load_gltf read), and an animation with

- a ``weights`` channel: the 52 blendshape weights per frame (LINEAR sampler), and
- a ``rotation`` channel on a head node pivoting at the rig's neck: the head pose (yaw, pitch,
  roll from the 9 pose channels, with facecore.pose's convention). Eye rotations need skinning
  and are not exported.

Units: glTF's unit is the metre, facecore rigs are in centimetres (``rig.metadata["units"]``). By
default positions, morph-target deltas and node translations are scaled to metres (``units="m"``;
``"cm"`` keeps the rig's numbers). Names: ARKit camelCase by default (``eyeBlinkLeft``, what
three.js, Ready Player Me, VRM tools and Apple use), or the other one-name-per-channel conventions
of :mod:`facecore.arkit` (``"livelinkface"``: ``EyeBlinkLeft``; ``"arkit_raw"``: ``eyeBlink_L``).
Both are recorded in ``asset.extras.facecore``::

    {"names": "arkit", "units": "m", "rig_units": "cm", "scale": 0.01, "head_max_angle": 1.5707963}

``scale`` is file units per rig unit: a reader gets the rig's own numbers back by dividing
positions and deltas by it. ``head_max_angle`` is the head rotation (radians) of a pose channel at 1.

:func:`read_glb` (from :mod:`facecore.io.gltf_reader`, the validated reader that
facecore.rig.load_gltf also uses) reads back what :func:`write_glb` writes, for tests and tools.
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
from typing import Any

import numpy as np

from .. import arkit
from .._names import BLENDSHAPES
from ..rig.face_rig import vertex_normals_np
from .gltf_reader import CHUNK_BIN, CHUNK_JSON, read_glb

__all__ = ["GLB_NAMES", "GLB_UNITS", "glb_target_names", "pose_quaternions", "read_glb", "write_glb"]

GLB_MAGIC = 0x46546C67  # "glTF"
FLOAT, UINT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963

GLB_NAMES = ("arkit", "livelinkface", "arkit_raw")
"""Morph-target naming conventions :func:`write_glb` writes: those with exactly one name per channel."""
GLB_UNITS = {"m": 1.0, "cm": 0.01}
"""Length units :func:`write_glb` writes, in metres per unit."""
# Rig unit spellings (rig.metadata["units"]) -> metres per unit.
_RIG_UNITS = {
    **dict.fromkeys(("m", "metre", "metres", "meter", "meters"), 1.0),
    **dict.fromkeys(("cm", "centimetre", "centimetres", "centimeter", "centimeters"), 0.01),
    **dict.fromkeys(("mm", "millimetre", "millimetres", "millimeter", "millimeters"), 0.001),
}


class _Builder:
    """Accumulates buffer views and accessors into one binary buffer (4-byte aligned)."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: np.ndarray, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        raw = np.ascontiguousarray(data).tobytes()
        v: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(raw)}
        if target is not None:
            v["target"] = target
        self.blob += raw
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, data: np.ndarray, kind: str, target: int | None = None, minmax: bool = False) -> int:
        comp = {np.dtype(np.float32): FLOAT, np.dtype(np.uint32): UINT}[data.dtype]
        a: dict[str, Any] = {"bufferView": self.view(data, target), "componentType": comp,
                             "count": int(data.shape[0]), "type": kind}
        if minmax:
            flat = data.reshape(data.shape[0], -1)
            a["min"] = flat.min(0).tolist()
            a["max"] = flat.max(0).tolist()
        self.accessors.append(a)
        return len(self.accessors) - 1

    def morph_accessor(self, delta: np.ndarray) -> int:
        """A VEC3 morph-target accessor; sparse when under half the vertices move."""
        moved = np.flatnonzero(np.abs(delta).max(axis=1) > 0).astype(np.uint32)
        n = delta.shape[0]
        lo = delta.min(0).tolist() if n else [0.0] * 3
        hi = delta.max(0).tolist() if n else [0.0] * 3
        if moved.shape[0] * 2 >= n:
            a = self.accessors[self.accessor(delta.astype(np.float32), "VEC3", ARRAY_BUFFER)]
            a["min"], a["max"] = lo, hi
            return len(self.accessors) - 1
        a = {"componentType": FLOAT, "count": n, "type": "VEC3", "min": lo, "max": hi}
        if moved.shape[0]:
            a["sparse"] = {
                "count": int(moved.shape[0]),
                "indices": {"bufferView": self.view(moved), "componentType": UINT},
                "values": {"bufferView": self.view(delta[moved].astype(np.float32))},
            }
        self.accessors.append(a)
        return len(self.accessors) - 1


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def pose_quaternions(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``Ry(yaw) Rx(-pitch) Rz(-roll)`` (facecore.pose) as glTF quaternions ``[N, 4]`` (x, y, z, w)."""
    def axis_q(axis: int, ang: np.ndarray) -> np.ndarray:
        q = np.zeros((ang.shape[0], 4))
        q[:, axis] = np.sin(ang / 2)
        q[:, 3] = np.cos(ang / 2)
        return q

    def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ax, ay, az, aw = a.T
        bx, by, bz, bw = b.T
        return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                         aw * by - ax * bz + ay * bw + az * bx,
                         aw * bz + ax * by - ay * bx + az * bw,
                         aw * bw - ax * bx - ay * by - az * bz], axis=1)

    return mul(mul(axis_q(1, yaw), axis_q(0, -pitch)), axis_q(2, -roll)).astype(np.float32)


def glb_target_names(names: str = "arkit") -> tuple[str, ...]:
    """The 52 morph-target names :func:`write_glb` writes for convention ``names`` (see :data:`GLB_NAMES`)."""
    if isinstance(names, str) and names in GLB_NAMES:
        return tuple(arkit.convert(n, names) for n in BLENDSHAPES)
    why = {"mediapipe": "it has no tongueOut channel",
           "ict": "it splits browInnerUp and cheekPuff into _L/_R halves"}.get(str(names))
    raise ValueError(f"write_glb: names must be one of {', '.join(map(repr, GLB_NAMES))}, got {names!r}"
                     + (f" ({names} cannot name the 52 targets one to one: {why})" if why else ""))


def _rig_units(rig: Any, rig_units: str | None) -> tuple[str, float]:
    """(unit label, metres per unit) of the rig's coordinates: ``rig_units``, else rig.metadata["units"]."""
    if rig_units is not None:
        if not isinstance(rig_units, str) or rig_units.lower() not in _RIG_UNITS:
            raise ValueError(f"write_glb: rig_units must be 'm', 'cm' or 'mm', got {rig_units!r}")
        label = rig_units.lower()
    else:
        meta = getattr(rig, "metadata", None)
        label = str(meta.get("units", "")) if isinstance(meta, dict) else ""
        if label.lower().startswith("as in file (gltf"):  # what load_gltf records: glTF files are in metres
            label = "m"
        if label.lower() not in _RIG_UNITS:
            # facecore's rigs are in centimetres (docs/architecture.md); say so rather than guess silently
            what = f"{label!r} is not a known length unit" if label else "is not recorded"
            warnings.warn(f"write_glb: the rig's unit (rig.metadata['units']) {what}; assuming centimetres "
                          "(pass rig_units= to say otherwise)", stacklevel=3)
            label = "cm"
    per_unit = _RIG_UNITS[label.lower()]
    return {1.0: "m", 0.01: "cm", 0.001: "mm"}[per_unit], per_unit


def write_glb(path: str | os.PathLike, rig: Any, track: Any | None = None, *, name: str = "facecore",
              names: str = "arkit", units: str = "m", rig_units: str | None = None,
              head_max_angle: float = math.pi / 2) -> None:
    """Write ``rig`` (a :class:`facecore.rig.FaceRig`, or any object with ``neutral [V,3]``,
    ``triangles [F,3]``, ``dense_deltas() [52,V,3]``, optional ``colors``/``neck_pivot``/``metadata``) as GLB,
    with ``track`` (a :class:`facecore.io.Track`) as its animation when given.

    ``names``: the morph-target naming convention, ``"arkit"`` (``eyeBlinkLeft``, default),
    ``"livelinkface"`` (``EyeBlinkLeft``) or ``"arkit_raw"`` (``eyeBlink_L``). ``units``: ``"m"``
    (glTF's unit, default) or ``"cm"``. ``rig_units`` overrides ``rig.metadata["units"]`` (the rig's
    length unit: ``"cm"`` for facecore's rigs). Both choices are recorded in ``asset.extras.facecore``.
    Raises ValueError for an unknown ``names``/``units`` or a malformed rig or track.
    """
    target_names = glb_target_names(names)
    if isinstance(head_max_angle, bool) or not isinstance(head_max_angle, (int, float)) \
            or not (math.isfinite(head_max_angle) and head_max_angle > 0):
        raise ValueError(f"write_glb: head_max_angle must be a positive number of radians, "
                         f"got {head_max_angle!r}")
    if not isinstance(units, str) or units not in GLB_UNITS:
        raise ValueError(f"write_glb: units must be one of {', '.join(map(repr, GLB_UNITS))}, got {units!r}")
    rig_label, rig_metres = _rig_units(rig, rig_units)
    scale = float(f"{rig_metres / GLB_UNITS[units]:.12g}")  # file units per rig unit (0.1, not 0.0999...)
    neutral = _np(rig.neutral).astype(np.float64)
    tris = _np(rig.triangles).astype(np.uint32)
    deltas = _np(rig.dense_deltas()).astype(np.float64)
    if neutral.ndim != 2 or neutral.shape[1] != 3:
        raise ValueError(f"rig.neutral must be [V, 3], got {list(neutral.shape)}")
    if deltas.shape != (len(BLENDSHAPES), neutral.shape[0], 3):
        raise ValueError(f"rig.dense_deltas() must be [52, V={neutral.shape[0]}, 3], "
                         f"got {list(deltas.shape)}")
    if tris.ndim != 2 or tris.shape[1] != 3 or (tris.size and tris.max() >= neutral.shape[0]):
        raise ValueError("rig.triangles must be [F, 3] indices into the vertices")
    pivot = _np(getattr(rig, "neck_pivot", np.zeros(3))).astype(np.float64).reshape(3)
    b = _Builder()
    # The mesh hangs under a head node placed at the neck pivot. Scaled in float64, stored as float32.
    local = ((neutral - pivot) * scale).astype(np.float32)
    pivot_out = (pivot * scale).astype(np.float32)
    deltas = (deltas * scale).astype(np.float32)
    attrs = {"POSITION": b.accessor(local, "VEC3", ARRAY_BUFFER, minmax=True),
             "NORMAL": b.accessor(vertex_normals_np(neutral, tris.astype(np.int64)).astype(np.float32),
                                  "VEC3", ARRAY_BUFFER)}
    colors = getattr(rig, "colors", None)
    if colors is not None:
        attrs["COLOR_0"] = b.accessor(np.clip(_np(colors), 0, 1).astype(np.float32), "VEC3", ARRAY_BUFFER)
    indices = b.accessor(tris.reshape(-1), "SCALAR", ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": b.morph_accessor(deltas[k])} for k in range(len(BLENDSHAPES))]
    mesh = {"name": name, "primitives": [{"attributes": attrs, "indices": indices, "targets": targets,
                                          "material": 0}],
            "weights": [0.0] * len(BLENDSHAPES), "extras": {"targetNames": list(target_names)}}
    nodes = [{"name": "head", "translation": pivot_out.tolist(), "children": [1]},
             {"name": name, "mesh": 0}]
    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "facecore", "extras": {"facecore": {
            "names": names, "units": units, "rig_units": rig_label, "scale": scale,
            "head_max_angle": float(head_max_angle)}}},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": nodes, "meshes": [mesh],
        "materials": [{"name": "skin", "pbrMetallicRoughness": {
            "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.6}}],
    }
    if track is not None:
        times = np.asarray(track.times, np.float32)
        params = np.asarray(track.params, np.float32)
        if params.ndim != 2 or params.shape[1] != 61 or params.shape[0] != times.shape[0]:
            raise ValueError("track must hold params [N, 61] and times [N]")
        if times.shape[0] == 0:
            raise ValueError("track has no frames")
        t_acc = b.accessor(times - times[0], "SCALAR", minmax=True)
        w_acc = b.accessor(np.ascontiguousarray(params[:, :52]).reshape(-1), "SCALAR")
        pose = params[:, 52:55].astype(np.float64) * head_max_angle
        q_acc = b.accessor(pose_quaternions(pose[:, 0], pose[:, 1], pose[:, 2]), "VEC4")
        doc["animations"] = [{
            "name": "facecore",
            "samplers": [{"input": t_acc, "output": w_acc, "interpolation": "LINEAR"},
                         {"input": t_acc, "output": q_acc, "interpolation": "LINEAR"}],
            "channels": [{"sampler": 0, "target": {"node": 1, "path": "weights"}},
                         {"sampler": 1, "target": {"node": 0, "path": "rotation"}}],
        }]
    while len(b.blob) % 4:
        b.blob.append(0)
    doc["buffers"] = [{"byteLength": len(b.blob)}]
    doc["bufferViews"] = b.views
    doc["accessors"] = b.accessors
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(b.blob)
    with open(path, "wb") as f:
        f.write(struct.pack("<III", GLB_MAGIC, 2, total))
        f.write(struct.pack("<II", len(js), CHUNK_JSON) + js)
        f.write(struct.pack("<II", len(b.blob), CHUNK_BIN) + bytes(b.blob))
