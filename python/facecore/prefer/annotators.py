"""Simulated annotators and pools of them. A SIMULATION of people, never to be reported as human results.

A :class:`SimulatedAnnotator` judges a pair of candidates in one region the way the issue specifies a
plausible rater: it compares each candidate's render with the truth's render on the canonical avatar
(:func:`facecore.prefer.avatar.region_distances`: a per-region, visibility-weighted image distance ``d``)
and answers

* with probability ``lapse``: a coin flip between A and B (inattention);
* otherwise ``"tie"`` when ``|d_a - d_b| < jnd`` (a just-noticeable difference);
* otherwise A with probability ``sigmoid((d_b - d_a) / tau + left_bias * s + expressive_bias * (e_a - e_b))``
  where ``s = +1`` when A was shown on the left and ``-1`` when on the right, and ``e`` is the candidate's
  mean blendshape activation in the region (:func:`facecore.prefer.regions.expressiveness`), the mild
  pull toward livelier faces that a later round can overfit.

Preferences are coded as numbers: 1.0 = A, 0.0 = B, 0.5 = tie (the ``preference`` convention of
:func:`facecore.losses.region_dpo_loss`). Every draw comes from the generator passed in (or one seeded
with the annotator's ``seed``), so a judgment is reproducible.

:class:`AnnotatorPool` makes ``n`` (5-13) annotators with different settings from ``(seed, split)``;
the ``"train"`` pool answers the training rounds and the ``"eval"`` pool (other seeds, other setting
ranges: less expressiveness bias) judges win rates. :meth:`AnnotatorPool.check_disjoint` asserts that
two pools share no annotator.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence

import numpy as np

from .regions import REGIONS, expressiveness

CHOICES = {1.0: "a", 0.0: "b", 0.5: "tie"}
SPLITS = ("train", "eval")
POOL_SIZES = (5, 13)

# Setting ranges per split: (low, high) for tau, jnd, lapse, left_bias, expressive_bias. Distances are in
# region_distances units (typical candidate-vs-truth values 0.01-0.3).
_RANGES = {
    "train": {"tau": (0.004, 0.02), "jnd": (0.001, 0.004), "lapse": (0.01, 0.08),
              "left_bias": (0.0, 0.5), "expressive_bias": (1.0, 6.0)},
    "eval": {"tau": (0.004, 0.015), "jnd": (0.001, 0.003), "lapse": (0.0, 0.04),
             "left_bias": (-0.2, 0.2), "expressive_bias": (0.0, 1.0)},
}


def _as_array(name: str, x, shape=None, dtype=np.float64) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    if shape is not None and a.shape != shape:
        raise ValueError(f"SimulatedAnnotator.judge: {name} must have shape {list(shape)} (that of d_a), "
                         f"got {list(a.shape)}")
    if dtype is np.float64 and not np.isfinite(a).all():
        raise ValueError(f"SimulatedAnnotator.judge: {name} contains NaN or infinite values")
    return a


@dataclasses.dataclass(frozen=True)
class SimulatedAnnotator:
    """One simulated rater (see the module docstring for the choice model).

    ``tau`` > 0: softness (distance units per logit); ``jnd`` >= 0: tie band; ``lapse`` in [0, 1]:
    rate of random answers; ``left_bias``: logit toward the left-shown candidate; ``expressive_bias``:
    logit per unit of expressiveness difference; ``seed``: the default generator's seed.
    """

    name: str = "sim"
    tau: float = 0.01
    jnd: float = 0.002
    lapse: float = 0.02
    left_bias: float = 0.0
    expressive_bias: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        def number(field: str, lo: float, hi: float = math.inf, open_lo: bool = False) -> None:
            v = getattr(self, field)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
                (lo < v if open_lo else lo <= v) and v <= hi
            if not ok:
                lo_s = f"> {lo}" if open_lo else f">= {lo}"
                raise ValueError(f"SimulatedAnnotator.{field} must be a finite number {lo_s} and <= {hi}, "
                                 f"got {v!r}")

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"SimulatedAnnotator.name must be a non-empty string, got {self.name!r}")
        number("tau", 0.0, open_lo=True)
        number("jnd", 0.0)
        number("lapse", 0.0, 1.0)
        number("left_bias", -math.inf)
        number("expressive_bias", -math.inf)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"SimulatedAnnotator.seed must be an integer >= 0, got {self.seed!r}")

    def settings(self) -> tuple[float, ...]:
        return (self.tau, self.jnd, self.lapse, self.left_bias, self.expressive_bias)

    def judge(self, d_a, d_b, a_left, e_a=None, e_b=None, rng: np.random.Generator | None = None
              ) -> np.ndarray:
        """Preferences ``[N]`` (1 = A, 0 = B, 0.5 = tie) from distances ``d_a``, ``d_b`` ``[N]`` of each
        candidate's render to the truth's, ``a_left`` ``[N]`` bool (A was shown on the left), and
        expressiveness ``e_a``, ``e_b`` ``[N]`` (default 0)."""
        d_a = _as_array("d_a", d_a)
        if d_a.ndim != 1:
            raise ValueError(f"SimulatedAnnotator.judge: d_a must be 1-D [N], got shape {list(d_a.shape)}")
        n = d_a.shape[0]
        d_b = _as_array("d_b", d_b, (n,))
        if (d_a < 0).any() or (d_b < 0).any():
            raise ValueError("SimulatedAnnotator.judge: distances d_a, d_b must be >= 0")
        left = np.asarray(a_left)
        if left.shape != (n,) or left.dtype != bool:
            raise ValueError(f"SimulatedAnnotator.judge: a_left must be a bool array of shape [{n}], got "
                             f"{left.dtype} {list(left.shape)}")
        e_a = np.zeros(n) if e_a is None else _as_array("e_a", e_a, (n,))
        e_b = np.zeros(n) if e_b is None else _as_array("e_b", e_b, (n,))
        if rng is None:
            rng = np.random.default_rng(self.seed)
        u_lapse, u_coin, u_choice = rng.random((3, n))
        logit = (d_b - d_a) / self.tau + self.left_bias * np.where(left, 1.0, -1.0) \
            + self.expressive_bias * (e_a - e_b)
        p_a = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        out = np.where(u_choice < p_a, 1.0, 0.0)
        out = np.where(np.abs(d_a - d_b) < self.jnd, 0.5, out)
        return np.where(u_lapse < self.lapse, np.where(u_coin < 0.5, 1.0, 0.0), out)

    def judge_params(self, avatar, truth, a, b, region: str, a_left, rng=None) -> np.ndarray:
        """Render ``truth``, ``a``, ``b`` ``[N, 61]`` on ``avatar`` (a
        :class:`~facecore.prefer.avatar.CanonicalAvatar`) and :meth:`judge` them in ``region``."""
        from .avatar import region_distances

        if region not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
        rt, ra, rb = avatar.render(truth), avatar.render(a), avatar.render(b)
        d_a = region_distances(ra, rt, (region,))[:, 0].double().numpy()
        d_b = region_distances(rb, rt, (region,))[:, 0].double().numpy()
        return self.judge(d_a, d_b, a_left, expressiveness(a, region), expressiveness(b, region), rng)


class AnnotatorPool(Sequence):
    """``n`` simulated annotators (5-13) with settings drawn from ``(seed, split)``; a SIMULATION.

    ``split``: ``"train"`` (the pool whose judgments train the policy) or ``"eval"`` (held-out raters with
    other setting ranges, for win rates). Names are ``"sim-<split>-s<seed>-<i>"``.
    """

    def __init__(self, n: int = 9, seed: int = 0, split: str = "train"):
        lo, hi = POOL_SIZES
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not lo <= n <= hi:
            raise ValueError(f"AnnotatorPool: n must be an integer in [{lo}, {hi}], got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"AnnotatorPool: seed must be an integer >= 0, got {seed!r}")
        if split not in SPLITS:
            raise ValueError(f"AnnotatorPool: split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.n, self.seed, self.split = int(n), int(seed), split
        rng = np.random.default_rng([int(seed), zlib.crc32(split.encode())])
        ranges = _RANGES[split]
        self.annotators: list[SimulatedAnnotator] = []
        for i in range(self.n):
            kw = {k: float(rng.uniform(a, b)) for k, (a, b) in ranges.items()}
            self.annotators.append(SimulatedAnnotator(name=f"sim-{split}-s{seed}-{i}",
                                                      seed=int(rng.integers(2**31)), **kw))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return self.annotators[i]

    def __repr__(self) -> str:
        return f"AnnotatorPool(n={self.n}, seed={self.seed}, split={self.split!r})  # simulated"

    def describe(self) -> list[dict]:
        """The annotators' settings as JSON-able dicts."""
        return [dataclasses.asdict(a) for a in self.annotators]

    def check_disjoint(self, other: AnnotatorPool) -> None:
        """ValueError when ``other`` shares an annotator (name or settings) with this pool."""
        names = {a.name for a in self} & {a.name for a in other}
        settings = {a.settings() for a in self} & {a.settings() for a in other}
        if names or settings:
            raise ValueError(f"annotator pools {self!r} and {other!r} are not disjoint: shared names "
                             f"{sorted(names)}, {len(settings)} shared settings")

    def judge(self, d_a, d_b, a_left, e_a=None, e_b=None, rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Each judgment by one annotator drawn uniformly from the pool: ``(preferences [N], annotator
        index [N])`` (see :meth:`SimulatedAnnotator.judge` for the arguments)."""
        d_a = np.asarray(d_a, dtype=np.float64)
        n = d_a.shape[0] if d_a.ndim == 1 else -1
        if n < 0:
            raise ValueError(f"AnnotatorPool.judge: d_a must be 1-D [N], got shape {list(d_a.shape)}")
        if rng is None:
            rng = np.random.default_rng([self.seed, 7])
        who = rng.integers(0, self.n, size=n)
        e_a = np.zeros(n) if e_a is None else np.asarray(e_a, dtype=np.float64)
        e_b = np.zeros(n) if e_b is None else np.asarray(e_b, dtype=np.float64)
        d_b, left = np.asarray(d_b, dtype=np.float64), np.asarray(a_left)
        for arr, name in ((d_b, "d_b"), (left, "a_left"), (e_a, "e_a"), (e_b, "e_b")):
            if arr.shape != (n,):
                raise ValueError(f"AnnotatorPool.judge: {name} must have shape [{n}], got {list(arr.shape)}")
        out = np.empty(n)
        for i in range(self.n):
            sel = who == i
            if sel.any():
                out[sel] = self.annotators[i].judge(d_a[sel], d_b[sel], left[sel], e_a[sel], e_b[sel], rng)
        return out, who


def parse_pool(spec: str, seed: int = 0, split: str = "train") -> AnnotatorPool:
    """``"sim:N"`` -> ``AnnotatorPool(N, seed, split)`` (the CLI's ``--pool``)."""
    if not isinstance(spec, str) or not spec.startswith("sim:"):
        raise ValueError(f"--pool must look like 'sim:N' (N simulated annotators, 5-13), got {spec!r}")
    try:
        n = int(spec[4:])
    except ValueError:
        raise ValueError(f"--pool must look like 'sim:N' with an integer N, got {spec!r}") from None
    return AnnotatorPool(n, seed, split)
