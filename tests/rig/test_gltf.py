"""load_gltf: GLB and .gltf (data URI) with morph targets in several naming conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore.arkit import BLENDSHAPES
from facecore.rig import load_gltf

from ._gltf import GltfWriter, sphere


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


# ----------------------------------------------------------------------------------------------
# Hardening: each case below was accepted silently, hung, crashed or over-allocated before.
# ----------------------------------------------------------------------------------------------
from facecore.io.errors import FormatError  # noqa: E402
from facecore.io.gltf import read_glb  # noqa: E402

from ._gltf import glb_bytes  # noqa: E402


def one_mesh(gen=None) -> GltfWriter:
    w = GltfWriter()
    v, f = sphere(4)
    w.mesh("Head", v, f, [np.full((len(v), 3), 0.01)], ["jawOpen"])
    return w


def raises_for(path, match, loaders=(load_gltf, read_glb)):
    for load in loaders:
        with pytest.raises(FormatError, match=match) as e:
            load(path)
        assert path.name in str(e.value) and len(str(e.value)) < 400


@pytest.mark.timeout(20)
def test_node_cycle_and_shared_child(tmp_path):
    w = one_mesh()
    w.js["nodes"] += [{"name": "a", "children": [2]}, {"name": "b", "children": [1]}]
    w.js["scenes"][0]["nodes"].append(1)
    raises_for(w.glb(tmp_path / "cycle.glb"), r"nodes\[1\] is reached twice", (load_gltf,))
    w = one_mesh()
    w.js["nodes"] += [{"children": [0]}]
    w.js["scenes"][0]["nodes"].append(1)  # node 0 is a root and a child of node 1
    raises_for(w.glb(tmp_path / "twice.glb"), r"nodes\[0\] is reached twice", (load_gltf,))


@pytest.mark.timeout(20)
def test_absurd_count_without_buffer_view_is_refused_before_allocating(tmp_path):
    w = one_mesh()
    target = w.js["meshes"][0]["primitives"][0]["targets"][0]["POSITION"]
    w.js["accessors"][target] = {"componentType": 5126, "type": "VEC3", "count": 2**40}
    raises_for(w.glb(tmp_path / "huge.glb"), r"has 1099511627776 vertices, the primitive 32", (load_gltf,))
    raises_for(tmp_path / "huge.glb", r"1099511627776 elements, expected 32", (read_glb,))
    w = one_mesh()
    pos = w.js["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
    w.js["accessors"][pos] = {"componentType": 5126, "type": "VEC3", "count": 2**40}
    raises_for(w.glb(tmp_path / "huge_pos.glb"), "more than 4194304 vertices|no bufferView", (load_gltf,))
    raises_for(tmp_path / "huge_pos.glb", "no bufferView", (read_glb,))


def _set(js, where, value):
    *keys, last = where
    o = js
    for k in keys:
        o = o[k]
    o[last] = value


PRIM = ("meshes", 0, "primitives", 0)


@pytest.mark.parametrize("where, value, match", [
    (("accessors", 0, "count"), -1, r"accessors\[0\].count is -1"),
    (("accessors", 0, "count"), 10**30, r"more than 4194304 vertices"),
    (("accessors", 0, "count"), 3.0, r"accessors\[0\].count is 3.0"),
    (PRIM + ("attributes", "POSITION"), -1, r"POSITION is -1, expected an index"),
    (PRIM + ("indices",), True, r"indices is True, expected an index"),
    (("nodes", 0, "mesh"), -1, r"nodes\[0\].mesh is -1"),
    (("accessors", 1, "componentType"), 5126, r"componentType is 5126, expected one of \(5121, 5123, 5125\)"),
    (("accessors", 1, "componentType"), 5120, r"componentType is 5120, expected one of"),
    (("bufferViews", 0, "byteOffset"), -4, r"bufferViews\[0\].byteOffset is -4"),
    (("bufferViews", 0, "byteLength"), 10**9, r"runs past the end of its buffer"),
    (("bufferViews", 0, "byteStride"), 2, r"byteStride is 2, expected an integer 12..252"),
    (("accessors", 0, "type"), "VEC2", r"2 components per element, expected \(3,\)"),
    (("meshes", 0, "extras", "targetNames"), ["x" * 100_000], r"unknown morph target name 'xxxxx"),
    (("meshes", 0, "extras", "targetNames"), [7], r"targetNames is \[7\], expected a list of strings"),
    (("nodes", 0, "translation"), [10**400, 0, 0], r"nodes\[0\].translation has a non-finite value"),
])
def test_bad_values_name_the_file_and_field(tmp_path, where, value, match):
    w = one_mesh()
    w.glb(tmp_path / "ok.glb")
    _set(w.js, where, value)
    p = w.glb(tmp_path / "bad.glb")
    with pytest.raises(FormatError, match=match) as e:
        load_gltf(p)
    assert "bad.glb" in str(e.value) and len(str(e.value)) < 400  # a short excerpt, never the whole value


def test_negative_int8_and_float_indices_are_refused(tmp_path):
    w = GltfWriter()
    v, f = sphere(4)
    w.mesh("Head", v, f)
    idx = w.js["meshes"][0]["primitives"][0]["indices"]
    view = w.js["accessors"][idx]["bufferView"]
    n = w.js["accessors"][idx]["count"]
    for ctype, data, name in [(5120, np.full(n, -1, np.int8), "int8"),
                              (5126, np.full(n, 1.5, np.float32), "float")]:
        off = len(w.bin)
        w.bin += data.tobytes()
        w.js["bufferViews"][view] = {"buffer": 0, "byteOffset": off, "byteLength": data.nbytes}
        w.js["accessors"][idx]["componentType"] = ctype
        raises_for(w.glb(tmp_path / f"{name}.glb"), rf"componentType is {ctype}, expected one of")


def test_buffer_uris_must_stay_inside_the_model_folder(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    model = tmp_path / "model"
    model.mkdir()
    (model / "link.bin").symlink_to(secret)
    w = one_mesh()
    for uri in (str(secret), "../secret.bin", "%2E%2E/secret.bin", "file:///etc/passwd", "link.bin", ""):
        w.js["buffers"][0] = {"byteLength": len(w.bin), "uri": uri}
        p = model / "m.gltf"
        p.write_text(__import__("json").dumps(w.js))
        raises_for(p, r"buffers\[0\].uri .* (is not a relative path inside|leads outside) the model's folder")
    (model / "m.bin").write_bytes(bytes(w.bin))
    w.js["buffers"][0] = {"byteLength": len(w.bin), "uri": "m.bin"}
    p.write_text(__import__("json").dumps(w.js))
    assert load_gltf(p).num_vertices == 32  # a plain relative file still loads


def test_float32_overflow_after_the_node_transform(tmp_path):
    w = GltfWriter()
    v, f = sphere(4)
    w.mesh("Head", v * 1e30, f)
    w.js["nodes"][0]["scale"] = [1e10, 1e10, 1e10]  # finite in float64, inf in float32
    raises_for(w.glb(tmp_path / "big.glb"), r"vertex 0 has NaN or infinite coordinates \(in float32\)",
               (load_gltf,))


@pytest.mark.parametrize("blob, match", [
    (b"glTF\x02\x00\x00", r"byte 7: GLB header truncated"),
    (b"glTF" + (2).to_bytes(4, "little") + (40).to_bytes(4, "little") + b"\x10\x00\x00\x00JSON{}",
     r"GLB header says 40 bytes, the file has 22"),
    (b'{"asset": ' * 100_000, "nested too deeply"),
    (b'{"asset": {"version": "2.0"}, "meshes": [\xff]}', r"bad.gltf:1: not a glTF file: invalid UTF-8"),
    (b'{"asset": NaN}', r"NaN is not valid JSON"),
    (b'{"scene": 1' + b"0" * 5000 + b"}", r"invalid JSON"),
])
def test_broken_containers_and_json(tmp_path, blob, match):
    p = tmp_path / "bad.gltf"
    p.write_bytes(blob)
    raises_for(p, match)


def test_read_glb_validates_like_load_gltf(tmp_path):
    w = one_mesh()
    full = glb_bytes({**w.js, "buffers": [{"byteLength": len(w.bin)}]}, w.bin)
    (tmp_path / "cut.glb").write_bytes(full[:-9])
    raises_for(tmp_path / "cut.glb", r"header says \d+ bytes, the file has \d+", (read_glb,))
    w.js["accessors"][0]["bufferView"] = 99
    raises_for(w.glb(tmp_path / "view.glb"), r"bufferView is 99, expected an index", (read_glb,))
    w = one_mesh()
    w.js["accessors"][0]["byteOffset"] = 4  # 32 VEC3 from byte 4 need 388 of 384 bytes
    raises_for(w.glb(tmp_path / "past.glb"), r"need 388 bytes, bufferViews\[0\] has 384", (read_glb,))


def test_repeated_target_name_in_one_primitive(tmp_path):
    w = GltfWriter()
    v, f = sphere(4)
    w.mesh("Head", v, f, [np.full((len(v), 3), 0.01)] * 2, ["jawOpen", "jawOpen"])
    raises_for(w.glb(tmp_path / "twice.glb"), "morph target name 'jawOpen' appears twice", (load_gltf,))


@pytest.mark.timeout(20)
def test_render_rig_option_refuses_a_node_cycle(tmp_path):
    """`facecore render --rig` goes through facecore.animate.frames.load_rig: it used to hang here."""
    from facecore.animate.frames import load_rig

    w = one_mesh()
    w.js["nodes"][0]["children"] = [0]
    with pytest.raises(ValueError, match=r"loop.glb.*nodes\[0\] is reached twice"):
        load_rig(w.glb(tmp_path / "loop.glb"))
