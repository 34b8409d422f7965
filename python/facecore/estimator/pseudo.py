"""``PseudoLabeler``: a seeded simulation of the labels capture software writes (Live Link Face / ARKit).

SuperFace's starting point is a network trained on the ARKit coefficients that Live Link Face (an
iPhone app) writes for video frames: labels that are noisy, biased in magnitude and missing whole
actions, so the network learns those flaws. facecore has exact synthetic truth instead, and this module
turns that truth into such labels, so the cost of pseudo-label training can be measured channel by
channel. **Everything here is a simulation.** The terms are the kinds of error people who use capture
tools describe; the magnitudes in :data:`PROFILES` are facecore's choices, not measurements of any
device or app version.

What each term models (applied in this order, per channel ``c``, to the truth ``x`` clipped to range):

1. **Cross-talk** ``x + C x``: a tracker that fits a face model to the image confuses correlated
   motions: a closing lid moves the lid edge downwards, which reads as a downward look
   (``EyeBlink* -> EyeLookDown*``); an opening jaw stretches the lips, which reads as ``MouthClose``;
   a smile raises the cheeks and narrows the eyes (``MouthSmile* -> EyeSquint*``); funnel and pucker
   are hard to tell apart. (Apple's ``ARFaceAnchor.BlendShapeLocation`` documentation defines the
   coefficients only by pictures and short descriptions, and several overlap.)
2. **Left/right averaging** ``(1 - a) x_L + a (x_L + x_R) / 2``: Live Link Face users report
   asymmetric expressions (one brow up, a one-sided smile or sneer, a wink) coming out more symmetric
   than performed; the vergence of the eyes is mostly lost (both eyes report nearly the same gaze).
3. **Gain with a saturating curve** ``s(g x)``: magnitudes are off in both directions. Blinks and
   squints read high (the lids are reported as fully closed well before they are, which is why
   retargeting tools offer per-curve multipliers and remapping); frowns, presses, rolls, stretches,
   sideways jaw and mouth motions read low. ``s`` is the identity up to ``0.7 * ceiling`` and then
   bends smoothly (tanh) toward ``ceiling``. **Suppressed** channels (``EyeWide*``, ``NoseSneer*``)
   have a low gain and a low ceiling: they barely rise however strong the action is.
4. **Dead zone** ``max(0, y - d) / (1 - d)`` (blendshapes): small activations come out as nothing.
5. **Lag** (clips only): an exponential moving average with time constant ``lag`` seconds per channel,
   the temporal smoothing trackers apply to hide jitter; short actions (a fast blink) lose amplitude
   and everything arrives late.
6. **Noise**: white per-frame jitter ``noise`` plus a slowly drifting bias ``drift`` (an AR(1)
   process with a 1 s time constant in clips; for single frames its stationary value, i.e. a per-frame
   bias). Clips also **hold** a frame now and then (``hold``, the probability per frame of repeating
   the previous output, as when tracking drops frames).
7. **Dead channels** (``alive = 0``): output exactly 0. ARKit defines ``tongueOut``, ``cheekPuff``,
   ``jawForward`` and ``mouthDimple*``, but users of Live Link Face report that these hardly ever
   respond; eye roll is taken as 0 (the eye transforms carry gaze yaw and pitch).
8. Output clipped to each channel's valid range (:data:`facecore.arkit.RANGES`).

SuperFace's motivation (the paper that this pipeline follows) is exactly this gap between what capture
software reports and what the face did; this module makes the gap a controlled, documented variable.

Randomness: every row (or clip) draws its noise from ``numpy.random.SeedSequence([seed, hash of its
float32 bytes])``: the output depends only on ``(seed, profile, input)``, a row gives the same label
alone or in any batch, and identical rows get identical labels. The labeler returns only the
corrupted tensor; nothing about the truth is kept or exposed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import arkit

__all__ = ["PROFILES", "Profile", "PseudoLabeler", "get_profile"]

_C = arkit.NUM_CHANNELS
_NB = arkit.NUM_BLENDSHAPES
_FIELDS_61 = ("gain", "ceiling", "deadzone", "alive", "lr_mix", "noise", "drift", "lag")
_KNEE = 0.7  # the saturating curve is the identity below _KNEE * ceiling
_DRIFT_TAU = 1.0  # seconds: time constant of the drifting bias in clips
_DEFAULT_FPS = 60.0  # Live Link Face records at 60 frames/s


def _side_pairs() -> np.ndarray:
    """``[P, 2]`` channel indices of the bilateral pairs (same action on the subject's two sides).
    JawLeft/JawRight and MouthLeft/MouthRight are directions of one motion, not sides: excluded."""
    directions = {"JawLeft", "JawRight", "MouthLeft", "MouthRight"}
    pairs = [(arkit.INDEX[a], arkit.INDEX[b]) for a, b in arkit.MIRROR_PAIRS
             if a not in directions and b not in directions]
    return np.array(pairs, dtype=np.int64)


SIDE_PAIRS = _side_pairs()
"""``[P, 2]`` (left-side or first, right-side) channel indices of the bilateral pairs, eye pose included."""


@dataclasses.dataclass(frozen=True, eq=False)
class Profile:
    """Per-channel parameters of the corruption model (the module docstring says what each models).

    Arrays of 61 values in :data:`facecore.arkit.NAMES` order: ``gain``, ``ceiling`` (where the
    saturating curve ends), ``deadzone`` (blendshapes only), ``alive`` (0 = dead channel), ``lr_mix``
    (0 = sides kept apart, 1 = fully averaged with the other side; used on :data:`SIDE_PAIRS`),
    ``noise`` (s.d. of white jitter), ``drift`` (s.d. of the slow bias), ``lag`` (EMA time constant in
    seconds, clips only). ``crosstalk [61, 61]``: ``crosstalk[target, source]`` is the fraction of the
    source's truth added to the target. ``hold``: probability per frame that a clip repeats the previous
    frame's output.
    """

    name: str
    gain: np.ndarray
    ceiling: np.ndarray
    deadzone: np.ndarray
    alive: np.ndarray
    lr_mix: np.ndarray
    noise: np.ndarray
    drift: np.ndarray
    lag: np.ndarray
    crosstalk: np.ndarray
    hold: float = 0.0

    def __post_init__(self) -> None:
        for f in _FIELDS_61:
            a = np.array(getattr(self, f), dtype=np.float64)
            if a.ndim == 0:
                a = np.full(_C, float(a))
            if a.shape != (_C,) or not np.isfinite(a).all():
                raise ValueError(f"Profile {self.name!r}: {f} must be 61 finite values (one per channel), "
                                 f"got shape {list(a.shape)}")
            a.setflags(write=False)
            object.__setattr__(self, f, a)
        if (self.ceiling <= 0).any():
            raise ValueError(f"Profile {self.name!r}: ceiling must be > 0")
        if ((self.deadzone < 0) | (self.deadzone >= 1)).any():
            raise ValueError(f"Profile {self.name!r}: deadzone must be in [0, 1)")
        for f in ("noise", "drift", "lag", "gain"):
            if (getattr(self, f) < 0).any():
                raise ValueError(f"Profile {self.name!r}: {f} must be >= 0")
        if ((self.lr_mix < 0) | (self.lr_mix > 1)).any():
            raise ValueError(f"Profile {self.name!r}: lr_mix must be in [0, 1]")
        ct = np.array(self.crosstalk, dtype=np.float64)
        if ct.shape != (_C, _C) or not np.isfinite(ct).all():
            raise ValueError(f"Profile {self.name!r}: crosstalk must be a finite [61, 61] matrix, got shape "
                             f"{list(ct.shape)}")
        ct.setflags(write=False)
        object.__setattr__(self, "crosstalk", ct)
        if not (0.0 <= float(self.hold) < 1.0):
            raise ValueError(f"Profile {self.name!r}: hold must be in [0, 1), got {self.hold!r}")
        object.__setattr__(self, "hold", float(self.hold))

    def with_channels(self, channels, name: str | None = None, **fields: float) -> Profile:
        """A copy with ``fields`` (any of the 61-value fields) set to the given value on ``channels``
        (names in any convention, or a :data:`facecore.arkit.GROUPS` name)."""
        idx = _channel_indices(channels)
        kw: dict[str, Any] = {}
        for f, v in fields.items():
            if f not in _FIELDS_61:
                raise ValueError(f"Profile.with_channels: unknown field {f!r}; expected one of "
                                 f"{', '.join(_FIELDS_61)}")
            a = np.array(getattr(self, f))
            a[idx] = float(v)
            kw[f] = a
        return dataclasses.replace(self, name=name or self.name, **kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the 61-value fields as ``{channel: value}``, crosstalk as its non-zero entries."""
        out: dict[str, Any] = {"name": self.name, "hold": self.hold}
        for f in _FIELDS_61:
            out[f] = {n: float(v) for n, v in zip(arkit.NAMES, getattr(self, f))}
        t, s = np.nonzero(self.crosstalk)
        out["crosstalk"] = [[arkit.NAMES[a], arkit.NAMES[b], float(self.crosstalk[a, b])]
                            for a, b in zip(t, s)]
        return out



def _channel_indices(channels) -> np.ndarray:
    if isinstance(channels, str):
        channels = [channels]
    out: list[int] = []
    for c in channels:
        if isinstance(c, str) and c in arkit.GROUP_INDICES:
            out.extend(int(i) for i in arkit.GROUP_INDICES[c])
        else:
            out.append(arkit.index(c))
    return np.array(sorted(set(out)), dtype=np.int64)


def _ideal(name: str) -> dict[str, Any]:
    """Fields of a labeler that reports the truth (the base every profile edits)."""
    return {"name": name, "gain": np.ones(_C), "ceiling": np.full(_C, 1e3), "deadzone": np.zeros(_C),
            "alive": np.ones(_C), "lr_mix": np.zeros(_C), "noise": np.zeros(_C), "drift": np.zeros(_C),
            "lag": np.zeros(_C), "crosstalk": np.zeros((_C, _C)), "hold": 0.0}


def _set(kw: dict[str, Any], field: str, names, value: float) -> None:
    kw[field][_channel_indices(names)] = value


def _both(base: str) -> tuple[str, str]:
    return base + "Left", base + "Right"


def _livelink() -> Profile:
    kw = _ideal("livelink")
    bs, pose = arkit.GROUPS["blendshapes"], arkit.POSE
    # Every channel: a mild ceiling, a small dead zone, jitter, drift and lag.
    _set(kw, "ceiling", bs, 1.0)
    _set(kw, "deadzone", bs, 0.03)
    _set(kw, "noise", bs, 0.025)
    _set(kw, "drift", bs, 0.02)
    _set(kw, "lag", bs, 0.05)
    _set(kw, "noise", pose, 0.01)
    _set(kw, "drift", pose, 0.01)
    _set(kw, "lag", pose, 0.08)
    # Magnitudes read high: lids, squints, smile, inner brow.
    for names, g in ((_both("EyeBlink"), 1.35), (_both("EyeSquint"), 1.3), (_both("MouthSmile"), 1.2),
                     (("BrowInnerUp",), 1.15), (("JawOpen",), 1.1)):
        _set(kw, "gain", names, g)
    # ... and low: frowns, presses, rolls, stretches, shrugs, sideways jaw/mouth, brow lowering, cheek squint.
    for names, g in ((_both("MouthFrown"), 0.5), (_both("MouthPress"), 0.6), (_both("MouthStretch"), 0.6),
                     (("MouthRollLower", "MouthRollUpper"), 0.55),
                     (("MouthShrugLower", "MouthShrugUpper"), 0.7),
                     (("JawLeft", "JawRight"), 0.5), (("MouthLeft", "MouthRight"), 0.6),
                     (_both("BrowDown"), 0.7), (_both("CheekSquint"), 0.6), (("MouthFunnel",), 0.75),
                     (("MouthPucker",), 0.8)):
        _set(kw, "gain", names, g)
    # Suppressed: barely rise (low gain, low ceiling).
    for names in (_both("EyeWide"), _both("NoseSneer")):
        _set(kw, "gain", names, 0.25)
        _set(kw, "ceiling", names, 0.3)
    # Dead.
    _set(kw, "alive", ("TongueOut", "CheekPuff", "JawForward", "MouthDimpleLeft", "MouthDimpleRight",
                       "LeftEyeRoll", "RightEyeRoll"), 0.0)
    # Left/right averaging (partial); eye gaze nearly conjugate (vergence lost).
    for base, a in (("BrowDown", 0.5), ("BrowOuterUp", 0.5), ("EyeBlink", 0.3), ("EyeSquint", 0.4),
                    ("EyeWide", 0.4), ("MouthSmile", 0.4), ("MouthFrown", 0.4), ("MouthStretch", 0.3),
                    ("MouthPress", 0.3), ("MouthLowerDown", 0.3), ("MouthUpperUp", 0.3), ("CheekSquint", 0.5),
                    ("NoseSneer", 0.5), ("EyeLookUp", 0.3), ("EyeLookDown", 0.3)):
        _set(kw, "lr_mix", _both(base), a)
    _set(kw, "lr_mix", ("LeftEyeYaw", "RightEyeYaw", "LeftEyePitch", "RightEyePitch"), 0.6)
    # Cross-talk: target <- fraction of source.
    ct, ix = kw["crosstalk"], arkit.INDEX
    for side in ("Left", "Right"):
        ct[ix["EyeLookDown" + side], ix["EyeBlink" + side]] = 0.3
        ct[ix["EyeSquint" + side], ix["MouthSmile" + side]] = 0.25
        ct[ix["EyeSquint" + side], ix["EyeBlink" + side]] = 0.1
    ct[ix["MouthClose"], ix["JawOpen"]] = 0.15
    ct[ix["MouthPucker"], ix["MouthFunnel"]] = 0.3
    ct[ix["MouthFunnel"], ix["MouthPucker"]] = 0.25
    ct[ix["BrowInnerUp"], ix["EyeWideLeft"]] = ct[ix["BrowInnerUp"], ix["EyeWideRight"]] = 0.1
    kw["hold"] = 0.02
    return Profile(**kw)


def _noise_only() -> Profile:
    kw = _ideal("noise_only")
    _set(kw, "noise", arkit.GROUPS["blendshapes"], 0.025)
    _set(kw, "noise", arkit.POSE, 0.01)
    return Profile(**kw)


PROFILES: Mapping[str, Profile] = {"livelink": _livelink(), "noise_only": _noise_only(),
                                   "ideal": Profile(**_ideal("ideal"))}
"""Named profiles: ``"livelink"`` (the default: every term of the module docstring), ``"noise_only"``
(white jitter only, for ablations), ``"ideal"`` (reports the truth)."""


def get_profile(profile: str | Profile) -> Profile:
    """A :class:`Profile`, or the name of one in :data:`PROFILES`."""
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]
    raise ValueError(f"profile must be a Profile or one of {', '.join(map(repr, PROFILES))}, got {profile!r}")


def _soft_ceiling(y: torch.Tensor, ceiling: torch.Tensor) -> torch.Tensor:
    """Identity for ``|y| <= KNEE * ceiling``, then a tanh bend that approaches ``ceiling``."""
    knee = _KNEE * ceiling
    over = (y.abs() - knee).clamp_min(0)
    bent = knee + (ceiling - knee) * torch.tanh(over / (ceiling - knee))
    return torch.where(y.abs() <= knee, y, torch.sign(y) * bent)


class PseudoLabeler:
    """Simulated capture-software labels for true parameters (module docstring: what and why).

    ``PseudoLabeler(profile="livelink", seed=0)(params, *, times=None, clip=False) -> params``:

    * ``params``: ``[B, 61]`` independent frames (or ``[61]``), or with ``clip=True`` a clip ``[T, 61]``
      or clips ``[N, T, 61]`` (lag, drift and held frames then run along T). torch (any device; the
      result has the input's dtype and device) or numpy (the result is numpy).
    * ``times``: frame times in seconds ``[T]`` (implies ``clip=True``); default ``1/60`` s steps.

    Deterministic in ``(seed, profile, input)``; returns only the corrupted labels.
    """

    def __init__(self, profile: str | Profile = "livelink", seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.profile = get_profile(profile)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"PseudoLabeler(profile={self.profile.name!r}, seed={self.seed})"

    # -- randomness ---------------------------------------------------------------------------------
    def _rng(self, row: np.ndarray) -> np.random.Generator:
        h = hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(), digest_size=8).digest()
        key = np.random.SeedSequence([self.seed, int.from_bytes(h, "little")])
        return np.random.Generator(np.random.PCG64(key))

    def _draws(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """White noise and drift innovations ``[N, T, 61]``, hold uniforms ``[N, T]``, for ``x``."""
        N, T, _ = x.shape
        white, drift, hold = np.empty((N, T, _C)), np.empty((N, T, _C)), np.empty((N, T))
        for i in range(N):  # one generator per row / clip, keyed by its own bytes
            g = self._rng(x[i])
            white[i] = g.standard_normal((T, _C))
            drift[i] = g.standard_normal((T, _C))
            hold[i] = g.random(T)
        return white, drift, hold

    # -- the model ----------------------------------------------------------------------------------
    def __call__(self, params, *, times=None, clip: bool = False):
        as_numpy = not isinstance(params, torch.Tensor)
        if as_numpy:
            try:
                arr = np.asarray(params, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"params must be a [B, 61] tensor or array, got {type(params).__name__}") \
                    from None
            x = torch.from_numpy(arr)
        else:
            if not params.is_floating_point():
                raise ValueError(f"params must be floating point, got {params.dtype}")
            x = params.detach()
        clip = bool(clip) or times is not None
        shape = tuple(x.shape)
        if x.shape[-1:] != (_C,) or x.dim() > 3 or (x.dim() == 3 and not clip) or x.numel() == 0:
            raise ValueError(f"params must be [61], [B, 61], or with clip=True [T, 61] / [N, T, 61]; got "
                             f"shape {list(shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("params contains NaN or infinite values")
        dev, dtype = x.device, x.dtype
        # [N, T, 61]: N independent rows/clips of T frames.
        x3 = x.reshape(1, -1, _C) if clip else x.reshape(-1, 1, _C)
        if clip and x.dim() == 3:
            x3 = x
        N, T, _ = x3.shape
        dt = self._steps(times, T)

        p = self.profile
        work = torch.float64
        x3 = x3.to(work)
        f = {k: torch.tensor(getattr(p, k), dtype=work, device=dev) for k in _FIELDS_61}
        lo = torch.tensor(arkit.LOW, dtype=work, device=dev)
        hi = torch.tensor(arkit.HIGH, dtype=work, device=dev)
        x3 = torch.maximum(torch.minimum(x3, hi), lo)

        # 1. cross-talk from the truth, 2. partial left/right averaging
        y = x3 + x3 @ torch.tensor(p.crosstalk, dtype=work, device=dev).T
        pairs = torch.as_tensor(SIDE_PAIRS, device=dev)
        mean = 0.5 * (y[..., pairs[:, 0]] + y[..., pairs[:, 1]])
        mixed = y.clone()
        for k in (0, 1):
            a = f["lr_mix"][pairs[:, k]]
            mixed[..., pairs[:, k]] = (1 - a) * y[..., pairs[:, k]] + a * mean
        y = mixed
        # 3. gain through the saturating curve, 4. dead zone on the blendshapes
        y = _soft_ceiling(f["gain"] * y, f["ceiling"])
        d = f["deadzone"]
        bs = y[..., :_NB]
        bs = (bs - d[:_NB]).clamp_min(0) / (1 - d[:_NB])
        y = torch.cat([bs, y[..., _NB:]], -1)

        white, drift_z, hold_u = (torch.from_numpy(a).to(dev, work) for a in self._draws(x3.cpu().numpy()))
        if T > 1:
            # 5. lag: EMA with per-channel time constants (alpha = exp(-dt / tau); tau = 0: no lag)
            y = self._ema(y, f["lag"], dt)
            # 6. drift: AR(1) with a 1 s time constant, stationary s.d. `drift`
            rho = torch.exp(-dt / _DRIFT_TAU)  # [T]
            b = [drift_z[:, 0]]
            for t in range(1, T):
                b.append(rho[t] * b[-1] + torch.sqrt(1 - rho[t] ** 2) * drift_z[:, t])
            bias = torch.stack(b, 1) * f["drift"]
        else:
            bias = drift_z * f["drift"]
        y = y + white * f["noise"] + bias
        if T > 1 and p.hold > 0:
            # held frames repeat the previous output (a sequential scan: a hold after a hold holds longer)
            frames = [y[:, 0]]
            for t in range(1, T):
                frames.append(torch.where((hold_u[:, t] < p.hold)[:, None], frames[-1], y[:, t]))
            y = torch.stack(frames, 1)
        # 7. dead channels exactly 0, 8. valid ranges
        y = torch.maximum(torch.minimum(y, hi), lo) * f["alive"]
        out = y.reshape(shape).to(dtype)
        if as_numpy:
            return out.numpy().astype(np.float64 if np.asarray(params).dtype == np.float64 else np.float32)
        return out.contiguous()

    @staticmethod
    def _steps(times, T: int) -> torch.Tensor:
        """``[T]`` float64 seconds since the previous frame (entry 0 unused)."""
        if times is None:
            return torch.full((T,), 1.0 / _DEFAULT_FPS, dtype=torch.float64)
        t = torch.as_tensor(np.asarray(times, dtype=np.float64)).flatten()
        if t.shape != (T,) or not bool(torch.isfinite(t).all()):
            raise ValueError(f"times must be {T} finite frame times in seconds (one per frame), got shape "
                             f"{list(t.shape)}")
        dt = torch.diff(t, prepend=t[:1] - 1.0 / _DEFAULT_FPS)
        if bool((dt <= 0).any()):
            raise ValueError("times must be strictly increasing")
        return dt

    @staticmethod
    def _ema(y: torch.Tensor, tau: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        dev = y.device
        dt = dt.to(dev)
        safe = torch.where(tau > 0, tau, torch.ones_like(tau))
        zero = torch.zeros(1, dtype=y.dtype, device=dev)
        alpha = torch.where(tau > 0, torch.exp(-dt[:, None] / safe), zero)  # [T, 61]; tau = 0: no lag
        out = [y[:, 0]]
        for t in range(1, y.shape[1]):
            out.append(alpha[t] * out[-1] + (1 - alpha[t]) * y[:, t])
        return torch.stack(out, 1)
