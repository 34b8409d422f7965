"""Fuzzing the mesh and rig readers: whatever the bytes, a reader returns a result or raises FormatError /
ValueError / FileNotFoundError naming the file; never another exception, a crash, a hang or a huge
allocation.

Readers: glTF/GLB (``load_gltf`` and ``read_glb``, one parser), OBJ files and folders (``read_obj``,
``load_obj_folder``) and rig safetensors files (``FaceRig.load``). Inputs: small valid files written
here, then truncated, bytes flipped, JSON values replaced (absurd counts, negative / float / bool
indices, wrong types), index buffers and sparse indices rewritten, node graphs with cycles, deeply
nested JSON, buffer URIs pointing anywhere; OBJ text from a line grammar with NaN/inf/1e39 and ragged
lines; rig files with tensors dropped, cast, reshaped or filled with bad values and headers rewritten.

``FACECORE_FUZZ_EXAMPLES`` sets the examples per fuzz test (default 30: the file runs in seconds).
Every run draws the same cases (``derandomize=True``).
"""

from __future__ import annotations

import copy
import json
import os
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facecore.io.gltf import read_glb, write_glb
from facecore.io.gltf_reader import GltfFile
from facecore.rig import FaceRig, load_gltf, load_obj_folder
from facecore.rig.obj_folder import read_obj

from ._gltf import GltfWriter, glb_bytes, sphere

EXAMPLES = int(os.environ.get("FACECORE_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=5000,  # ms per case: a reader that starts allocating or looping trips this
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
TIMEOUT = 60 + EXAMPLES // 10  # seconds per fuzz test (pytest-timeout)
CASES = {"n": 0, "loaded": 0}  # cases run in this process (printed by test_zz_report)


def clean(load, path: Path, named: Path | None = None):
    """Run ``load(path)``: a result, or ValueError (FormatError) / FileNotFoundError naming the file."""
    CASES["n"] += 1
    try:
        out = load(path)
        CASES["loaded"] += 1
        return out
    except (ValueError, FileNotFoundError) as e:  # FormatError is a ValueError
        msg = str(e)
        assert str(named or path) in msg, f"{type(e).__name__} does not name {named or path}: {msg[:300]}"
        assert len(msg) < 2000, f"message of {len(msg)} characters (must show short excerpts)"
        return None


# ----------------------------------------------------------------------------------------------
# Seeds (written in the test, small)
# ----------------------------------------------------------------------------------------------
def gltf_seed() -> GltfWriter:
    """Two meshes under a transformed parent node, sparse and dense targets, uvs, colours, material."""
    w = GltfWriter()
    v, f = sphere(3)
    rng = np.random.default_rng(0)
    t = [rng.normal(size=(len(v), 3)) * 0.1, np.zeros((len(v), 3))]
    t[1][:2] = 0.5
    w.mesh("Head", v, f, t, ["jawOpen", "eyeBlink_L"], sparse=True, material="Skin")
    prim = w.js["meshes"][0]["primitives"][0]
    prim["attributes"]["TEXCOORD_0"] = w.accessor(rng.random((len(v), 2)))
    prim["attributes"]["COLOR_0"] = w.accessor(rng.random((len(v), 3)))
    w.mesh("EyeLeft", *sphere(3, 0.2), translation=(0.3, 0.2, 0.8))
    w.js["nodes"].append({"name": "root", "children": [0, 1], "rotation": [0, 0.2, 0, 0.98],
                          "scale": [2, 2, 2]})
    w.js["scenes"][0]["nodes"] = [2]
    return w


def tiny_rig(V: int = 12) -> FaceRig:
    g = torch.Generator().manual_seed(0)
    v, f = sphere(2)
    V = len(v)
    deltas = torch.zeros(52, V, 3)
    deltas[[3, 17, 24], : V // 3] = torch.randn(3, V // 3, 3, generator=g)
    return FaceRig(
        neutral=torch.as_tensor(v, dtype=torch.float32),
        triangles=torch.as_tensor(f, dtype=torch.int32),
        deltas=deltas,
        channels=tuple(__import__("facecore").arkit.BLENDSHAPES[k] for k in (3, 17, 24)),
        groups={"left_eye": torch.arange(0, 2), "right_eye": torch.arange(2, 4)},
        eye_centers=torch.randn(2, 3, generator=g),
        neck_pivot=torch.zeros(3),
        uvs=torch.rand(V, 2, generator=g),
        uv_triangles=torch.as_tensor(f, dtype=torch.int32),
        colors=torch.rand(V, 3, generator=g),
        identity_basis=torch.randn(2, V, 3, generator=g) * (torch.rand(1, V, 1, generator=g) > 0.7),
        identity_names=("a", "b"),
        metadata={"source": "fuzz", "units": "cm"},
    )


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds")
    w = gltf_seed()
    glb = w.glb(d / "seed.glb").read_bytes()
    rig = tiny_rig()
    track = types.SimpleNamespace(times=np.arange(4) / 30.0, params=np.random.default_rng(1).random((4, 61)))
    write_glb(d / "anim.glb", rig, track)
    rig.save(d / "rig.safetensors")
    assert load_gltf(d / "seed.glb").num_vertices == 2 * 3 * 6
    anim = GltfFile(d / "anim.glb")
    return types.SimpleNamespace(gltf=w, glb=glb, anim=(d / "anim.glb").read_bytes(),
                                 docs=[(w.js, bytes(w.bin)), (anim.json, anim.bin)],
                                 rig=(d / "rig.safetensors").read_bytes())


@pytest.fixture
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def load_both(path: Path):
    clean(load_gltf, path)
    clean(read_glb, path)


# ----------------------------------------------------------------------------------------------
# glTF / GLB
# ----------------------------------------------------------------------------------------------
def flips(n: int):
    return st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), min_size=1, max_size=8)


def apply_flips(data: bytes, changes) -> bytes:
    b = bytearray(data)
    for i, x in changes:
        b[i] ^= x
    return bytes(b)


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(data=st.data())
def test_glb_truncated_or_flipped(seeds, work, data):
    blob = data.draw(st.sampled_from([seeds.glb, seeds.anim]))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        blob = apply_flips(blob, data.draw(flips(len(blob))))
    p = work / "f.glb"
    p.write_bytes(blob)
    load_both(p)


# Values that break naive readers: negative / huge / float / bool indices, wrong types, deep nesting.
NASTY = st.one_of(
    st.integers(-3, 70),
    st.sampled_from([-(2**31), 2**31 - 1, 2**32, 2**40, 2**63, 2**64 + 1, 10**30, 10**400, 5120, 5121, 5123,
                     5125, 5126, 5122, 252, 253]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, None, "", "VEC3", "SCALAR", "MAT4", "x" * 5000, [], {}, [0], [-1], [[[0]]],
                     {"bufferView": 0}, [0, 0, 0], [1e308, 1e308, 1e308]]),
    st.text(max_size=20),
    st.lists(st.integers(-2, 8), max_size=6),
)


def json_paths(o, prefix=()):
    """Every (container, key) location of a JSON value (depth-first)."""
    out = []
    items = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out += json_paths(v, prefix + (k,))
    return out


KEYS = ["byteStride", "normalized", "matrix", "translation", "rotation", "scale", "children", "mesh",
        "sparse", "byteOffset", "bufferView", "uri", "extras", "targets", "indices", "mode", "material",
        "scene", "count", "componentType", "type", "name", "targetNames", "TEXCOORD_0", "COLOR_0",
        "POSITION", "samplers", "channels", "sampler", "input", "output", "path", "target", "animations",
        "byteLength", "buffer"]


def get(js, where):
    try:
        for k in where:
            js = js[k]
    except (KeyError, IndexError, TypeError):
        return None
    return js


def put(js, where, value):
    o = js
    for k in where[:-1]:
        o = o[k]
    o[where[-1]] = value


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(data=st.data())
def test_gltf_json_values_replaced(seeds, work, data):
    js, blob = data.draw(st.sampled_from(seeds.docs))
    js = copy.deepcopy(js)
    js["buffers"][0] = {"byteLength": len(blob)}
    paths = json_paths(js)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.sampled_from(paths))
        action = data.draw(st.integers(0, 5))
        if action == 1:  # add a key the file does not have (strides, sparse, matrices, ...)
            where = data.draw(st.sampled_from([()] + [w for w in paths if isinstance(get(js, w), dict)]))
            where += (data.draw(st.sampled_from(KEYS)),)
        if action == 0:  # delete instead of replace
            o = js
            try:
                for k in where[:-1]:
                    o = o[k]
                if isinstance(o, dict):
                    o.pop(where[-1], None)
            except (KeyError, IndexError, TypeError):
                pass
            continue
        try:
            put(js, where, data.draw(NASTY))
        except (KeyError, IndexError, TypeError):  # an earlier replacement removed the path
            pass
    p = work / "j.glb"
    p.write_bytes(glb_bytes(js, blob))
    load_both(p)


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(data=st.data())
def test_gltf_index_buffers_counts_and_sparse(seeds, work, data):
    w = seeds.gltf
    js = copy.deepcopy(w.js)
    blob = bytearray(w.bin)
    prim = js["meshes"][0]["primitives"][0]
    raw = data.draw(st.binary(min_size=1, max_size=256))
    while len(blob) % 4:
        blob.append(0)
    js["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(raw)})
    blob += raw
    view = len(js["bufferViews"]) - 1
    kind = data.draw(st.sampled_from(["indices", "sparse indices", "sparse values", "count", "no view"]))
    ctype = data.draw(st.sampled_from([5120, 5121, 5122, 5123, 5125, 5126, 5124, 0]))
    count = data.draw(st.one_of(st.integers(-2, 300), st.sampled_from([2**31, 2**32, 2**40, 10**20])))
    if kind == "indices":
        js["accessors"][prim["indices"]] = {"bufferView": view, "componentType": ctype, "count": count,
                                            "type": "SCALAR"}
    else:
        acc = js["accessors"][prim["targets"][0]["POSITION"]]
        if kind == "sparse indices":
            acc["sparse"]["indices"] = {"bufferView": view, "componentType": ctype}
            acc["sparse"]["count"] = count
        elif kind == "sparse values":
            acc["sparse"]["values"] = {"bufferView": view, "byteOffset": data.draw(st.integers(-1, 64))}
        elif kind == "count":
            acc["count"] = count
        else:
            a = js["accessors"][prim["attributes"]["POSITION"]]
            a.pop("bufferView")
            a["count"] = count
    js["buffers"][0] = {"byteLength": len(blob)}
    p = work / "i.glb"
    p.write_bytes(glb_bytes(js, blob))
    load_both(p)


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(children=st.lists(st.lists(st.integers(-1, 6), max_size=4), min_size=1, max_size=6),
       roots=st.lists(st.integers(-1, 6), min_size=1, max_size=4),
       meshes=st.lists(st.integers(-1, 2), min_size=6, max_size=6))
def test_gltf_node_graphs_terminate(seeds, work, children, roots, meshes):
    w = seeds.gltf
    js = copy.deepcopy(w.js)
    js["buffers"][0] = {"byteLength": len(w.bin)}
    js["nodes"] = [{"children": c, **({"mesh": m} if m >= 0 else {})} for c, m in zip(children, meshes)]
    js["scenes"][0]["nodes"] = roots
    p = work / "n.glb"
    p.write_bytes(glb_bytes(js, w.bin))
    load_both(p)


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(depth=st.integers(1, 200_000), where=st.sampled_from(["root", "extras", "nodes", "accessor"]),
       opener=st.sampled_from(["[", '{"a":']), binary=st.booleans())
def test_gltf_deeply_nested_json(seeds, work, depth, where, opener, binary):
    w = seeds.gltf
    js = copy.deepcopy(w.js)
    js["buffers"][0] = {"byteLength": len(w.bin)}
    deep = opener * depth + "0" + ("]" if opener == "[" else "}") * depth
    marker = '"@@DEEP@@"'
    if where == "root":
        text = deep
    else:
        target = {"extras": js["meshes"][0], "nodes": js["nodes"][0], "accessor": js["accessors"][0]}[where]
        target["extras" if where != "accessor" else "min"] = "@@DEEP@@"
        text = json.dumps(js).replace(marker, deep)
    if binary:
        p = work / "d.glb"
        t = text.encode()
        t += b" " * (-len(t) % 4)
        body = len(t).to_bytes(4, "little") + b"JSON" + t
        bin_ = bytes(w.bin)
        body += len(bin_).to_bytes(4, "little") + b"BIN\0" + bin_
        p.write_bytes(b"glTF" + (2).to_bytes(4, "little") + (12 + len(body)).to_bytes(4, "little") + body)
    else:
        p = work / "d.gltf"
        p.write_text(text)
    load_both(p)


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(uri=st.one_of(
    st.sampled_from(["../secret.bin", "..%2Fsecret.bin", "%2e%2e/secret.bin", "/etc/passwd", "SECRET",
                     "sub/../../secret.bin", "file:///etc/passwd", "http://example.com/x.bin", "C:\\x.bin",
                     "\\\\server\\share", "link.bin", "ok.bin", "sub", "data:,abc", "data:;base64,!!!!",
                     "data:application/octet-stream;base64,AAAA", "", "%00", "ok.bin%00.png",
                     "a" * 300, "ok.bin?x=1", "ok.bin#frag"]),
    st.text(max_size=30)),
    length=st.one_of(st.integers(-1, 2048), st.sampled_from([2**40, 10**30])))
def test_gltf_buffer_uris(seeds, work, uri, length):
    model = work / "model"
    if not model.exists():
        model.mkdir()
        (model / "sub").mkdir()
        (work / "secret.bin").write_bytes(bytes(seeds.gltf.bin))
        (model / "ok.bin").write_bytes(bytes(seeds.gltf.bin))
        (model / "link.bin").symlink_to(work / "secret.bin")
    js = copy.deepcopy(seeds.gltf.js)
    js["buffers"][0] = {"byteLength": length, "uri": uri.replace("SECRET", str(work / "secret.bin"))}
    p = model / "u.gltf"
    p.write_text(json.dumps(js))
    rig = clean(load_gltf, p)
    if rig is not None:  # only a file inside the folder (or a data URI) may have been read
        assert uri in ("ok.bin",) or uri.startswith("data:") or uri.startswith("ok.bin"), uri
    clean(read_glb, p)


# ----------------------------------------------------------------------------------------------
# OBJ
# ----------------------------------------------------------------------------------------------
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e39", "-1e39", "3.5e38", "1e-400", "1_0", "0x10", "+1", "-0",
                     "1e", ".", "", "9" * 400, "1/2", "1//3", "1/2/3", "/", "//", "-1", "-99", "0", "1", "2",
                     "3", "\u00e9", "\ufffd"]),
)
LINE = st.tuples(
    st.sampled_from(["v", "v", "v", "vt", "vn", "f", "f", "g", "o", "usemtl", "#", "", "s", "vp", "V"]),
    st.lists(NUMBER, max_size=7),
).map(lambda kw: (kw[0] + " " + " ".join(kw[1])).rstrip())


def obj_text(draw_lines, base: str | None) -> str:
    return "\n".join(draw_lines) if base is None else base + "\n" + "\n".join(draw_lines)


CUBE = "\n".join(["v 0 0 0", "v 1 0 0", "v 1 1 0", "v 0 1 0", "v 0 0 1", "v 1 0 1", "v 1 1 1", "v 0 1 1",
                  "vt 0 0", "vt 1 0", "vt 1 1", "usemtl EyeLeft",
                  "f 1/1 2/2 3/3 4/1", "f 5/1 6/2 7/3", "usemtl Skin", "f 1/1 5/2 8/3 4/1", "f 2/2 6/2 7/3"])


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(lines=st.lists(LINE, max_size=25), base=st.sampled_from([None, CUBE]), faces=st.booleans(),
       shape_lines=st.lists(LINE, max_size=10))
def test_obj_line_grammar(work, lines, base, faces, shape_lines):
    folder = work / "objs"
    folder.mkdir(exist_ok=True)
    neutral = folder / "head_neutral.obj"
    neutral.write_text(obj_text(lines, base), encoding="utf-8")
    clean(lambda p: read_obj(p, faces=faces), neutral)
    shape = folder / "jawOpen.obj"
    shape.write_text(CUBE.split("vt")[0] + "\n".join(shape_lines), encoding="utf-8")
    clean(load_obj_folder, folder)


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(data=st.data())
def test_obj_truncated_or_flipped(work, data):
    folder = work / "objs"
    folder.mkdir(exist_ok=True)
    blob = (CUBE + "\n").encode()
    shape = "\n".join(ln for ln in CUBE.splitlines() if ln.startswith("v ")).encode() + b"\n"
    which = data.draw(st.sampled_from(["neutral", "shape"]))
    target = blob if which == "neutral" else shape
    if data.draw(st.booleans()):
        target = target[: data.draw(st.integers(0, len(target) - 1))]
    else:
        target = apply_flips(target, data.draw(flips(len(target))))
    (folder / "head_neutral.obj").write_bytes(target if which == "neutral" else blob)
    (folder / "mouthClose.obj").write_bytes(target if which == "shape" else shape)
    clean(read_obj, folder / "head_neutral.obj")
    clean(lambda p: read_obj(p, faces=False), folder / "mouthClose.obj")
    clean(load_obj_folder, folder)


# ----------------------------------------------------------------------------------------------
# Rig safetensors files
# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(data=st.data())
def test_rig_file_truncated_or_flipped(seeds, work, data):
    blob = seeds.rig
    if data.draw(st.booleans()):
        # Most of a safetensors file is tensor data: aim half of the flips at the header.
        header_len = int.from_bytes(blob[:8], "little") + 8
        n = header_len if data.draw(st.booleans()) else len(blob)
        blob = apply_flips(blob, data.draw(flips(n)))
    else:
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    p = work / "r.safetensors"
    p.write_bytes(blob)
    clean(FaceRig.load, p)


BAD_TENSOR = st.sampled_from(["drop", "float64", "float16", "int32", "int64", "uint8", "bool", "empty",
                              "scalar", "flat", "nan", "inf", "big", "negative", "huge index", "transpose"])


def spoil(t: torch.Tensor, how: str) -> torch.Tensor | None:
    if how == "drop":
        return None
    if how in ("float64", "float16", "int32", "int64", "uint8", "bool"):
        return t.to(getattr(torch, how))
    if how == "empty":
        return t.reshape(-1)[:0]
    if how == "scalar":
        return t.reshape(-1)[:1].reshape(()) if t.numel() else torch.zeros((), dtype=t.dtype)
    if how == "flat":
        return t.reshape(-1)
    if how == "transpose":
        return t.T.contiguous() if t.ndim == 2 else t
    t = t.clone()
    if t.numel() == 0:
        return t
    value = {"nan": float("nan"), "inf": float("inf"), "big": 3.4e38, "negative": -1,
             "huge index": 2**31 - 1}[how]
    if t.is_floating_point():
        t.view(-1)[0] = value
    elif how in ("negative", "huge index") and t.dtype != torch.bool:
        info = torch.iinfo(t.dtype)
        t.view(-1)[0] = max(info.min, min(info.max, int(value)))
    return t


HEADER_VALUE = st.one_of(NASTY, st.lists(st.text(max_size=8), max_size=4))


@pytest.mark.timeout(TIMEOUT)
@FUZZ
@given(data=st.data())
def test_rig_file_tensors_and_header(seeds, work, data):
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = work / "src.safetensors"
    if not src.exists():
        src.write_bytes(seeds.rig)
    with safe_open(str(src), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header = json.loads(f.metadata()["facecore_rig"])
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(sorted(t)))
        x = spoil(t[name], data.draw(BAD_TENSOR))
        if x is None:
            t.pop(name)
        else:
            t[name] = x
        if not t:
            t["x"] = torch.zeros(1)
    text = json.dumps(header)
    if data.draw(st.booleans()):
        key = data.draw(st.sampled_from(["format", "version", "channels", "groups", "identity_names",
                                         "metadata", "extra"]))
        header[key] = data.draw(HEADER_VALUE)
        text = json.dumps(header)
    if data.draw(st.integers(0, 9)) == 0:
        text = data.draw(st.sampled_from(["[" * 50_000, "{", "null", "1e400", '"x"', text[: len(text) // 2]]))
    p = work / "r.safetensors"
    save_file({k: v.contiguous() for k, v in t.items()}, str(p), metadata={"facecore_rig": text})
    clean(FaceRig.load, p)


def test_zz_report():
    """Prints the number of fuzz cases this process ran (for FACECORE_FUZZ_EXAMPLES runs)."""
    print(f"fuzz cases run: {CASES['n']} ({CASES['loaded']} loaded, the others raised clean errors)")
