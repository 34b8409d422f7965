"""The animate pipeline: script -> keyframes (a generator) -> interpolation -> secondary motion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .interpolate import interpolate
from .script import Script, load_keyframes
from .secondary import add_secondary_motion, mirror


@dataclass
class Animation:
    """Everything one run produced: the per-frame ``track``, the ``script``, the generated
    ``keyframes [K, 61]`` and their ``times``/``holds`` (seconds, including the lead-in)."""

    track: Any
    script: Script
    keyframes: np.ndarray
    times: np.ndarray
    holds: np.ndarray


def make_generator(generator: Any = "semantic", model: str | None = None, adapter: str | None = None):
    """A generator object from a name (``"semantic"``, ``"llm"``) or pass an object through."""
    if generator == "semantic":
        from .semantic import SemanticGenerator

        return SemanticGenerator()
    if generator == "llm":
        if not model:
            raise ValueError("the llm generator needs a model directory (--model PATH)")
        from .llm import LLMGenerator

        return LLMGenerator(model, adapter=adapter)
    if isinstance(generator, str):
        raise ValueError(f"unknown generator {generator!r}; expected 'semantic' or 'llm'")
    if not callable(getattr(generator, "generate", None)):
        raise TypeError("generator must be 'semantic', 'llm' or an object with "
                        "generate(descriptions, background, emotion)")
    return generator


def generate_keyframes(script: Script, generator: Any = "semantic") -> np.ndarray:
    """The script's keyframes ``float32 [K, 61]`` from a generator."""
    gen = make_generator(generator)
    keys = np.asarray(gen.generate(script.descriptions, background=script.background,
                                   emotion=script.emotion), dtype=np.float32)
    if keys.shape != (len(script.keyframes), 61):
        raise ValueError(f"generator returned shape {list(keys.shape)}, expected "
                         f"[{len(script.keyframes)}, 61]")
    return keys


def animate_full(request_or_script: Any, generator: Any = "semantic", fps: float | None = None,
                 seed: int = 0, secondary: bool | dict = True, ease: float = 0.5,
                 symmetric: bool = False, keyframes: np.ndarray | None = None) -> Animation:
    """Like :func:`animate`, returning the whole :class:`Animation`. ``keyframes`` skips the
    generator (reuse keyframes made before); so does a KeyframeFace response file, whose
    keyframes are used as they are."""
    script, given = load_keyframes(request_or_script)
    if keyframes is None:
        keyframes = given
    keys = generate_keyframes(script, generator) if keyframes is None else np.asarray(keyframes, np.float32)
    if keys.shape != (len(script.keyframes), 61):
        raise ValueError(f"keyframes must have shape [{len(script.keyframes)}, 61] (one per keyframe of "
                         f"the script), got {list(keys.shape)}")
    if symmetric:
        keys = mirror(keys, "symmetric").astype(np.float32)
    times, holds, end = script.timing()
    rate = float(fps) if fps is not None else float(script.fps)
    # A neutral face at t = 0 leads into the first keyframe (when the script has a lead-in).
    if script.lead_in > 0:
        all_times = np.concatenate([[0.0], times])
        all_keys = np.concatenate([np.zeros((1, 61), np.float32), keys])
        all_holds = np.concatenate([[0.0], holds])
    else:
        all_times, all_keys, all_holds = times, keys, holds
    track = interpolate(all_times, all_keys, rate, holds=all_holds, ease=ease, start=0.0, end=end)
    if secondary:
        opts = secondary if isinstance(secondary, dict) else {}
        track = add_secondary_motion(track, seed=seed, **opts)
        if symmetric:
            track.params = mirror(track.params, "symmetric").astype(np.float32)
    return Animation(track, script, keys, times, holds)


def animate(request_or_script: Any, generator: Any = "semantic", fps: float | None = None,
            seed: int = 0, **kwargs: Any):
    """Script or KeyframeFace request(s) -> a per-frame :class:`facecore.io.Track`.

    ``request_or_script``: a path (``.jsonl`` KeyframeFace requests or responses, ``.json``/``.yaml``
    script), a script mapping, a :class:`Script`, or KeyframeFace request objects. Responses hold
    their keyframes already: the generator is not run for them. ``generator``: ``"semantic"``
    (default), an :class:`~facecore.animate.llm.LLMGenerator`, or any object with
    ``generate(descriptions, background, emotion) -> [K, 61]``. ``fps`` defaults to the script's.
    ``seed`` drives the secondary motion; further options: ``secondary`` (bool or settings dict),
    ``ease``, ``symmetric``.
    """
    return animate_full(request_or_script, generator=generator, fps=fps, seed=seed, **kwargs).track
