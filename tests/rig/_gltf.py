"""A minimal glTF 2.0 writer and small meshes for the glTF reader tests (not a facecore API)."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np


def glb_bytes(js: dict, blob: bytes) -> bytes:
    """A GLB container around ``js`` and the BIN chunk ``blob`` (both padded to 4 bytes)."""
    j = json.dumps(js).encode()
    j += b" " * (-len(j) % 4)
    b = bytes(blob) + b"\0" * (-len(blob) % 4)
    body = struct.pack("<II", len(j), 0x4E4F534A) + j + struct.pack("<II", len(b), 0x004E4942) + b
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


class GltfWriter:
    """Minimal glTF 2.0 writer for tests: float32 accessors, uint32 indices, optional sparse targets."""

    def __init__(self):
        self.bin = bytearray()
        self.js = {
            "asset": {"version": "2.0"},
            "buffers": [{}],
            "bufferViews": [],
            "accessors": [],
            "meshes": [],
            "nodes": [],
            "scenes": [{"nodes": []}],
            "scene": 0,
            "materials": [],
        }

    def _view(self, data: bytes) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        self.js["bufferViews"].append({"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)})
        self.bin += data
        return len(self.js["bufferViews"]) - 1

    def accessor(self, a: np.ndarray, sparse_of: int | None = None) -> int:
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
            ctype, kind = 5126, {1: "SCALAR", 2: "VEC2", 3: "VEC3"}[a.shape[1] if a.ndim == 2 else 1]
        else:
            a = a.astype(np.uint32)
            ctype, kind = 5125, "SCALAR"
        acc = {
            "componentType": ctype,
            "count": int(a.shape[0] if sparse_of is None else sparse_of),
            "type": kind,
        }
        if sparse_of is None:
            acc["bufferView"] = self._view(a.tobytes())
        else:  # a = values for the nonzero rows
            nz = np.nonzero(np.abs(a).sum(1))[0].astype(np.uint32)
            acc["sparse"] = {
                "count": int(len(nz)),
                "indices": {"bufferView": self._view(nz.tobytes()), "componentType": 5125},
                "values": {"bufferView": self._view(a[nz].astype(np.float32).tobytes())},
            }
        self.js["accessors"].append(acc)
        return len(self.js["accessors"]) - 1

    def mesh(
        self, name, v, f, targets=None, target_names=None, translation=None, material=None, sparse=False
    ):
        prim = {
            "attributes": {"POSITION": self.accessor(v)},
            "indices": self.accessor(np.asarray(f).reshape(-1)),
        }
        if targets:
            prim["targets"] = [
                {"POSITION": self.accessor(t, sparse_of=len(v) if sparse else None)} for t in targets
            ]
        if material:
            self.js["materials"].append(
                {"name": material, "pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 1]}}
            )
            prim["material"] = len(self.js["materials"]) - 1
        m = {"name": name, "primitives": [prim]}
        if target_names is not None:
            m["extras"] = {"targetNames": target_names}
        self.js["meshes"].append(m)
        node = {"name": name, "mesh": len(self.js["meshes"]) - 1}
        if translation is not None:
            node["translation"] = list(map(float, translation))
        self.js["nodes"].append(node)
        self.js["scenes"][0]["nodes"].append(len(self.js["nodes"]) - 1)

    def glb(self, path: Path) -> Path:
        self.js["buffers"][0] = {"byteLength": len(self.bin)}
        path.write_bytes(glb_bytes(self.js, self.bin))
        return path

    def gltf(self, path: Path) -> Path:
        self.js["buffers"][0] = {
            "byteLength": len(self.bin),
            "uri": "data:application/octet-stream;base64," + base64.b64encode(self.bin).decode(),
        }
        path.write_text(json.dumps(self.js))
        return path


def sphere(n=6, r=1.0, c=(0, 0, 0)):
    th, ph = np.meshgrid(
        np.linspace(0.3, np.pi - 0.3, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False), indexing="ij"
    )
    v = np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], -1).reshape(-1, 3) * r + c
    f = []
    for a in range(n - 1):
        for i in range(2 * n):
            j = (i + 1) % (2 * n)
            f += [[a * 2 * n + i, (a + 1) * 2 * n + i, (a + 1) * 2 * n + j]]
    return v, np.array(f)
