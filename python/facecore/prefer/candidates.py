"""Candidates for one image: the policy's Gaussian plus region-targeted exploration, and the pairs shown.

Per image, candidate 0 is the policy's mean; the others are draws from ``N(mean, (std_scale * max(std,
min_std))^2)`` clipped to each channel's range. With probability ``explore`` a draw is then perturbed in
one region (``"upper"`` or ``"lower"``, :data:`facecore.prefer.regions.REGION_CHANNELS`): ``n_explore``
of that region's blendshapes are set to fresh uniform values in [0, 1], and each of ``rare`` (channels a
pseudo-label policy never activates, TongueOut and CheekPuff by default) is switched on at a uniform
value with probability ``rare_prob`` when it belongs to the region. A dead channel is never fixed if it
is never sampled; this is what samples it.

Two candidate designs (``design``):

* ``"independent"``: each draw perturbs every channel at once, so a pair differs everywhere and a
  judgment about one region also moves (through the DPO gradient ``(a - b) / sigma^2``) every channel
  the pair happens to differ in, including the head pose, which on the canonical render dominates the
  image distance.
* ``"region"``: each draw starts from the policy's mean and perturbs ONE region only (Gaussian noise on
  that region's blendshapes, then the same exploration; never the head or eye pose). Any pair then
  differs only in the regions its two candidates perturbed; on every other channel ``a == b`` exactly,
  so those channels get exactly zero DPO gradient from it.

``keep_gaze=True`` does the same for the eight gaze blendshapes (``EyeLook{Down,In,Out,Up}{Left,Right}``):
they move the eyeballs and lids by a pixel or two on the
64 px canonical render, so raters cannot see them, and with them perturbed the only signal DPO got on
them was the raters' bias toward more expressive candidates (EyeLookDownLeft 0.11 -> 0.30 in one round,
truth 0.10).

``keep_pose=True`` gives every candidate the policy's mean head and eye pose (no pose noise): the pose is
then never judged, and :class:`facecore.prefer.RoundConfig`'s ``anchor_weight`` holds it. (Eye roll does
not show on the render at all, and gaze barely at 64 px: with gaze noise in the candidates, DPO random-
walked the eye channels, eye MAE 0.11 -> 0.33 in two rounds, with truth eye roll always 0.)

Rare-channel probes (:func:`add_rare_probes`, ``RoundConfig.rare_share``): per image one more candidate
per rare channel, the policy's mean with only that channel switched (on at a uniform value in [0.3, 1]
where the mean has it below 0.5, off otherwise). A probe pair (mean, probe) differs in that one channel
alone, so each judgment of it is a clean yes/no on the rare action for that face, and its DPO gradient
falls on that channel only. Random exploration switches a rare channel on in about 7.5 % of the
candidates, and few of those land on faces that show it; a probe asks every image.

Pairs are drawn within an image; each pair is judged in every region of the judging mode.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import arkit
from .regions import REGION_CHANNELS

RARE = ("TongueOut", "CheekPuff")
KIND_MEAN, KIND_SAMPLE, KIND_EXPLORE, KIND_PROBE = 0, 1, 2, 3
DESIGNS = ("independent", "region")
POSE = np.asarray(arkit.GROUP_INDICES["pose"], dtype=np.int64)  # head and eye pose
GAZE = np.asarray([i for i, n in enumerate(arkit.NAMES) if n.startswith("EyeLook")], dtype=np.int64)


def sample_candidates(mean: torch.Tensor, log_std: torch.Tensor, k: int, *, rng: np.random.Generator,
                      explore: float = 0.5, std_scale: float = 1.0, min_std: float = 0.05,
                      n_explore: int = 3, rare=RARE, rare_prob: float = 0.3,
                      regions=("upper", "lower"), design: str = "independent", keep_pose: bool = False,
                      keep_gaze: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(candidates [N, k, 61] float32, kind [N, k] int (0 mean, 1 sample, 2 explored), region
    [N, k] int (index into regions: the explored region, or with ``design="region"`` the one region
    the draw perturbs; -1 none))``."""
    mean = np.asarray(torch.as_tensor(mean).detach().cpu(), dtype=np.float64)
    std = np.exp(np.asarray(torch.as_tensor(log_std).detach().cpu(), dtype=np.float64))
    if mean.ndim != 2 or mean.shape[1] != arkit.NUM_CHANNELS or std.shape != mean.shape:
        raise ValueError(f"sample_candidates: mean and log_std must both be [N, 61], got {list(mean.shape)} "
                         f"and {list(std.shape)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"sample_candidates: k must be an integer >= 2 (pairs need two), got {k!r}")
    if not 0.0 <= explore <= 1.0 or not 0.0 <= rare_prob <= 1.0:
        raise ValueError(f"sample_candidates: explore and rare_prob must be in [0, 1], got {explore}, "
                         f"{rare_prob}")
    if std_scale < 0 or min_std < 0 or n_explore < 0:
        raise ValueError("sample_candidates: std_scale, min_std and n_explore must be >= 0")
    if design not in DESIGNS:
        raise ValueError(f"sample_candidates: design must be one of {', '.join(DESIGNS)}, got {design!r}")
    regions = tuple(regions)
    if design == "region" and not set(regions) <= {"upper", "lower"}:
        raise ValueError(f"sample_candidates: design='region' perturbs 'upper' or 'lower', got regions "
                         f"{regions}")
    rare_idx = [arkit.index(n) for n in rare]
    low, high = np.asarray(arkit.LOW, np.float64), np.asarray(arkit.HIGH, np.float64)
    N = mean.shape[0]
    sd = std_scale * np.maximum(std, min_std)
    noise = rng.standard_normal((N, k, arkit.NUM_CHANNELS))
    where = np.full((N, k), -1, dtype=np.int64)
    if design == "region":  # noise only on the one region each draw perturbs (never the pose)
        pick = rng.integers(0, len(regions), size=(N, k))
        own = np.zeros((len(regions), arkit.NUM_CHANNELS))
        for r_i, r in enumerate(regions):
            own[r_i, np.setdiff1d(REGION_CHANNELS[r], POSE)] = 1.0
        noise = noise * own[pick]
        where = pick.copy()
        where[:, 0] = -1
    if keep_pose:
        noise[..., POSE] = 0.0
    if keep_gaze:
        noise[..., GAZE] = 0.0
    cand = mean[:, None, :] + sd[:, None, :] * noise
    cand[:, 0] = mean
    kind = np.full((N, k), KIND_SAMPLE, dtype=np.int64)
    kind[:, 0] = KIND_MEAN
    region_bs = [REGION_CHANNELS[r][REGION_CHANNELS[r] < arkit.NUM_BLENDSHAPES] for r in regions]
    if keep_gaze:  # exploration redraws only what raters can see
        region_bs = [np.setdiff1d(c, GAZE) for c in region_bs]
    do = rng.random((N, k)) < explore
    do[:, 0] = False
    if design == "independent":  # draw the explored region now (the region design picked it above)
        pick = rng.integers(0, len(regions), size=(N, k))
    for i, j in zip(*np.nonzero(do)):
        r = int(pick[i, j])
        chans = region_bs[r]
        sel = rng.choice(chans, size=min(n_explore, len(chans)), replace=False)
        cand[i, j, sel] = rng.random(len(sel))
        for c in rare_idx:
            if c in chans and rng.random() < rare_prob:
                cand[i, j, c] = rng.uniform(0.3, 1.0)
        kind[i, j], where[i, j] = KIND_EXPLORE, r
    cand = np.clip(cand, low, high)
    return cand.astype(np.float32), kind, where


def add_rare_probes(candidates: np.ndarray, kind: np.ndarray, where: np.ndarray, *,
                    rng: np.random.Generator, rare=RARE, regions=("upper", "lower")
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sample_candidates``' output with ``len(rare)`` probes appended per image (module docstring):
    candidate ``K + j`` is candidate 0 (the policy's mean) with ``rare[j]`` switched, kind
    ``KIND_PROBE``, region the first of ``regions`` holding that channel (-1 if none does)."""
    cand = np.asarray(candidates, dtype=np.float32)
    if cand.ndim != 3 or cand.shape[2] != arkit.NUM_CHANNELS or kind.shape != cand.shape[:2] or \
            where.shape != cand.shape[:2]:
        raise ValueError(f"add_rare_probes: candidates must be [N, K, 61] with kind and where [N, K], got "
                         f"{list(cand.shape)}, {list(kind.shape)}, {list(where.shape)}")
    rare_idx = [arkit.index(n) for n in rare]
    N = cand.shape[0]
    probes = np.repeat(cand[:, :1], len(rare_idx), axis=1).copy()  # [N, R, 61]
    region = np.full((N, len(rare_idx)), -1, dtype=np.int64)
    for j, c in enumerate(rare_idx):
        base = probes[:, j, c]
        on = rng.uniform(0.3, 1.0, size=N).astype(np.float32)
        probes[:, j, c] = np.where(base < 0.5, on, 0.0)
        for r_i, r in enumerate(regions):
            if c in REGION_CHANNELS[r]:
                region[:, j] = r_i
                break
    return (np.concatenate([cand, probes], 1), np.concatenate([kind, np.full_like(region, KIND_PROBE)], 1),
            np.concatenate([where, region], 1))


def sample_probe_pairs(n_images: int, k: int, n_rare: int, n_pairs: int, rng: np.random.Generator
                       ) -> np.ndarray:
    """``[n_pairs, 3]`` rows ``(image, 0, k + j)``: the mean against rare probe ``j`` (appended by
    :func:`add_rare_probes` after the ``k`` ordinary candidates), the ``n_images * n_rare`` (image,
    probe) combinations visited in a random order, cycling when ``n_pairs`` exceeds them."""
    if n_images < 1 or k < 1 or n_rare < 1 or n_pairs < 0:
        raise ValueError(f"sample_probe_pairs: need n_images >= 1, k >= 1, n_rare >= 1, n_pairs >= 0, got "
                         f"{n_images}, {k}, {n_rare}, {n_pairs}")
    combos = np.arange(n_images * n_rare)
    laps = [rng.permutation(combos) for _ in range(-(-n_pairs // combos.size))]
    order = np.concatenate(laps)[:n_pairs] if laps else combos[:0]
    img, j = order // n_rare, order % n_rare
    return np.stack([img, np.zeros_like(img), k + j], 1).astype(np.int64)


def sample_pairs(n_images: int, k: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_pairs, 3]`` int rows ``(image, i, j)`` with ``i != j`` candidates of that image, images
    visited round-robin (each image gets ``n_pairs / n_images`` pairs, +-1), half of the pairs against the
    policy's mean (candidate 0)."""
    if n_images < 1 or k < 2 or n_pairs < 1:
        raise ValueError(f"sample_pairs: need n_images >= 1, k >= 2, n_pairs >= 1, got {n_images}, {k}, "
                         f"{n_pairs}")
    img = np.arange(n_pairs) % n_images
    img = img[rng.permutation(n_pairs)]
    i = rng.integers(0, k, size=n_pairs)
    i = np.where(rng.random(n_pairs) < 0.5, 0, i)
    j = (i + rng.integers(1, k, size=n_pairs)) % k
    return np.stack([img, i, j], 1).astype(np.int64)
