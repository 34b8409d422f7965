"""Vectorised Wavefront OBJ reading and ``load_obj_folder``: a neutral OBJ plus one OBJ per shape.

:func:`read_obj` parses the ``v``/``vt``/``f``/``usemtl``/``g``/``o`` lines of an OBJ with numpy
(whole-file string operations instead of a Python loop per line), so ICT-FaceKit's 57 expression
files of 27k vertices each parse in seconds. Polygons are fan-triangulated from their first corner
(so quads split the same way in every file). Errors name the file and the problem.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..io.errors import FormatError, excerpt
from .face_rig import FaceRig, merge_channels


@dataclass
class ObjMesh:
    """One parsed OBJ. triangles/uv_triangles index vertices/uvs (0-based); ``face_group[f]`` indexes
    ``group_names`` (the ``usemtl`` material, else the ``g``/``o`` name, of triangle f)."""

    vertices: np.ndarray  # [V, 3] float32
    triangles: np.ndarray  # [F, 3] int32
    uvs: np.ndarray | None = None  # [T, 2] float32
    uv_triangles: np.ndarray | None = None  # [F, 3] int32
    face_group: np.ndarray | None = None  # [F] int32
    group_names: list[str] = field(default_factory=list)

    def group_vertices(self, pattern: str) -> np.ndarray:
        """Sorted vertex indices used by triangles whose group name matches regex ``pattern``."""
        ids = [i for i, g in enumerate(self.group_names) if re.search(pattern, g, re.IGNORECASE)]
        if self.face_group is None or not ids:
            return np.zeros(0, dtype=np.int64)
        return np.unique(self.triangles[np.isin(self.face_group, ids)]).astype(np.int64)


def _parse(text: str, dtype, count: int | None = None) -> np.ndarray | None:
    """All whitespace-separated numbers of ``text`` (``count`` of them when known), or None where numpy
    stops early."""
    try:
        with warnings.catch_warnings():  # older numpy warns where it stops early
            warnings.simplefilter("ignore")
            values = np.fromstring(text, dtype=dtype, sep=" ") if text.strip() else np.zeros(0, dtype)
    except ValueError:  # numpy >= 2.3 raises instead
        return None
    return values if values.shape[0] == (len(text.split()) if count is None else count) else None


def _bad_line(path: Path, lines: list[str], at: list[int], what: str, dtype) -> FormatError:
    """The error for the first of ``lines`` (file lines ``at``, 0-based) that does not parse."""
    for line, i in zip(lines, at):
        if _parse(line, dtype) is None:
            return FormatError(f"malformed {what} line: {excerpt(line.strip())}", path=path, line=i + 1)
    return FormatError(f"could not parse the {what} lines", path=path)


def _rows(path: Path, lines: list[str], at: list[int], what: str, widths: range) -> np.ndarray:
    """The numbers after the keyword of ``lines`` (file lines ``at``) -> float64 ``[N, w]``: every
    line has the same count ``w`` (in ``widths``), so ragged lines are never silently regrouped."""
    counts = np.fromiter((len(ln.split()) for ln in lines), np.int64, len(lines))
    w = int(counts[0])
    bad = np.flatnonzero(counts != w)
    if w not in widths or bad.size:
        k = int(bad[0]) if w in widths else 0
        expected = f"like the first {what} line" if k else f"expected {widths.start}..{widths.stop - 1}"
        raise FormatError(f"{what} line has {int(counts[k])} numbers ({expected}): "
                          f"{excerpt(lines[k].strip())}", path=path, line=at[k] + 1)
    values = _parse(" ".join(lines), np.float64)
    if values is None:
        raise _bad_line(path, lines, at, what, np.float64)
    return values.reshape(-1, w)


def _float32(path: Path, v: np.ndarray, what: str, first_line: list[int] | int) -> np.ndarray:
    """``v`` as float32; NaN/inf are looked for after the cast (1e39 is finite only in float64)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = v.astype(np.float32)
    bad = ~np.isfinite(out).all(1)
    if bad.any():
        k = int(np.argmax(bad))
        line = first_line[k] if isinstance(first_line, list) else first_line + k
        raise FormatError(f"{what} {k + 1} has NaN or infinite coordinates (in float32)", path=path,
                          line=line + 1)
    return out


def _contiguous_vertices(path: Path, text: str) -> np.ndarray | None:
    """Fast path for shape files: when all ``v x y z`` lines form one block, parse it in one call
    without splitting the file into lines. None when the layout differs (the general path runs)."""
    text = text.replace("\r\n", "\n")
    start = 0 if text.startswith("v ") else text.find("\nv ")
    if start < 0:
        return None
    last = text.rfind("\nv ")
    end = text.find("\n", last + 1)
    block = "\n" + text[start : len(text) if end < 0 else end].lstrip("\n")
    n = block.count("\nv ")
    if block.count("\n") != n or "\nv " in text[len(text) if end < 0 else end :]:
        return None
    tokens = block.split()  # exactly "v x y z" on every line: ragged lines take the general path
    if len(tokens) != 4 * n or tokens[::4].count("v") != n:
        return None
    values = _parse(block.replace("\nv ", " "), np.float64, 3 * n)
    if values is None:
        return None  # a malformed line: the general path reports it
    first = 0 if start == 0 else text.count("\n", 0, start) + 1  # 0-based line of the first vertex
    return _float32(path, values.reshape(n, 3), "vertex", first)


def read_obj(path: str | Path, *, faces: bool = True) -> ObjMesh:
    """Parse an OBJ. With ``faces=False`` only the vertices are read (shape files that share the
    neutral's topology) and ``triangles`` is empty. Raises FileNotFoundError, or
    :class:`facecore.io.FormatError` naming the file and line: no vertices, no faces (when
    ``faces``), ragged or malformed lines, NaN/inf (in float32), bad indices."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OBJ file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise FormatError(f"cannot read ({e.strerror})", path=path) from None
    if not faces:
        fast = _contiguous_vertices(path, text)
        if fast is not None:
            return ObjMesh(fast, np.zeros((0, 3), np.int32))
    lines = text.splitlines()
    v_at = [i for i, ln in enumerate(lines) if ln.startswith("v ")]
    if not v_at:
        raise FormatError("OBJ has no vertices ('v' lines)", path=path)
    # x y z, x y z w, or x y z r g b (one layout per file)
    v = _rows(path, [lines[i][2:] for i in v_at], v_at, "vertex", range(3, 8))[:, :3]
    vertices = _float32(path, v, "vertex", v_at)
    if not faces:
        return ObjMesh(vertices, np.zeros((0, 3), np.int32))
    V = vertices.shape[0]

    f_at = [i for i, ln in enumerate(lines) if ln.startswith("f ")]
    if not f_at:
        raise FormatError("OBJ has no faces ('f' lines)", path=path)
    flines = [lines[i][2:] for i in f_at]
    sizes = np.fromiter((len(ln.split()) for ln in flines), dtype=np.int64, count=len(flines))
    if (sizes < 3).any():
        k = int(np.argmax(sizes < 3))
        raise FormatError(f"face has fewer than 3 corners: {excerpt(flines[k].strip())}", path=path,
                          line=f_at[k] + 1)
    first = flines[0].split()[0].split("/")
    width = len(first)
    body = " ".join(flines)
    if body.count("/") != (width - 1) * int(sizes.sum()) or width > 3:
        raise FormatError(
            "face corners mix formats (v, v/vt, v/vt/vn, v//vn); facecore needs one format per file",
            path=path,
        )
    ints = _parse(body.replace("//", "/0/").replace("/", " "), np.int64)
    if ints is None or ints.shape[0] != width * int(sizes.sum()):
        lines_ = [ln.replace("//", "/0/").replace("/", " ") for ln in flines]
        err = _bad_line(path, lines_, f_at, "face", np.int64)
        if err.line is None:
            err = FormatError(f"face corners are not all {'/'.join(['i'] * width)}", path=path)
        raise err
    corners = ints.reshape(-1, width)
    written = corners[:, 0].copy()
    # Negative indices count back from the vertices defined so far (OBJ spec).
    if (corners[:, 0] < 0).any():
        before = np.repeat(np.searchsorted(np.array(v_at), np.array(f_at)), sizes)
        corners[:, 0] = np.where(corners[:, 0] < 0, corners[:, 0] + before + 1, corners[:, 0])
    vi = corners[:, 0] - 1
    if (vi < 0).any() or (vi >= V).any():
        k = int(np.argmax((vi < 0) | (vi >= V)))
        poly = int(np.searchsorted(np.cumsum(sizes), k, side="right"))
        raise FormatError(f"face references vertex {int(written[k])} but the file has {V} vertices",
                          path=path, line=f_at[poly] + 1)

    # Fan triangulation: polygon p with n corners at offset o -> (o, o+j, o+j+1), j = 1..n-2.
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ntri = sizes - 2
    poly = np.repeat(np.arange(len(sizes)), ntri)
    j = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    o = offsets[poly]
    tri_corner = np.stack([o, o + j, o + j + 1], 1)
    triangles = vi[tri_corner].astype(np.int32)

    uvs = uv_tris = None
    if width >= 2 and first[1] != "":
        t_at = [i for i, ln in enumerate(lines) if ln.startswith("vt ")]
        if t_at:
            uv = _rows(path, [lines[i][3:] for i in t_at], t_at, "texture coordinate", range(2, 4))[:, :2]
            uvs = _float32(path, uv, "texture coordinate", t_at)
            ti = corners[:, 1] - 1
            if (ti < 0).any() or (ti >= uvs.shape[0]).any():
                raise FormatError(f"face references a texture coordinate outside 1..{uvs.shape[0]}",
                                  path=path)
            uv_tris = ti[tri_corner].astype(np.int32)

    # Group of each face: the current usemtl, else g/o name.
    marks = [
        (i, ln.split(None, 1)[1].strip() if len(ln.split(None, 1)) > 1 else "")
        for i, ln in enumerate(lines)
        if ln.startswith(("usemtl", "g ", "o "))
    ]
    use_mtl = any(lines[i].startswith("usemtl") for i, _ in marks)
    marks = [(i, n) for i, n in marks if lines[i].startswith("usemtl") == use_mtl]
    names: list[str] = []
    face_group = None
    if marks:
        names = list(dict.fromkeys(n for _, n in marks))
        mark_at = np.array([i for i, _ in marks])
        index_of = {n: k for k, n in enumerate(names)}
        mark_id = np.array([index_of[n] for _, n in marks])
        k = np.searchsorted(mark_at, np.array(f_at)) - 1
        fg = np.where(k >= 0, mark_id[np.maximum(k, 0)], len(names))
        if (k < 0).any():
            names.append("")
        face_group = np.repeat(fg, ntri).astype(np.int32)
    return ObjMesh(vertices, triangles, uvs, uv_tris, face_group, names)


def eye_groups_from_names(mesh: ObjMesh) -> dict[str, torch.Tensor]:
    """``left_eye``/``right_eye`` from group names containing eye/sclera/iris/cornea and a side
    (left/_l/right/_r); empty when the file does not say."""
    out = {}
    for side, pat in (("left_eye", r"(left|_l$|\bl_|^l_)"), ("right_eye", r"(right|_r$|\br_|^r_)")):
        ids = [
            i
            for i, g in enumerate(mesh.group_names)
            if re.search(r"(eye(ball)?|sclera|iris|cornea|pupil)", g, re.I)
            and re.search(pat, g, re.I)
            and not re.search(r"(lash|lid|brow|occlusion|blend|lacrimal|socket)", g, re.I)
        ]
        if ids and mesh.face_group is not None:
            idx = np.unique(mesh.triangles[np.isin(mesh.face_group, ids)])
        else:
            idx = np.zeros(0, np.int64)
        out[side] = torch.from_numpy(idx.astype(np.int64))
    return out


def eye_centers_of(neutral: torch.Tensor, groups: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sphere-fit centres of the eyeball groups (zeros for an empty group)."""
    from .face_rig import sphere_center

    rows = []
    for g in ("left_eye", "right_eye"):
        idx = groups[g]
        rows.append(sphere_center(neutral[idx]) if idx.numel() >= 4 else torch.zeros(3))
    return torch.stack(rows)


def load_obj_folder(path: str | Path, *, neutral: str | None = None, strict: bool = True) -> FaceRig:
    """A rig from a folder: one neutral OBJ plus one OBJ per blendshape, named after the shape.

    The neutral is ``neutral`` (a file name in the folder) or the single file whose stem contains
    "neutral". Every other ``*.obj`` is a shape named in any facecore.arkit convention
    (``eyeBlinkLeft.obj``, ``EyeBlinkLeft.obj``, ``eyeBlink_L.obj``, ICT halves). With
    ``strict=True`` an unknown shape name raises ``ValueError``; otherwise it is skipped and listed
    in ``metadata["ignored_shapes"]``. Eyeball groups come from group/material names that mention an
    eye and a side; without them the eye groups are empty and the eye centres zero.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"load_obj_folder: no such folder: {folder}")
    objs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".obj")
    if neutral is not None:
        base = folder / neutral
        if not base.is_file():
            raise FileNotFoundError(f"load_obj_folder: neutral OBJ not found: {base}")
    else:
        cands = [p for p in objs if "neutral" in p.stem.lower()]
        if len(cands) != 1:
            raise ValueError(
                f"load_obj_folder: {folder}: expected exactly one OBJ with 'neutral' in its name, "
                f"found {[p.name for p in cands]}; pass neutral="
            )
        base = cands[0]
    mesh = read_obj(base)
    V = mesh.vertices.shape[0]
    named: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    from .face_rig import channel_of

    for p in objs:
        if p == base:
            continue
        try:
            channel_of(p.stem)
        except ValueError as e:
            if strict:
                raise ValueError(f"load_obj_folder: {p}: unknown shape name {p.stem!r} ({e})") from None
            ignored.append(p.stem)
            continue
        v = read_obj(p, faces=False).vertices
        if v.shape[0] != V:
            raise ValueError(
                f"load_obj_folder: {p} has {v.shape[0]} vertices but the neutral {base.name} has {V}"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            d = v - mesh.vertices
        if not np.isfinite(d).all():
            raise FormatError(f"its difference to the neutral {base.name} overflows float32", path=p)
        named[p.stem] = torch.from_numpy(d)
    if not named:
        raise ValueError(f"load_obj_folder: {folder} has no blendshape OBJs besides {base.name}")
    deltas, channels, extra = merge_channels(named, str(folder))
    neutral_t = torch.from_numpy(mesh.vertices)
    groups = eye_groups_from_names(mesh)
    eyes = eye_centers_of(neutral_t, groups)
    try:
        return FaceRig(
            neutral=neutral_t,
            triangles=torch.from_numpy(mesh.triangles),
            deltas=deltas,
            channels=channels,
            groups=groups,
            eye_centers=eyes,
            neck_pivot=neck_pivot_guess(neutral_t, groups, eyes),
            uvs=None if mesh.uvs is None else torch.from_numpy(mesh.uvs),
            uv_triangles=None if mesh.uv_triangles is None else torch.from_numpy(mesh.uv_triangles),
            metadata={
                "source": f"obj-folder:{folder.name}",
                "ignored_shapes": ignored + extra,
                "units": "unknown",
                "up": "+y",
                "forward": "+z",
            },
        )
    except ValueError as e:  # derived pivots that make no rig (e.g. eye centres overflowing float32)
        raise FormatError(str(e), path=folder) from None


def neck_pivot_guess(
    neutral: torch.Tensor, groups: dict[str, torch.Tensor], eyes: torch.Tensor
) -> torch.Tensor:
    """A head pivot near the skull base (atlanto-occipital joint) when the source has none.

    With both eyeballs known: on the midline, 0.8 inter-eye distances below and 1.35 behind the eye
    centres (adult average proportions, y up, +z forward). Otherwise: centred in x, a quarter of the
    height above the lowest point, midway in depth.
    """
    if groups["left_eye"].numel() and groups["right_eye"].numel():
        ipd = (eyes[0] - eyes[1]).norm()
        mid = eyes.mean(0)
        return torch.stack([mid[0] * 0, mid[1] - 0.8 * ipd, mid[2] - 1.35 * ipd])
    lo, hi = neutral.min(0).values, neutral.max(0).values
    return torch.stack([(lo[0] + hi[0]) / 2, lo[1] + 0.25 * (hi[1] - lo[1]), (lo[2] + hi[2]) / 2])
