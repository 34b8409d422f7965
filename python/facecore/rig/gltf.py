"""``load_gltf``: glTF 2.0 (``.gltf`` + buffers, or binary ``.glb``) meshes with morph targets -> FaceRig.

Every triangle primitive of every mesh reachable from the scene's nodes is merged into one rig, with
the node's world transform applied (positions by the full matrix, morph-target deltas by its linear
part). Morph targets are named by ``mesh.extras.targetNames`` (the de-facto convention of Blender,
three.js and Ready Player Me exporters) or ``primitive.extras.targetNames``, in any naming
convention that facecore.arkit understands (``eyeBlinkLeft``, ``EyeBlinkLeft``, ``eyeBlink_L``,
ICT halves, ...). Targets of several primitives that name the same channel form one shape. Accessors
may be sparse; integer attributes may be normalised. Eyeball groups come from node/mesh/material names
that mention an eye and a side ("EyeLeft", "eye_L", "Wolf3D_Eye_Right" ...).

Errors name the file and the problem: missing file or buffer, unknown target name (``strict``), a
target whose vertex count differs from its primitive, NaN coordinates, no triangles.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

from .face_rig import FaceRig, channel_of, merge_channels
from .obj_folder import eye_centers_of, neck_pivot_guess

_COMPONENT = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_NORM = {np.int8: 127.0, np.uint8: 255.0, np.int16: 32767.0, np.uint16: 65535.0}


class _Doc:
    def __init__(self, path: Path):
        self.path = path
        raw = path.read_bytes()
        self.bin = None
        if raw[:4] == b"glTF":
            version, length = struct.unpack_from("<II", raw, 4)
            if version != 2:
                raise ValueError(f"{path}: GLB version {version} (only glTF 2.0 is supported)")
            off, js = 12, None
            while off + 8 <= min(length, len(raw)):
                clen, ctype = struct.unpack_from("<II", raw, off)
                chunk = raw[off + 8 : off + 8 + clen]
                if ctype == 0x4E4F534A:
                    js = chunk
                elif ctype == 0x004E4942:
                    self.bin = chunk
                off += 8 + clen
            if js is None:
                raise ValueError(f"{path}: GLB without a JSON chunk")
            raw = js
        try:
            self.json = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"{path}: not a glTF file ({e})") from e
        self._buffers: dict[int, bytes] = {}

    def buffer(self, i: int) -> bytes:
        if i not in self._buffers:
            b = self.json["buffers"][i]
            uri = b.get("uri")
            if uri is None:
                if self.bin is None:
                    raise ValueError(f"{self.path}: buffer {i} has no uri and the file has no BIN chunk")
                data = self.bin
            elif uri.startswith("data:"):
                data = base64.b64decode(uri.split(",", 1)[1])
            else:
                p = self.path.parent / uri
                if not p.is_file():
                    raise FileNotFoundError(f"{self.path}: buffer file not found: {p}")
                data = p.read_bytes()
            self._buffers[i] = data
        return self._buffers[i]

    def _view(self, view_index: int, offset: int, count: int, dtype, width: int) -> np.ndarray:
        view = self.json["bufferViews"][view_index]
        buf = self.buffer(view["buffer"])
        start = view.get("byteOffset", 0) + offset
        item = np.dtype(dtype).itemsize * width
        stride = view.get("byteStride") or item
        need = start + stride * (count - 1) + item if count else start
        if need > len(buf):
            raise ValueError(f"{self.path}: accessor reads past the end of buffer {view['buffer']}")
        if stride == item:
            return np.frombuffer(buf, dtype=dtype, count=count * width, offset=start).reshape(count, width)
        rows = np.lib.stride_tricks.as_strided(
            np.frombuffer(buf, np.uint8, offset=start), shape=(count, item), strides=(stride, 1)
        )
        return np.ascontiguousarray(rows).view(dtype).reshape(count, width)

    def accessor(self, i: int) -> np.ndarray:
        a = self.json["accessors"][i]
        dtype = _COMPONENT[a["componentType"]]
        width = _WIDTH[a["type"]]
        count = a["count"]
        if "bufferView" in a:
            out = self._view(a["bufferView"], a.get("byteOffset", 0), count, dtype, width).copy()
        else:
            out = np.zeros((count, width), dtype)
        sp = a.get("sparse")
        if sp:
            n = sp["count"]
            idx = self._view(
                sp["indices"]["bufferView"],
                sp["indices"].get("byteOffset", 0),
                n,
                _COMPONENT[sp["indices"]["componentType"]],
                1,
            )[:, 0].astype(np.int64)
            val = self._view(sp["values"]["bufferView"], sp["values"].get("byteOffset", 0), n, dtype, width)
            if (idx >= count).any():
                raise ValueError(f"{self.path}: sparse accessor {i} index out of range")
            out[idx] = val
        if a.get("normalized") and dtype in _NORM:
            out = np.maximum(out.astype(np.float64) / _NORM[dtype], -1.0)
        return out


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T  # column-major in glTF
    t = np.asarray(node.get("translation", [0, 0, 0]), np.float64)
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    r = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    s = np.asarray(node.get("scale", [1, 1, 1]), np.float64)
    m = np.eye(4)
    m[:3, :3] = r * s
    m[:3, 3] = t
    return m


def _eye_side(name: str) -> str | None:
    if not re.search(r"(eye(ball)?|sclera|iris|cornea|pupil)", name, re.I):
        return None
    if re.search(r"(lash|lid|brow|occlusion|blend|lacrimal|socket)", name, re.I):
        return None
    if re.search(r"(left|_l\b|_l$|\bl_|\.l$)", name, re.I):
        return "left_eye"
    if re.search(r"(right|_r\b|_r$|\br_|\.r$)", name, re.I):
        return "right_eye"
    return None


def load_gltf(path: str | Path, *, strict: bool = True) -> FaceRig:
    """A glTF 2.0 / GLB file with ARKit-named morph targets -> :class:`FaceRig` (see module docstring).

    ``strict=False`` skips unknown target names (listed in ``metadata["ignored_shapes"]``) instead
    of raising.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_gltf: no such file: {path}")
    doc = _Doc(path)
    js = doc.json
    meshes = js.get("meshes", [])
    nodes = js.get("nodes", [])
    if not meshes:
        raise ValueError(f"load_gltf: {path} has no meshes")

    # Mesh instances with world matrices (all root nodes of the default scene; else every mesh once).
    instances: list[tuple[int, np.ndarray, str]] = []
    scenes = js.get("scenes", [])
    if scenes and nodes:
        roots = scenes[js.get("scene", 0)].get("nodes", [])
        stack = [(n, np.eye(4)) for n in reversed(roots)]  # depth-first, in file order
        while stack:
            n, parent = stack.pop()
            node = nodes[n]
            world = parent @ _node_matrix(node)
            if "mesh" in node:
                instances.append((node["mesh"], world, node.get("name", "")))
            stack.extend((c, world) for c in reversed(node.get("children", [])))
    if not instances:
        instances = [(i, np.eye(4), m.get("name", "")) for i, m in enumerate(meshes)]

    positions, tris, colors, uvs, groups_acc = [], [], [], [], {"left_eye": [], "right_eye": []}
    named: dict[str, list[tuple[int, np.ndarray]]] = {}
    ignored: list[str] = []
    offset = 0
    for mesh_index, world, node_name in instances:
        mesh = meshes[mesh_index]
        mname = mesh.get("name", f"mesh{mesh_index}")
        names = (mesh.get("extras") or {}).get("targetNames")
        lin = world[:3, :3]
        for pi, prim in enumerate(mesh.get("primitives", [])):
            if prim.get("mode", 4) != 4:
                continue
            where = f"{path}: mesh {mname!r} primitive {pi}"
            if "POSITION" not in prim.get("attributes", {}):
                raise ValueError(f"load_gltf: {where} has no POSITION attribute")
            p = doc.accessor(prim["attributes"]["POSITION"]).astype(np.float64)[:, :3]
            if not np.isfinite(p).all():
                raise ValueError(
                    f"load_gltf: {where}: vertex {int(np.argmax(~np.isfinite(p).all(1)))} has NaN "
                    "or infinite coordinates"
                )
            n = len(p)
            if "indices" in prim:
                f = doc.accessor(prim["indices"]).reshape(-1).astype(np.int64)
            else:
                f = np.arange(n)
            if len(f) % 3 or len(f) == 0:
                raise ValueError(f"load_gltf: {where} has {len(f)} indices (need a positive multiple of 3)")
            if f.max() >= n:
                raise ValueError(f"load_gltf: {where}: index {int(f.max())} but only {n} vertices")
            f = f.reshape(-1, 3)
            if np.linalg.det(lin) < 0:  # a mirroring transform flips the winding
                f = f[:, [0, 2, 1]]
            positions.append(p @ lin.T + world[:3, 3])
            tris.append(f + offset)
            attrs = prim["attributes"]
            if "TEXCOORD_0" in attrs:
                uvs.append(doc.accessor(attrs["TEXCOORD_0"]).astype(np.float64)[:, :2])
            else:
                uvs.append(np.zeros((n, 2)))
            if "COLOR_0" in attrs:
                c = doc.accessor(attrs["COLOR_0"]).astype(np.float64)[:, :3]
            else:
                mat = js.get("materials", [])[prim["material"]] if "material" in prim else {}
                base = (mat.get("pbrMetallicRoughness") or {}).get("baseColorFactor", [0.8, 0.8, 0.8, 1])
                c = np.tile(np.asarray(base[:3], np.float64), (n, 1))
            colors.append(c)
            mat_name = js.get("materials", [])[prim["material"]].get("name", "") if "material" in prim else ""
            for label in (node_name, mname, mat_name):
                side = _eye_side(label)
                if side:
                    groups_acc[side].append(np.arange(offset, offset + n))
                    break
            targets = prim.get("targets", [])
            tnames = names or (prim.get("extras") or {}).get("targetNames")
            if targets and (not tnames or len(tnames) != len(targets)):
                if strict:
                    raise ValueError(
                        f"load_gltf: {where} has {len(targets)} morph targets but "
                        f"{len(tnames or [])} targetNames"
                    )
                ignored += [f"{mname}[{k}]" for k in range(len(targets))]
                targets = []
            for k, t in enumerate(targets):
                tname = tnames[k]
                try:
                    channel_of(tname)
                except (ValueError, TypeError) as e:
                    if strict:
                        raise ValueError(
                            f"load_gltf: {where}: unknown morph target name {tname!r} ({e})"
                        ) from None
                    ignored.append(tname)
                    continue
                if "POSITION" not in t:
                    continue
                d = doc.accessor(t["POSITION"]).astype(np.float64)[:, :3]
                if len(d) != n:
                    raise ValueError(
                        f"load_gltf: {where}: target {tname!r} has {len(d)} vertices, the primitive {n}"
                    )
                if not np.isfinite(d).all():
                    raise ValueError(f"load_gltf: {where}: target {tname!r} has NaN or infinite deltas")
                named.setdefault(tname, []).append((offset, d @ lin.T))
            offset += n
    if not positions:
        raise ValueError(f"load_gltf: {path} has no triangle primitives")
    V = offset
    full: dict[str, torch.Tensor] = {}
    for tname, parts in named.items():
        d = np.zeros((V, 3))
        for off, dd in parts:
            d[off : off + len(dd)] += dd
        full[tname] = torch.from_numpy(d.astype(np.float32))
    if full:
        deltas, channels, extra = merge_channels(full, str(path))
    else:
        deltas, channels, extra = torch.zeros(52, V, 3), (), []
    neutral = torch.from_numpy(np.concatenate(positions).astype(np.float32))
    groups = {
        k: torch.from_numpy(np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in groups_acc.items()
    }
    eyes = eye_centers_of(neutral, groups)
    tri = torch.from_numpy(np.concatenate(tris).astype(np.int32))
    return FaceRig(
        neutral=neutral,
        triangles=tri,
        deltas=deltas,
        channels=channels,
        groups=groups,
        eye_centers=eyes,
        neck_pivot=neck_pivot_guess(neutral, groups, eyes),
        uvs=torch.from_numpy(np.concatenate(uvs).astype(np.float32)),
        uv_triangles=tri.clone(),
        colors=torch.from_numpy(np.clip(np.concatenate(colors), 0, 1).astype(np.float32)),
        metadata={
            "source": f"gltf:{path.name}",
            "ignored_shapes": ignored + extra,
            "units": "as in file (glTF: metres)",
            "up": "+y",
            "forward": "+z",
        },
    )
