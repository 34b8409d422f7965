"""Secondary motion: seeded blinks, gaze saccades and head sway on top of an animation; mirroring.

All of it is deterministic for a given seed, switchable per component, and keeps every channel in
range (blinks combine as ``e + b (1 - e)``, the small offsets are clipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._names import NAMES

_I = {n: i for i, n in enumerate(NAMES)}
_BLINK = [_I["EyeBlinkLeft"], _I["EyeBlinkRight"]]
_YAW = [_I["LeftEyeYaw"], _I["RightEyeYaw"]]
_PITCH = [_I["LeftEyePitch"], _I["RightEyePitch"]]
_HEAD = [_I["HeadYaw"], _I["HeadPitch"], _I["HeadRoll"]]
# Look shapes per unit of eye rotation (the inverse of the gaze AUs in the lexicon: 0.8 / 0.5).
_LOOK_PER_YAW = 1.6
_LOOK_PER_PITCH = 1.33


@dataclass(frozen=True)
class SecondaryMotion:
    """Settings. Times in seconds, amplitudes in channel units."""

    blinks: bool = True
    blink_interval: tuple[float, float] = (2.0, 5.5)   # uniform range between blinks
    blink_closure: tuple[float, float] = (0.10, 0.15)  # closing + reopening time of one blink
    blink_suppress_above: float = 0.5                  # no blink while the eyes are this closed
    saccades: bool = True
    saccade_interval: tuple[float, float] = (0.6, 2.2)
    saccade_amplitude: float = 0.035                   # eye yaw/pitch (1 = 45 degrees)
    saccade_time: float = 0.04
    sway: bool = True
    sway_amplitude: float = 0.012                      # head yaw/pitch/roll (1 = 90 degrees)
    sway_frequency: tuple[float, float] = (0.08, 0.3)  # Hz


def blink_events(times: np.ndarray, eyes_closed: np.ndarray, rng: np.random.Generator,
                 cfg: SecondaryMotion) -> list[tuple[float, float]]:
    """(peak time, closure length) of each blink; none while ``eyes_closed`` (per frame) is set."""
    events = []
    if len(times) == 0:
        return events
    t = times[0] + rng.uniform(0.4, cfg.blink_interval[0])
    while t < times[-1] - 0.1:
        length = rng.uniform(*cfg.blink_closure)
        # Snap the peak to a frame so that even short blinks reach full closure at low fps.
        k = int(np.argmin(np.abs(times - t)))
        if not eyes_closed[k]:
            events.append((float(times[k]), float(length)))
        t += rng.uniform(*cfg.blink_interval)
    return events


def blink_curve(times: np.ndarray, events: list[tuple[float, float]]) -> np.ndarray:
    """Lid closure in [0, 1] per frame: a fast close (40%) and a slower reopening (60%)."""
    out = np.zeros_like(times)
    for peak, length in events:
        close, reopen = 0.4 * length, 0.6 * length
        u = np.where(times <= peak, 1 - (peak - times) / close, 1 - (times - peak) / reopen)
        u = np.clip(u, 0.0, 1.0)
        out = np.maximum(out, u * u * (3 - 2 * u))
    return out


def add_secondary_motion(track, seed: int = 0, settings: SecondaryMotion | None = None, **overrides):
    """A new Track with blinks, saccades and head sway added (seeded, switchable via settings or
    keyword overrides such as ``blinks=False``)."""
    from ..io import Track

    cfg = settings or SecondaryMotion()
    if overrides:
        unknown = set(overrides) - set(SecondaryMotion.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown secondary-motion settings {sorted(unknown)}")
        cfg = SecondaryMotion(**{**cfg.__dict__, **overrides})
    rng = np.random.default_rng(seed)
    t = track.times
    p = track.params.astype(np.float64).copy()
    if cfg.blinks:
        closed = p[:, _BLINK].max(axis=1) > cfg.blink_suppress_above
        b = blink_curve(t, blink_events(t, closed, rng, cfg))[:, None]
        p[:, _BLINK] = p[:, _BLINK] + b * (1.0 - p[:, _BLINK])
    if cfg.saccades and len(t):
        yaw, pitch = np.zeros_like(t), np.zeros_like(t)
        s, prev = t[0] + rng.uniform(*cfg.saccade_interval), (0.0, 0.0)
        while s < t[-1]:
            target = tuple(np.clip(rng.normal(0.0, cfg.saccade_amplitude, 2),
                                   -2 * cfg.saccade_amplitude, 2 * cfg.saccade_amplitude))
            u = np.clip((t - s) / cfg.saccade_time, 0.0, 1.0)
            mask = t >= s
            yaw[mask] = (prev[0] + (target[0] - prev[0]) * u)[mask]
            pitch[mask] = (prev[1] + (target[1] - prev[1]) * u)[mask]
            prev = target
            s += rng.uniform(*cfg.saccade_interval)
        p[:, _YAW] += yaw[:, None]
        p[:, _PITCH] += pitch[:, None]
        # Keep the look shapes consistent with the rotation (left eye "out" is toward +x).
        right, left = np.maximum(-yaw, 0), np.maximum(yaw, 0)
        p[:, _I["EyeLookOutLeft"]] += _LOOK_PER_YAW * left
        p[:, _I["EyeLookInRight"]] += _LOOK_PER_YAW * left
        p[:, _I["EyeLookInLeft"]] += _LOOK_PER_YAW * right
        p[:, _I["EyeLookOutRight"]] += _LOOK_PER_YAW * right
        for side in ("Left", "Right"):
            p[:, _I["EyeLookUp" + side]] += _LOOK_PER_PITCH * np.maximum(pitch, 0)
            p[:, _I["EyeLookDown" + side]] += _LOOK_PER_PITCH * np.maximum(-pitch, 0)
    if cfg.sway and len(t):
        for ch in _HEAD:
            f = rng.uniform(*cfg.sway_frequency, 2)
            ph = rng.uniform(0, 2 * np.pi, 2)
            p[:, ch] += 0.5 * cfg.sway_amplitude * (np.sin(2 * np.pi * f[0] * t + ph[0])
                                                    + np.sin(2 * np.pi * f[1] * t + ph[1]))
    p[:, :52] = np.clip(p[:, :52], 0.0, 1.0)
    p[:, 52:] = np.clip(p[:, 52:], -1.0, 1.0)
    return Track(times=t.copy(), params=p.astype(np.float32), fps=track.fps)


def mirror(params: np.ndarray, mode: str = "symmetric") -> np.ndarray:
    """``mode="flip"``: swap the subject's left and right (facecore.arkit.mirror);
    ``mode="symmetric"``: the left-right symmetric part ``(p + flip(p)) / 2`` (pairs averaged, head
    yaw/roll zero, eyes turning symmetrically)."""
    from .. import arkit

    if mode == "flip":
        return arkit.mirror(params)
    if mode == "symmetric":
        return 0.5 * (params + arkit.mirror(params))
    raise ValueError(f"mode must be 'symmetric' or 'flip', got {mode!r}")
