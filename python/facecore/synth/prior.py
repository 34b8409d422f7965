"""The parameter prior: sampled ARKit faces ``[n, 61]`` (:func:`sample_params`) and clips
(:func:`sample_trajectory`).

Reproducibility: sample ``index`` of a run with ``seed`` draws all its random numbers from its own
generator, ``numpy.random.Generator(PCG64(SeedSequence([seed, index, stream])))`` (:func:`sample_rngs`),
a fixed count per sample, so sample i of a batch equals sample i drawn alone and any shard can be
regenerated anywhere from ``(seed, index)``. ``stream`` keeps the parts of a sample independent:
:data:`STREAM_PARAMS` (this module), ``STREAM_IDENTITY``, ``STREAM_APPEARANCE``, ``STREAM_SCENE``,
``STREAM_SENSOR``, ``STREAM_TRAJECTORY``.

What one sample is, in this order (every knob is a field of :class:`Prior`):

1. **Emotion** (probability ``p_emotion``): a prototype of :data:`facecore.animate.lexicon.EMOTIONS`
   (uniformly chosen) turned into channels by the animator's own
   :func:`facecore.animate.semantic.au_vector` at an intensity in ``emotion_intensity``; unilateral
   emotions (contempt, skepticism) on a random side; every non-zero channel scaled by
   ``1 + emotion_jitter * N(0, 1)``.
2. **Sparse activations**: every common blendshape (not rare, not an eye-look shape) is active with
   probability ``p_active`` at a value in ``active_range``, max-combined with the emotion.
3. **Rare actions** (:data:`RARE`): each is present with probability ``p_rare`` on its own (JawLeft and
   JawRight exclusively, one draw) at a value in ``rare_range``, max-combined. These channels are left
   out of step 2, and the constraints below never lower them, so for TongueOut, CheekPuff and
   JawLeft/Right/Forward (which no emotion drives) the fraction of samples with the channel
   ``>= rare_range[0]`` is ``p_rare``; for EyeWide, MouthDimple and NoseSneer (driven by some emotions
   too) it is at least ``p_rare``.
4. **Blinks**: both eyes closed with probability ``p_blink``, one eye (a wink) with ``p_wink``.
5. **Asymmetry**: each Left/Right blendshape pair, with probability ``p_asymmetric``, has one random side
   scaled by a factor in ``asymmetry_scale``.
6. **Pose and gaze**: head yaw/pitch/roll ``clip(sd * N(0, 1), -max, max)`` plus what the emotion
   gives (1.0 = 90 degrees, :mod:`facecore.pose`); a shared gaze yaw/pitch per sample (1.0 = 45
   degrees) plus a small per-eye vergence, eye roll 0. The EyeLook* shapes follow the gaze exactly
   as :func:`facecore.animate.add_secondary_motion` sets them (1.6 per unit yaw, 1.33 per unit pitch).
7. **Constraints** (physically sensible combinations): for every antagonist pair of
   :data:`facecore.animate.lexicon.ANTAGONISTS` (per side) ``a + b <= 1`` by lowering the channel that
   is not rare (the smaller when both or neither are), so blink and wide are never both above 0.5 on
   one eye; CheekPuff scales JawOpen by ``1 - CheekPuff`` (a puffed cheek needs closed lips);
   TongueOut opens the jaw to at least ``0.25 + 0.3 * TongueOut`` and releases MouthClose;
   ``MouthClose <= JawOpen`` (mouthClose only closes the lips over an open jaw). Finally blendshapes
   are clipped to [0, 1] and pose channels to [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch

from .._names import BLENDSHAPES, NAMES

STREAM_PARAMS, STREAM_IDENTITY, STREAM_APPEARANCE, STREAM_SCENE, STREAM_SENSOR, STREAM_TRAJECTORY = range(6)

_I = {n: i for i, n in enumerate(NAMES)}
N_BLEND = len(BLENDSHAPES)
RARE: tuple[str, ...] = (
    "TongueOut",
    "CheekPuff",
    "JawLeft",
    "JawRight",
    "JawForward",
    "MouthDimpleLeft",
    "MouthDimpleRight",
    "EyeWideLeft",
    "EyeWideRight",
    "NoseSneerLeft",
    "NoseSneerRight",
)
_LOOK = tuple(n for n in BLENDSHAPES if n.startswith("EyeLook"))
COMMON: tuple[str, ...] = tuple(n for n in BLENDSHAPES if n not in RARE and n not in _LOOK)
_PAIRS = tuple(
    (n, n[:-4] + "Right")
    for n in BLENDSHAPES
    if n.endswith("Left") and n[:-4] + "Right" in _I and not n.startswith("EyeLook")
)
_LOOK_PER_YAW, _LOOK_PER_PITCH = 1.6, 1.33  # as facecore.animate.secondary keeps look shapes and rotation


def _check_seed(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 0:
        raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    return int(v)


def sample_rngs(seed: int, indices, stream: int) -> list[np.random.Generator]:
    """One generator per sample index: ``PCG64(SeedSequence([seed, index, stream]))``."""
    seed = _check_seed("seed", seed)
    return [
        np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, int(i), stream]))) for i in indices
    ]


def sample_uniforms(seed: int, indices, stream: int, k: int) -> np.ndarray:
    """``[len(indices), k]`` float64 uniforms in [0, 1), row i from sample ``indices[i]``'s generator."""
    rows = [rng.random(k) for rng in sample_rngs(seed, indices, stream)]
    return np.stack(rows) if rows else np.zeros((0, k))


def normal_from_uniform(u: np.ndarray) -> np.ndarray:
    """Standard normals from uniforms (inverse CDF, so each sample keeps a fixed count of draws)."""
    from scipy.special import ndtri

    return ndtri(np.clip(u, 1e-12, 1 - 1e-12))


@dataclass(frozen=True)
class Prior:
    """The documented prior over the 61 channels (module docstring, steps 1-7). Ranges are ``(lo, hi)``
    uniform; pose numbers are in channel units (head 1.0 = 90 degrees, eyes 1.0 = 45 degrees)."""

    p_emotion: float = 0.5
    emotion_intensity: tuple[float, float] = (0.4, 1.1)
    emotion_jitter: float = 0.15
    p_active: float = 0.08
    active_range: tuple[float, float] = (0.1, 0.9)
    p_rare: float = 0.12
    rare_range: tuple[float, float] = (0.3, 1.0)
    p_blink: float = 0.08
    p_wink: float = 0.04
    p_asymmetric: float = 0.3
    asymmetry_scale: tuple[float, float] = (0.0, 0.6)
    head_sd: tuple[float, float, float] = (0.18, 0.12, 0.08)  # yaw, pitch, roll
    head_max: tuple[float, float, float] = (0.5, 0.3, 0.2)
    gaze_sd: tuple[float, float] = (0.25, 0.18)  # yaw, pitch
    gaze_max: tuple[float, float] = (0.6, 0.45)
    vergence_sd: float = 0.02

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            vals = v if isinstance(v, tuple) else (v,)
            if not all(isinstance(x, (int, float)) and np.isfinite(x) and x >= 0 for x in vals):
                raise ValueError(f"Prior.{f.name} must hold finite non-negative numbers, got {v!r}")
            if f.name.startswith("p_") and v > 1:
                raise ValueError(f"Prior.{f.name} is a probability, got {v!r}")
            if f.name.endswith(("_range", "_intensity", "_scale")) and not (len(v) == 2 and v[0] <= v[1]):
                raise ValueError(f"Prior.{f.name} must be (lo, hi) with lo <= hi, got {v!r}")
        if 2 * self.p_rare > 1:
            raise ValueError("Prior.p_rare must be <= 0.5 (JawLeft and JawRight share one draw)")
        if self.p_blink + self.p_wink > 1:
            raise ValueError("Prior.p_blink + Prior.p_wink must be <= 1")

    def to_dict(self) -> dict:
        return asdict(self)


PRIORS: dict[str, Prior] = {
    "default": Prior(),
    # more and stronger expressions, wider poses (estimator training at the tails)
    "expressive": Prior(
        p_emotion=0.7,
        emotion_intensity=(0.6, 1.3),
        p_active=0.14,
        p_rare=0.2,
        head_sd=(0.25, 0.16, 0.1),
        head_max=(0.6, 0.4, 0.25),
    ),
    # near-frontal heads and centred gaze (clean evaluation sets)
    "frontal": Prior(
        head_sd=(0.05, 0.04, 0.03), head_max=(0.12, 0.1, 0.08), gaze_sd=(0.1, 0.08), gaze_max=(0.25, 0.2)
    ),
}


def get_prior(prior) -> Prior:
    """A :class:`Prior` from a name of :data:`PRIORS` or a Prior."""
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, str) and prior in PRIORS:
        return PRIORS[prior]
    raise ValueError(f"prior must be a Prior or one of {', '.join(map(repr, PRIORS))}, got {prior!r}")


_EMO_NAMES = None


def _emotions() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Emotion names and their prototypes at intensity 1: bilateral ``[E, 61]`` and left-sided ``[E, 61]``."""
    global _EMO_NAMES
    if _EMO_NAMES is None:
        from ..animate.lexicon import EMOTIONS, UNILATERAL_EMOTIONS
        from ..animate.semantic import au_vector

        names = tuple(e for e in EMOTIONS if EMOTIONS[e])  # "calm" (no AUs) is the neutral face anyway
        both = np.stack([au_vector(EMOTIONS[e], 1.0) for e in names])
        left = np.stack(
            [
                au_vector(EMOTIONS[e], 1.0, "Left")
                if e in UNILATERAL_EMOTIONS
                else au_vector(EMOTIONS[e], 1.0)
                for e in names
            ]
        )
        right = np.stack(
            [
                au_vector(EMOTIONS[e], 1.0, "Right")
                if e in UNILATERAL_EMOTIONS
                else au_vector(EMOTIONS[e], 1.0)
                for e in names
            ]
        )
        _EMO_NAMES = (names, both, left, right)
    return _EMO_NAMES


def _antagonist_pairs() -> list[tuple[int, int]]:
    from ..animate.lexicon import ANTAGONISTS

    def expand(base: str) -> list[tuple[str | None, int]]:
        if base in _I:
            return [(None, _I[base])]
        return [(s, _I[base + s]) for s in ("Left", "Right") if base + s in _I]

    out = []
    for a, b in ANTAGONISTS:
        if {a, b} == {"JawOpen", "MouthClose"}:
            continue  # its own rule: MouthClose <= JawOpen
        for sa, ia in expand(a):
            for sb, ib in expand(b):
                if sa is None or sb is None or sa == sb:
                    out.append((ia, ib))
    return out


_K_EMO = 4 + 61  # apply?, which, intensity, side, jitter per channel
_K = _K_EMO + 2 * len(COMMON) + 2 * (len(RARE) - 1) + 3 + 3 * len(_PAIRS) + 9 + 2


def _draw(prior: Prior, u: np.ndarray) -> np.ndarray:
    """Batched transform of per-sample uniforms ``u [n, _K]`` into parameters ``[n, 61]`` (float64)."""
    n = u.shape[0]
    cols = iter(range(u.shape[1]))

    def take(k=1):
        idx = [next(cols) for _ in range(k)]
        return u[:, idx] if k > 1 else u[:, idx[0]]

    def between(r, x):
        return r[0] + (r[1] - r[0]) * x

    p = np.zeros((n, 61))
    # 1. emotion
    names, both, left, right = _emotions()
    apply, which, inten, side, jit = take(), take(), take(), take(), take(61)
    e = np.minimum((which * len(names)).astype(int), len(names) - 1)
    proto = np.where((side < 0.5)[:, None], left[e], right[e])
    proto = (
        proto
        * between(prior.emotion_intensity, inten)[:, None]
        * (1 + prior.emotion_jitter * normal_from_uniform(jit))
    )
    p += np.where((apply < prior.p_emotion)[:, None], proto, 0.0)
    # 2. sparse common activations
    on, val = take(len(COMMON)), take(len(COMMON))
    ci = [_I[c] for c in COMMON]
    p[:, ci] = np.maximum(p[:, ci], np.where(on < prior.p_active, between(prior.active_range, val), 0.0))
    # 3. rare actions (JawLeft / JawRight: one draw, exclusive)
    rare_solo = [r for r in RARE if r not in ("JawLeft", "JawRight")]
    on, val = take(len(rare_solo) + 1), take(len(rare_solo) + 1)
    for j, r in enumerate(rare_solo):
        p[:, _I[r]] = np.maximum(
            p[:, _I[r]], np.where(on[:, j] < prior.p_rare, between(prior.rare_range, val[:, j]), 0.0)
        )
    jaw = on[:, -1]
    jv = between(prior.rare_range, val[:, -1])
    p[:, _I["JawLeft"]] = np.maximum(p[:, _I["JawLeft"]], np.where(jaw < prior.p_rare, jv, 0.0))
    p[:, _I["JawRight"]] = np.maximum(
        p[:, _I["JawRight"]], np.where((jaw >= prior.p_rare) & (jaw < 2 * prior.p_rare), jv, 0.0)
    )
    # 4. blinks and winks
    kind, amount, which_eye = take(), take(), take()
    closed = 0.6 + 0.4 * amount
    bl, br = _I["EyeBlinkLeft"], _I["EyeBlinkRight"]
    blink = kind < prior.p_blink
    wink = (kind >= prior.p_blink) & (kind < prior.p_blink + prior.p_wink)
    p[:, bl] = np.where(blink | (wink & (which_eye < 0.5)), np.maximum(p[:, bl], closed), p[:, bl])
    p[:, br] = np.where(blink | (wink & (which_eye >= 0.5)), np.maximum(p[:, br], closed), p[:, br])
    # 5. asymmetry
    rare = {_I[r] for r in RARE}
    for a, b in _PAIRS:
        go, s, f = take(), take(), take()
        f = between(prior.asymmetry_scale, f)
        go = go < prior.p_asymmetric
        ia, ib = _I[a], _I[b]
        if ia in rare:  # keep the documented rate of rare actions: only values above their floor change
            f = np.maximum(f, 1.0)
        p[:, ia] = np.where(go & (s < 0.5), p[:, ia] * f, p[:, ia])
        p[:, ib] = np.where(go & (s >= 0.5), p[:, ib] * f, p[:, ib])
    # 6. head pose and gaze
    z = normal_from_uniform(take(9))
    for k, ch in enumerate(("HeadYaw", "HeadPitch", "HeadRoll")):
        p[:, _I[ch]] += np.clip(prior.head_sd[k] * z[:, k], -prior.head_max[k], prior.head_max[k])
    gy = np.clip(prior.gaze_sd[0] * z[:, 3], -prior.gaze_max[0], prior.gaze_max[0])
    gp = np.clip(prior.gaze_sd[1] * z[:, 4], -prior.gaze_max[1], prior.gaze_max[1])
    # the emotion's gaze (eyes down in sadness) joins the sampled one, then both eyes follow it
    gp = gp + 0.5 * (p[:, _I["LeftEyePitch"]] + p[:, _I["RightEyePitch"]])
    verg = prior.vergence_sd * z[:, 5]
    p[:, _I["LeftEyeYaw"]] = gy - verg
    p[:, _I["RightEyeYaw"]] = gy + verg
    p[:, _I["LeftEyePitch"]] = p[:, _I["RightEyePitch"]] = gp
    p[:, [_I["LeftEyeRoll"], _I["RightEyeRoll"]]] = 0.0
    p[:, 52:] = np.clip(p[:, 52:], -1.0, 1.0)
    for side, yaw in (("Left", p[:, _I["LeftEyeYaw"]]), ("Right", p[:, _I["RightEyeYaw"]])):
        toward_left, toward_right = np.maximum(yaw, 0), np.maximum(-yaw, 0)
        out_, in_ = (toward_left, toward_right) if side == "Left" else (toward_right, toward_left)
        p[:, _I["EyeLookOut" + side]] = _LOOK_PER_YAW * out_
        p[:, _I["EyeLookIn" + side]] = _LOOK_PER_YAW * in_
        p[:, _I["EyeLookUp" + side]] = _LOOK_PER_PITCH * np.maximum(p[:, _I[side + "EyePitch"]], 0)
        p[:, _I["EyeLookDown" + side]] = _LOOK_PER_PITCH * np.maximum(-p[:, _I[side + "EyePitch"]], 0)
    take(2)  # reserved columns (kept so the layout of later streams never shifts)
    assert next(cols, None) is None, "prior: uniform column layout out of sync with _K"
    # 7. constraints
    p[:, :N_BLEND] = np.clip(p[:, :N_BLEND], 0.0, 1.0)
    for ia, ib in _antagonist_pairs():
        a, b = p[:, ia].copy(), p[:, ib].copy()
        over = a + b > 1
        ra, rb = ia in rare, ib in rare
        # lower the channel that is not rare (rates of rare actions stay as documented), else the smaller
        pick_a = np.full(a.shape, not ra) if ra != rb else a <= b
        p[:, ia] = np.where(over & pick_a, 1 - b, a)
        p[:, ib] = np.where(over & ~pick_a, 1 - a, b)
    jo, mc = _I["JawOpen"], _I["MouthClose"]
    p[:, jo] *= 1 - p[:, _I["CheekPuff"]]
    tongue = p[:, _I["TongueOut"]]
    p[:, jo] = np.where(tongue > 0, np.maximum(p[:, jo], 0.25 + 0.3 * tongue), p[:, jo])
    p[:, mc] = np.where(tongue > 0, 0.0, p[:, mc])
    p[:, mc] = np.minimum(p[:, mc], p[:, jo])
    p[:, :N_BLEND] = np.clip(p[:, :N_BLEND], 0.0, 1.0)
    return p


def sample_params(n: int, seed: int, prior="default", *, index0: int = 0) -> torch.Tensor:
    """``n`` parameter vectors ``float32 [n, 61]`` (:data:`facecore.arkit.NAMES` order) from ``prior``
    (a name of :data:`PRIORS` or a :class:`Prior`); row i is sample ``index0 + i`` of ``seed``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    pr = get_prior(prior)
    index0 = _check_seed("index0", index0)
    u = sample_uniforms(seed, range(index0, index0 + int(n)), STREAM_PARAMS, _K)
    return torch.from_numpy(_draw(pr, u).astype(np.float32))


def sample_trajectory(
    frames: int,
    seed: int,
    *,
    index: int = 0,
    prior="default",
    fps: float = 30.0,
    script=None,
    key_interval: tuple[float, float] = (0.5, 1.5),
    secondary: bool = True,
) -> torch.Tensor:
    """A clip ``float32 [frames, 61]`` at ``fps``, reproducible from ``(seed, index)``.

    Without ``script``: random smooth curves -- keyposes from ``prior`` every ``key_interval`` seconds
    (uniform), interpolated by :func:`facecore.animate.interpolate` (PCHIP with easing), then blinks,
    saccades and head sway from :func:`facecore.animate.add_secondary_motion`. With ``script`` (anything
    :func:`facecore.animate.animate` reads: a script mapping, a path, KeyframeFace requests): the
    animator's track, truncated to ``frames`` or held on its last frame.
    """
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive int, got {frames!r}")
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    lo, hi = key_interval
    if not 0 < lo <= hi:
        raise ValueError(f"key_interval must be (lo, hi) seconds with 0 < lo <= hi, got {key_interval!r}")
    (rng,) = sample_rngs(seed, [_check_seed("index", index)], STREAM_TRAJECTORY)
    sub_seed = int(rng.integers(0, 2**31 - 1))
    duration = (frames - 1) / fps
    if script is not None:
        from ..animate import animate

        p = np.asarray(animate(script, fps=float(fps), seed=sub_seed, secondary=secondary).params, np.float32)
    else:
        from ..animate import add_secondary_motion, interpolate

        gaps = rng.uniform(lo, hi, int(np.ceil(duration / lo)) + 2)
        times = np.concatenate([[0.0], np.cumsum(gaps)])
        times = times[: int(np.searchsorted(times, duration)) + 1]
        keys = sample_params(len(times), sub_seed, prior).numpy()
        track = interpolate(times, keys, float(fps), start=0.0, end=max(duration, float(times[-1])))
        if secondary:
            track = add_secondary_motion(track, seed=sub_seed)
        p = np.asarray(track.params, np.float32)
    if p.shape[0] < frames:
        p = np.concatenate([p, np.repeat(p[-1:], frames - p.shape[0], 0)])
    return torch.from_numpy(np.ascontiguousarray(p[:frames]))


def with_overrides(prior, **kw) -> Prior:
    """A copy of ``prior`` (name or Prior) with fields replaced."""
    return replace(get_prior(prior), **kw)
