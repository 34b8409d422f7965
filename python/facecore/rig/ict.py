"""``load_ict``: the ICT-FaceKit face model (USC ICT, MIT licence) as a :class:`FaceRig`.

Reads ``FaceXModel/``: ``generic_neutral_mesh.obj`` (26,719 vertices, mostly quads, materials that
name the parts), one OBJ per expression (names from ``vertex_indices.json``), and
``identityNNN.obj`` identity modes. ICT names map to ARKit channels through facecore.arkit; the
halves ``browInnerUp_L/_R`` and ``cheekPuff_L/_R`` add up into the single ARKit channel;
``TongueOut`` is absent (zero, listed in :attr:`FaceRig.missing_channels`); the extra
``cheekRaiser_*``/``PupilDilate_*`` shapes are skipped (``metadata["ignored_shapes"]``). Eyeball
groups are the sclera + iris materials, eye centres their sphere fits. Units: centimetres, y up,
+z forward, subject's left at +x (as the data comes).

Parsing all 77 OBJs takes a few seconds; ``rig.save(path)`` once and ``FaceRig.load(path)``
afterwards is much faster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .face_rig import FaceRig, merge_channels, sphere_center
from .obj_folder import neck_pivot_guess, read_obj

# ICT material -> facecore group names (left = subject's left = +x in the ICT data).
_PARTS = {
    "M_Face": "face",
    "M_BackHead": "head",
    "M_GumsTongue": "gums_tongue",
    "M_Teeth": "teeth",
    "M_LacrimalFluid": "lacrimal_fluid",
    "M_EyeBlend": "eye_blend",
    "M_EyeOcclusion": "eye_occlusion",
    "M_EyeLashes": "eyelashes",
}
# Plausible albedo per part (the ICT material colours are placeholder greys), linear light (these are the
# sRGB colours skin (0.80, 0.60, 0.50), sclera (0.93, 0.92, 0.90) ... decoded; output encodes them back).
_COLORS = {
    "face": (0.604, 0.319, 0.214),
    "head": (0.604, 0.319, 0.214),
    "gums_tongue": (0.448, 0.073, 0.084),
    "teeth": (0.828, 0.787, 0.674),
    "lacrimal_fluid": (0.692, 0.448, 0.380),
    "eye_blend": (0.604, 0.342, 0.263),
    "eye_occlusion": (0.263, 0.147, 0.107),
    "eyelashes": (0.007, 0.005, 0.004),
}
_SCLERA, _IRIS = (0.848, 0.828, 0.787), (0.073, 0.147, 0.263)


def _model_dir(path: str | Path) -> Path:
    p = Path(path)
    if (p / "FaceXModel").is_dir():
        p = p / "FaceXModel"
    if not p.is_dir():
        raise FileNotFoundError(f"load_ict: no such folder: {p}")
    if not (p / "generic_neutral_mesh.obj").is_file():
        raise FileNotFoundError(
            f"load_ict: {p / 'generic_neutral_mesh.obj'} not found (expected ICT-FaceKit's FaceXModel folder)"
        )
    return p


def _expression_names(d: Path) -> list[str]:
    js = d / "vertex_indices.json"
    if js.is_file():
        try:
            names = json.loads(js.read_text())["expressions"]
        except (ValueError, KeyError) as e:
            raise ValueError(f"load_ict: {js}: cannot read the 'expressions' list ({e})") from e
    else:
        names = [
            p.stem
            for p in sorted(d.glob("*.obj"))
            if p.stem != "generic_neutral_mesh" and not p.stem.startswith("identity")
        ]
    # Extra sculpted shapes (cheekRaiser, PupilDilate) are read too so they can be reported.
    return list(
        dict.fromkeys(
            names
            + [p.stem for p in sorted(d.glob("*.obj")) if p.stem.startswith(("cheekRaiser", "PupilDilate"))]
        )
    )


def _landmarks(d: Path, V: int) -> list[int]:
    """ICT's 68 iBUG-layout landmark vertices (``idx_to_landmark_verts`` of vertex_indices.json), or []."""
    js = d / "vertex_indices.json"
    if not js.is_file():
        return []
    try:
        idx = json.loads(js.read_text()).get("idx_to_landmark_verts", [])
    except ValueError as e:
        raise ValueError(f"load_ict: {js}: not valid JSON ({e})") from e
    if not (isinstance(idx, list) and len(idx) == 68
            and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < V for i in idx)):
        raise ValueError(f"load_ict: {js}: idx_to_landmark_verts must be 68 vertex indices in [0, {V})")
    return idx


def load_ict(
    path: str | Path,
    identity: Sequence[float] | torch.Tensor | Mapping[str, float] | None = None,
    *,
    identity_modes: bool = True,
) -> FaceRig:
    """ICT-FaceKit ``FaceXModel/`` (or its parent folder) -> :class:`FaceRig`.

    ``identity``: coefficients of the identity modes (``identity000`` ...) applied to the neutral
    (see :meth:`FaceRig.with_identity`); ``identity_modes=False`` skips reading the identity OBJs.
    Errors name the file: missing file, vertex-count mismatch, NaN, an OBJ without faces.
    """
    d = _model_dir(path)
    base = read_obj(d / "generic_neutral_mesh.obj")
    landmarks = _landmarks(d, base.vertices.shape[0])
    V = base.vertices.shape[0]
    neutral = base.vertices

    def shape(p: Path) -> torch.Tensor:
        v = read_obj(p, faces=False).vertices
        if v.shape[0] != V:
            raise ValueError(f"load_ict: {p} has {v.shape[0]} vertices, but generic_neutral_mesh.obj has {V}")
        return torch.from_numpy(v - neutral)

    named = {}
    for name in _expression_names(d):
        named[name] = shape(d / f"{name}.obj")
    deltas, channels, ignored = merge_channels(named, str(d))

    basis = names = None
    if identity_modes:
        files = sorted(d.glob("identity[0-9]*.obj"))
        if files:
            basis = torch.stack([shape(p) for p in files])
            names = tuple(p.stem for p in files)

    groups: dict[str, torch.Tensor] = {}
    colors = np.zeros((V, 3), np.float32)
    for mat, group in _PARTS.items():
        idx = base.group_vertices(f"^{mat}$")
        if idx.size:
            groups[group] = torch.from_numpy(idx)
            colors[idx] = _COLORS[group]
    for side in ("Left", "Right"):
        sclera, iris = base.group_vertices(f"^M_Sclera{side}$"), base.group_vertices(f"^M_Iris{side}$")
        colors[sclera], colors[iris] = _SCLERA, _IRIS
        groups[f"{side.lower()}_eye"] = torch.from_numpy(np.union1d(sclera, iris).astype(np.int64))
        if not groups[f"{side.lower()}_eye"].numel():
            raise ValueError(
                f"load_ict: {d / 'generic_neutral_mesh.obj'} has no M_Sclera{side}/M_Iris{side} "
                "faces (cannot find the eyeballs)"
            )
    if "face" in groups and "head" in groups:
        groups["skin"] = torch.from_numpy(np.union1d(groups["face"].numpy(), groups["head"].numpy()))

    nt = torch.from_numpy(neutral)
    eyes = torch.stack([sphere_center(nt[groups["left_eye"]]), sphere_center(nt[groups["right_eye"]])])
    pivots = None
    if basis is not None:
        # Eye centres follow each identity mode's motion of the eyeball vertices (sphere refit).
        piv = []
        for b in basis:
            moved = nt + b
            e = torch.stack(
                [sphere_center(moved[groups["left_eye"]]), sphere_center(moved[groups["right_eye"]])]
            )
            de = e - eyes
            neck = neck_pivot_guess(nt, groups, e) - neck_pivot_guess(nt, groups, eyes)
            piv.append(torch.stack([neck, de[0], de[1], torch.zeros(3)]))
        pivots = torch.stack(piv)
    rig = FaceRig(
        neutral=nt,
        triangles=torch.from_numpy(base.triangles),
        deltas=deltas,
        channels=channels,
        groups=groups,
        eye_centers=eyes,
        neck_pivot=neck_pivot_guess(nt, groups, eyes),
        uvs=None if base.uvs is None else torch.from_numpy(base.uvs),
        uv_triangles=None if base.uv_triangles is None else torch.from_numpy(base.uv_triangles),
        colors=torch.from_numpy(colors),
        identity_basis=basis,
        identity_names=names or (),
        identity_pivots=pivots,
        metadata={
            "name": "ict-facekit",
            **({"landmarks68": landmarks} if landmarks else {}),
            "source": "ICT-FaceKit FaceXModel",
            "license": "MIT (USC Institute for Creative Technologies)",
            "units": "cm",
            "up": "+y",
            "forward": "+z",
            "left": "+x",
            "ignored_shapes": ignored,
            "num_expression_files": len(named),
        },
    )
    return rig if identity is None else rig.with_identity(identity)
