"""Keyframes -> per-frame animation: shape-preserving (PCHIP) interpolation with ease in/out and holds.

Each channel is interpolated independently through its knots (a keyframe's time, plus the end of
its hold when it has one). On every interval the curve is a convex blend of two monotone cubics
with the same end values:

- PCHIP (Fritsch & Carlson 1980, "Monotone piecewise cubic interpolation", SIAM J. Numer. Anal.
  17(2); derivatives as in Moler's ``pchip`` / scipy's ``PchipInterpolator``), which keeps motion
  flowing through keyframes that continue in the same direction;
- smoothstep ``3u^2 - 2u^3``, which eases in and out of every knot (zero velocity there).

Both are monotone between neighbouring knots, so their blend is too: no value ever leaves the
range spanned by the two knots around it, so blendshapes stay in [0, 1] and pose in [-1, 1] at any
frame rate ("never overshoots" is a property of the construction, and the tests check it).

Why not ``scipy.interpolate.PchipInterpolator``: with ``ease=0`` the two agree to 1e-12 (a test
checks it), but the ease blend needs the per-interval Hermite terms, and these ~40 lines spare the
``animate`` extra a scipy dependency (scipy is a test-only dependency).

At most :data:`MAX_FRAMES` frames are made (checked before allocating), in blocks of
:data:`_BLOCK` frames so that temporaries stay small.
"""

from __future__ import annotations

import numpy as np

from .._names import BLENDSHAPES, NAMES

N_BLEND = len(BLENDSHAPES)
MAX_FRAMES = 1_000_000  # frames one interpolation may produce (an hour at 240 fps is 864,001)
_BLOCK = 8192  # frames evaluated at once


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson derivatives at knots ``x [M]`` for values ``y [M, C]`` (float64)."""
    m = x.shape[0]
    if m == 1:
        return np.zeros_like(y)
    h = np.diff(x)[:, None]                        # [M-1, 1]
    delta = np.diff(y, axis=0) / h                 # [M-1, C]
    d = np.zeros_like(y)
    if m == 2:
        d[:] = delta[0]
        return d
    # Interior: weighted harmonic mean of the neighbouring secants, 0 at local extrema.
    h0, h1 = h[:-1], h[1:]
    w1, w2 = 2 * h1 + h0, h1 + 2 * h0
    s0, s1 = delta[:-1], delta[1:]
    same = (s0 * s1) > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # tiny secants -> slope 0
        hm = (w1 + w2) / (w1 / s0 + w2 / s1)
    d[1:-1] = np.where(same, hm, 0.0)
    # Ends: one-sided three-point estimate, limited so the end intervals stay monotone.
    d[0] = _edge(h[0], h[1], delta[0], delta[1])
    d[-1] = _edge(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _edge(h0: np.ndarray, h1: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    d = ((2 * h0 + h1) * s0 - h0 * s1) / (h0 + h1)
    d = np.where(np.sign(d) != np.sign(s0), 0.0, d)
    limit = (np.sign(s0) != np.sign(s1)) & (np.abs(d) > 3 * np.abs(s0))
    return np.where(limit, 3 * s0, d)


def eval_knots(x: np.ndarray, y: np.ndarray, t: np.ndarray, ease: float = 0.5) -> np.ndarray:
    """Evaluate the eased PCHIP through knots ``x [M]`` (strictly increasing), ``y [M, C]`` at ``t``.

    Outside ``[x[0], x[-1]]`` the end values are held. Returns float64 ``[len(t), C]``.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    t = np.asarray(t, np.float64)
    if x.shape[0] == 1:
        return np.repeat(y, t.shape[0], axis=0)
    d = pchip_slopes(x, y)
    # Per-interval cubic coefficients in u = (t - x_k) / h_k (a piecewise polynomial, like scipy's
    # PPoly): the blend of the Hermite cubic and smoothstep is itself one cubic per interval.
    h = np.diff(x)[:, None]
    y0, y1, m0, m1 = y[:-1], y[1:], h * d[:-1], h * d[1:]
    dy = y1 - y0
    e = float(ease)
    c1 = (1.0 - e) * m0
    c2 = (1.0 - e) * (3 * dy - 2 * m0 - m1) + e * 3 * dy
    c3 = (1.0 - e) * (m0 + m1 - 2 * dy) - e * 2 * dy
    per_interval = np.stack([c3, c2, c1, y0, np.minimum(y0, y1), np.maximum(y0, y1)], axis=1)  # [M-1, 6, C]
    out = np.empty((t.shape[0], y.shape[1]))
    for s in range(0, t.shape[0], _BLOCK):
        tc = np.clip(t[s:s + _BLOCK], x[0], x[-1])
        k = np.clip(np.searchsorted(x, tc, side="right") - 1, 0, x.shape[0] - 2)
        u = ((tc - x[k]) / (x[k + 1] - x[k]))[:, None]
        # One gather of all per-interval terms, then Horner in place (few large temporaries: on a
        # busy machine fresh allocations, not arithmetic, dominate).
        terms = per_interval[k]  # [B, 6, C]
        block = terms[:, 0]
        for j in (1, 2, 3):
            block *= u
            block += terms[:, j]
        # The blend is monotone per interval; clamping to the interval's range only absorbs rounding.
        np.clip(block, terms[:, 4], terms[:, 5], out=out[s:s + _BLOCK])
    return out


def keyframe_knots(times: np.ndarray, keyframes: np.ndarray, holds: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Knot times and values: each keyframe at its time, again at the end of its hold."""
    xs, ys = [], []
    for k in range(times.shape[0]):
        xs.append(times[k])
        ys.append(keyframes[k])
        hold = 0.0 if holds is None else float(holds[k])
        end = times[k] + hold
        # Skip holds too short to make a distinct knot (knots must strictly increase).
        if end - times[k] > 1e-9 and (k + 1 == times.shape[0] or times[k + 1] - end > 1e-9):
            xs.append(end)
            ys.append(keyframes[k])
    return np.asarray(xs), np.asarray(ys)


def frame_times(start: float, end: float, fps: float) -> np.ndarray:
    """Frame times ``start + n / fps`` covering ``[start, end]`` (the last frame at or before end).
    Raises ValueError beyond :data:`MAX_FRAMES` frames."""
    span = (end - start) * fps  # inf or NaN fail the test below too
    if not span < MAX_FRAMES:
        raise ValueError(f"{end - start:g} s at {fps:g} fps would be {span:.4g} frames; at most "
                         f"{MAX_FRAMES} (shorten the animation or lower fps)")
    n = int(np.floor(span + 1e-6)) + 1
    return start + np.arange(n, dtype=np.float64) / fps


def interpolate(times, keyframes, fps: float = 30.0, *, holds=None, ease: float = 0.5,
                end: float | None = None, start: float | None = None):
    """Keyframes ``[K, 61]`` at ``times [K]`` (seconds, strictly increasing) -> a per-frame Track.

    ``holds [K]`` (seconds, default 0): keyframe k keeps its values from ``times[k]`` to
    ``times[k] + holds[k]`` before moving on (must end before the next keyframe). ``ease`` in
    [0, 1]: 0 is pure PCHIP, 1 eases in and out of every knot (smoothstep). Frames run from
    ``start`` (default ``times[0]``) to ``end`` (default the last keyframe's time plus its hold)
    at ``fps``. Values are clipped into range first (blendshapes [0, 1], pose [-1, 1]); the
    interpolation itself never leaves the span of neighbouring knots.
    """
    from ..io import Track

    times = np.asarray(times, dtype=np.float64)
    keyframes = np.asarray(keyframes, dtype=np.float64)
    if times.ndim != 1 or times.shape[0] == 0:
        raise ValueError(f"times must have shape [K] with K >= 1, got {list(times.shape)}")
    k = times.shape[0]
    if keyframes.shape != (k, len(NAMES)):
        raise ValueError(f"keyframes must have shape [K={k}, {len(NAMES)}], got {list(keyframes.shape)}")
    if not (np.isfinite(times).all() and np.isfinite(keyframes).all()):
        raise ValueError("times and keyframes must be finite")
    if k > 1 and (np.diff(times) <= 0).any():
        raise ValueError(f"times must be strictly increasing, got {times.tolist()}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not 0.0 <= float(ease) <= 1.0:
        raise ValueError(f"ease must be in [0, 1], got {ease!r}")
    if holds is not None:
        holds = np.broadcast_to(np.asarray(holds, dtype=np.float64), (k,)).copy()
        if not np.isfinite(holds).all() or (holds < 0).any():
            raise ValueError(f"holds must be finite and >= 0, got {holds.tolist()}")
        gaps = np.diff(times)
        if (holds[:-1] >= gaps).any():
            i = int(np.flatnonzero(holds[:-1] >= gaps)[0])
            raise ValueError(f"holds[{i}]={holds[i]} must be shorter than the gap to the next keyframe "
                             f"({gaps[i]} s)")
    keyframes = keyframes.copy()
    keyframes[:, :N_BLEND] = np.clip(keyframes[:, :N_BLEND], 0.0, 1.0)
    keyframes[:, N_BLEND:] = np.clip(keyframes[:, N_BLEND:], -1.0, 1.0)
    x, y = keyframe_knots(times, keyframes, holds)
    t0 = float(times[0]) if start is None else float(start)
    t1 = float(x[-1]) if end is None else float(end)
    if t1 < t0:
        raise ValueError(f"end ({t1}) must not be before start ({t0})")
    t = frame_times(t0, t1, float(fps))
    return Track(times=t, params=eval_knots(x, y, t, float(ease)).astype(np.float32), fps=float(fps))
