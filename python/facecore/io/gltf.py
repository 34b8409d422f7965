"""glTF 2.0 binary (GLB) export of a rig with its 52 ARKit morph targets and an animation.

Pure numpy + struct. The file holds one mesh (neutral positions, normals, triangles, optional
vertex colours) with one morph target per ARKit blendshape (sparse accessors where a shape moves
few vertices, so files stay small), the target names in ``mesh.extras.targetNames`` (what Blender,
three.js and facecore.rig.load_gltf read), and an animation with

- a ``weights`` channel: the 52 blendshape weights per frame (LINEAR sampler), and
- a ``rotation`` channel on a head node pivoting at the rig's neck: the head pose (yaw, pitch,
  roll from the 9 pose channels, with facecore.pose's convention). Eye rotations need skinning
  and are not exported.

:func:`read_glb` reads back what :func:`write_glb` writes (and simple GLBs in general), for tests
and tools.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

import numpy as np

from .._names import BLENDSHAPES

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
FLOAT, UINT, USHORT = 5126, 5125, 5123
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_DTYPES = {FLOAT: np.float32, UINT: np.uint32, USHORT: np.uint16, 5121: np.uint8}


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


def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = np.zeros_like(v)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(length > 0, length, 1.0)).astype(np.float32)


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


def write_glb(path: str | os.PathLike, rig: Any, track: Any | None = None, *, name: str = "facecore",
              head_max_angle: float = math.pi / 2) -> None:
    """Write ``rig`` (a :class:`facecore.rig.FaceRig`, or any object with ``neutral [V,3]``,
    ``triangles [F,3]``, ``dense_deltas() [52,V,3]``, optional ``colors``/``neck_pivot``) as GLB,
    with ``track`` (a :class:`facecore.io.Track`) as its animation when given."""
    neutral = _np(rig.neutral).astype(np.float32)
    tris = _np(rig.triangles).astype(np.uint32)
    deltas = _np(rig.dense_deltas()).astype(np.float32)
    if neutral.ndim != 2 or neutral.shape[1] != 3:
        raise ValueError(f"rig.neutral must be [V, 3], got {list(neutral.shape)}")
    if deltas.shape != (len(BLENDSHAPES), neutral.shape[0], 3):
        raise ValueError(f"rig.dense_deltas() must be [52, V={neutral.shape[0]}, 3], "
                         f"got {list(deltas.shape)}")
    if tris.ndim != 2 or tris.shape[1] != 3 or (tris.size and tris.max() >= neutral.shape[0]):
        raise ValueError("rig.triangles must be [F, 3] indices into the vertices")
    pivot = _np(getattr(rig, "neck_pivot", np.zeros(3))).astype(np.float32).reshape(3)
    b = _Builder()
    local = neutral - pivot  # the mesh hangs under a head node placed at the neck pivot
    attrs = {"POSITION": b.accessor(local, "VEC3", ARRAY_BUFFER, minmax=True),
             "NORMAL": b.accessor(_vertex_normals(neutral, tris.astype(np.int64)), "VEC3", ARRAY_BUFFER)}
    colors = getattr(rig, "colors", None)
    if colors is not None:
        attrs["COLOR_0"] = b.accessor(np.clip(_np(colors), 0, 1).astype(np.float32), "VEC3", ARRAY_BUFFER)
    indices = b.accessor(tris.reshape(-1), "SCALAR", ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": b.morph_accessor(deltas[k])} for k in range(len(BLENDSHAPES))]
    mesh = {"name": name, "primitives": [{"attributes": attrs, "indices": indices, "targets": targets,
                                          "material": 0}],
            "weights": [0.0] * len(BLENDSHAPES), "extras": {"targetNames": list(BLENDSHAPES)}}
    nodes = [{"name": "head", "translation": pivot.tolist(), "children": [1]},
             {"name": name, "mesh": 0}]
    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "facecore"},
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


def _read_accessor(doc: dict, blob: bytes, i: int) -> np.ndarray:
    a = doc["accessors"][i]
    dt = np.dtype(_DTYPES[a["componentType"]])
    comps = _COMPONENTS[a["type"]]
    shape = (a["count"], comps) if comps > 1 else (a["count"],)

    def view(vi: int, count: int, d: np.dtype, c: int, extra_offset: int = 0) -> np.ndarray:
        v = doc["bufferViews"][vi]
        off = v.get("byteOffset", 0) + extra_offset
        arr = np.frombuffer(blob, dtype=d, count=count * c, offset=off)
        return arr.reshape((count, c) if c > 1 else (count,))

    if "bufferView" in a:
        out = view(a["bufferView"], a["count"], dt, comps, a.get("byteOffset", 0)).copy()
    else:
        out = np.zeros(shape, dt)
    sp = a.get("sparse")
    if sp:
        idt = np.dtype(_DTYPES[sp["indices"]["componentType"]])
        idx = view(sp["indices"]["bufferView"], sp["count"], idt, 1, sp["indices"].get("byteOffset", 0))
        out[idx] = view(sp["values"]["bufferView"], sp["count"], dt, comps, sp["values"].get("byteOffset", 0))
    return out


def read_glb(path: str | os.PathLike) -> dict[str, Any]:
    """Read a GLB: ``{"json", "positions" [V,3] (mesh-local), "indices" [F,3], "targets" [K,V,3],
    "target_names", "node_translations", "times" [N] | None, "weights" [N,K] | None,
    "rotations" [N,4] | None}`` for the first mesh primitive and first animation."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 20:
        raise ValueError(f"{path}: too short to be a GLB file")
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2:
        raise ValueError(f"{path}: not a glTF 2.0 binary (magic {magic:#x}, version {version})")
    if total != len(data):
        raise ValueError(f"{path}: header says {total} bytes, file has {len(data)}")
    n_json, kind = struct.unpack_from("<II", data, 12)
    if kind != CHUNK_JSON:
        raise ValueError(f"{path}: first chunk is not JSON")
    doc = json.loads(data[20:20 + n_json])
    blob = b""
    at = 20 + n_json
    if at < len(data):
        n_bin, kind = struct.unpack_from("<II", data, at)
        if kind != CHUNK_BIN:
            raise ValueError(f"{path}: second chunk is not BIN")
        blob = data[at + 8: at + 8 + n_bin]
    prim = doc["meshes"][0]["primitives"][0]
    out: dict[str, Any] = {
        "json": doc,
        "positions": _read_accessor(doc, blob, prim["attributes"]["POSITION"]),
        "indices": _read_accessor(doc, blob, prim["indices"]).reshape(-1, 3),
        "targets": np.stack([_read_accessor(doc, blob, t["POSITION"]) for t in prim.get("targets", [])])
        if prim.get("targets") else np.zeros((0, 0, 3), np.float32),
        "target_names": doc["meshes"][0].get("extras", {}).get("targetNames", []),
        "node_translations": [n.get("translation", [0.0, 0.0, 0.0]) for n in doc.get("nodes", [])],
        "times": None, "weights": None, "rotations": None,
    }
    for anim in doc.get("animations", [])[:1]:
        for ch in anim["channels"]:
            s = anim["samplers"][ch["sampler"]]
            out["times"] = _read_accessor(doc, blob, s["input"])
            vals = _read_accessor(doc, blob, s["output"])
            if ch["target"]["path"] == "weights":
                out["weights"] = vals.reshape(out["times"].shape[0], -1)
            elif ch["target"]["path"] == "rotation":
                out["rotations"] = vals
    return out
