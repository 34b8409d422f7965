"""Deterministic generator of facecore's default rig: ``python tools/build_default_rig.py [--out PATH]``.

A build tool, not part of the installed package (it needs facecore importable, plus scipy). Writes
``python/facecore/rig/data/default_rig.safetensors`` from the parameters in :class:`Params` only
(no randomness, no input data), so the shipped asset can always be regenerated and reviewed.

Construction (units cm, y up, the face looks toward +z, subject's left = +x):

1. **Skin surface.** A star-shaped head around ``CENTER``: the radial distance along each direction is
   a smooth maximum of a cranium ellipsoid, a lower-face/jaw ellipsoid and a capped neck cylinder;
   facial features (nose, brow ridge, eye sockets, cheekbones, lips, chin, ears) are smooth
   displacement fields over the front "chart" (the x, y of that base surface).
2. **Topology.** Structured rings of vertices around each eye opening and around the mouth (upper and
   lower lid / lip vertices share x positions, so blink and mouthClose meet exactly), plus
   variable-density Poisson-disk fill (about 0.3 cm on the face, 0.75 cm on the back of the head),
   sampled mirror-symmetrically. All skin vertices are triangulated at once as the convex hull of
   their directions (a spherical Delaunay triangulation: watertight, consistently oriented); the
   triangles spanning the eye and mouth openings are removed.
3. **Inner parts.** Eye-socket sleeves continue the lid margins behind the eyeballs (their far ends are
   the only open boundaries); a mouth bag continues the lips into a closed oral cavity; upper and
   lower teeth arches with gums; a tongue; two eyeballs with sclera, iris and pupil colours. The lids
   sit on spheres around the eye centres so lids never cut the eyeballs.
4. **Blendshapes.** Every ARKit shape is a function of vertex positions and labels (which lid/lip,
   ring, side): lids rotate about the eye centre's x axis (blink closes the upper lid onto the lower
   one), eyeballs rotate for eyeLook*, the jaw rotates about ``jaw_pivot`` with a forward glide, lips
   and brows move with smooth falloffs. Right-side shapes are the exact mirror images of the left
   ones (evaluated on the x-mirrored mesh).
5. **Identity.** A handful of smooth displacement fields (face width, face length, jaw width, chin,
   nose length/width, eye spacing, lip fullness, brow height, cheekbones, head depth); eyeballs move
   rigidly with their centre, and the pivots' motion is stored with the basis.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from facecore._names import BLENDSHAPES
from facecore.render.color import srgb_to_linear

ASSET = Path(__file__).resolve().parents[1] / "python/facecore/rig/data/default_rig.safetensors"

# Part labels.
SKIN, SOCKET, MOUTH, EYEBALL, TEETH_UP, TEETH_LO, TONGUE = range(7)


@dataclass(frozen=True)
class Params:
    """Everything the default rig is generated from (cm)."""

    center: tuple[float, float, float] = (0.0, -1.0, -0.5)  # star centre of the skin
    cranium_center: tuple[float, float, float] = (0.0, 2.0, -0.6)
    cranium_radii: tuple[float, float, float] = (7.3, 10.6, 9.9)
    jaw_center: tuple[float, float, float] = (0.0, -2.6, 0.9)
    jaw_radii: tuple[float, float, float] = (5.5, 7.4, 8.5)
    neck_center_z: float = -1.2
    neck_radii: tuple[float, float] = (5.2, 5.6)  # x, z
    neck_bottom: float = -19.0
    # eyes
    eye_x: float = 3.15
    eye_y: float = 3.0
    eye_depth: float = 0.80  # eyeball centre behind the local base surface + feature depth
    eye_radius: float = 1.2
    fissure_half_width: float = 1.12
    fissure_up: float = 0.50
    fissure_down: float = 0.40
    eye_ring_points: int = 24  # per lid (upper and lower share the corners)
    # mouth
    mouth_y: float = -4.3
    mouth_half_width: float = 2.35
    upper_lip_height: float = 0.80
    lower_lip_height: float = 0.95
    lip_points: int = 36  # per lip
    # jaw (effective hinge: rotation about x through the pivot plus a forward glide)
    jaw_pivot: tuple[float, float, float] = (0.0, -0.5, 0.4)
    jaw_open_angle: float = 20.0  # degrees
    jaw_open_glide: float = 0.8
    neck_pivot: tuple[float, float, float] = (0.0, -3.5, -1.0)
    # sampling
    face_spacing: float = 0.27
    back_spacing: float = 0.75
    delta_epsilon: float = 1e-4  # deltas shorter than this (cm) are stored as exact zeros


P0 = Params()


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------
def smoothstep(e0, e1, x):
    t = np.clip((np.asarray(x, dtype=np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss(x, y, cx, cy, sx, sy):
    return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def pair(x, y, cx, cy, sx, sy):
    """A Gaussian on each side (x = +-cx): smooth across the midline, unlike gauss(|x|, ...)."""
    return gauss(x, y, cx, cy, sx, sy) + gauss(x, y, -cx, cy, sx, sy)


def softmin0(x, width):
    """Smooth min(x, 0) (no kink): -width * log(1 + exp(-x / width))."""
    return -width * np.logaddexp(0.0, -np.asarray(x) / width)


def smax(a, b, k):
    m = np.maximum(a, b)
    return m + np.log(np.exp(k * (a - m)) + np.exp(k * (b - m))) / k


def smin(a, b, k):
    return -smax(-a, -b, k)


def normalize(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def rot_x(angle):
    """[..., 3, 3] rotations about +x by ``angle`` (radians; positive turns +y toward +z)."""
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*np.shape(angle), 3, 3)


def rot_y(angle):
    """Rotations about +y (positive turns +z toward +x)."""
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*np.shape(angle), 3, 3)


def rotate_about(p, center, R):
    """Rotate points p [N,3] about center [3] by per-point R [N,3,3] (or one [3,3])."""
    rel = p - center
    if R.ndim == 2:
        return rel @ R.T + center
    return np.einsum("nij,nj->ni", R, rel) + center


# ----------------------------------------------------------------------------------------------
# 1. Skin surface: base radius along directions, features over the chart
# ----------------------------------------------------------------------------------------------
def _ray_ellipsoid(o, d, c, r):
    oc = (o - np.asarray(c)) / np.asarray(r)
    dd = d / np.asarray(r)
    a = (dd * dd).sum(-1)
    b = 2 * (dd * oc).sum(-1)
    cc = (oc * oc).sum() - 1.0
    return (-b + np.sqrt(b * b - 4 * a * cc)) / (2 * a)


def base_radius(d, P: Params = P0):
    o = np.asarray(P.center)
    r1 = _ray_ellipsoid(o, d, P.cranium_center, P.cranium_radii)
    r2 = _ray_ellipsoid(o, d, P.jaw_center, P.jaw_radii)
    # Neck: elliptic cylinder along y, capped below (neck_bottom) and above (hidden in the head).
    rx, rz = P.neck_radii
    ox, oz = o[0] / rx, (o[2] - P.neck_center_z) / rz
    dx, dz = d[:, 0] / rx, d[:, 2] / rz
    a = np.maximum(dx * dx + dz * dz, 1e-12)
    b = 2 * (dx * ox + dz * oz)
    c = ox * ox + oz * oz - 1
    t_cyl = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
    dy = d[:, 1]
    t_bot = np.where(dy < -1e-9, (P.neck_bottom - o[1]) / np.minimum(dy, -1e-9), 1e3)
    t_top = np.where(dy > 1e-9, (o[1] + 2.0 - o[1]) / np.maximum(dy, 1e-9), 1e3)
    neck = smin(smin(t_cyl, t_bot, 2.5), t_top, 2.5)
    head = smax(r1, r2, 1.3)
    return smax(head, neck, 0.9)


def base_point(d, P: Params = P0):
    return np.asarray(P.center) + base_radius(d, P)[:, None] * d


def chart_to_direction(X, Y, P: Params = P0, iters: int = 30):
    """Directions whose base point has chart coordinates (X, Y) on the front of the head."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    o = np.asarray(P.center)
    z = np.full(X.shape, 8.0)
    for _ in range(iters):
        d = normalize(np.stack([X - o[0], Y - o[1], z - o[2]], -1).reshape(-1, 3))
        z = base_point(d, P)[:, 2].reshape(X.shape)
    return normalize(np.stack([X - o[0], Y - o[1], z - o[2]], -1).reshape(-1, 3))


def lip_profile(X, P: Params = P0):
    """Half-heights of the upper/lower vermilion at chart x (0 beyond the corners)."""
    q = np.clip(1 - (X / P.mouth_half_width) ** 2, 0, 1)
    bow = 1 - 0.18 * np.exp(-((X / 0.28) ** 2)) + 0.10 * np.exp(-(((np.abs(X) - 0.45) / 0.3) ** 2))
    return P.upper_lip_height * q**0.55 * bow, P.lower_lip_height * q**0.6


def lip_coords(X, Y, P: Params = P0):
    """(t_upper, t_lower, across): t = 0 at the lip line, 1 at the vermilion border."""
    hu, hl = lip_profile(X, P)
    dy = Y - P.mouth_y
    tu = np.where(dy >= 0, dy / np.maximum(hu, 1e-3), -1.0)
    tl = np.where(dy < 0, -dy / np.maximum(hl, 1e-3), -1.0)
    across = np.clip(1 - (X / P.mouth_half_width) ** 2, 0, 1)
    return tu, tl, across


def vermilion(X, Y, P: Params = P0):
    """Upper and lower vermilion masks in [0, 1] (smooth at the borders)."""
    tu, tl, across = lip_coords(X, Y, P)
    side = smoothstep(0.0, 0.25, across)
    mu = (1 - smoothstep(0.85, 1.15, tu)) * (tu >= 0) * side
    ml = (1 - smoothstep(0.85, 1.15, tl)) * (tl >= 0) * side
    return mu, ml


def _pchip(x, y):
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator(np.asarray(x, np.float64), np.asarray(y, np.float64), extrapolate=True)


def _nose_height(Y, P: Params):
    n = P.eye_y - 0.4  # nasion
    # The flat end points give zero slope where the profile meets the face (no crease).
    ys = [n + 1.6, n + 1.0, n, n - 1.6, n - 2.9, n - 3.45, n - 3.85, n - 4.2, n - 4.5, n - 4.75, n - 5.2]
    hs = [0.0, 0.0, 0.3, 1.0, 1.95, 2.25, 2.05, 1.2, 0.3, 0.0, 0.0]
    return np.where((Y < ys[-1]) | (Y > ys[0]), 0.0, _pchip(ys[::-1], hs[::-1])(np.clip(Y, ys[-1], ys[0])))


def _nose_width(Y, P: Params):
    n = P.eye_y - 0.4
    ys = [n + 0.9, n, n - 1.6, n - 3.2, n - 3.9, n - 4.75]
    ws = [0.95, 0.8, 0.75, 0.9, 1.05, 1.1]
    return _pchip(ys[::-1], ws[::-1])(np.clip(Y, ys[-1], ys[0]))


def features(b, P: Params = P0):
    """Displacements of facial features at base points b [N, 3]."""
    X, Y, Z = b[:, 0], b[:, 1], b[:, 2]
    ax = np.abs(X)
    front = smoothstep(2.0, 6.0, Z)
    dz = np.zeros(len(b))
    dxyz = np.zeros_like(b)
    # Nose: a midline profile (height over the face and width, smooth monotone splines through
    # landmarks from the nasion to the subnasale), plus the wings.
    dz += _nose_height(Y, P) * np.exp(-((X / _nose_width(Y, P)) ** 2))
    dz += 0.7 * pair(X, Y, 1.0, -1.25, 0.5, 0.45)
    # Brow ridge and eye sockets.
    # Brow ridge: broad, and lower over the glabella than over the eyes (no "unibrow" ridge).
    glabella = 0.55 + 0.45 * (1 - np.exp(-((X / 1.3) ** 2)))
    dz += 0.5 * np.exp(-(((Y - (P.eye_y + 1.9)) / 1.15) ** 2)) * np.exp(-((X / 4.8) ** 4)) * glabella
    dz -= 0.75 * pair(X, Y, P.eye_x, P.eye_y, 1.6, 1.15)
    # Cheekbones and cheeks.
    dz += 0.45 * pair(X, Y, 4.0, 0.5, 1.5, 1.2)
    dxyz[:, 0] += np.sign(X) * 0.35 * gauss(ax, Y, 4.6, 0.5, 1.2, 1.4) * front
    # Lips: rounded vermilion (0 at the lip line so the closed mouth reads as a groove).
    tu, tl, across = lip_coords(X, Y, P)
    bump_u = np.where((tu >= 0) & (tu <= 1.6), np.sin(np.pi * np.clip(tu / 1.25, 0, 1)) ** 0.8, 0)
    bump_l = np.where((tl >= 0) & (tl <= 1.6), np.sin(np.pi * np.clip(tl / 1.3, 0, 1)) ** 0.8, 0)
    dz += (0.5 * bump_u + 0.5 * bump_l) * across**0.45
    dz += 0.25 * gauss(X, Y, 0, P.mouth_y + 1.3, 2.6, 1.1)  # upper-lip fullness
    dz -= 0.12 * gauss(X, Y, 0, P.mouth_y + 1.3, 0.4, 0.55)  # philtrum groove
    dz -= 0.28 * pair(X, Y, P.mouth_half_width + 0.1, P.mouth_y, 0.45, 0.5)  # corners
    dz -= 0.25 * gauss(X, Y, 0, P.mouth_y - 1.6, 1.6, 0.45)  # mentolabial sulcus
    dz += 1.25 * gauss(X, Y, 0, -7.6, 2.1, 1.5)  # chin
    dxyz[:, 2] += dz * front
    # Ears: flattened bumps on the sides.
    ear = np.exp(-(((Y - 1.0) / 2.6) ** 2 + ((Z - 0.2) / 1.5) ** 2)) * smoothstep(5.0, 6.8, ax)
    dxyz[:, 0] += np.sign(X) * 1.0 * ear
    return dxyz


def skin_point(d, P: Params = P0):
    b = base_point(d, P)
    return b + features(b, P), b


def surface_at_chart(X, Y, P: Params = P0):
    p, _ = skin_point(chart_to_direction(X, Y, P), P)
    return p


# ----------------------------------------------------------------------------------------------
# 2. Rings around the openings and Poisson fill
# ----------------------------------------------------------------------------------------------
def eye_center(P: Params = P0, side: float = 1.0):
    s = surface_at_chart(np.array([side * P.eye_x]), np.array([P.eye_y]), P)[0]
    return np.array([side * P.eye_x, P.eye_y, s[2] - P.eye_depth])


def eye_rings(P: Params = P0):
    """Chart rings around the left eye: list of (X, Y, up, s) per ring, ring 0 = lid margin.

    Each ring runs corner -> upper lid -> corner -> lower lid; up = +1 upper, -1 lower, 0 corner;
    s = x position along the fissure in [-1, 1] (negative toward the nose).
    """
    n = P.eye_ring_points
    s = np.cos(np.linspace(np.pi, 0, n + 1))  # -1 (inner corner) .. 1 (outer corner)
    rings = []
    for grow_x, grow_up, grow_dn in [
        (0, 0, 0),
        (0.09, 0.16, 0.13),
        (0.2, 0.36, 0.28),
        (0.33, 0.6, 0.45),
        (0.5, 0.9, 0.66),
    ]:
        hw = P.fissure_half_width + grow_x
        sh = np.sqrt(np.clip(1 - s**2, 0, 1))
        # Almond: the upper lid peaks a little toward the nose, the lower lid a little outward.
        up = (P.fissure_up * sh**0.9 * (1 - 0.12 * s)) + grow_up * sh**0.5
        dn = (P.fissure_down * sh**1.1 * (1 + 0.10 * s)) + grow_dn * sh**0.5
        x = P.eye_x + s * hw
        tilt = 0.06 * s  # outer corner slightly higher
        # upper: corners included; lower: interior only.
        X = np.concatenate([x, x[-2:0:-1]])
        Y = np.concatenate([P.eye_y + tilt + up, (P.eye_y + tilt - dn)[-2:0:-1]])
        lab = np.concatenate([np.where(sh[:] > 0, 1, 0), -np.ones(n - 1)])
        lab[0] = lab[n] = 0
        S = np.concatenate([s, s[-2:0:-1]])
        rings.append((X, Y, lab.astype(np.int8), S))
    return rings


def lip_rings(P: Params = P0):
    """Chart rings around the mouth, ring 0 = lip line; (X, Y, up, u) with u in [-1, 1] (+1 left)."""
    n = P.lip_points
    lin = np.linspace(-1, 1, n + 1)
    u = 0.5 * lin + 0.5 * np.cos(np.linspace(np.pi, 0, n + 1))  # even spacing, a little denser at the corners
    rings = []
    hu, hl = lip_profile(u * P.mouth_half_width, P)
    for k, (frac, grow) in enumerate(
        [(0, 0), (0.22, 0.07), (0.5, 0.14), (0.8, 0.22), (1.05, 0.32), (1.05, 0.62), (1.05, 1.0)]
    ):
        W = P.mouth_half_width + 0.14 * k + (0.2 if k >= 5 else 0.0) * (k - 4)
        sh = np.sqrt(np.clip(1 - u**2, 0, 1))
        gap = 0.035 * sh
        yu = P.mouth_y + gap + frac * hu + grow * sh**0.7
        yl = P.mouth_y - gap - frac * hl - grow * 1.1 * sh**0.7
        x = u * W
        X = np.concatenate([x, x[-2:0:-1]])
        Y = np.concatenate([yu, yl[-2:0:-1]])
        lab = np.concatenate([np.ones(n + 1), -np.ones(n - 1)])
        lab[0] = lab[n] = 0
        U = np.concatenate([u, u[-2:0:-1]])
        rings.append((X, Y, lab.astype(np.int8), U))
    return rings


def _fibonacci(n):
    i = np.arange(n) + 0.5
    y = 1 - 2 * i / n
    r = np.sqrt(1 - y * y)
    phi = i * math.pi * (3 - math.sqrt(5))
    return np.stack([r * np.cos(phi), y, r * np.sin(phi)], 1)


def _inside(px, py, poly_x, poly_y):
    """Even-odd point-in-polygon, vectorised over points."""
    inside = np.zeros(px.shape, bool)
    xj, yj = poly_x[-1], poly_y[-1]
    for xi, yi in zip(poly_x, poly_y):
        cross = ((yi > py) != (yj > py)) & (px < (xj - xi) * (py - yi) / (yj - yi + 1e-300) + xi)
        inside ^= cross
        xj, yj = xi, yi
    return inside


def spacing(p, P: Params = P0):
    """Target vertex spacing at skin points p: fine on the face, coarse at the back and neck."""
    face = smoothstep(1.0, 6.5, p[:, 2]) * smoothstep(-11.5, -7.5, p[:, 1])
    return P.back_spacing + (P.face_spacing - P.back_spacing) * face


def poisson_fill(seed_pts, exclude, P: Params = P0, n_candidates: int = 160_000):
    """Mirror-symmetric greedy Poisson-disk sample of skin directions (x >= 0 half, then mirrored)."""
    rng = np.random.default_rng(12345)  # fixed: the result is deterministic
    cand = _fibonacci(n_candidates)
    cand = cand[cand[:, 0] > 0]
    mid = np.linspace(0, 2 * np.pi, 3000, endpoint=False)
    mid = np.stack([np.zeros_like(mid), np.sin(mid), np.cos(mid)], 1)
    dirs = np.concatenate([mid[rng.permutation(len(mid))], cand[rng.permutation(len(cand))]])
    pts, base = skin_point(dirs, P)
    keep = ~exclude(base)
    dirs, pts = dirs[keep], pts[keep]
    r = spacing(pts, P)
    cell = P.face_spacing
    grid: dict[tuple[int, int, int], list[int]] = {}
    acc_p: list[np.ndarray] = []

    def add(p):
        key = tuple(np.floor(p / cell).astype(int))
        grid.setdefault(key, []).append(len(acc_p))
        acc_p.append(p)

    for p in seed_pts:
        add(p)
        add(p * np.array([-1, 1, 1]))
    chosen = []
    rmax = int(math.ceil(P.back_spacing / cell))
    for i in range(len(dirs)):
        p, ri = pts[i], r[i]
        if dirs[i, 0] != 0 and abs(p[0]) < 0.5 * ri:
            continue
        k = np.floor(p / cell).astype(int)
        reach = min(rmax, int(math.ceil(ri / cell)))
        ok = True
        for a in range(k[0] - reach, k[0] + reach + 1):
            for b in range(k[1] - reach, k[1] + reach + 1):
                for c in range(k[2] - reach, k[2] + reach + 1):
                    for j in grid.get((a, b, c), ()):
                        q = acc_p[j]
                        if (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 + (p[2] - q[2]) ** 2 < ri * ri:
                            ok = False
                            break
                    if not ok:
                        break
                if not ok:
                    break
            if not ok:
                break
        if ok:
            chosen.append(i)
            add(p)
            if dirs[i, 0] != 0:
                add(p * np.array([-1, 1, 1]))
    d = dirs[chosen]
    half = d[d[:, 0] > 0]
    return np.concatenate([d[d[:, 0] == 0], half, half * np.array([-1, 1, 1])])


# ----------------------------------------------------------------------------------------------
# 3. Geometry of the skin (lids on the eyeball spheres) and of the inner parts
# ----------------------------------------------------------------------------------------------
def _sphere_push(p, c, radius):
    """Points of p closer than radius to c move out radially onto that sphere."""
    rel = p - c
    n = np.linalg.norm(rel, axis=1, keepdims=True)
    return np.where(n < radius, c + rel / np.maximum(n, 1e-9) * radius, p)


def uv_sphere(center, radius, n_lat, n_lon, front_power=1.6):
    """Sphere with its poles on the z axis, rings denser toward the front (+z) pole."""
    t = np.linspace(0, 1, n_lat + 2)[1:-1]
    theta = np.pi * t**front_power  # polar angle from +z
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    pts = np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]])
    polar = np.concatenate([[0.0], th.reshape(-1), [np.pi]])
    tris = []
    for i in range(n_lon):  # front cap
        j = (i + 1) % n_lon
        tris.append((0, 1 + i, 1 + j))
    for a in range(n_lat - 1):
        for i in range(n_lon):
            j = (i + 1) % n_lon
            p00, p01 = 1 + a * n_lon + i, 1 + a * n_lon + j
            p10, p11 = p00 + n_lon, p01 + n_lon
            tris += [(p00, p10, p11), (p00, p11, p01)]
    last = 1 + (n_lat - 1) * n_lon
    for i in range(n_lon):
        j = (i + 1) % n_lon
        tris.append((len(pts) - 1, last + j, last + i))
    return np.asarray(center) + radius * pts, np.array(tris), polar


def tube(rings):
    """Triangles joining consecutive closed rings of equal length (index arrays) [+ fan caps].

    Orientation: for rings ordered along +axis and counter-clockwise about that axis, normals point
    outward. Callers flip as needed.
    """
    tris = []
    for a, b in zip(rings[:-1], rings[1:]):
        n = len(a)
        for i in range(n):
            j = (i + 1) % n
            tris += [(a[i], b[i], b[j]), (a[i], b[j], a[j])]
    return tris


def cap_fan(ring, center_index):
    n = len(ring)
    return [(center_index, ring[(i + 1) % n], ring[i]) for i in range(n)]


def box_arch(P: Params, front_z, top, bottom, thickness, half_width, depth, n_along=34):
    """A curved slab along the dental arch: closed (ring cross-sections plus end caps)."""
    s = np.linspace(-1, 1, n_along)
    ang = s * 1.25
    ax_ = half_width * np.sin(ang) / np.sin(1.25)
    az = front_z - depth * (1 - np.cos(ang)) / (1 - np.cos(1.25))
    tang = normalize(np.stack([np.gradient(ax_), np.zeros_like(s), np.gradient(az)], 1))
    outward = np.stack(
        [tang[:, 2], np.zeros_like(s), -tang[:, 0]], 1
    )  # horizontal normal, away from the mouth centre
    # cross-section (outward offset, height), counter-clockwise seen along the arch
    sec = [
        (0.5, 0.0),
        (0.5, 0.5),
        (0.45, 0.92),
        (0.25, 1.0),
        (-0.25, 1.0),
        (-0.45, 0.92),
        (-0.5, 0.5),
        (-0.5, 0.0),
        (-0.3, -0.04),
        (0.3, -0.04),
    ]
    pts, hfrac = [], []
    for i in range(n_along):
        for off, h in sec:
            y = bottom + (top - bottom) * h
            pts.append([ax_[i], y, az[i]] + outward[i] * off * thickness)
            hfrac.append(h)
    pts = np.array(pts)
    m = len(sec)
    rings = [np.arange(i * m, (i + 1) * m) for i in range(n_along)]
    tris = tube(rings)
    c0, c1 = len(pts), len(pts) + 1
    pts = np.concatenate([pts, [pts[rings[0]].mean(0), pts[rings[-1]].mean(0)]])
    hfrac = np.array(hfrac + [0.5, 0.5])
    tris += cap_fan(list(rings[0])[::-1], c0) + cap_fan(list(rings[-1]), c1)
    return pts, np.array(tris), hfrac


def signed_volume(pts, tris):
    a, b, c = pts[tris[:, 0]], pts[tris[:, 1]], pts[tris[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def orient_closed(pts, tris):
    """Consistent winding over a closed part, then outward (positive signed volume)."""
    tris = orient_consistently(np.asarray(tris), 0, False)
    return tris if signed_volume(pts, tris) > 0 else tris[:, [0, 2, 1]]


class Builder:
    """Accumulates vertices with labels; produces the whole mesh."""

    def __init__(self):
        self.pos, self.tris = [], []
        self.attr: dict[str, list] = {
            k: [] for k in ("part", "kind", "lid", "lid_s", "ring", "lip", "lip_u", "depth", "h")
        }
        self.n = 0

    def add(self, pts, part, **attrs):
        pts = np.asarray(pts, np.float64)
        m = len(pts)
        self.pos.append(pts)
        defaults = {
            "kind": 0,
            "lid": 0,
            "lid_s": 0.0,
            "ring": -1,
            "lip": 0,
            "lip_u": 0.0,
            "depth": 0.0,
            "h": 0.0,
        }
        self.attr["part"].append(np.full(m, part))
        for k, v in defaults.items():
            self.attr[k].append(np.broadcast_to(np.asarray(attrs.get(k, v)), (m,)).copy())
        start = self.n
        self.n += m
        return np.arange(start, start + m)

    def faces(self, tris):
        if len(tris):
            self.tris.append(np.asarray(tris, np.int64))

    def done(self):
        pos = np.concatenate(self.pos)
        attr = {k: np.concatenate(v) for k, v in self.attr.items()}
        return pos, np.concatenate(self.tris), attr


def build_mesh(P: Params = P0):
    """Vertices, triangles and per-vertex labels of the default head."""
    B = Builder()
    eyes = [eye_center(P, +1.0), eye_center(P, -1.0)]
    R_lid = P.eye_radius + 0.06

    # -- skin rings (chart) ----------------------------------------------------------------------
    erings = eye_rings(P)
    lrings = lip_rings(P)
    ring_dirs, ring_meta = [], []
    for side in (+1.0, -1.0):
        for k, (X, Y, lab, S) in enumerate(erings):
            ring_dirs.append(chart_to_direction(side * X, Y, P))
            ring_meta.append(("eye", side, k, lab, S, side * X, Y))
    for k, (X, Y, lab, U) in enumerate(lrings):
        ring_dirs.append(chart_to_direction(X, Y, P))
        ring_meta.append(("lip", 0.0, k, lab, U, X, Y))
    seed = np.concatenate([skin_point(d, P)[0] for d in ring_dirs])

    outer_eye = erings[-1]
    outer_lip = lrings[-1]

    def exclude(b):
        X, Y, Z = b[:, 0], b[:, 1], b[:, 2]
        front = Z > 2
        out = np.zeros(len(b), bool)
        for side in (+1, -1):
            ex, ey = side * outer_eye[0], outer_eye[1]
            cx, cy = ex.mean(), ey.mean()
            grow = 1 + P.face_spacing * 0.8 / 1.6
            out |= front & _inside(X, Y, cx + (ex - cx) * grow, cy + (ey - cy) * grow)
        lx, ly = outer_lip[0], outer_lip[1]
        cy = P.mouth_y
        grow = 1 + P.face_spacing * 0.8 / 3.0
        out |= front & _inside(X, Y, lx * grow, cy + (ly - cy) * grow)
        return out

    fill = poisson_fill(seed, exclude, P)
    all_dirs = np.concatenate(ring_dirs + [fill])
    pos0, _ = skin_point(all_dirs, P)

    # -- labels for skin vertices ------------------------------------------------------------------
    n_skin = len(all_dirs)
    lid = np.zeros(n_skin, np.int64)
    lid_s = np.zeros(n_skin)
    ring = -np.ones(n_skin, np.int64)
    lip = np.zeros(n_skin, np.int64)
    lip_u = np.zeros(n_skin)
    kind = np.zeros(n_skin, np.int64)  # 1: eye ring, 2: lip ring, 0: fill
    ring_index: dict[tuple, np.ndarray] = {}
    o = 0
    for (kind_name, side, k, lab, S, _X, _Y), d in zip(ring_meta, ring_dirs):
        idx = np.arange(o, o + len(d))
        ring_index[(kind_name, side, k)] = idx
        ring[idx] = k
        kind[idx] = 1 if kind_name == "eye" else 2
        if kind_name == "eye":
            lid[idx] = lab
            lid_s[idx] = S
        else:
            lip[idx] = lab
            lip_u[idx] = S
        o += len(d)

    # -- skin geometry: lids hug the eyeballs ------------------------------------------------------
    pos = pos0.copy()
    for side, c in zip((+1.0, -1.0), eyes):
        for k, w in enumerate((1.0, 0.75, 0.42, 0.15, 0.0)):
            idx = ring_index[("eye", side, k)]
            X, Y = pos0[idx, 0], pos0[idx, 1]
            dx, dy = X - c[0], Y - c[1]
            r = R_lid + 0.1 * k
            rho2 = dx * dx + dy * dy
            zz = np.sqrt(np.clip(r * r - rho2, 0.0, None))
            on_sphere = np.stack([X, Y, c[2] + zz], 1)
            if k:  # outer rings only hug the eyeball where they lie over it
                w = w * (1 - smoothstep(0.8 * r, r, np.sqrt(rho2)))[:, None]
            pos[idx] = w * on_sphere + (1 - w) * pos0[idx]
        near = np.linalg.norm(pos - c, axis=1) < R_lid + 0.5
        near &= ~np.isin(np.arange(n_skin), ring_index[("eye", side, 0)])
        pos[near] = _sphere_push(pos[near], c, R_lid + 0.1)

    # -- triangulate the skin on the sphere of directions ------------------------------------------
    from scipy.spatial import ConvexHull

    hull = ConvexHull(all_dirs)
    if len(np.unique(hull.simplices)) != n_skin:
        raise RuntimeError("build_default_rig: convex hull dropped skin points (degenerate sampling)")
    tris = hull.simplices.copy()
    a, b, c_ = all_dirs[tris[:, 0]], all_dirs[tris[:, 1]], all_dirs[tris[:, 2]]
    flip = (np.cross(b - a, c_ - a) * (a + b + c_)).sum(1) < 0
    tris[flip] = tris[flip][:, [0, 2, 1]]
    # Remove the triangles covering the openings: all corners on one margin ring, centre inside it.
    drop = np.zeros(len(tris), bool)
    for key in [("eye", 1.0, 0), ("eye", -1.0, 0), ("lip", 0.0, 0)]:
        idx = ring_index[key]
        on = np.isin(tris, idx).all(1)
        cen = pos0[tris].mean(1)
        poly = pos0[idx]
        drop |= on & _inside(cen[:, 0], cen[:, 1], poly[:, 0], poly[:, 1])
    tris = tris[~drop]
    B.add(pos, SKIN, kind=kind, lid=lid, lid_s=lid_s, ring=ring, lip=lip, lip_u=lip_u)
    B.faces(tris)

    # -- eye sockets: sleeves behind the lid margins -------------------------------------------------
    for side, c in zip((+1.0, -1.0), eyes):
        idx0 = ring_index[("eye", side, 0)]
        rel = normalize(pos[idx0] - c)
        theta = np.arccos(np.clip(rel[:, 2], -1, 1))
        phi = np.arctan2(rel[:, 1], rel[:, 0])
        prev = idx0
        sleeve = [idx0]
        for j, (dth, dr) in enumerate(((0.35, 0.03), (0.8, 0.05)), start=1):
            th = np.minimum(theta + dth, 2.2)
            q = c + (R_lid + dr) * np.stack(
                [np.sin(th) * np.cos(phi), np.sin(th) * np.sin(phi), np.cos(th)], 1
            )
            idx = B.add(q, SOCKET, kind=1, lid=lid[idx0], lid_s=lid_s[idx0], ring=-1, depth=j / 2)
            sleeve.append(idx)
            prev = idx
        del prev
        # Ring 0 runs counter-clockwise seen from the front when side=+1? orient afterwards.
        st = np.array(tube(sleeve))
        B.faces(st)

    # -- mouth bag: lips continue into a closed cavity ---------------------------------------------
    idx0 = ring_index[("lip", 0.0, 0)]
    p0 = pos[idx0]
    u0 = lip_u[idx0]
    lab0 = lip[idx0]
    sh = np.sqrt(np.clip(1 - u0**2, 0, 1))
    sign = np.where(lab0 > 0, 1.0, np.where(lab0 < 0, -1.0, 0.0))
    bag = [idx0]
    spec = [
        (0.30, 2.30, 0.02, 0.0),  # inner lips touch: no see-through to the teeth
        (0.75, 2.55, 0.95, -0.15),
        (1.55, 2.85, 1.7, -0.45),
        (2.9, 2.9, 2.0, -0.8),
        (4.4, 2.6, 1.9, -1.0),
        (5.5, 1.8, 1.4, -1.1),
    ]
    for j, (depth, rx, ry, yc) in enumerate(spec, start=1):
        q = np.stack([u0 * rx, P.mouth_y + yc + sign * ry * sh, p0[:, 2] - depth], 1)
        idx = B.add(q, MOUTH, kind=2, lip=lab0, lip_u=u0, depth=j / (len(spec) + 1))
        bag.append(idx)
    last = bag[-1]
    cidx = B.add([[0.0, P.mouth_y - 1.1, p0[:, 2].max() - 6.0]], MOUTH, depth=1.0)[0]
    B.faces(tube(bag))
    B.faces(cap_fan(list(last), cidx))

    # -- eyeballs ---------------------------------------------------------------------------------
    eye_polar = []
    for c in eyes:
        pts, t, polar = uv_sphere(c, P.eye_radius, 22, 36)
        # Cornea: a slight bulge over the iris.
        bulge = 0.07 * np.clip(np.cos(polar) - np.cos(0.55), 0, None) / (1 - np.cos(0.55))
        pts = c + (pts - c) * (1 + bulge[:, None] / P.eye_radius)
        idx = B.add(pts, EYEBALL)
        B.faces(orient_closed(pts, t) + idx[0])
        eye_polar.append(polar)

    # -- teeth ------------------------------------------------------------------------------------
    zc = p0[:, 2].max()
    up_pts, up_t, up_h = box_arch(P, zc - 0.95, P.mouth_y + 1.05, P.mouth_y - 0.02, 0.5, 2.1, 2.6)
    lo_pts, lo_t, lo_h = box_arch(P, zc - 1.1, P.mouth_y - 0.2, P.mouth_y - 1.25, 0.45, 1.95, 2.4)
    iu = B.add(up_pts, TEETH_UP, h=up_h)
    B.faces(orient_closed(up_pts, up_t) + iu[0])
    il = B.add(lo_pts, TEETH_LO, h=1 - lo_h)
    B.faces(orient_closed(lo_pts, lo_t) + il[0])

    # -- tongue -----------------------------------------------------------------------------------
    tc = np.array([0.0, P.mouth_y - 1.25, zc - 3.6])
    tp, tt, _ = uv_sphere(np.zeros(3), 1.0, 14, 24, front_power=1.0)
    flat = np.where(tp[:, 1] < 0, 0.45, 0.75)
    tp = tp * np.array([1.55, 1.0, 2.1]) * np.stack([np.ones(len(tp)), flat, np.ones(len(tp))], 1)
    tp[:, 0] *= 1 - 0.35 * smoothstep(0.0, 2.1, tp[:, 2])  # narrower tip
    it = B.add(tp + tc, TONGUE, depth=(tp[:, 2] + 2.1) / 4.2)
    B.faces(orient_closed(tp + tc, tt) + it[0])

    pos, tris, attr = B.done()
    attr["eye_polar"] = np.zeros(len(pos))
    e_idx = np.nonzero(attr["part"] == EYEBALL)[0]
    attr["eye_polar"][e_idx] = np.concatenate(eye_polar)
    return pos, tris, attr, np.array(eyes), ring_index


# ----------------------------------------------------------------------------------------------
# Orientation fix-up for the open skin (+ sleeves + bag) component
# ----------------------------------------------------------------------------------------------
def orient_consistently(tris, seed_tri, seed_flip):
    """Propagate the orientation of seed_tri over edge-connected triangles (flip as needed)."""
    from collections import defaultdict, deque

    tris = tris.copy()
    edge_map = defaultdict(list)
    for t, (a, b, c) in enumerate(tris):
        for e in ((a, b), (b, c), (c, a)):
            edge_map[(min(e), max(e))].append(t)
    seen = np.zeros(len(tris), bool)
    if seed_flip:
        tris[seed_tri] = tris[seed_tri][[0, 2, 1]]
    for start in [seed_tri] + list(range(len(tris))):
        if seen[start]:
            continue
        seen[start] = True
        queue = deque([start])
        while queue:
            t = queue.popleft()
            a, b, c = tris[t]
            for u, v in ((a, b), (b, c), (c, a)):
                for n in edge_map[(min(u, v), max(u, v))]:
                    if seen[n]:
                        continue
                    na, nb, nc = tris[n]
                    # consistent neighbours traverse the shared edge in opposite directions
                    same = (na, nb) == (u, v) or (nb, nc) == (u, v) or (nc, na) == (u, v)
                    if same:
                        tris[n] = tris[n][[0, 2, 1]]
                    seen[n] = True
                    queue.append(n)
    return tris


# ----------------------------------------------------------------------------------------------
# 4. Blendshapes
# ----------------------------------------------------------------------------------------------
class Geo:
    """Vertex positions + labels that shape functions read; ``mirrored()`` swaps the sides."""

    def __init__(self, pos, attr, eyes, P: Params):
        self.pos, self.attr, self.eyes, self.P = pos, attr, eyes, P
        self.part = attr["part"]


class Shapes:
    """Shape functions: each returns deltas [V, 3] for the LEFT version (or symmetric shapes)."""

    def __init__(self, g: Geo, ring0_left):
        self.g = g
        P = g.P
        pos, a = g.pos, g.attr
        del P
        self.skinlike = (g.part == SKIN) | (g.part == SOCKET)
        c = g.eyes[0]
        self.c = c
        # Lid margins of the left eye: alpha_U(s), alpha_L(s) from ring 0.
        r0 = ring0_left
        rel0 = pos[r0] - c
        s0 = a["lid_s"][r0]  # the ring's own parameter (positions carry small feature shifts)
        al0 = np.arctan2(rel0[:, 1], rel0[:, 2])
        lab0 = a["lid"][r0]
        up = lab0 >= 0
        lo = lab0 <= 0
        ou, ol = np.argsort(s0[up]), np.argsort(s0[lo])
        self.sU, self.aU = s0[up][ou], al0[up][ou]
        self.sL, self.aL = s0[lo][ol], al0[lo][ol]

    # -- fields ---------------------------------------------------------------------------------
    def lid_field(self, which):
        """Per-vertex lid rotation weights for the left eye: (angle_scale_upper, angle_scale_lower, s)."""
        g, c = self.g, self.c
        rel = g.pos - c
        s = rel[:, 0] / g.P.fissure_half_width
        labelled = ((g.attr["ring"] == 0) & (g.attr["kind"] == 1)) | (g.part == SOCKET)
        s = np.where(labelled, g.attr["lid_s"], s)
        # Only the left eye's region: labelled vertices of the right eye have x < 0.
        alpha = np.arctan2(rel[:, 1], rel[:, 2])
        sc = np.clip(s, -1, 1)
        aU = np.interp(sc, self.sU, self.aU)
        aL = np.interp(sc, self.sL, self.aL)
        inside_x = 1 - smoothstep(0.98, 1.35, np.abs(s))
        mid = 0.5 * (aU + aL)
        is_up = np.where(labelled & (g.attr["lid"] != 0), g.attr["lid"] > 0, alpha >= mid)
        du = np.maximum(alpha - aU, 0)
        dl = np.maximum(aL - alpha, 0)
        fu = np.where(labelled, 1.0, np.exp(-((du / 0.33) ** 2)))
        fl = np.where(labelled, 1.0, np.exp(-((dl / 0.28) ** 2)))
        dist = np.linalg.norm(rel, axis=1)
        region = (g.pos[:, 0] > 0.3) & self.skinlike & (dist < 4.0)
        wu = np.where(is_up & region, fu * inside_x, 0.0)
        wl = np.where(~is_up & region, fl * inside_x, 0.0)
        return wu, wl, aU, aL

    def lid_rotation(self, up_angle, low_angle):
        """Deltas rotating the upper lid by up_angle(s) and the lower by low_angle(s) (radians, + = down)."""
        g, c = self.g, self.c
        wu, wl, aU, aL = self.lid_field(None)
        ang = wu * up_angle(aU, aL) - wl * low_angle(aU, aL)
        # rotation about +x by -ang turns the upper lid down for ang > 0
        R = rot_x(ang)
        out = np.zeros_like(g.pos)
        m = ang != 0
        out[m] = rotate_about(g.pos[m], c, R[m]) - g.pos[m]
        return out

    def eyeball_rotation(self, yaw, pitch):
        """Rotate the left eyeball: yaw > 0 toward +x, pitch > 0 upward (radians)."""
        g, c = self.g, self.c
        m = (g.part == EYEBALL) & (g.pos[:, 0] > 0)
        R = rot_y(np.float64(yaw)) @ rot_x(np.float64(-pitch))  # rot_x(+) would turn the front down
        out = np.zeros_like(g.pos)
        out[m] = rotate_about(g.pos[m], c, R) - g.pos[m]
        return out

    def jaw_weight(self, soft: float = 1.0):
        """Per-vertex share of the jaw motion; ``soft`` widens the skin transition (lateral moves)."""
        g, P = self.g, self.g.P
        X, Y, Z = g.pos.T
        ax = np.abs(X)
        line = P.mouth_y + np.maximum(ax - P.mouth_half_width, 0) * 1.05
        band = (0.7 + 0.45 * np.clip(ax - P.mouth_half_width, 0, None)) * soft
        w = smoothstep(-band, band, line - Y)
        w *= 1 - smoothstep(4.6, 6.4, ax - 0.15 * (Y - P.mouth_y))  # not behind the jaw angle
        w *= smoothstep(1.5, 4.6, Z + 0.35 * (Y + 9.0))  # fade under the chin into the neck
        w = np.where(g.part == SOCKET, 0.0, w)
        w = np.where(g.part == EYEBALL, 0.0, w)
        # Lip rings: upper lip stays with the skull, lower lip goes with the jaw, corners half way;
        # blended into the smooth field over the outer rings.
        lab, u = g.attr["lip"], g.attr["lip_u"]
        corner = 0.5 * np.abs(u) ** 4
        lipw = np.where(lab > 0, corner, np.where(lab < 0, 1 - corner, 0.5))
        ring = g.attr["ring"]
        lip_ring = (g.part == SKIN) & (g.attr["kind"] == 2)
        t = np.clip(ring / 6.0, 0, 1) ** 1.5
        w = np.where(lip_ring, (1 - t) * lipw + t * w, w)
        w = np.where(g.part == MOUTH, np.where(g.attr["depth"] >= 0.999, 0.5, lipw), w)
        w = np.where(g.part == TEETH_LO, 1.0, w)
        w = np.where(g.part == TONGUE, 1.0, w)
        w = np.where(g.part == TEETH_UP, 0.0, w)
        return w

    def lip_masks(self):
        """(upper, lower) lip masks: 1 on the vermilion, fading over the surrounding skin and into the bag."""
        g, P = self.g, self.g.P
        X, Y = g.pos[:, 0], g.pos[:, 1]
        lab = g.attr["lip"]
        dy = Y - P.mouth_y
        hu, hl = lip_profile(X, P)
        e = (X / (P.mouth_half_width + 0.4)) ** 2
        ru = np.sqrt(e + (np.maximum(dy, 0) / (hu + 0.55)) ** 2)
        rl = np.sqrt(e + (np.maximum(-dy, 0) / (hl + 0.55)) ** 2)
        upper = np.exp(-(np.maximum(ru - 0.75, 0) ** 2) / 0.12) * (dy >= 0)
        lower = np.exp(-(np.maximum(rl - 0.75, 0) ** 2) / 0.12) * (dy < 0)
        skin = g.part == SKIN
        r0 = skin & (g.attr["ring"] == 0) & (g.attr["kind"] == 2)
        up_lab = r0 & (lab > 0)
        lo_lab = r0 & (lab < 0)
        upper = np.where(lo_lab, 0.0, np.where(up_lab, 1.0, upper))
        lower = np.where(up_lab, 0.0, np.where(lo_lab, 1.0, lower))
        corner = r0 & (lab == 0)
        upper = np.where(corner, 0.5, upper) * skin
        lower = np.where(corner, 0.5, lower) * skin
        bag = g.part == MOUTH
        fade = 1 - smoothstep(0.0, 0.45, g.attr["depth"])
        upper = np.where(bag, (lab > 0) * fade + (lab == 0) * 0.5 * fade, upper)
        lower = np.where(bag, (lab < 0) * fade + (lab == 0) * 0.5 * fade, lower)
        return upper, lower

    def perioral(self, rx=3.3, ry=2.6):
        g, P = self.g, self.g.P
        X, Y = g.pos[:, 0], g.pos[:, 1]
        r = np.sqrt((X / rx) ** 2 + ((Y - P.mouth_y) / ry) ** 2)
        m = np.exp(-(np.maximum(r - 0.55, 0) ** 2) / 0.18)
        m *= (g.part == SKIN) | (g.part == MOUTH)
        return np.where(g.part == MOUTH, 1 - smoothstep(0.0, 0.6, g.attr["depth"]), m)

    def corner_mask(self, radius=1.3, fade_bag=True):
        """Left mouth corner (x > 0) mask."""
        g, P = self.g, self.g.P
        X, Y, Z = g.pos.T
        cx = P.mouth_half_width
        m = np.exp(-(((X - cx) / (radius * 1.25)) ** 2 + ((Y - P.mouth_y) / radius) ** 2))
        m *= smoothstep(-0.8, 0.6, X)
        m *= (g.part == SKIN) | (g.part == MOUTH)
        if fade_bag:
            m = np.where(g.part == MOUTH, m * (1 - smoothstep(0.0, 0.5, g.attr["depth"])), m)
        return m

    def region(self, cx, cy, sx, sy, part=(SKIN,)):
        g = self.g
        X, Y = g.pos[:, 0], g.pos[:, 1]
        return gauss(X, Y, cx, cy, sx, sy) * np.isin(g.part, part) * (g.pos[:, 2] > 2)

    def jaw_open_delta(self, angle_deg=None, glide=None):
        g, P = self.g, self.g.P
        angle = math.radians(P.jaw_open_angle if angle_deg is None else angle_deg)
        glide = P.jaw_open_glide if glide is None else glide
        R = rot_x(np.float64(angle))  # positive: chin goes down (y toward +z... about +x)
        # rot_x(+) turns +y toward +z: the chin (below and in front of the pivot) swings down/back.
        target = rotate_about(g.pos, np.asarray(P.jaw_pivot), R) + np.array([0, 0, glide])
        return target - g.pos

    # -- the 52 shapes (left versions; symmetric shapes need no mirror) ---------------------------------
    def compute(self):
        g, P = self.g, self.g.P
        V = len(g.pos)
        out: dict[str, np.ndarray] = {}
        lidrot = self.lid_rotation

        blink = lidrot(lambda aU, aL: aU - (aL + 0.22 * (aU - aL)), lambda aU, aL: 0.22 * (aU - aL))
        out["EyeBlinkLeft"] = blink
        look = math.radians(24.0)
        out["EyeLookDownLeft"] = self.eyeball_rotation(0, -look) + lidrot(
            lambda aU, aL: 0.55 * look + 0 * aU, lambda aU, aL: -0.3 * look + 0 * aU
        )
        out["EyeLookUpLeft"] = self.eyeball_rotation(0, look) + lidrot(
            lambda aU, aL: -0.45 * look + 0 * aU, lambda aU, aL: 0.25 * look + 0 * aU
        )
        out["EyeLookInLeft"] = self.eyeball_rotation(-look * 1.1, 0)  # toward the nose (-x)
        out["EyeLookOutLeft"] = self.eyeball_rotation(look * 1.1, 0)
        out["EyeWideLeft"] = lidrot(lambda aU, aL: -0.45 * (aU - aL), lambda aU, aL: -0.1 * (aU - aL))
        squint_cheek = self.region(P.eye_x + 0.2, P.eye_y - 1.5, 1.4, 0.8) * (g.pos[:, 0] > 0)
        out["EyeSquintLeft"] = lidrot(
            lambda aU, aL: 0.12 * (aU - aL), lambda aU, aL: 0.38 * (aU - aL)
        ) + squint_cheek[:, None] * np.array([0.0, 0.22, 0.08])

        jaw_w = self.jaw_weight()
        self.jaw_w = jaw_w
        D_open = self.jaw_open_delta()
        out["JawOpen"] = jaw_w[:, None] * D_open
        jaw_soft = self.jaw_weight(soft=3.5)  # lateral/forward glides spread over the cheek
        out["JawForward"] = jaw_soft[:, None] * np.array([0.0, -0.05, 0.75])
        # JawLeft: the jaw slides toward the subject's left (+x) with a slight turn.
        side_turn = rot_y(np.float64(math.radians(4.0)))
        jl = rotate_about(g.pos, np.asarray(P.jaw_pivot) + np.array([0, 0, -3.0]), side_turn) - g.pos
        out["JawLeft"] = jaw_soft[:, None] * (np.array([0.65, 0.0, 0.0]) + jl)

        up_m, lo_m = self.lip_masks()
        # MouthClose: lips meet while the jaw is open (lower lip rises, upper lip drops a little).
        D_open_full = self.jaw_open_delta()
        out["MouthClose"] = (
            -0.78 * lo_m[:, None] * jaw_w[:, None] * D_open_full + 0.22 * up_m[:, None] * D_open_full
        )
        peri = self.perioral()
        X, Y, Z = g.pos.T
        lipm = np.maximum(up_m, lo_m)
        lipband = np.maximum(lipm, 0.0)
        # Funnel: lips flare forward into an open O, corners in.
        sh = np.sqrt(np.clip(1 - (X / (P.mouth_half_width + 0.3)) ** 2, 0, 1))
        funnel = np.zeros((V, 3))
        funnel[:, 0] = -0.32 * X * peri
        funnel[:, 2] = 0.55 * lipband + 0.25 * peri
        funnel[:, 1] = (0.32 * up_m - 0.38 * lo_m) * sh
        out["MouthFunnel"] = funnel
        pucker = np.zeros((V, 3))
        pucker[:, 0] = -0.42 * X * peri
        pucker[:, 2] = 0.75 * lipband + 0.3 * peri
        pucker[:, 1] = (-0.06 * up_m + 0.08 * lo_m) * sh
        out["MouthPucker"] = pucker
        out["MouthLeft"] = peri[:, None] * np.array([0.85, 0.05, -0.1]) * (1 - 0.3 * np.abs(X) / 3.0)[:, None]
        cm = self.corner_mask()
        cheek = self.region(3.4, P.mouth_y + 2.2, 1.3, 1.1) * (X > 0)
        out["MouthSmileLeft"] = cm[:, None] * np.array([0.42, 0.75, -0.45]) + cheek[:, None] * np.array(
            [0.1, 0.28, 0.22]
        )
        out["MouthFrownLeft"] = cm[:, None] * np.array([0.05, -0.6, -0.05])
        out["MouthDimpleLeft"] = cm[:, None] * np.array([0.25, 0.05, -0.42])
        cm_wide = self.corner_mask(radius=1.7)
        out["MouthStretchLeft"] = cm_wide[:, None] * np.array([0.55, -0.32, -0.15])
        # Rolls: lips turn in over the teeth.
        out["MouthRollLower"] = lo_m[:, None] * np.array([0.0, 0.28, -0.55]) * sh[:, None]
        out["MouthRollUpper"] = up_m[:, None] * np.array([0.0, -0.22, -0.5]) * sh[:, None]
        chin = self.region(0, -6.6, 2.2, 1.6)
        out["MouthShrugLower"] = (lo_m * 0.9 + chin * 0.8)[:, None] * np.array([0.0, 0.3, 0.25])
        out["MouthShrugUpper"] = up_m[:, None] * np.array([0.0, 0.22, 0.15])
        half_left = smoothstep(-0.6, 0.8, X)
        # Press: vermilion thins toward the lip line.
        vu, vl = vermilion(X, Y, P)
        press = np.zeros((V, 3))
        press[:, 1] = -0.16 * up_m * (Y - P.mouth_y) / 0.8 - 0.16 * lo_m * (Y - P.mouth_y) / 0.9
        press[:, 2] = -0.08 * lipband
        out["MouthPressLeft"] = press * half_left[:, None]
        out["MouthLowerDownLeft"] = (lo_m * half_left * sh)[:, None] * np.array([0.0, -0.55, 0.08])
        out["MouthUpperUpLeft"] = (up_m * half_left * sh)[:, None] * np.array([0.0, 0.5, 0.05])
        del vu, vl

        # Brows: along a curve above the eye.
        brow_t = np.clip((X - 1.0) / 4.4, 0, 1)  # 0 inner, 1 outer (left side)
        brow_y = P.eye_y + 2.1 + 0.35 * np.sin(np.pi * brow_t) - 0.2 * brow_t
        lid_guard = smoothstep(P.eye_y + 0.45, P.eye_y + 1.3, Y)
        brow_band = np.exp(-(((Y - brow_y) / 1.2) ** 2)) * (Y < brow_y) + (Y >= brow_y) * np.exp(
            -(((Y - brow_y) / 2.6) ** 2)
        )
        brow = (
            brow_band
            * lid_guard
            * (g.part == SKIN)
            * (Z > 3)
            * smoothstep(0.2, 1.2, X)
            * (1 - smoothstep(5.6, 6.8, X))
        )
        inner = np.exp(-(((X - 1.3) / 1.3) ** 2))
        outer = np.exp(-(((X - 4.6) / 1.2) ** 2))
        out["BrowDownLeft"] = brow[:, None] * (
            np.array([0.0, -0.5, 0.12]) + inner[:, None] * np.array([-0.25, 0.0, 0.05])
        )
        inner_both = (
            brow_band * lid_guard * (g.part == SKIN) * (Z > 3) * np.exp(-(((np.abs(X) - 1.2) / 1.5) ** 2))
        )
        out["BrowInnerUp"] = inner_both[:, None] * np.stack(
            [-0.1 * np.tanh(X / 0.5), np.full(V, 0.85), np.full(V, 0.05)], 1
        )
        out["BrowOuterUpLeft"] = (brow * outer)[:, None] * np.array([0.0, 0.75, 0.0])

        # Cheeks and nose.
        puff = pair(X, Y, 3.6, P.mouth_y + 1.1, 1.9, 1.8) * (g.part == SKIN) * (Z > 1)
        out["CheekPuff"] = puff[:, None] * np.stack(
            [np.tanh(X / 0.5) * 0.95, np.zeros(V), np.full(V, 0.75)], 1
        ) + (lipband * 0.15)[:, None] * np.array([0, 0, 1.0])
        cs = self.region(P.eye_x + 0.2, P.eye_y - 1.8, 1.5, 0.9) * (X > 0)
        out["CheekSquintLeft"] = cs[:, None] * np.array([0.05, 0.32, 0.12]) + lidrot(
            lambda aU, aL: 0 * aU, lambda aU, aL: 0.12 * (aU - aL)
        )
        left_half = smoothstep(-0.4, 0.6, X)
        sneer = (self.region(1.1, -0.6, 0.7, 1.1) + 0.4 * self.region(1.2, 1.6, 0.6, 0.8)) * left_half
        out["NoseSneerLeft"] = sneer[:, None] * np.array([0.05, 0.5, 0.1]) + (0.3 * brow * inner)[
            :, None
        ] * np.array([0.0, -0.25, 0.0])

        # Tongue out (with the jaw a little open so it can pass the teeth).
        tongue = g.part == TONGUE
        tdepth = g.attr["depth"]
        tz = np.where(tongue, 3.4 * smoothstep(0.0, 1.0, tdepth) + 0.3, 0.0)
        ty = np.where(tongue, 0.55 * smoothstep(0.3, 1.0, tdepth), 0.0)
        t_out = np.stack([np.zeros(V), ty, tz], 1)
        t_out[tongue] *= 1.0
        out["TongueOut"] = (
            0.38 * jaw_w[:, None] * D_open * (~tongue)[:, None]
            + t_out
            + 0.38 * D_open * tongue[:, None]
            + (lo_m * 0.25)[:, None] * np.array([0.0, -0.2, 0.1])
        )
        return out


def mirror_map(pos):
    """Index of each vertex's mirror twin (x -> -x); the mesh is built mirror-symmetric."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(pos).query(pos * np.array([-1.0, 1, 1]))
    if dist.max() > 1e-6:
        raise RuntimeError(f"build_default_rig: mesh is not mirror symmetric (max {dist.max():.2e} cm)")
    return idx


def all_shapes(pos, attr, eyes, ring_index, P: Params = P0):
    """[52, V, 3]: left and symmetric shapes from :class:`Shapes`; right shapes are their exact mirrors."""
    g = Geo(pos, attr, eyes, P)
    left = Shapes(g, ring_index[("eye", 1.0, 0)]).compute()
    mirror = mirror_map(pos)
    M = np.array([-1.0, 1, 1])
    deltas = np.zeros((52, len(pos), 3))
    for k, name in enumerate(BLENDSHAPES):
        if name in left:
            deltas[k] = left[name]
        elif name.endswith("Right") and name[:-5] + "Left" in left:
            deltas[k] = left[name[:-5] + "Left"][mirror] * M
        else:
            raise KeyError(f"no shape function for {name}")
    return deltas


# ----------------------------------------------------------------------------------------------
# 5. Identity controls
# ----------------------------------------------------------------------------------------------
IDENTITY = (
    "face_width",
    "face_length",
    "jaw_width",
    "chin",
    "nose_length",
    "nose_width",
    "eye_spacing",
    "lip_fullness",
    "brow_height",
    "cheekbones",
    "head_depth",
)


def identity_field(name, pos, part, P: Params = P0):
    """Displacement [N, 3] of identity control ``name`` (per unit coefficient) at points pos."""
    X, Y, Z = pos.T
    skin = part == SKIN
    d = np.zeros((len(pos), 3))
    face = smoothstep(1.0, 6.0, Z)
    lower = smoothstep(P.eye_y - 1.0, P.mouth_y - 1.0, Y)
    if name == "face_width":
        d[:, 0] = 0.06 * X
    elif name == "face_length":  # the lower face lengthens below the eyes
        d[:, 1] = 0.07 * softmin0(Y - P.eye_y, 0.6) * smoothstep(-16.0, -9.0, Y)
    elif name == "jaw_width":
        d[:, 0] = 0.09 * X * lower
    elif name == "chin":
        c = gauss(X, Y, 0, -7.6, 2.6, 1.8) * face
        d[:, 1], d[:, 2] = -0.35 * c, 0.35 * c
    elif name == "nose_length":
        n = gauss(X, Y, 0, -0.9, 1.4, 1.2) * face * skin
        d[:, 1], d[:, 2] = -0.3 * n, 0.25 * n
    elif name == "nose_width":
        n = gauss(X, Y, 0, -1.0, 1.5, 0.9) * face * skin
        d[:, 0] = 0.22 * X * n
    elif name == "eye_spacing":
        e = np.exp(-(((np.abs(X) - P.eye_x) / 1.9) ** 4 + ((Y - P.eye_y) / 1.6) ** 4)) * face
        d[:, 0] = 0.25 * np.sign(X) * e
    elif name == "lip_fullness":
        vu, vl = vermilion(X, Y, P)
        d[:, 2] = 0.2 * np.maximum(vu, vl) * face * skin
        # forward only: both lips move alike at the lip line, so the closed mouth stays closed
    elif name == "brow_height":
        d[:, 1] = (
            0.3
            * np.exp(-(((Y - (P.eye_y + 2.2)) / 1.0) ** 2))
            * face
            * smoothstep(P.eye_y + 0.6, P.eye_y + 1.4, Y)
        )
    elif name == "cheekbones":
        cbk = gauss(np.abs(X), Y, 4.0, 0.5, 1.5, 1.3) * face * skin
        d[:, 0], d[:, 2] = 0.25 * np.sign(X) * cbk, 0.2 * cbk
    elif name == "head_depth":
        d[:, 2] = 0.06 * softmin0(Z + 1.0, 0.6)
    else:
        raise KeyError(name)
    return d


def identity_fields(pos, attr, eyes, P: Params = P0):
    """[I, V, 3] displacement per unit identity coefficient; eyeballs move rigidly with their centre."""
    part = attr["part"]
    out = []
    for name in IDENTITY:
        d = identity_field(name, pos, part, P)
        for c in eyes:
            m = (part == EYEBALL) & (np.sign(pos[:, 0]) == np.sign(c[0]))
            d[m] = identity_field(name, np.asarray(c)[None], np.array([SKIN]), P)[0]
        out.append(d)
    return np.stack(out)


# ----------------------------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------------------------
SKIN_RGB = np.array([0.80, 0.60, 0.49])  # sRGB; colors() returns linear values


def colors(pos, attr, P: Params = P0):
    X, Y, Z = pos.T
    part = attr["part"]
    V = len(pos)
    col = np.tile(SKIN_RGB, (V, 1))
    vu, vl = vermilion(X, Y, P)
    lipc = np.array([0.68, 0.34, 0.33])
    m = np.clip(vu + vl, 0, 1) * (Z > 3)
    col = col * (1 - m[:, None]) + lipc * m[:, None]
    # Brows (darker hair band) and eyelid margins.
    brow_t = np.clip((np.abs(X) - 1.0) / 4.4, 0, 1)
    brow_y = P.eye_y + 2.1 + 0.35 * np.sin(np.pi * brow_t) - 0.2 * brow_t
    bm = (
        np.exp(-(((Y - brow_y) / 0.32) ** 2))
        * smoothstep(0.9, 1.4, np.abs(X))
        * (1 - smoothstep(5.0, 5.8, np.abs(X)))
    )
    bm *= (Z > 3) * (part == SKIN)
    col = col * (1 - 0.75 * bm[:, None]) + np.array([0.25, 0.17, 0.12]) * 0.75 * bm[:, None]
    margin = (part == SKIN) & (attr["ring"] == 0) & (attr["kind"] == 1)
    col[margin] = np.array([0.30, 0.20, 0.17])
    nost = pair(X, Y, 0.55, -1.6, 0.26, 0.16) * (Z > 6)
    col = col * (1 - 0.7 * nost[:, None]) + np.array([0.3, 0.15, 0.12]) * 0.7 * nost[:, None]
    col[part == SOCKET] = np.array([0.78, 0.45, 0.42])
    col[part == MOUTH] = np.array([0.45, 0.16, 0.18])
    col[part == TONGUE] = np.array([0.78, 0.38, 0.40])
    h = attr["h"]
    teeth = (part == TEETH_UP) | (part == TEETH_LO)
    gum = smoothstep(0.55, 0.7, h)
    tc = np.array([0.95, 0.93, 0.85]) * (1 - gum[:, None]) + np.array([0.80, 0.42, 0.45]) * gum[:, None]
    col[teeth] = tc[teeth]
    eye = part == EYEBALL
    pol = attr["eye_polar"]
    pupil, iris, limbus = 0.16, 0.42, 0.47
    ecol = np.where(
        (pol < pupil)[:, None],
        np.array([0.03, 0.03, 0.03]),
        np.where(
            (pol < iris)[:, None],
            np.array([0.25, 0.40, 0.55]),
            np.where((pol < limbus)[:, None], np.array([0.15, 0.2, 0.25]), np.array([0.94, 0.93, 0.90])),
        ),
    )
    col[eye] = ecol[eye]
    # The colours above are picked as sRGB values; rig colours are linear light (the renderer shades in
    # linear light and facecore.render.color encodes to sRGB on output), so decode them here.
    return srgb_to_linear(col)


# ----------------------------------------------------------------------------------------------
# 68 iBUG landmarks
# ----------------------------------------------------------------------------------------------
# Mirror pairs of the iBUG-68 layout (index 0 is on the subject's right, the left of a frontal image).
IBUG_MIRROR = (
    [(k, 16 - k) for k in range(8)] + [(17 + k, 26 - k) for k in range(5)] + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
)


def landmarks68(pos, attr, twin, P: Params = P0):
    """The 68 iBUG landmark vertices (``metadata["landmarks68"]``), picked from the construction.

    Eye corners and lid points come from the lid margins (ring 0, by ``lid_s`` along the fissure),
    the inner lip contour from the lip line; the outer lip contour, brows, nose and jaw line are the
    frontmost skin vertices near target chart points derived from :class:`Params` (vermilion border,
    the brow curve of the colours, the nose profile, a super-ellipse from ear height to the chin).
    The subject's left half and the midline are picked; the right half is their mirror twins."""
    part = attr["part"]
    skin = np.nonzero(part == SKIN)[0]
    ring0 = (part == SKIN) & (attr["ring"] == 0)

    def front(X, Y, radius=0.4, off_ring=False):
        # frontmost skin vertex within radius (xy) of the target, the radius widening if none is
        for r in (radius, 2 * radius, 4 * radius):
            m = np.hypot(pos[skin, 0] - X, pos[skin, 1] - Y) < r
            if off_ring:
                m &= ~ring0[skin]
            if m.any():
                cand = skin[m]
                return int(cand[np.argmax(pos[cand, 2])])
        raise RuntimeError(f"landmarks68: no skin vertex near ({X}, {Y})")

    def on_ring(kind, label_key, label, s_key, s, side=1.0):
        m = ring0 & (attr["kind"] == kind) & (np.sign(pos[:, 0]) * side >= 0)
        if label is not None:
            m &= attr[label_key] == label
        cand = np.nonzero(m)[0]
        return int(cand[np.argmin(np.abs(attr[s_key][cand] - s))])

    lm = {}
    # Jaw line (8 = chin, 9..16 up the subject's left side to ear height).
    top, chin, half_w, n = P.eye_y, -8.5, 6.9, 2.5
    for k in range(8, 17):
        phi = (k - 8) / 8 * np.pi / 2
        lm[k] = front(half_w * np.sin(phi) ** (2 / n), top - (top - chin) * np.cos(phi) ** (2 / n))
    # Left brow, inner (22) to outer (26), on the brow curve the colours draw.
    for k, t in zip(range(22, 27), (0.08, 0.3, 0.52, 0.74, 0.94)):
        lm[k] = front(1.0 + 4.4 * t, P.eye_y + 2.1 + 0.35 * np.sin(np.pi * t) - 0.2 * t)
    # Nose: bridge from the nasion to the tip (27..30), then the base (33 columella, 34, 35 wing).
    nasion = P.eye_y - 0.4
    for k, dy in zip(range(27, 31), (0.0, 1.15, 2.3, 3.45)):
        lm[k] = front(0.0, nasion - dy, 0.25)
    lm[33] = front(0.0, nasion - 4.45, 0.25)
    lm[34] = front(0.55, nasion - 4.25, 0.25)
    lm[35] = front(1.05, nasion - 4.05, 0.3)
    # Left eye: inner corner 42, upper lid 43 44, outer corner 45, lower lid 46 47.
    lm[42] = on_ring(1, "lid", 0, "lid_s", -1.0)
    lm[43] = on_ring(1, "lid", 1, "lid_s", -1 / 3)
    lm[44] = on_ring(1, "lid", 1, "lid_s", 1 / 3)
    lm[45] = on_ring(1, "lid", 0, "lid_s", 1.0)
    lm[46] = on_ring(1, "lid", -1, "lid_s", 1 / 3)
    lm[47] = on_ring(1, "lid", -1, "lid_s", -1 / 3)
    # Outer lip contour: the vermilion border (51 top of the bow, 52 its peak, 54 the corner, 57 bottom).
    hw = P.mouth_half_width
    hu, hl = lip_profile(np.array([0.0, 0.45, 1.4, 1.4, 0.6, 0.0]), P)
    lm[51] = front(0.0, P.mouth_y + hu[0], 0.2)
    lm[52] = front(0.45, P.mouth_y + hu[1], 0.2)
    lm[53] = front(1.4, P.mouth_y + hu[2], 0.2)
    lm[54] = front(hw + 0.2, P.mouth_y, 0.2, off_ring=True)  # not the lip-line corner (64)
    lm[55] = front(1.4, P.mouth_y - hl[3], 0.2)
    lm[56] = front(0.6, P.mouth_y - hl[4], 0.2)
    lm[57] = front(0.0, P.mouth_y - hl[5], 0.2)
    # Inner lip contour: the lip line (64 corner, 62/66 midline).
    lm[62] = on_ring(2, "lip", 1, "lip_u", 0.0)
    lm[63] = on_ring(2, "lip", 1, "lip_u", 0.5)
    lm[64] = on_ring(2, "lip", 0, "lip_u", 1.0)
    lm[65] = on_ring(2, "lip", -1, "lip_u", 0.5)
    lm[66] = on_ring(2, "lip", -1, "lip_u", 0.0)
    for right, left in IBUG_MIRROR:
        lm[right] = int(twin[lm[left]])
    out = [lm[k] for k in range(68)]
    if len(set(out)) != 68:
        raise RuntimeError("build_default_rig: landmarks68 picked the same vertex twice")
    return out


# ----------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------
def build(P: Params = P0):
    """The default rig as a :class:`facecore.rig.FaceRig` (float32, CPU)."""
    import torch

    from facecore.rig.face_rig import FaceRig

    pos, tris, attr, eyes, ring_index = build_mesh(P)
    # Exact mirror symmetry (the construction is symmetric up to rounding).
    from scipy.spatial import cKDTree

    dist, twin = cKDTree(pos).query(pos * np.array([-1.0, 1, 1]))
    if dist.max() > 1e-5:
        raise RuntimeError(f"build_default_rig: mesh is not mirror symmetric (max {dist.max():.2e} cm)")
    pos = 0.5 * (pos + pos[twin] * np.array([-1.0, 1, 1]))
    pos[twin == np.arange(len(pos)), 0] = 0.0
    part = attr["part"]
    # Orientation: skin triangles come out of the hull facing outward; sleeves and bag are
    # propagated from a skin triangle so the whole open surface is consistent.
    skinish = np.isin(part[tris], [SKIN, SOCKET, MOUTH]).all(1)
    st = tris[skinish]
    st = orient_consistently(st, 0, False)
    # The hull faces were oriented outward: check that the propagated orientation kept that.
    tris = np.concatenate([st, tris[~skinish]])
    deltas = all_shapes(pos, attr, eyes, ring_index, P)
    deltas[np.abs(deltas).max(-1) < P.delta_epsilon] = 0.0
    basis = identity_fields(pos, attr, eyes, P)
    basis[np.abs(basis).max(-1) < P.delta_epsilon] = 0.0
    piv = np.zeros((len(IDENTITY), 4, 3))
    for i, name in enumerate(IDENTITY):
        for j, point in enumerate([P.neck_pivot, eyes[0], eyes[1], P.jaw_pivot]):
            if j in (1, 2):
                m = (part == EYEBALL) & (np.sign(pos[:, 0]) == np.sign(point[0]))
                piv[i, j] = basis[i][m].mean(0)
            else:
                piv[i, j] = identity_field(name, np.asarray(point, np.float64)[None], np.array([SKIN]), P)[0]
    groups = {
        "skin": np.nonzero(part == SKIN)[0],
        "eye_sockets": np.nonzero(part == SOCKET)[0],
        "mouth_interior": np.nonzero(part == MOUTH)[0],
        "left_eye": np.nonzero((part == EYEBALL) & (pos[:, 0] > 0))[0],
        "right_eye": np.nonzero((part == EYEBALL) & (pos[:, 0] < 0))[0],
        "upper_teeth": np.nonzero(part == TEETH_UP)[0],
        "lower_teeth": np.nonzero(part == TEETH_LO)[0],
        "tongue": np.nonzero(part == TONGUE)[0],
    }
    groups["head"] = np.nonzero(part != EYEBALL)[0]
    # Lid margins and lip lines (ring 0), corners included in both lids / lips.
    margin = (part == SKIN) & (attr["ring"] == 0)
    for side, name in ((1, "left"), (-1, "right")):
        eye = margin & (attr["kind"] == 1) & (np.sign(pos[:, 0]) == side)
        groups[f"{name}_upper_lid"] = np.nonzero(eye & (attr["lid"] >= 0))[0]
        groups[f"{name}_lower_lid"] = np.nonzero(eye & (attr["lid"] <= 0))[0]
    lipline = margin & (attr["kind"] == 2)
    groups["upper_lip_line"] = np.nonzero(lipline & (attr["lip"] >= 0))[0]
    groups["lower_lip_line"] = np.nonzero(lipline & (attr["lip"] <= 0))[0]
    # Per-vertex UVs: cylindrical for the head, spherical for the eyeballs.
    u = np.arctan2(pos[:, 0], pos[:, 2]) / (2 * np.pi) + 0.5
    v = (pos[:, 1] - pos[:, 1].min()) / np.ptp(pos[:, 1])
    uvs = np.stack([u, v], 1)
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    meta = {
        "name": "stylized",
        "source": "facecore default rig (procedural, python tools/build_default_rig.py)",
        "license": "MIT (facecore)",
        "units": "cm",
        "up": "+y",
        "forward": "+z",
        "left": "+x",
        "generator_params": {f.name: getattr(P, f.name) for f in fields(P)},
        "identity_scale": "coefficients around [-2, 2] give plausible faces (1 = about one s.d.)",
        "jaw_open_angle_deg": P.jaw_open_angle,
        "landmarks68": landmarks68(pos, attr, twin, P),
    }
    return FaceRig(
        neutral=f32(pos),
        triangles=torch.from_numpy(tris.astype(np.int32)),
        deltas=f32(deltas),
        channels=BLENDSHAPES,
        groups={k: torch.from_numpy(v.astype(np.int64)) for k, v in groups.items()},
        eye_centers=f32(eyes),
        neck_pivot=f32(P.neck_pivot),
        jaw_pivot=f32(P.jaw_pivot),
        uvs=f32(uvs),
        uv_triangles=torch.from_numpy(tris.astype(np.int32)),
        colors=f32(colors(pos, attr, P)),
        identity_basis=f32(basis),
        identity_names=IDENTITY,
        identity_pivots=f32(piv),
        metadata=meta,
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Generate facecore's default rig asset.")
    ap.add_argument("--out", type=Path, default=ASSET)
    args = ap.parse_args(argv)
    rig = build()
    rig.save(args.out)
    args.out.chmod(0o644)  # the writer creates 0600 files; the asset ships world-readable
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {rig}")


if __name__ == "__main__":
    main()
