"""``load_gltf``: glTF 2.0 (``.gltf`` + buffers, or binary ``.glb``) meshes with morph targets -> FaceRig.

Every triangle primitive of every mesh reachable from the scene's nodes is merged into one rig, with
the node's world transform applied (positions by the full matrix, morph-target deltas by its linear
part). Morph targets are named by ``mesh.extras.targetNames`` (the de-facto convention of Blender,
three.js and Ready Player Me exporters) or ``primitive.extras.targetNames``, in any naming
convention that facecore.arkit understands (``eyeBlinkLeft``, ``EyeBlinkLeft``, ``eyeBlink_L``,
ICT halves, ...). Targets of several primitives that name the same channel form one shape. Accessors
may be sparse; integer attributes may be normalised. Eyeball groups come from node/mesh/material names
that mention an eye and a side ("EyeLeft", "eye_L", "Wolf3D_Eye_Right" ...).

The file is parsed by :class:`facecore.io.gltf_reader.GltfFile`, which checks every index, count and
size before use. Errors are :class:`facecore.io.FormatError` naming the file and the problem: missing
file or buffer, unknown or repeated target name (``strict``), a target whose vertex count differs from
its primitive, NaN or infinite coordinates (also after the node transform, in float32), no triangles.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..io.errors import FormatError, excerpt
from ..io.gltf_reader import GltfFile
from .face_rig import FaceRig, channel_of, merge_channels
from .obj_folder import eye_centers_of, neck_pivot_guess

MAX_VERTICES = 1 << 22  # a rig holds dense [52, V, 3] float32 deltas: 2.5 GB at this many vertices


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


def _finite32(doc: GltfFile, a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as float32, refusing values that are NaN/inf there (1e39 is finite only in float64)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(np.float32)
    bad = ~np.isfinite(out).all(1)
    if bad.any():
        raise doc.error(f"{what}: vertex {int(np.argmax(bad))} has NaN or infinite coordinates (in float32)")
    return out


def _facecore_units(doc: GltfFile) -> tuple[float, str]:
    """(scale, unit) that facecore.io.gltf.write_glb recorded in ``asset.extras.facecore``; else
    (1, glTF's metres). Dividing by the scale gives back the rig in the units it was written from."""
    info = doc.json.get("asset")
    for key in ("extras", "facecore"):
        info = info.get(key) if isinstance(info, dict) else None
    if isinstance(info, dict):
        scale, units = info.get("scale"), info.get("rig_units")
        if (isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale < float("inf")
                and units in ("m", "cm", "mm")):
            return float(scale), units
    return 1.0, "as in file (glTF: metres)"


def load_gltf(path: str | Path, *, strict: bool = True) -> FaceRig:
    """A glTF 2.0 / GLB file with ARKit-named morph targets -> :class:`FaceRig` (see module docstring).

    ``strict=False`` skips unknown target names (listed in ``metadata["ignored_shapes"]``) instead
    of raising.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_gltf: no such file: {path}")
    doc = GltfFile(path)
    meshes = doc.array("meshes")
    if not meshes:
        raise doc.error("has no meshes")

    # Every triangle primitive of every mesh instance, checked and counted before anything is decoded.
    prims: list[tuple[dict, np.ndarray, str, str, list[str] | None, str, str, int]] = []
    total = 0
    for mesh_index, world, node_name in doc.mesh_instances():
        mw = f"meshes[{mesh_index}]"
        mesh = doc.obj(meshes[mesh_index], mw)
        mname = doc.name(mesh, mw) or f"mesh{mesh_index}"
        names = _target_names(doc, mesh, mw)
        for pi, prim in enumerate(doc.field(mesh, "primitives", mw, list, [])):
            pw = f"{mw}.primitives[{pi}]"
            prim = doc.obj(prim, pw)
            if doc.integer(prim, "mode", pw, 4, hi=6) != 4:
                continue
            attrs = doc.obj(prim.get("attributes"), f"{pw}.attributes")
            if "POSITION" not in attrs:
                raise doc.error(f"mesh {excerpt(mname)} primitive {pi} has no POSITION attribute")
            n = doc.accessor_info(attrs["POSITION"], f"{pw}.attributes.POSITION")[3]
            total += n
            if total > MAX_VERTICES:
                raise doc.error(f"the meshes have more than {MAX_VERTICES} vertices (facecore's limit)")
            where = f"mesh {excerpt(mname)} primitive {pi}"
            prims.append((prim, world, node_name, mname, names, pw, where, n))
    if not prims:
        raise doc.error("has no triangle primitives")

    positions, tris, colors, uvs, groups_acc = [], [], [], [], {"left_eye": [], "right_eye": []}
    named: dict[str, list[tuple[int, np.ndarray]]] = {}
    ignored: list[str] = []
    offset = 0
    for prim, world, node_name, mname, names, pw, where, n in prims:
        attrs = prim["attributes"]
        lin = world[:3, :3]
        p = doc.floats(attrs["POSITION"], f"{pw}.attributes.POSITION", widths=(3,), finite=False)
        f = doc.indices(prim["indices"], f"{pw}.indices", n) if "indices" in prim else np.arange(n - n % 3)
        f = f.reshape(-1, 3)
        if len(f) == 0:
            raise doc.error(f"{where} has no triangles")
        if np.linalg.det(lin) < 0:  # a mirroring transform flips the winding
            f = f[:, [0, 2, 1]]
        with np.errstate(over="ignore", invalid="ignore"):
            positions.append(_finite32(doc, p @ lin.T + world[:3, 3], where))
        tris.append(f + offset)
        if "TEXCOORD_0" in attrs:
            uv = doc.floats(attrs["TEXCOORD_0"], f"{pw}.attributes.TEXCOORD_0", widths=(2,), count=n)
            uvs.append(_finite32(doc, uv, f"{where} TEXCOORD_0"))
        else:
            uvs.append(np.zeros((n, 2), np.float32))
        mat = doc.item("materials", prim["material"], f"{pw}.material") if "material" in prim else {}
        if "COLOR_0" in attrs:
            c = doc.floats(attrs["COLOR_0"], f"{pw}.attributes.COLOR_0", widths=(3, 4), count=n)[:, :3]
        else:
            pbr = doc.field(mat, "pbrMetallicRoughness", "material", dict, {})
            base = doc.numbers(pbr, "baseColorFactor", "material.pbrMetallicRoughness", 4, [0.8, 0.8, 0.8, 1])
            c = np.tile(base[:3], (n, 1))
        colors.append(c)
        for label in (node_name, mname, doc.name(mat, "material")):
            side = _eye_side(label)
            if side:
                groups_acc[side].append(np.arange(offset, offset + n))
                break
        targets = doc.field(prim, "targets", pw, list, [])
        tnames = names or _target_names(doc, prim, pw)
        if targets and (not tnames or len(tnames) != len(targets)):
            if strict:
                raise doc.error(f"{where} has {len(targets)} morph targets but {len(tnames or [])} names")
            ignored += [f"{mname}[{k}]" for k in range(len(targets))]
            targets = []
        seen: set[str] = set()
        for k, t in enumerate(targets):
            tname = tnames[k]
            try:
                channel_of(tname)
            except (ValueError, TypeError) as e:
                if strict:
                    raise doc.error(f"{where}: unknown morph target name {excerpt(tname)} "
                                    f"({excerpt(str(e), 120)})") from None
                ignored.append(tname)
                continue
            if tname in seen:  # two targets of one primitive would silently add up
                raise doc.error(f"{where}: morph target name {excerpt(tname)} appears twice")
            seen.add(tname)
            t = doc.obj(t, f"{pw}.targets[{k}]")
            if "POSITION" not in t:
                continue
            tw = f"{pw}.targets[{k}].POSITION"
            m = doc.accessor_info(t["POSITION"], tw)[3]
            if m != n:
                raise doc.error(f"{where}: target {excerpt(tname)} has {m} vertices, the primitive {n}")
            d = doc.floats(t["POSITION"], tw, widths=(3,), count=n, finite=False)
            with np.errstate(over="ignore", invalid="ignore"):
                d = _finite32(doc, d @ lin.T, f"{where} target {excerpt(tname)}")
            named.setdefault(tname, []).append((offset, d))
        offset += n
    V = offset
    try:
        # Names are checked on placeholders (halves add up, synonyms clash), then every target is added
        # straight into its channel: one [52, V, 3] array, however many names the file has.
        channels, extra = (), []
        if named:
            channels, extra = merge_channels({t: torch.zeros(0, 3) for t in named}, str(path))[1:]
        dense = np.zeros((52, V, 3), np.float32)
        for tname, parts in named.items():
            k = channel_of(tname)
            for off, dd in parts if k is not None else ():
                dense[k, off : off + len(dd)] += dd
        bad = ~np.isfinite(dense).all((0, 2))
        if bad.any():
            raise doc.error(f"morph targets add up to NaN or inf (float32) at vertex {int(np.argmax(bad))}")
        scale, units = _facecore_units(doc)
        deltas = torch.from_numpy(dense / np.float32(scale))
        neutral = torch.from_numpy(np.concatenate(positions) / np.float32(scale))
        groups = {
            k: torch.from_numpy(np.concatenate(v) if v else np.zeros(0, np.int64))
            for k, v in groups_acc.items()
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
            uvs=torch.from_numpy(np.concatenate(uvs)),
            uv_triangles=tri.clone(),
            colors=torch.from_numpy(np.clip(np.concatenate(colors), 0, 1).astype(np.float32)),
            metadata={
                "source": f"gltf:{path.name}",
                "ignored_shapes": ignored + extra,
                "units": units,
                "up": "+y",
                "forward": "+z",
            },
        )
    except FormatError:
        raise
    except ValueError as e:  # merged shapes or derived pivots that make no rig (e.g. overflowing eyes)
        raise doc.error(str(e).removeprefix(f"{path}: ")) from None


def _target_names(doc: GltfFile, o: dict, where: str) -> list[str] | None:
    extras = doc.field(o, "extras", where, dict, {})
    names = doc.field(extras, "targetNames", f"{where}.extras", list)
    if names is not None and not all(isinstance(x, str) for x in names):
        raise doc.error(f"{where}.extras.targetNames is {excerpt(names)}, expected a list of strings")
    return names
