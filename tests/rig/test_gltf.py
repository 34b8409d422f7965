"""load_gltf: GLB and .gltf (data URI) with morph targets in several naming conventions."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from facecore.arkit import BLENDSHAPES
from facecore.rig import load_gltf


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
        js = json.dumps(self.js).encode()
        js += b" " * (-len(js) % 4)
        b = bytes(self.bin) + b"\0" * (-len(self.bin) % 4)
        body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(b), 0x004E4942) + b
        path.write_bytes(b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body)
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


def scene(gen, sparse=False):
    w = GltfWriter()
    v, f = sphere()
    t = [torch.randn(len(v), 3, generator=gen).numpy() * 0.1 for _ in range(4)]
    t[1][: len(v) // 2] = 0
    names = ["eyeBlinkLeft", "JawOpen", "mouthSmile_R", "cheekPuff_L"]
    w.mesh("Head", v, f, t, names, sparse=sparse)
    ev, ef = sphere(4, 0.2)
    w.mesh("EyeLeft", ev, ef, translation=(0.3, 0.2, 0.8))
    w.mesh("EyeRight", ev, ef, translation=(-0.3, 0.2, 0.8), material="Eye_R")
    return w, v, f, t, names, ev


@pytest.mark.parametrize("fmt", ["glb", "gltf"])
@pytest.mark.parametrize("sparse", [False, True])
def test_load_gltf(tmp_path, gen, fmt, sparse):
    w, v, f, t, names, ev = scene(gen, sparse)
    p = w.glb(tmp_path / "face.glb") if fmt == "glb" else w.gltf(tmp_path / "face.gltf")
    rig = load_gltf(p)
    V = len(v) + 2 * len(ev)
    assert rig.num_vertices == V and rig.num_triangles == len(f) + 2 * (len(ev) - 8)
    assert set(rig.channels) == {"EyeBlinkLeft", "JawOpen", "MouthSmileRight", "CheekPuff"}
    D = rig.dense_deltas()
    for name, d in zip(names, t):
        k = BLENDSHAPES.index(
            {
                "eyeBlinkLeft": "EyeBlinkLeft",
                "JawOpen": "JawOpen",
                "mouthSmile_R": "MouthSmileRight",
                "cheekPuff_L": "CheekPuff",
            }[name]
        )
        torch.testing.assert_close(D[k, : len(v)], torch.from_numpy(d))
        assert D[k, len(v) :].abs().max() == 0
    # node translations applied; eyes found by name, centred where the nodes put them
    torch.testing.assert_close(
        rig.eye_centers, torch.tensor([[0.3, 0.2, 0.8], [-0.3, 0.2, 0.8]]), atol=1e-4, rtol=0
    )
    assert rig.groups["left_eye"].numel() == len(ev)


def test_gltf_errors(tmp_path, gen):
    w, v, f, t, names, ev = scene(gen)
    w.js["meshes"][0]["extras"]["targetNames"][0] = "eyeBlinkk"
    p = w.glb(tmp_path / "bad.glb")
    with pytest.raises(ValueError, match=r"bad.glb.*unknown morph target name 'eyeBlinkk'"):
        load_gltf(p)
    rig = load_gltf(p, strict=False)
    assert "eyeBlinkk" in rig.metadata["ignored_shapes"]
    with pytest.raises(FileNotFoundError, match="nothing.glb"):
        load_gltf(tmp_path / "nothing.glb")
    (tmp_path / "junk.glb").write_bytes(b"\x00\x01junk")
    with pytest.raises(ValueError, match="junk.glb"):
        load_gltf(tmp_path / "junk.glb")
    w2 = GltfWriter()
    bad = v.copy()
    bad[3, 1] = np.nan
    w2.mesh("Head", bad, f)
    with pytest.raises(ValueError, match=r"nan.glb.*vertex 3 has NaN"):
        load_gltf(w2.glb(tmp_path / "nan.glb"))
    w3 = GltfWriter()
    w3.mesh("Head", v, f, [t[0][:-1]], ["jawOpen"])
    with pytest.raises(ValueError, match=r"count.glb.*'jawOpen' has \d+ vertices"):
        load_gltf(w3.glb(tmp_path / "count.glb"))
