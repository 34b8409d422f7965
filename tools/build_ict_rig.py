"""Build facecore's ICT-derived rig: ``python tools/build_ict_rig.py [--ict PATH] [--out PATH]``.

A build tool, not part of the installed package. Reads ICT-FaceKit's ``FaceXModel`` (MIT licence, USC
Institute for Creative Technologies; by default from ``../shared/data/ict-facekit`` beside the
repository) and writes ``python/facecore/rig/data/ict_rig.safetensors``, a derived and decimated asset
(about 10k vertices) that ships inside the package with ICT's licence and attribution
(``rig/data/ICT-FaceKit-LICENSE.txt``). Deterministic: the same input gives byte-identical output.

Construction:

1. **Parts.** Keep the face, the back of the head, gums + tongue and teeth of ICT's generic
   neutral mesh. Drop the eye occlusion, lacrimal-fluid and eye-blend shells (they are meant for
   alpha-blended shading and render as dark shells when opaque) and ICT's eyeballs (replaced, step 4).
2. **Decimation.** Quadric-error half-edge collapses (Garland & Heckbert's quadrics; each collapse
   removes a vertex and keeps its neighbour where it is): the error sums the quadrics of the neutral
   and of a set of expression shapes, so detail stays where the face moves (lids, lips). Because every
   surviving vertex is an original ICT vertex, the blendshape deltas and identity modes of the result
   are exact subsets of ICT's. Open borders (lid and lip margins, the neck cut), the 68 landmark
   vertices and the face/head seam are never removed.
3. **Tongue.** ICT has no ``tongueOut``: the tongue is the gums-tongue component behind the teeth; its
   shape slides the tongue forward and out through the lips with a smooth tip-to-root falloff.
4. **Eyes.** Each eyeball is a sphere fitted to ICT's sclera, meshed with its pole on the gaze axis so
   that rings of latitude give a round pupil, a coloured iris with a dark limbal ring, and the white
   sclera as per-vertex albedo. Every ICT shape and identity mode moves the new eyeball by the rigid
   motion fitted (Kabsch) to the motion of ICT's own eyeball vertices.
5. **Colours.** Linear albedo: skin with a redder lip region (inside iBUG landmarks 48-59), darker
   eyebrows (a band along landmarks 17-26), hair over the scalp above a hairline, gums, teeth. ICT's
   eyelash cards are dropped too: drawn opaque they read as thick black eyeliner.
6. **Deltas** under 10 um (ICT's numerical noise) are set to zero so the file stores them sparsely;
   everything else is ICT's data at the surviving vertices.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "python/facecore/rig/data/ict_rig.safetensors"
DEFAULT_ICT = ROOT.parent / "shared/data/ict-facekit"

# Target vertex counts per decimated part (with the two eyeballs: about 10k vertices).
TARGETS = {"skin": 6600, "gums_tongue": 1000, "teeth": 1200}
# Expression shapes whose quadrics join the neutral's (one side of each symmetric pair is enough).
ERROR_SHAPES = ("JawOpen", "MouthSmileLeft", "MouthFunnel", "MouthPucker", "EyeBlinkLeft", "EyeWideLeft",
                "BrowInnerUp", "BrowOuterUpLeft", "MouthFrownLeft", "MouthStretchLeft", "CheekPuff",
                "MouthRollLower", "MouthRollUpper", "NoseSneerLeft", "MouthLeft", "EyeSquintLeft",
                "MouthPressLeft", "JawLeft", "MouthClose", "MouthUpperUpLeft")
BACK_HEAD_WEIGHT = 0.15  # the back of the head matters less than the face

# Linear albedo (sRGB-encoded on output by facecore.render.color).
SKIN = (0.62, 0.40, 0.31)
LIPS = (0.56, 0.25, 0.24)
BROWS = (0.16, 0.10, 0.07)
HAIR = (0.045, 0.030, 0.022)
GUMS = (0.50, 0.16, 0.17)
TONGUE = (0.55, 0.20, 0.20)
TEETH = (0.80, 0.76, 0.66)
SCLERA = (0.80, 0.78, 0.74)
IRIS_INNER, IRIS_OUTER = (0.17, 0.12, 0.06), (0.10, 0.16, 0.20)
LIMBUS = (0.03, 0.035, 0.04)
PUPIL = (0.005, 0.005, 0.005)


# ----------------------------------------------------------------------------------------------
# Quadric-error half-edge collapse
# ----------------------------------------------------------------------------------------------


def plane_quadrics(P: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Per-vertex sums of the area-weighted plane quadrics of the incident triangles: ``[V, 4, 4]``."""
    a, b, c = P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
    n = np.cross(b - a, c - a)
    area = np.linalg.norm(n, axis=1)
    n = n / np.maximum(area, 1e-12)[:, None]
    plane = np.concatenate([n, -(n * a).sum(1, keepdims=True)], 1)
    Kp = (area / 2)[:, None, None] * plane[:, :, None] * plane[:, None, :]
    Q = np.zeros((P.shape[0], 4, 4))
    for k in range(3):
        np.add.at(Q, tri[:, k], Kp)
    return Q


def decimate(shapes: np.ndarray, tri: np.ndarray, target: int, locked: np.ndarray,
             weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-edge collapses on ``tri`` until ``target`` vertices remain.

    ``shapes [S, V, 3]``: the neutral first, then the shapes whose error counts; ``locked [V]``: vertices
    never removed; ``weight [V]``: error weight. Returns ``(kept vertex ids, triangles in old ids)``.
    """
    S, V, _ = shapes.shape
    used = np.zeros(V, bool)
    used[tri.ravel()] = True
    Q = np.stack([plane_quadrics(shapes[s], tri) for s in range(S)], 1) * weight[:, None, None, None]
    H = np.concatenate([shapes, np.ones((S, V, 1))], 2).transpose(1, 0, 2)  # [V, S, 4]
    faces = [list(map(int, f)) for f in tri]
    alive_f = np.ones(len(faces), bool)
    vf: list[set[int]] = [set() for _ in range(V)]
    for i, f in enumerate(faces):
        for v in f:
            vf[v].add(i)
    P0 = shapes[0]

    def neighbours(v: int) -> set[int]:
        return {w for i in vf[v] for w in faces[i]} - {v}

    def cost(v: int, u: int) -> float:
        q = Q[v] + Q[u]
        h = H[u]
        return float(np.einsum("si,sij,sj->", h, q, h))

    def valid(v: int, u: int) -> bool:
        shared = vf[v] & vf[u]
        if len(shared) != 2:  # boundary edge or non-manifold: keep
            return False
        common = neighbours(v) & neighbours(u)
        if len(common) != 2:  # link condition: the collapse would pinch the surface
            return False
        for i in vf[v] - shared:
            f = faces[i]
            old = np.cross(P0[f[1]] - P0[f[0]], P0[f[2]] - P0[f[0]])
            g = [u if w == v else w for w in f]
            new = np.cross(P0[g[1]] - P0[g[0]], P0[g[2]] - P0[g[0]])
            na, nb = np.linalg.norm(old), np.linalg.norm(new)
            if nb < 1e-10 or np.dot(old, new) < 0.3 * na * nb:  # fold-over or sliver
                return False
        return True

    heap: list[tuple[float, int, int, int]] = []
    stamp = np.zeros(V, np.int64)

    def push(v: int) -> None:
        if locked[v] or not used[v]:
            return
        stamp[v] += 1
        for u in neighbours(v):
            heapq.heappush(heap, (cost(v, u), v, u, int(stamp[v])))

    for v in range(V):
        push(v)
    alive = used.copy()
    n = int(alive.sum())
    while n > target and heap:
        _, v, u, s = heapq.heappop(heap)
        if s != stamp[v] or not alive[v] or not alive[u] or not valid(v, u):
            continue
        for i in vf[v] & vf[u]:
            alive_f[i] = False
            for w in faces[i]:
                vf[w].discard(i)
        for i in list(vf[v]):
            faces[i] = [u if w == v else w for w in faces[i]]
            vf[u].add(i)
        vf[v].clear()
        Q[u] += Q[v]
        alive[v] = False
        n -= 1
        for w in neighbours(u) | {u}:
            push(w)
    out = np.array([faces[i] for i in range(len(faces)) if alive_f[i]], np.int64)
    return np.flatnonzero(alive), out


# ----------------------------------------------------------------------------------------------
# Eyes
# ----------------------------------------------------------------------------------------------


def fit_sphere(p: np.ndarray) -> tuple[np.ndarray, float]:
    A = np.concatenate([2 * p, np.ones((len(p), 1))], 1)
    sol = np.linalg.lstsq(A, (p * p).sum(1), rcond=None)[0]
    c = sol[:3]
    return c, float(np.sqrt(sol[3] + c @ c))


# Rings of polar angle (degrees from the gaze axis) and their albedo: pupil, iris, limbus, sclera.
_EYE_RINGS = [(0.0, PUPIL), (5.0, PUPIL), (9.0, PUPIL), (10.5, IRIS_INNER), (15.0, IRIS_INNER),
              (22.0, IRIS_OUTER), (25.5, IRIS_OUTER), (27.0, LIMBUS), (29.0, SCLERA), (38.0, SCLERA)]
_EYE_RINGS += [(a, SCLERA) for a in np.linspace(50.0, 165.0, 9)]
_EYE_SEGMENTS = 32


def eyeball(center: np.ndarray, radius: float, gaze: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sphere mesh whose pole looks along ``gaze``: ``(vertices, triangles, colours)``."""
    z = gaze / np.linalg.norm(gaze)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    verts, cols = [center + radius * z], [_EYE_RINGS[0][1]]
    for ang, col in _EYE_RINGS[1:]:
        t = math.radians(ang)
        for k in range(_EYE_SEGMENTS):
            phi = 2 * math.pi * k / _EYE_SEGMENTS
            d = math.sin(t) * (math.cos(phi) * x + math.sin(phi) * y) + math.cos(t) * z
            verts.append(center + radius * d)
            cols.append(col)
    verts.append(center - radius * z)
    cols.append(SCLERA)
    R, m = len(_EYE_RINGS) - 1, _EYE_SEGMENTS
    tris = []
    for k in range(m):  # front cap
        tris.append((0, 1 + k, 1 + (k + 1) % m))
    for r in range(R - 1):
        a0, b0 = 1 + r * m, 1 + (r + 1) * m
        for k in range(m):
            k1 = (k + 1) % m
            tris += [(a0 + k, b0 + k, b0 + k1), (a0 + k, b0 + k1, a0 + k1)]
    last = len(verts) - 1
    a0 = 1 + (R - 1) * m
    for k in range(m):
        tris.append((a0 + k, last, a0 + (k + 1) % m))
    return np.array(verts), np.array(tris, np.int64), np.array(cols)


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rotation and translation taking ``src`` to ``dst`` (Kabsch)."""
    cs, cd = src.mean(0), dst.mean(0)
    U, _, Vt = np.linalg.svd((src - cs).T @ (dst - cd))
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    return R, cd - R @ cs


# ----------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------


def components(tri: np.ndarray, V: int) -> np.ndarray:
    """Connected-component label per vertex (-1 for vertices no triangle uses)."""
    parent = np.arange(V)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b, c in tri:
        for p, q in ((a, b), (b, c)):
            rp, rq = find(p), find(q)
            if rp != rq:
                parent[max(rp, rq)] = min(rp, rq)
    lab = np.array([find(v) for v in range(V)])
    used = np.zeros(V, bool)
    used[tri.ravel()] = True
    lab[~used] = -1
    return lab


def point_in_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(pts), bool)
    x, y = pts[:, 0], pts[:, 1]
    for i in range(len(poly)):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % len(poly)]
        cross = (y0 > y) != (y1 > y)
        xi = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
        inside ^= cross & (x < xi)
    return inside


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def build(ict: Path):
    from facecore._names import BLENDSHAPES
    from facecore.rig import FaceRig, load_ict
    from facecore.rig.obj_folder import read_obj

    model = ict / "FaceXModel" if (ict / "FaceXModel").is_dir() else ict
    src = load_ict(model)
    base = read_obj(model / "generic_neutral_mesh.obj")
    landmarks = np.array(json.loads((model / "vertex_indices.json").read_text())["idx_to_landmark_verts"])
    N = src.neutral.double().numpy()
    D = src.dense_deltas().double().numpy()  # [52, V, 3]
    ID = src.identity_basis.double().numpy()  # [I, V, 3]
    tri_all = base.triangles.astype(np.int64)
    V = N.shape[0]
    names = base.group_names
    face_mat = np.array([names[g] for g in base.face_group])

    def faces_of(*mats: str) -> np.ndarray:
        return tri_all[np.isin(face_mat, mats)]

    # 1-2. Decimate each part separately.
    skin_tri = faces_of("M_Face", "M_BackHead")
    part_tris = {"skin": skin_tri, "gums_tongue": faces_of("M_GumsTongue"), "teeth": faces_of("M_Teeth")}
    shapes = np.concatenate([N[None], N[None] + D[[BLENDSHAPES.index(s) for s in ERROR_SHAPES]]])
    face_v = np.zeros(V, bool)
    face_v[faces_of("M_Face").ravel()] = True
    head_v = np.zeros(V, bool)
    head_v[faces_of("M_BackHead").ravel()] = True
    weight = np.where(face_v, 1.0, BACK_HEAD_WEIGHT)
    locked = np.zeros(V, bool)
    locked[landmarks] = True
    locked |= face_v & head_v  # the face/head seam
    kept_tris, kept_v = {}, []
    for part, t in part_tris.items():
        kv, kt = decimate(shapes, t, TARGETS[part], locked, weight)
        kept_tris[part], kept_v = kt, kept_v + [kv]
        print(f"{part}: {len(np.unique(t))} -> {len(kv)} vertices, {len(t)} -> {len(kt)} triangles")
    keep = np.unique(np.concatenate(kept_v))
    remap = -np.ones(V, np.int64)
    remap[keep] = np.arange(len(keep))
    nk = len(keep)

    neutral = [N[keep]]
    deltas = [D[:, keep]]
    ident = [ID[:, keep]]
    tris = []
    groups: dict[str, list[np.ndarray]] = {}
    for t in kept_tris.values():
        tris.append(remap[t])
    groups["face"] = [remap[keep[face_v[keep]]]]
    groups["head"] = [remap[keep[head_v[keep] & ~face_v[keep]]]]
    for part in ("gums_tongue", "teeth"):
        groups[part] = [np.unique(remap[kept_tris[part]])]

    # 3. Tongue: the UV islands of M_GumsTongue that form the tongue (top and underside): islands near
    # the midline, between the gum floor and the palate, reaching back behind the molars.
    gt_mask = face_mat == "M_GumsTongue"
    ut = base.uv_triangles[gt_mask].astype(np.int64)
    lab = components(ut, base.uvs.shape[0])
    tongue = np.zeros(V, bool)
    for c in np.unique(lab[lab >= 0]):
        vs = np.unique(tri_all[gt_mask][np.isin(ut, np.flatnonzero(lab == c)).any(1)])
        p = N[vs]
        midline = np.abs(p[:, 0]).max() < 2.8
        if len(vs) > 300 and midline and -4.6 < p[:, 1].mean() < -2.5 and p[:, 2].mean() < 7.5:
            tongue[vs] = True
    tongue_k = tongue[keep]
    if tongue_k.sum() < 100:
        raise RuntimeError(f"tongue not found in M_GumsTongue ({tongue_k.sum()} vertices)")
    z = neutral[0][:, 2]
    zt = z[tongue_k]
    s = smoothstep(zt.min() + 0.3 * (zt.max() - zt.min()), zt.max(), z) * tongue_k
    tongue_out = 0.45 * deltas[0][BLENDSHAPES.index("JawOpen")]
    tongue_out[:, 2] += 3.4 * s
    tongue_out[:, 1] -= 0.6 * s * s
    deltas[0][BLENDSHAPES.index("TongueOut")] = tongue_out
    groups["tongue"] = [np.flatnonzero(tongue_k)]

    # 4. Eyes: new eyeball meshes; every shape and identity mode moves them rigidly like ICT's eyeballs.
    eye_centers, eye_pivots = [], []
    mats = {"left": ("M_ScleraLeft", "M_IrisLeft"), "right": ("M_ScleraRight", "M_IrisRight")}
    colors = np.zeros((nk, 3))
    offset = nk
    eye_cols, eye_tris = [], []
    for side, (sclera, iris) in mats.items():
        ev = np.unique(faces_of(sclera, iris))
        c, r = fit_sphere(N[np.unique(faces_of(sclera))])
        gaze = N[np.unique(faces_of(iris))].mean(0) - c
        ball, btri, bcol = eyeball(c, r, gaze)
        dl = np.zeros((52, len(ball), 3))
        for k in range(52):
            if np.abs(D[k, ev]).max() > 1e-7:
                R, t = rigid_fit(N[ev], N[ev] + D[k, ev])
                dl[k] = ball @ R.T + t - ball
        di = np.zeros((ID.shape[0], len(ball), 3))
        piv = []
        for m in range(ID.shape[0]):
            R, t = rigid_fit(N[ev], N[ev] + ID[m, ev])
            di[m] = ball @ R.T + t - ball
            piv.append(R @ c + t - c)
        neutral.append(ball)
        deltas.append(dl)
        ident.append(di)
        eye_tris.append(btri + offset)
        eye_cols.append(bcol)
        groups[f"{side}_eye"] = [np.arange(offset, offset + len(ball))]
        offset += len(ball)
        eye_centers.append(c)
        eye_pivots.append(np.array(piv))
    neutral_all = np.concatenate(neutral)
    deltas_all = np.concatenate(deltas, 1)
    # Motion under 10 um is ICT's numerical noise; zeroing it lets the file store the deltas sparsely.
    deltas_all[np.abs(deltas_all).max(-1) < 1e-3] = 0.0
    ident_all = np.concatenate(ident, 1)
    tri_out = np.concatenate(tris + eye_tris)

    # 5. Colours (linear albedo).
    P = neutral_all
    colors = np.zeros_like(P)
    colors[:] = SKIN
    lm = P[remap[landmarks]]
    front = P[:, 2] > lm[:, 2].min() - 1.5
    is_face = np.zeros(len(P), bool)
    is_face[groups["face"][0]] = True
    lips = point_in_polygon(P[:, :2], lm[48:60, :2]) & front & is_face
    colors[lips] = LIPS
    for a, b in ((17, 22), (22, 27)):  # eyebrow bands
        line = lm[a:b, :2]
        seg_d = np.full(len(P), np.inf)
        for q0, q1 in zip(line[:-1], line[1:]):
            t = np.clip(((P[:, :2] - q0) @ (q1 - q0)) / ((q1 - q0) @ (q1 - q0)), 0, 1)
            seg_d = np.minimum(seg_d, np.linalg.norm(P[:, :2] - (q0 + t[:, None] * (q1 - q0)), axis=1))
        w = 0.85 * (1 - smoothstep(0.15, 0.55, seg_d)) * front * is_face
        colors = colors * (1 - w[:, None]) + np.array(BROWS) * w[:, None]
    skin = np.concatenate(groups["face"] + groups["head"])
    on_skin = np.zeros(len(P), bool)
    on_skin[skin] = True
    brow_y = lm[17:27, 1].max()
    z_front, z_back = lm[:, 2].min(), P[skin, 2].min()
    # Hairline height: 4.4 cm above the brows at the forehead, falling to below the ears at the back.
    tz = smoothstep(z_back, z_front, P[:, 2])
    h_line = (lm[36:48, 1].mean() - 4.0) * (1 - tz) + (brow_y + 4.4) * tz
    h_line += 1.2 * smoothstep(2.0, 7.0, np.abs(P[:, 0])) * tz  # temples recede
    hair = smoothstep(-0.4, 0.4, P[:, 1] - h_line) * on_skin
    colors = colors * (1 - hair[:, None]) + np.array(HAIR) * hair[:, None]
    colors[groups["gums_tongue"][0]] = GUMS
    colors[groups["tongue"][0]] = TONGUE
    colors[groups["teeth"][0]] = TEETH
    colors[nk:] = np.concatenate(eye_cols)

    g = {k: torch.from_numpy(np.sort(np.concatenate(v)).astype(np.int64)) for k, v in groups.items()}
    g["skin"] = torch.from_numpy(np.union1d(g["face"].numpy(), g["head"].numpy()))
    ec = np.array(eye_centers)
    neck = src.neck_pivot.double().numpy()
    piv = np.zeros((ID.shape[0], 4, 3))
    piv[:, 1], piv[:, 2] = eye_pivots[0], eye_pivots[1]
    piv[:, 0] = src.identity_pivots[:, 0].double().numpy()
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    rig = FaceRig(
        neutral=f32(neutral_all),
        triangles=torch.from_numpy(tri_out.astype(np.int32)),
        deltas=f32(deltas_all),
        channels=tuple(BLENDSHAPES),
        groups=g,
        eye_centers=f32(ec),
        neck_pivot=f32(neck),
        colors=f32(np.clip(colors, 0, 1)),
        identity_basis=f32(ident_all),
        identity_names=src.identity_names,
        identity_pivots=f32(piv),
        metadata={
            "name": "ict",
            "source": "derived from ICT-FaceKit FaceXModel (USC Institute for Creative Technologies)",
            "license": "MIT; see ICT-FaceKit-LICENSE.txt beside this file",
            "attribution": "ICT-FaceKit, Copyright (c) 2020 USC Institute for Creative Technologies",
            "builder": "tools/build_ict_rig.py",
            "units": "cm",
            "up": "+y",
            "forward": "+z",
            "left": "+x",
            "landmarks68": [int(i) for i in remap[landmarks]],
            "derived": "decimated (quadric half-edge collapses), eye shells dropped, new eyeballs, "
                       "authored TongueOut",
        },
    )
    return rig


LICENSE_HEADER = """The built-in rig "ict" (ict_rig.safetensors beside this file) is derived from ICT-FaceKit
(https://github.com/ICT-VGL/ICT-FaceKit), by the USC Institute for Creative Technologies: its generic
neutral mesh, expression shapes and identity modes, decimated and edited by tools/build_ict_rig.py in
the facecore repository (eye shells and lashes dropped, new eyeballs, an authored TongueOut shape,
per-vertex colours). ICT-FaceKit core contributors: Kalle Bladin, Owen Ingraham, Yajie Zhao,
Pratusha Prasad, Xinglei Ren, Bipin Kishore, Marcel Ramos. ICT-FaceKit is distributed under this licence:

"""


def write_license(ict: Path, out: Path) -> None:
    """The licence and attribution that ship beside the derived asset (MIT asks for the notice)."""
    lic = ict / "LICENSE"
    if not lic.is_file():
        raise FileNotFoundError(f"{lic}: ICT-FaceKit's licence must ship with the derived rig")
    out.write_text(LICENSE_HEADER + lic.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ict", type=Path, default=DEFAULT_ICT)
    ap.add_argument("--out", type=Path, default=ASSET)
    a = ap.parse_args()
    rig = build(a.ict)
    rig.save(a.out)
    a.out.chmod(0o644)
    write_license(a.ict, a.out.parent / "ICT-FaceKit-LICENSE.txt")
    print(f"wrote {a.out}: {rig}")


if __name__ == "__main__":
    main()
