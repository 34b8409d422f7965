"""Validated glTF 2.0 reading (``.gltf`` + buffers, or binary ``.glb``): the one parser behind
:func:`facecore.rig.load_gltf` and :func:`read_glb`.

Every index, count, offset, stride and length in the file is checked before it is used, and every
allocation is bounded by bytes the file really holds: a backed accessor must fit in its buffer view,
the view in its buffer, the buffer in its data; an accessor without a buffer view (all zeros plus
optional sparse values) is read only where the caller knows its count from a backed one (morph
targets). The node graph must be a forest (a node reached twice, e.g. by a cycle, is an error).
Buffer URIs are data URIs or relative paths inside the model's folder. Errors are
:class:`~facecore.io.errors.FormatError` naming the file and the byte offset (GLB container), the line
(JSON text) or the JSON path (``accessors[3].count``), with short excerpts of bad values.

Why not a library: trimesh's glTF loader drops morph targets and sparse accessors (the parts a face
rig needs); pygltflib only maps the JSON onto dataclasses and leaves accessor decoding, which is where
the bounds checks belong, to the caller. This module is small and checks everything itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .errors import FormatError, excerpt

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
COMPONENT = {
    5120: np.dtype(np.int8),
    5121: np.dtype(np.uint8),
    5122: np.dtype(np.int16),
    5123: np.dtype(np.uint16),
    5125: np.dtype(np.uint32),
    5126: np.dtype(np.float32),
}
INDEX_COMPONENTS = (5121, 5123, 5125)  # glTF: indices (and sparse indices) are unsigned
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_NORM = {np.dtype(np.int8): 127.0, np.dtype(np.uint8): 255.0, np.dtype(np.int16): 32767.0,
         np.dtype(np.uint16): 65535.0}

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class GltfFile:
    """One parsed glTF document: ``json`` (the validated top-level object) and checked accessors."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such glTF file")
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise self.error(f"cannot read ({e.strerror})") from None
        self.bin: bytes | None = None
        if raw[:4] == GLB_MAGIC:
            text, base = self._chunks(raw)
        else:
            text, base = raw, None
        self.json = self._parse_json(text, base)
        if not isinstance(self.json, dict):
            raise self.error(f"not a glTF file: the JSON is {excerpt(self.json)}, expected an object")
        self._buffers: dict[int, memoryview] = {}

    def error(self, message: str, **where: int) -> FormatError:
        return FormatError(message, path=self.path, **where)

    # -- container ------------------------------------------------------------------------------
    def _chunks(self, raw: bytes) -> tuple[bytes, int]:
        if len(raw) < 12:
            raise self.error(f"GLB header truncated ({len(raw)} of 12 bytes)", offset=len(raw))
        version, length = struct.unpack_from("<II", raw, 4)
        if version != 2:
            raise self.error(f"GLB version {version} (only glTF 2.0 is supported)", offset=4)
        if length != len(raw):
            raise self.error(f"GLB header says {length} bytes, the file has {len(raw)} (truncated?)",
                             offset=8)
        at, k, js = 12, 0, None
        while at < len(raw):
            if at + 8 > len(raw):
                raise self.error("GLB chunk header truncated", offset=at)
            size, kind = struct.unpack_from("<II", raw, at)
            if at + 8 + size > len(raw):
                raise self.error(f"GLB chunk of {size} bytes runs past the end of the file", offset=at)
            body = raw[at + 8 : at + 8 + size]
            if k == 0:
                if kind != CHUNK_JSON:
                    raise self.error(f"first GLB chunk has type {kind:#x}, expected JSON", offset=at + 4)
                js = (body, at + 8)
            elif kind == CHUNK_BIN and k == 1:
                self.bin = body
            elif kind in (CHUNK_JSON, CHUNK_BIN):
                raise self.error(f"GLB chunk {k} has type {kind:#x} (only one JSON then one BIN chunk)",
                                 offset=at + 4)
            at, k = at + 8 + size, k + 1
        if js is None:
            raise self.error("GLB without a JSON chunk", offset=12)
        return js

    def _parse_json(self, data: bytes, base: int | None) -> Any:
        def where(byte: int) -> dict[str, int]:
            if base is not None:
                return {"offset": base + byte}
            return {"line": data.count(b"\n", 0, byte) + 1}

        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.error(f"not a glTF file: invalid UTF-8 ({e.reason})", **where(e.start)) from None
        bom = 1 if text.startswith("\ufeff") else 0
        try:
            return json.loads(text[bom:], parse_constant=_reject_constant)
        except json.JSONDecodeError as e:
            byte = len(text[: bom + e.pos].encode("utf-8"))
            raise self.error(f"not a glTF file: invalid JSON ({e.msg})", **where(byte)) from None
        except RecursionError:
            raise self.error("not a glTF file: JSON nested too deeply") from None
        except ValueError as e:  # NaN/Infinity, integers with too many digits
            raise self.error(f"not a glTF file: invalid JSON ({excerpt(str(e))})") from None

    # -- typed JSON access ------------------------------------------------------------------------
    def array(self, key: str) -> list:
        """Top-level array ``key`` (empty when absent)."""
        v = self.json.get(key, [])
        if not isinstance(v, list):
            raise self.error(f"'{key}' is {excerpt(v)}, expected an array")
        return v

    def item(self, key: str, i: Any, where: str) -> dict:
        """``json[key][i]`` after checking that ``i`` (found at ``where``) is a valid index."""
        return self.obj(self.array(key)[self.index(i, key, where)], f"{key}[{i}]")

    def index(self, i: Any, key: str, where: str) -> int:
        n = len(self.array(key))
        if not _is_int(i) or not 0 <= i < n:
            raise self.error(f"{where} is {excerpt(i)}, expected an index into '{key}' (0..{n - 1})")
        return i

    def obj(self, v: Any, where: str) -> dict:
        if not isinstance(v, dict):
            raise self.error(f"{where} is {excerpt(v)}, expected an object")
        return v

    def field(self, o: dict, key: str, where: str, kind: type | tuple, default: Any = None) -> Any:
        v = o.get(key, default)
        if v is not default and (not isinstance(v, kind) or isinstance(v, bool) and kind is not bool):
            name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.error(f"{where}.{key} is {excerpt(v)}, expected {name}")
        return v

    def integer(self, o: dict, key: str, where: str, default: int | None = None, lo: int = 0,
                hi: int | None = None) -> int:
        v = o.get(key, default)
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            what = "missing" if key not in o else f"{excerpt(v)}"
            raise self.error(f"{where}.{key} is {what}, expected an integer {rng}")
        return v

    def name(self, o: dict, where: str) -> str:
        return self.field(o, "name", where, str, "")

    def numbers(self, o: dict, key: str, where: str, n: int, default: list[float]) -> np.ndarray:
        v = o.get(key, default)
        if not (isinstance(v, list) and len(v) == n and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            raise self.error(f"{where}.{key} is {excerpt(v)}, expected {n} numbers")
        try:
            out = np.array([float(x) for x in v])
        except OverflowError:  # an integer beyond float64
            out = np.full(n, np.inf)
        if not np.isfinite(out).all():
            raise self.error(f"{where}.{key} has a non-finite value: {excerpt(v)}")
        return out

    # -- buffers and accessors --------------------------------------------------------------------
    def buffer(self, i: int) -> memoryview:
        """Bytes of ``buffers[i]``, exactly ``byteLength`` long."""
        if i in self._buffers:
            return self._buffers[i]
        where = f"buffers[{i}]"
        b = self.item("buffers", i, where)
        length = self.integer(b, "byteLength", where, lo=1)
        uri = self.field(b, "uri", where, str)
        if uri is None:
            if i != 0 or self.bin is None:
                raise self.error(f"{where} has no uri and is not the GLB's BIN chunk")
            data = self.bin
        elif uri.startswith("data:"):
            head, _, payload = uri.partition(",")
            if not head.endswith(";base64"):
                raise self.error(f"{where}.uri is a data URI without ';base64' ({excerpt(head)})")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError) as e:
                raise self.error(f"{where}.uri: bad base64 data ({e})") from None
        else:
            data = self._external(uri, where, length)
        if len(data) < length:
            raise self.error(f"{where}.byteLength is {length} but the data has {len(data)} bytes")
        self._buffers[i] = memoryview(data)[:length]
        return self._buffers[i]

    def _external(self, uri: str, where: str, length: int) -> bytes:
        rel = urllib.parse.unquote(uri)
        parts = PurePosixPath(rel.replace("\\", "/")).parts
        if "\0" in rel or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", rel) or rel.startswith(("/", "\\")) \
                or ".." in parts or not parts:
            raise self.error(f"{where}.uri {excerpt(uri)} is not a relative path inside the model's folder")
        try:
            folder = self.path.parent.resolve()
            p = (folder / rel).resolve()
            if not p.is_relative_to(folder):  # a symlink pointing out
                raise self.error(f"{where}.uri {excerpt(uri)} leads outside the model's folder")
            if not p.is_file():
                raise FileNotFoundError(f"{self.path}: buffer file not found: {excerpt(str(p))}")
            size = p.stat().st_size
            if size < length:  # checked first: read(n) allocates n bytes up front
                raise self.error(f"{where}.byteLength is {length} but {excerpt(uri)} has {size} bytes")
            with open(p, "rb") as f:
                return f.read(length)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise self.error(f"{where}: cannot read {excerpt(uri)} ({e.strerror})") from None

    def _view(self, vi: Any, offset: int, count: int, dtype: np.dtype, width: int, where: str) -> np.ndarray:
        """``count`` elements of ``width`` x ``dtype`` at ``offset`` in bufferViews[vi] -> [count, width]."""
        vwhere = f"bufferViews[{vi}]"
        view = self.item("bufferViews", vi, f"{where}.bufferView")
        buf = self.buffer(self.index(view.get("buffer"), "buffers", f"{vwhere}.buffer"))
        start = self.integer(view, "byteOffset", vwhere, 0)
        length = self.integer(view, "byteLength", vwhere, lo=1)
        if start + length > len(buf):
            raise self.error(f"{vwhere} (bytes {start}..{start + length}) runs past the end of its buffer "
                             f"({len(buf)} bytes)")
        item = dtype.itemsize * width
        stride = self.integer(view, "byteStride", vwhere, item, lo=item, hi=max(item, 252))
        need = offset + stride * (count - 1) + item
        if need > length:
            raise self.error(f"{where}: {count} elements of {item} bytes (stride {stride}) from byte "
                             f"{offset} need {need} bytes, {vwhere} has {length}")
        start += offset
        if stride == item:
            out = np.frombuffer(buf, dtype=dtype, count=count * width, offset=start)
            return out.reshape(count, width).copy()
        rows = np.lib.stride_tricks.as_strided(
            np.frombuffer(buf, np.uint8, count=need, offset=start), shape=(count, item), strides=(stride, 1)
        )
        return rows.copy().view(dtype).reshape(count, width)  # copy: C order even when count == 1

    def accessor_info(self, i: Any, where: str) -> tuple[dict, np.dtype, int, int]:
        """(accessor, dtype, width, count) of accessors[i], checked, nothing decoded."""
        a = self.item("accessors", i, where)
        aw = f"accessors[{i}]"
        ctype = a.get("componentType")
        if not _is_int(ctype) or ctype not in COMPONENT:
            raise self.error(f"{aw}.componentType is {excerpt(ctype)}, expected one of {sorted(COMPONENT)}")
        kind = a.get("type")
        if not isinstance(kind, str) or kind not in WIDTH:
            raise self.error(f"{aw}.type is {excerpt(kind)}, expected one of {', '.join(WIDTH)}")
        return a, COMPONENT[ctype], WIDTH[kind], self.integer(a, "count", aw, lo=1)

    def accessor(self, i: Any, where: str, *, widths: tuple[int, ...] | None = None,
                 count: int | None = None, components: tuple[int, ...] | None = None,
                 normalize: bool = True) -> np.ndarray:
        """accessors[i] (referenced at ``where``) decoded -> ``[count, width]``: the stored dtype, or
        float64 where ``normalized`` integers are scaled (``normalize``). ``widths``/``components``
        restrict the type; ``count`` is the element count the caller needs (checked before anything is
        read) and is what allows an accessor without a bufferView (zeros plus sparse values)."""
        a, dtype, width, n = self.accessor_info(i, where)
        aw = f"accessors[{i}]"
        if widths is not None and width not in widths:
            raise self.error(f"{where}: {aw} has {width} components per element, expected {widths}")
        if components is not None and a["componentType"] not in components:
            raise self.error(f"{where}: {aw}.componentType is {a['componentType']}, expected one of "
                             f"{components}")
        if count is not None and n != count:
            raise self.error(f"{where}: {aw} has {n} elements, expected {count}")
        offset = self.integer(a, "byteOffset", aw, 0)
        if "bufferView" in a:
            out = self._view(a["bufferView"], offset, n, dtype, width, aw)
        elif count is None:
            raise self.error(f"{where}: {aw} has no bufferView (facecore reads such all-zero accessors only "
                             "as morph targets)")
        else:
            out = np.zeros((n, width), dtype)
        sparse = self.field(a, "sparse", aw, dict)
        if sparse is not None:
            sw = f"{aw}.sparse"
            k = self.integer(sparse, "count", sw, lo=1, hi=n)
            ind = self.obj(sparse.get("indices"), f"{sw}.indices")
            ictype = ind.get("componentType")
            if ictype not in INDEX_COMPONENTS or not _is_int(ictype):
                raise self.error(f"{sw}.indices.componentType is {excerpt(ictype)}, expected one of "
                                 f"{INDEX_COMPONENTS}")
            idx = self._view(ind.get("bufferView"), self.integer(ind, "byteOffset", f"{sw}.indices", 0), k,
                             COMPONENT[ictype], 1, f"{sw}.indices")[:, 0].astype(np.int64)
            if int(idx.max()) >= n:
                raise self.error(f"{sw}.indices: index {int(idx.max())} but the accessor has {n} elements")
            val = self.obj(sparse.get("values"), f"{sw}.values")
            start = self.integer(val, "byteOffset", f"{sw}.values", 0)
            out[idx] = self._view(val.get("bufferView"), start, k, dtype, width, f"{sw}.values")
        normalized = self.field(a, "normalized", aw, bool, False)
        if normalize and normalized and dtype in _NORM:
            out = np.maximum(out.astype(np.float64) / _NORM[dtype], -1.0)
        return out

    def floats(self, i: Any, where: str, *, finite: bool = True, **kw: Any) -> np.ndarray:
        """An accessor as float64 (integers by value, or scaled when normalized); NaN/inf refused unless
        ``finite=False`` (callers that check after their own transform)."""
        with np.errstate(invalid="ignore"):  # signalling NaNs: reported below, not warned about
            out = self.accessor(i, where, **kw).astype(np.float64)
        bad = ~np.isfinite(out).all(1)
        if finite and bad.any():
            raise self.error(f"{where}: element {int(np.argmax(bad))} has NaN or infinite values")
        return out

    def indices(self, i: Any, where: str, vertices: int) -> np.ndarray:
        """A triangle index accessor -> int64 ``[F, 3]``, every index in ``0..vertices-1``."""
        f = self.accessor(i, where, widths=(1,), components=INDEX_COMPONENTS, normalize=False)
        if self.array("accessors")[i].get("normalized"):
            raise self.error(f"{where}: index accessors[{i}] is normalized")
        f = f[:, 0].astype(np.int64)
        if len(f) % 3:
            raise self.error(f"{where} has {len(f)} indices (need a multiple of 3)")
        if int(f.max()) >= vertices:
            raise self.error(f"{where}: index {int(f.max())} but only {vertices} vertices")
        return f.reshape(-1, 3)

    # -- scene graph ------------------------------------------------------------------------------
    def node_matrix(self, node: dict, where: str) -> np.ndarray:
        if "matrix" in node:
            return self.numbers(node, "matrix", where, 16, []).reshape(4, 4).T  # column-major in glTF
        t = self.numbers(node, "translation", where, 3, [0.0, 0.0, 0.0])
        x, y, z, w = self.numbers(node, "rotation", where, 4, [0.0, 0.0, 0.0, 1.0])
        s = self.numbers(node, "scale", where, 3, [1.0, 1.0, 1.0])
        r = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        m = np.eye(4)
        m[:3, :3] = r * s
        m[:3, 3] = t
        return m

    def mesh_instances(self) -> list[tuple[int, np.ndarray, str]]:
        """(mesh index, world matrix, node name) for every mesh node of the default scene, depth-first
        in file order; every mesh once with the identity when the file has no scene graph."""
        nodes, scenes = self.array("nodes"), self.array("scenes")
        out: list[tuple[int, np.ndarray, str]] = []
        if scenes and nodes:
            s = self.json.get("scene", 0)
            roots = self.field(self.item("scenes", s, "scene"), "nodes", f"scenes[{s}]", list, [])
            stack = [(n, np.eye(4), f"scenes[{s}].nodes") for n in reversed(roots)]
            seen: set[int] = set()
            while stack:
                n, parent, where = stack.pop()
                node = self.item("nodes", n, where)
                if n in seen:
                    raise self.error(f"{where}: nodes[{n}] is reached twice (a cycle, or a node with two "
                                     "parents)")
                seen.add(n)
                nw = f"nodes[{n}]"
                with np.errstate(over="ignore", invalid="ignore"):
                    world = parent @ self.node_matrix(node, nw)
                if not np.isfinite(world).all():
                    raise self.error(f"{nw}: the world transform overflows")
                if "mesh" in node:
                    out.append((self.index(node["mesh"], "meshes", f"{nw}.mesh"), world, self.name(node, nw)))
                children = self.field(node, "children", nw, list, [])
                stack.extend((c, world, f"{nw}.children") for c in reversed(children))
        if not out:
            out = [(i, np.eye(4), self.name(self.obj(m, f"meshes[{i}]"), f"meshes[{i}]"))
                   for i, m in enumerate(self.array("meshes"))]
        return out


def read_glb(path: str | os.PathLike) -> dict[str, Any]:
    """Read a glTF/GLB (what :func:`facecore.io.gltf.write_glb` writes, and simple files in general):
    ``{"json", "positions" [V,3] (mesh-local), "indices" [F,3], "targets" [K,V,3], "target_names",
    "node_translations", "times" [N] | None, "weights" [N,K] | None, "rotations" [N,4] | None}``
    for the first primitive of the first mesh and the first animation."""
    doc = GltfFile(path)
    meshes = doc.array("meshes")
    if not meshes:
        raise doc.error("has no meshes")
    mesh = doc.obj(meshes[0], "meshes[0]")
    prims = doc.field(mesh, "primitives", "meshes[0]", list, [])
    if not prims:
        raise doc.error("meshes[0] has no primitives")
    pw = "meshes[0].primitives[0]"
    prim = doc.obj(prims[0], pw)
    attrs = doc.obj(prim.get("attributes"), f"{pw}.attributes")
    if "POSITION" not in attrs:
        raise doc.error(f"{pw} has no POSITION attribute")
    positions = doc.accessor(attrs["POSITION"], f"{pw}.attributes.POSITION", widths=(3,))
    V = positions.shape[0]
    if "indices" in prim:
        indices = doc.indices(prim["indices"], f"{pw}.indices", V)
    else:
        indices = np.arange(V - V % 3).reshape(-1, 3)
    targets = []
    for k, t in enumerate(doc.field(prim, "targets", pw, list, [])):
        tw = f"{pw}.targets[{k}]"
        t = doc.obj(t, tw)
        if "POSITION" not in t:
            raise doc.error(f"{tw} has no POSITION")
        targets.append(doc.accessor(t["POSITION"], f"{tw}.POSITION", widths=(3,), count=V))
    extras = doc.field(mesh, "extras", "meshes[0]", dict, {})
    names = doc.field(extras, "targetNames", "meshes[0].extras", list, [])
    if not all(isinstance(n, str) for n in names):
        raise doc.error(f"meshes[0].extras.targetNames is {excerpt(names)}, expected strings")
    nodes = [doc.obj(n, f"nodes[{i}]") for i, n in enumerate(doc.array("nodes"))]
    out: dict[str, Any] = {
        "json": doc.json,
        "positions": positions,
        "indices": indices,
        "targets": np.stack(targets) if targets else np.zeros((0, 0, 3), np.float32),
        "target_names": names,
        "node_translations": [doc.numbers(n, "translation", f"nodes[{i}]", 3, [0.0, 0.0, 0.0]).tolist()
                              for i, n in enumerate(nodes)],
        "times": None, "weights": None, "rotations": None,
    }
    for a, anim in enumerate(doc.array("animations")[:1]):
        aw = f"animations[{a}]"
        anim = doc.obj(anim, aw)
        samplers = doc.field(anim, "samplers", aw, list, [])
        for c, ch in enumerate(doc.field(anim, "channels", aw, list, [])):
            cw = f"{aw}.channels[{c}]"
            ch = doc.obj(ch, cw)
            si = ch.get("sampler")
            if not _is_int(si) or not 0 <= si < len(samplers):
                raise doc.error(f"{cw}.sampler is {excerpt(si)}, expected an index into {aw}.samplers")
            sw = f"{aw}.samplers[{si}]"
            s = doc.obj(samplers[si], sw)
            times = doc.accessor(s.get("input"), f"{sw}.input", widths=(1,))[:, 0]
            vals = doc.accessor(s.get("output"), f"{sw}.output")
            path_ = doc.field(doc.obj(ch.get("target"), f"{cw}.target"), "path", f"{cw}.target", str, "")
            if vals.size % len(times):
                raise doc.error(f"{sw}: {vals.size} output values for {len(times)} times")
            out["times"] = times
            if path_ == "weights":
                out["weights"] = vals.reshape(len(times), -1)
            elif path_ == "rotation":
                if vals.shape != (len(times), 4):
                    raise doc.error(f"{sw}: rotation output has shape {list(vals.shape)}, expected "
                                    f"[{len(times)}, 4]")
                out["rotations"] = vals
    return out
