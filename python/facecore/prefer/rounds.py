"""Preference rounds: :class:`RoundConfig`, :func:`run_round` and :func:`run_rounds`, one loop top to bottom.

One round ``r`` (1, 2, ...), starting from the round ``r - 1`` policy (round 0 is the ``init`` estimator
checkpoint, e.g. one trained on pseudo labels with ``facecore estimator train``):

1. ``images`` fresh synthetic faces (data seed ``data_seed + r``), cropped as the estimator reads them;
2. the policy's Gaussian on them and ``k`` candidates per image (:mod:`.candidates`: policy samples plus
   region-targeted exploration; by default each candidate perturbs one region and keeps the policy's
   head and eye pose, ``pair_design="region"``, ``keep_pose=True``), rendered on the canonical avatar
   facing the camera (``avatar_frontal``);
3. ``pairs`` pairs per round, each judged in every region of ``mode`` (``"regionwise"``: upper and lower
   face; ``"face"``: the whole face) by the training pool (a SIMULATION, in-process or through the
   labeling app at ``app``), so a round costs ``pairs x regions`` judgments;
4. with ``reward``: a per-region Bradley-Terry :class:`~facecore.prefer.reward.RewardModel` fit to those
   judgments relabels ``relabel_pairs`` more pairs of the same candidates (kept where it is at least
   ``relabel_confidence`` sure);
5. ``steps`` AdamW steps of region-wise Gaussian DPO (:func:`facecore.losses.region_dpo_loss`) of the
   policy against the reference (the previous round, or with ``reference="ema"`` an EMA of all previous
   rounds' weights). The network runs in eval mode (BatchNorm statistics frozen) and the DPO
   log-likelihoods use one fixed standard deviation ``dpo_std`` for every channel, so only the means move.
   (With the networks' own ``log_std`` -- ``dpo_std=None`` -- the channels the round-0 network is most
   sure of, the head pose, get ``1 / sigma^2`` times the weight; on the 700-step pseudo-label estimator
   that made two rounds lower the blendshape MAE but double the vertex error through the head pose.)
   A Gaussian KL to the reference can be added on all channels (``kl_weight``) and on the pose channels
   only (``anchor_weight``).

Why the defaults (measured on the 700-step pseudo-label estimator, 128 images, 1,000 pairs, 2 rounds,
128 held-out faces; docs/prefer.md has the tables):

* The head pose drifted (pose MAE 0.09 -> 0.25 with no anchor) because on the canonical render a pose
  offset of 0.05 changes a region's image distance as much as JawOpen 0 -> 1.5, and the candidates
  carried the policy's pose noise (std ~0.1): 86 % of judgments agreed with pose closeness, 62-68 % with
  blendshape closeness, and the Gaussian DPO objective is linear in the mean, so it keeps pushing along
  the judged differences. Hence: candidates keep the policy's pose (``keep_pose``: no pose noise, the
  pose is not learned from preferences), each perturbs one region (``pair_design="region"``: a pair's
  identical channels get exactly zero DPO gradient), the avatar renders the head frontal
  (``avatar_frontal``: raters judge expressions, not pose), the pose read-out rows of the head are held
  fixed and ``anchor_weight`` 30 keeps the trunk from moving the pose. ``kl_weight`` 0.1 on every
  channel (the former default) kept the pose but held the blendshapes back too (MAE 0.113 -> 0.109).
* Eye roll never shows on the render and gaze barely at 64 px: with eye-pose noise the eye channels
  random-walked (eye-pose MAE 0.11 -> 0.33 in two rounds), so ``keep_pose`` covers head and eye pose.
* Dead channels (TongueOut, CheekPuff: mean 1e-4, sigmoid slope 1e-4 in the estimator's first, sigmoid
  head) could not move under any preference; ``revive`` 0.05 raises their output bias to the edge of
  the range (:func:`revive_saturated`),
  and ``head_lr`` 3e-4 (10x ``lr``) lets the output layer learn a new read-out, since Adam moves each
  weight by about ``lr`` per step. With these defaults two rounds took the blendshape MAE 0.113 ->
  0.087 (brows, eyes, cheeks/nose, mouth, jaw all significantly lower) with the pose MAE unchanged
  (0.0919 -> 0.0918). TongueOut / CheekPuff AUC did not rise (0.60 / 0.32 -> 0.58 / 0.34): reviving
  makes them movable, it does not by itself make them learned.

Three fixes of 2026-12-03 (6,000-step pseudo-label estimator, faces from the training prior;
docs/prefer.md):

* The round's faces come from the domain preset's own prior (``prior=None``), the one the estimator's
  training shards hold. Before, they came from the engine's sparser ``default`` prior, and a round
  "improved" the MAE mostly by shrinking every answer toward that prior's zeros.
* The DPO step reads the policy's mean through the inward clamp gradient (``Estimator.forward(...,
  edge_gradient="inward")``: past a range's edge only the gradient that moves the output back in
  passes). Through the straight-through clamp of supervised training, "less of this channel"
  judgments on faces already at 0 kept lowering the raw output with no visible change (so the DPO
  margin never grew and the push never faded): 31 blendshapes were 0 on every face after round 1,
  against 5 (the pseudo labels' dead channels) before it. A plain clamp (zero gradient past the edge)
  stops that, but then "more of it" cannot lift a face that sits at 0 either.
* Candidates keep the policy's eight EyeLook blendshapes (``keep_gaze``): the 64 px render does not
  show them, so the raters' bias toward expressive faces was the only signal on them.

Under ``torchrun`` (DDP) every rank runs the same round (every draw is seeded, so images, candidates,
judgments and the reward model are identical), trains on its slice of each DPO batch and averages the
gradients, so all ranks take the same steps; rank 0 alone evaluates and writes the files (a 2-process
gloo test). Judging through the labeling app (``app``) runs in one process only.

:func:`run_rounds` writes ``out/round_NN/``: ``judgments.jsonl`` (the labeling app's export shape),
``candidates.npz``, ``reward.safetensors``, ``policy.safetensors`` (atomic), ``metrics.json`` (training,
held-out metrics against truth, win rate against round 0 judged by the disjoint EVALUATION pool, and a
timing breakdown), then records the round in ``out/state.json``. Rerunning the same config resumes after
the last finished round; every random draw is a function of ``(seed, round)``, so a killed run finishes
with the same numbers as an uninterrupted one (CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import arkit
from ..config_files import check_real, check_whole, config_from_dict, read_config_file
from ..training_utils import all_mean, barrier, dist_setup
from .regions import channel_mask, check_mode

STATE = "state.json"
_ANCHORED = torch.tensor([int(i) for i in arkit.GROUP_INDICES["pose"]])  # anchor_weight's: head + eye pose
_RESUMABLE = ("rounds", "out", "resume", "app", "app_token")  # may change between a run and its resumption


@dataclasses.dataclass
class RoundConfig:
    """Everything :func:`run_rounds` reads (JSON/YAML loadable with :meth:`from_file`).

    Run: ``out``, ``init`` (round-0 estimator checkpoint), ``rounds``, ``seed``, ``resume``. Raters:
    ``pool`` / ``eval_pool`` (``"sim:N"``, N in 5-13, simulated), ``pool_seed`` / ``eval_pool_seed``,
    ``app`` (labeling app URL; None = in-process) with ``app_token`` (its admin token), ``mode``
    (``"regionwise"`` or ``"face"``). Data: ``rig``, ``domain``, ``prior`` (the parameter prior of the
    faces, a :func:`facecore.synth.sample_params` prior name; None = the domain preset's, which is what
    the estimator's training shards of that domain hold), ``resolution``, ``images`` per round,
    ``eval_images``, ``data_seed``, ``eval_seed``, ``avatar_resolution`` (the canonical renders).
    Candidates: ``k``, ``explore``, ``std_scale``, ``min_std``, ``rare_prob``; ``pairs`` judged per
    round, the share ``rare_share`` of them rare-channel probes (the mean against the mean with TongueOut
    or CheekPuff switched, :func:`facecore.prefer.candidates.add_rare_probes`).
    Reward: ``reward``, ``reward_steps``, ``reward_lr``, ``relabel_pairs``, ``relabel_confidence``.
    DPO: ``steps``, ``batch_size``, ``lr``, ``beta``, ``weight_decay``, ``grad_clip``, ``reference``
    (``"previous"`` or ``"ema"``), ``ema_decay``, ``dpo_std`` (the fixed standard deviation of the
    Gaussian policy in the DPO log-likelihoods; None: the networks' own ``log_std``), ``train_std`` (with
    ``dpo_std=None``: let DPO move the policy's ``log_std`` too), ``kl_weight`` (weight of the Gaussian KL
    ``sum_c (mu_c - mu_ref_c)^2 / (2 sigma^2)`` to the reference on every channel), ``anchor_weight``
    (the same KL on the head and eye pose channels only), ``pair_design`` (``"region"``: each candidate
    perturbs one region, ``"independent"``: all channels), ``keep_gaze`` (candidates keep the policy's
    eight EyeLook blendshapes, which the canonical render does not show), ``keep_pose`` (candidates keep
    the policy's head and eye pose; the pose read-out rows of the head are held fixed), ``avatar_frontal``
    (render the canonical avatar with zero head pose), ``revive`` (raise saturated blendshape outputs to
    this level before DPO, 0 = off, :func:`revive_saturated`), ``head_lr`` (learning rate of the output
    layer; None = ``lr``). The module docstring says why the defaults are what they are.
    """

    out: str = "prefer-run"
    init: str | None = None
    rounds: int = 3
    seed: int = 0
    resume: bool = True
    pool: str = "sim:9"
    pool_seed: int = 0
    eval_pool: str = "sim:9"
    eval_pool_seed: int = 1
    app: str | None = None
    app_token: str | None = None
    mode: str = "regionwise"
    rig: str = "ict"
    domain: str = "wild"
    prior: str | None = None
    resolution: int = 112
    images: int = 256
    eval_images: int = 128
    data_seed: int = 0
    eval_seed: int = 10_000
    avatar_resolution: int = 64
    avatar_frontal: bool = True
    k: int = 6
    explore: float = 0.5
    std_scale: float = 1.0
    min_std: float = 0.05
    rare_prob: float = 0.3
    pairs: int = 1000
    rare_share: float = 0.0
    reward: bool = True
    reward_steps: int = 300
    reward_lr: float = 3e-3
    relabel_pairs: int = 1000
    relabel_confidence: float = 0.7
    steps: int = 100
    batch_size: int = 32
    lr: float = 3e-5
    beta: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    reference: str = "previous"
    ema_decay: float = 0.5
    dpo_std: float | None = 0.25
    kl_weight: float = 0.0
    train_std: bool = False
    pair_design: str = "region"
    keep_pose: bool = True
    keep_gaze: bool = True
    anchor_weight: float = 30.0
    revive: float = 0.05
    head_lr: float | None = 3e-4

    def __post_init__(self) -> None:
        def whole(name: str, lo: int) -> None:
            setattr(self, name, check_whole(f"RoundConfig.{name}", getattr(self, name), lo))

        def real(name: str, lo: float, hi: float = math.inf) -> None:
            setattr(self, name, check_real(f"RoundConfig.{name}", getattr(self, name), lo, hi))

        for name in ("rounds", "images", "eval_images", "pairs", "steps", "batch_size"):
            whole(name, 1)
        for name in ("seed", "pool_seed", "eval_pool_seed", "data_seed", "eval_seed", "reward_steps",
                     "relabel_pairs"):
            whole(name, 0)
        whole("k", 2)
        real("rare_share", 0.0, 1.0)
        if self.rare_share >= 1.0:
            raise ValueError(f"RoundConfig.rare_share must be below 1 (probe pairs are part of the round's "
                             f"pairs, and some must stay ordinary), got {self.rare_share}")
        whole("resolution", 16)
        whole("avatar_resolution", 16)
        for name in ("explore", "rare_prob", "ema_decay"):
            real(name, 0.0, 1.0)
        real("relabel_confidence", 0.5, 1.0)
        for name in ("std_scale", "min_std", "reward_lr", "lr", "weight_decay", "grad_clip"):
            real(name, 0.0)
        real("beta", 1e-6)
        real("kl_weight", 0.0)
        real("anchor_weight", 0.0)
        real("revive", 0.0, 0.5)
        if self.head_lr is not None:
            real("head_lr", 0.0)
        from .candidates import DESIGNS

        if self.pair_design not in DESIGNS:
            raise ValueError(f"RoundConfig.pair_design must be one of {', '.join(DESIGNS)}, "
                             f"got {self.pair_design!r}")
        if not isinstance(self.avatar_frontal, bool):
            raise ValueError(f"RoundConfig.avatar_frontal must be true or false, got {self.avatar_frontal!r}")
        for name in ("keep_pose", "keep_gaze"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RoundConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.dpo_std is not None:
            real("dpo_std", 1e-3, 10.0)
        check_mode(self.mode)
        if self.prior is not None:
            from ..synth.prior import get_prior

            get_prior(self.prior)  # an unknown prior fails here, before any work
        if self.reference not in ("previous", "ema"):
            raise ValueError(f"RoundConfig.reference must be 'previous' or 'ema', got {self.reference!r}")
        from .annotators import parse_pool

        parse_pool(self.pool)  # a bad pool spec fails here, before any work
        parse_pool(self.eval_pool)
        self.out = os.fspath(self.out)
        if self.init is not None:
            self.init = os.fspath(self.init)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundConfig:
        return config_from_dict(cls, d)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> RoundConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` config; ``overrides`` replace its fields."""
        return cls.from_dict({**read_config_file(path, "round config", "RoundConfig"), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def regions(self) -> tuple[str, ...]:
        return check_mode(self.mode)


@dataclasses.dataclass
class RoundResult:
    """What :func:`run_round` returns: the trained ``policy``, the round's ``judgments``, the ``reward``
    model (None without one), ``candidates [N, K, 61]``, ``metrics`` (training numbers and ``timing``)."""

    policy: Any
    judgments: Any
    reward: Any
    candidates: np.ndarray
    metrics: dict[str, Any]


def _world() -> tuple[int, int]:
    """(rank, world size) of the running process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rng(config: RoundConfig, round_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, round_index, stream])


def _dpo_loss(policy, crops, ref_mean, ref_log_std, img, a, b, pref, mask, config):
    from ..losses import region_dpo_loss

    # The inward clamp gradient, not the straight-through one of supervised training: a judgment "less
    # of this channel" on a face whose output is already 0 must stop pushing (through the straight-
    # through clamp the raw output kept falling with no visible change -- the DPO margin never grows, so
    # the push never fades -- until the channel was 0 on every face), while "more of it" still lifts it.
    mean, log_std = policy(policy.normalize(crops[img]), edge_gradient="inward")
    if config.dpo_std is not None:  # one temperature for every channel (see the module docstring)
        ls = ref_ls = math.log(config.dpo_std)
    else:
        ls, ref_ls = (log_std if config.train_std else ref_log_std[img]), ref_log_std[img]
    loss, info = region_dpo_loss(mean, ref_mean[img], a, b, pref, mask, log_std=ls, ref_log_std=ref_ls,
                                 beta=config.beta)
    if config.kl_weight or config.anchor_weight:  # anchors (see the module docstring)
        var = math.exp(2 * ls) if isinstance(ls, float) else torch.exp(2 * ref_ls)
        kl_c = (mean - ref_mean[img]) ** 2 / (2 * var)  # [B, 61] per-channel Gaussian KL
        if config.kl_weight:
            loss = loss + config.kl_weight * kl_c.sum(1).mean()
        if config.anchor_weight:
            loss = loss + config.anchor_weight * kl_c[:, _ANCHORED].sum(1).mean()
    return loss, info


@torch.no_grad()
def _full_loss(policy, crops, ref_mean, ref_log_std, img, a, b, pref, mask, config) -> float:
    total, n = 0.0, 0
    for i in range(0, img.shape[0], 256):
        sl = slice(i, i + 256)
        rated = int((~torch.isnan(pref[sl])).sum())
        if rated == 0:
            continue
        loss, _ = _dpo_loss(policy, crops, ref_mean, ref_log_std, img[sl], a[sl], b[sl], pref[sl], mask,
                            config)
        total += float(loss) * rated
        n += rated
    return total / max(n, 1)


def revive_saturated(policy, crops: torch.Tensor, level: float, dead: float = 0.1):
    """``(policy', names)``: a copy of ``policy`` whose blendshape channels that are stuck at 0 on ``crops``
    (mean below ``dead * level`` on every crop) have their output bias raised so that the median crop's
    mean becomes ``level``; ``policy`` itself when none is stuck.

    Why: the estimator's mean is its head's output clamped to the channel's range (straight-through). A
    channel the pseudo labels never activate (TongueOut, CheekPuff) sits below 0 on every image: DPO's
    gradient does reach it, but its output, and so every candidate and judgment centred on it, stays 0
    until the raw value has climbed back to 0. Raising the bias keeps the image-to-image ranking (a
    shift of the raw value) and puts the median image at ``level``. (With the sigmoid head of the
    estimator's format 1 the same channel had a slope of ~1e-4 and could not move at all.)"""
    from .data import policy_outputs

    if not 0.0 < level < 0.5:
        raise ValueError(f"revive_saturated: level must be in (0, 0.5), got {level!r}")
    raw: list[torch.Tensor] = []  # the head's unclamped output (its first 61 columns are the mean)
    hook = policy.head.register_forward_hook(lambda mod, inp, out: raw.append(out[:, : arkit.NUM_CHANNELS]))
    try:
        mean, _ = policy_outputs(policy, crops)
    finally:
        hook.remove()
    m = mean[:, : arkit.NUM_BLENDSHAPES]
    idx = torch.nonzero((m < dead * level).all(0)).squeeze(1)
    if idx.numel() == 0:
        return policy, []
    out = copy.deepcopy(policy)
    shift = level - torch.cat(raw).float()[:, idx].median(0).values
    with torch.no_grad():
        out.head.bias[idx] += shift.to(out.head.bias.dtype)
    return out, [arkit.NAMES[int(i)] for i in idx]


def run_round(policy, config: RoundConfig, round_index: int, *, pool=None, avatar=None, reference=None,
              feature_model=None, out_dir: str | os.PathLike | None = None,
              judge: Callable | None = None, log: Callable[[str], None] | None = None) -> RoundResult:
    """One preference round (module docstring) from ``policy`` (an :class:`facecore.estimator.Estimator`,
    not modified). ``pool``: the training :class:`~facecore.prefer.AnnotatorPool` (default from
    ``config.pool``); ``avatar``: a :class:`~facecore.prefer.avatar.CanonicalAvatar`; ``reference``: the
    DPO reference model (default ``policy`` itself, i.e. the previous round); ``feature_model``: the
    frozen network whose outputs feed the reward model (default ``policy``); ``judge``: replaces the
    in-process judging, called as ``judge(pairs, candidates, data, distance, expr, regions, rng)`` and
    returning :class:`~facecore.prefer.judging.Judgments` (the HTTP path); ``out_dir``: when given, the
    round's files are written there (``judgments.jsonl``, ``candidates.npz``, ``reward.safetensors``,
    ``policy.safetensors``, ``train.json``)."""
    from .annotators import parse_pool
    from .avatar import CanonicalAvatar
    from .candidates import RARE, add_rare_probes, sample_candidates, sample_pairs, sample_probe_pairs
    from .data import make_images, policy_outputs
    from .judging import judge_in_process, score_candidates
    from .reward import RewardModel, reward_features

    if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 1:
        raise ValueError(f"run_round: round_index must be an integer >= 1, got {round_index!r}")
    say = log or (lambda s: None)
    timing: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timing[name] = timing.get(name, 0.0) + now - t
        t = now

    regions = config.regions
    pool = pool if pool is not None else parse_pool(config.pool, config.pool_seed, "train")
    avatar = avatar if avatar is not None else CanonicalAvatar(config.rig, config.avatar_resolution,
                                                               frontal=config.avatar_frontal)
    feature_model = feature_model if feature_model is not None else policy
    lap("setup")

    data = make_images(config.images, config.data_seed + round_index, image_size=policy.config.image_size,
                       crop_scale=policy.config.crop_scale, rig=config.rig, domain=config.domain,
                       resolution=config.resolution, prior=config.prior)
    crops = data["crops"]
    lap("images")
    revived: list[str] = []
    if config.revive:
        same = reference is None or reference is policy
        policy, revived = revive_saturated(policy, crops, config.revive)
        if same:
            reference = policy
        if revived:
            say(f"round {round_index}: revived saturated channels {', '.join(revived)}")
    reference = reference if reference is not None else policy
    mean, log_std = policy_outputs(policy, crops)
    ref_mean, ref_log_std = (mean, log_std) if reference is policy else policy_outputs(reference, crops)
    feats = reward_features(*policy_outputs(feature_model, crops), crops) if config.reward else None
    lap("policy")
    cands, kind, where = sample_candidates(mean, log_std, config.k, rng=_rng(config, round_index, 1),
                                           explore=config.explore, std_scale=config.std_scale,
                                           min_std=config.min_std, rare_prob=config.rare_prob,
                                           design=config.pair_design, keep_pose=config.keep_pose,
                                           keep_gaze=config.keep_gaze)
    n_probe = min(config.pairs - 1, round(config.rare_share * config.pairs))
    pairs = sample_pairs(cands.shape[0], config.k, config.pairs - n_probe, _rng(config, round_index, 2))
    if n_probe:  # part of the same budget: (mean, mean with one rare channel switched)
        cands, kind, where = add_rare_probes(cands, kind, where, rng=_rng(config, round_index, 5),
                                             rare=RARE, regions=regions)
        pairs = np.concatenate([pairs, sample_probe_pairs(cands.shape[0], config.k, len(RARE),
                                                          n_probe, _rng(config, round_index, 6))])
    lap("candidates")
    dist, expr = score_candidates(avatar, data["params"], cands, regions)
    lap("render")
    jrng = _rng(config, round_index, 3)
    if judge is None:
        judgments = judge_in_process(pool, pairs, dist, expr, regions, jrng)
    else:
        judgments = judge(pairs, cands, {**data, "round": round_index}, dist, expr, regions, jrng)
    pref = judgments.matrix()
    lap("judge")
    say(f"round {round_index}: {len(judgments)} judgments on {pairs.shape[0]} pairs of {cands.shape[0]} "
        "images")

    img_t = torch.as_tensor(pairs[:, 0])
    a_t = torch.from_numpy(cands[pairs[:, 0], pairs[:, 1]])
    b_t = torch.from_numpy(cands[pairs[:, 0], pairs[:, 2]])
    pref_t = torch.as_tensor(pref, dtype=torch.float32)
    reward, reward_info, n_relabelled = None, {}, 0
    if config.reward:
        reward = RewardModel(regions, feats.shape[1])
        reward_info = reward.fit(feats[img_t], a_t, b_t, pref, steps=config.reward_steps, lr=config.reward_lr,
                                 seed=config.seed * 1000 + round_index)
        if config.relabel_pairs:
            extra = sample_pairs(cands.shape[0], config.k, config.relabel_pairs, _rng(config, round_index, 4))
            ea = torch.from_numpy(cands[extra[:, 0], extra[:, 1]])
            eb = torch.from_numpy(cands[extra[:, 0], extra[:, 2]])
            p = reward.prefer(feats[torch.as_tensor(extra[:, 0])], ea, eb)
            c = config.relabel_confidence
            lab = np.where(p >= c, 1.0, np.where(p <= 1 - c, 0.0, np.nan))
            keep = ~np.isnan(lab).all(1)
            n_relabelled = int(keep.sum())
            img_t = torch.cat([img_t, torch.as_tensor(extra[keep, 0])])
            a_t, b_t = torch.cat([a_t, ea[keep]]), torch.cat([b_t, eb[keep]])
            pref_t = torch.cat([pref_t, torch.as_tensor(lab[keep], dtype=torch.float32)])
        say(f"round {round_index}: reward model held-out accuracy {reward_info['val_accuracy']:.3f}, "
            f"{n_relabelled} pairs relabelled")
    lap("reward")

    # Region-wise Gaussian DPO against the reference, network in eval mode (frozen BatchNorm statistics).
    mask = channel_mask(regions)
    trained = copy.deepcopy(policy).eval()  # (the revived copy when config.revive)
    for p_ in trained.parameters():
        p_.requires_grad_(True)
    args = (crops, ref_mean, ref_log_std, img_t, a_t, b_t, pref_t, mask, config)
    loss_before = _full_loss(trained, *args)
    params = [p_ for p_ in trained.parameters() if p_.requires_grad]
    # The output layer may learn faster (head_lr): a revived channel needs a new read-out of features the
    # trunk already has, and Adam moves each weight by about lr per step whatever the gradient's size.
    head = {id(p_) for p_ in trained.head.parameters()}
    groups = [{"params": [p_ for p_ in params if id(p_) not in head]},
              {"params": [p_ for p_ in params if id(p_) in head],
               "lr": config.lr if config.head_lr is None else config.head_lr}]
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    frozen = _ANCHORED if config.keep_pose else None  # pose read-out rows, held fixed (docstring)
    g = torch.Generator().manual_seed(config.seed * 1000 + round_index)
    torch.manual_seed(config.seed * 1000 + round_index)
    losses, accs = [], []
    M = img_t.shape[0]
    rank, world = _world()
    for _ in range(config.steps):
        # Every rank draws the same batch (same generator) and trains on its slice of it; the gradients
        # are averaged over the ranks, so every rank takes the same step (data-parallel under torchrun).
        idx = torch.randint(0, M, (min(config.batch_size, M),), generator=g)
        if not bool((~torch.isnan(pref_t[idx])).any()):
            continue
        mine = idx[rank::world]
        opt.zero_grad(set_to_none=True)
        if bool((~torch.isnan(pref_t[mine])).any()):
            loss, info = _dpo_loss(trained, crops, ref_mean, ref_log_std, img_t[mine], a_t[mine], b_t[mine],
                                   pref_t[mine], mask, config)
            loss.backward()
        else:  # nothing rated in this rank's slice: it contributes a zero gradient
            loss, info = torch.tensor(math.nan), {"accuracy": math.nan}
        if world > 1:
            for p_ in params:
                p_.grad = all_mean(p_.grad if p_.grad is not None else torch.zeros_like(p_), world)
            loss = all_mean(torch.nan_to_num(loss.detach().reshape(1)), world)[0]
        if frozen is not None:  # exactly zero: Adam then leaves these rows where they are
            trained.head.weight.grad[frozen] = 0.0
            trained.head.bias.grad[frozen] = 0.0
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        accs.append(float(info["accuracy"]))
    for p_ in trained.parameters():
        p_.requires_grad_(False)
    trained.eval()
    loss_after = _full_loss(trained, *args)
    lap("dpo")
    say(f"round {round_index}: DPO loss {loss_before:.4f} -> {loss_after:.4f} over {config.steps} steps")

    decisive = np.isin(judgments.preference, (0.0, 1.0))
    metrics = {
        "round": round_index,
        "n_images": int(cands.shape[0]), "n_pairs": int(pairs.shape[0]), "n_judgments": len(judgments),
        "n_relabelled": n_relabelled, "tie_rate": float((judgments.preference == 0.5).mean()),
        "left_rate": float((judgments.preference[decisive] == judgments.a_left[decisive]).mean())
        if decisive.any() else math.nan,
        "explored_share": float((kind[:, :config.k] == 2).mean()),
        "n_probe_pairs": int(n_probe),
        "revived": revived,
        "dpo_loss_before": loss_before, "dpo_loss_after": loss_after,
        "dpo_loss_first_steps": float(np.mean(losses[:10])) if losses else math.nan,
        "dpo_loss_last_steps": float(np.mean(losses[-10:])) if losses else math.nan,
        "dpo_accuracy_last_steps": float(np.nanmean(accs[-10:])) if accs else math.nan,
        "reward": reward_info,
    }
    if out_dir is not None and rank == 0:  # one writer under torchrun (every rank holds the same round)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        judgments.write_jsonl(out_dir / "judgments.jsonl", round_index, uid_prefix=f"r{round_index}-")
        _save_npz(out_dir / "candidates.npz", candidates=cands, kind=kind, pairs=pairs, truth=data["params"])
        if reward is not None:
            reward.save(out_dir / "reward.safetensors")
        trained.save(out_dir / "policy.safetensors")
        lap("save")
    metrics["timing"] = timing
    return RoundResult(policy=trained, judgments=judgments, reward=reward, candidates=cands, metrics=metrics)


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.name}.partial.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def _ema_update(ema, model, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.state_dict().values(), model.state_dict().values()):
            if pe.is_floating_point():
                pe.mul_(decay).add_(pm, alpha=1 - decay)
            else:
                pe.copy_(pm)


def evaluate_round(policy, round0_pred, eval_data, avatar, eval_pool, config: RoundConfig, round_index: int
                   ) -> tuple[dict[str, Any], np.ndarray]:
    """``({"metrics", "win_rate_vs_round0"}, predictions [N, 61])``: held-out metrics of ``policy`` and its
    win rate against ``round0_pred`` judged by ``eval_pool`` (see :mod:`.evaluation`)."""
    from .data import policy_outputs
    from .evaluation import policy_metrics, win_rate

    pred = policy_outputs(policy, eval_data["crops"])[0].numpy()
    out = {"metrics": policy_metrics(pred, eval_data["eval_batch"])}
    out["win_rate_vs_round0"] = win_rate(avatar, eval_pool, eval_data["params"], pred, round0_pred,
                                         config.regions, seed=config.seed * 1000 + round_index)
    return out, pred


def run_rounds(config: RoundConfig, *, log: Callable[[str], None] | None = print,
               judge_factory: Callable | None = None) -> dict[str, Any]:
    """All rounds of ``config`` with per-round files and resume (module docstring). Returns
    ``{"rounds": [metrics of round 0, 1, ...], "out": path}``. ``judge_factory(config)``, when given,
    returns the ``judge`` callable of :func:`run_round` (e.g. the labeling app client of
    :func:`facecore.prefer.judging.http_judge`)."""
    rank, world, started = dist_setup()  # torchrun: every rank runs the rounds, DPO is data-parallel
    try:
        return _run_rounds(config, rank, world, log, judge_factory)
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run_rounds(config: RoundConfig, rank: int, world: int, log, judge_factory) -> dict[str, Any]:
    from ..estimator import Estimator
    from .annotators import parse_pool
    from .avatar import CanonicalAvatar
    from .data import make_images

    say = (log or (lambda s: None)) if rank == 0 else (lambda s: None)
    if world > 1 and config.app:
        raise ValueError("RoundConfig.app (judgments through the labeling app) runs in one process; "
                         "run it without torchrun")
    if config.init is None:
        raise ValueError("RoundConfig.init must name the round-0 estimator checkpoint "
                         "(estimator.safetensors)")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE
    cfg = config.to_dict()
    done = 0
    if state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        old = {k: v for k, v in state.get("config", {}).items() if k not in _RESUMABLE}
        new = {k: v for k, v in cfg.items() if k not in _RESUMABLE}
        if not config.resume:
            raise ValueError(f"{out} already holds a preference run ({STATE}); pass resume=True (the CLI's "
                             "default) to continue it or choose another folder")
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(f"{out} holds a run with a different config (fields {diff}); use another folder")
        done = int(state.get("completed", 0))
        say(f"resuming {out} after round {done}")
    pool = parse_pool(config.pool, config.pool_seed, "train")
    eval_pool = parse_pool(config.eval_pool, config.eval_pool_seed, "eval")
    pool.check_disjoint(eval_pool)
    avatar = CanonicalAvatar(config.rig, config.avatar_resolution, frontal=config.avatar_frontal)
    round0 = Estimator.load(config.init)
    eval_data = make_images(config.eval_images, config.eval_seed, image_size=round0.config.image_size,
                            crop_scale=round0.config.crop_scale, rig=config.rig, domain=config.domain,
                            resolution=config.resolution, prior=config.prior)
    from .data import policy_outputs

    round0_pred = policy_outputs(round0, eval_data["crops"])[0].numpy()
    results = []
    r0_dir = out / "round_00"
    barrier(world)  # every rank has read the state before rank 0 writes
    if rank == 0 and not (r0_dir / "metrics.json").is_file():
        r0_dir.mkdir(exist_ok=True)
        round0.save(r0_dir / "policy.safetensors")
        ev, _ = evaluate_round(round0, round0_pred, eval_data, avatar, eval_pool, config, 0)
        _write_json(r0_dir / "metrics.json", {"round": 0, "eval": ev, "pools": {
            "train": pool.describe(), "eval": eval_pool.describe(), "simulated": True}})
    barrier(world)
    results.append(json.loads((r0_dir / "metrics.json").read_text(encoding="utf-8")))
    for r in range(1, done + 1):
        results.append(json.loads((out / f"round_{r:02d}" / "metrics.json").read_text(encoding="utf-8")))
    policy = Estimator.load(out / f"round_{done:02d}" / "policy.safetensors")
    ema = None
    if config.reference == "ema":
        ema_path = out / f"round_{done:02d}" / "ema.safetensors"
        ema = Estimator.load(ema_path) if ema_path.is_file() else copy.deepcopy(policy)
    judge = judge_factory(config) if judge_factory is not None else None
    for r in range(done + 1, config.rounds + 1):
        rdir = out / f"round_{r:02d}"
        reference = ema if ema is not None else policy
        res = run_round(policy, config, r, pool=pool, avatar=avatar, reference=reference,
                        feature_model=round0,
                        out_dir=rdir, judge=judge, log=say)
        if ema is not None:
            _ema_update(ema, res.policy, config.ema_decay)
        if rank == 0:  # the evaluation and the files: once (every rank holds the same policy)
            t0 = time.perf_counter()
            ev, _ = evaluate_round(res.policy, round0_pred, eval_data, avatar, eval_pool, config, r)
            res.metrics["timing"]["eval"] = time.perf_counter() - t0
            if ema is not None:
                ema.save(rdir / "ema.safetensors")
            _write_json(rdir / "metrics.json", {"round": r, "train": res.metrics, "eval": ev})
            _write_json(state_path, {"config": cfg, "completed": r})
        barrier(world)
        metrics = json.loads((rdir / "metrics.json").read_text(encoding="utf-8"))
        ev = metrics["eval"]
        results.append(metrics)
        m, w = ev["metrics"], ev["win_rate_vs_round0"]
        say(f"round {r}: MAE upper {m['mae_upper']:.4f} lower {m['mae_lower']:.4f}, AUC tongue "
            f"{m.get('auc_TongueOut', math.nan):.3f} puff {m.get('auc_CheekPuff', math.nan):.3f}, win rate "
            + ", ".join(f"{k} {v['rate']:.3f}" for k, v in w.items()))
        policy = res.policy
    if rank == 0:
        if not state_path.is_file():
            _write_json(state_path, {"config": cfg, "completed": 0})
        (out / "results.md").write_text(format_rounds(results[: config.rounds + 1]), encoding="utf-8")
    barrier(world)
    return {"rounds": results[: config.rounds + 1], "out": str(out)}


def format_rounds(results: list[dict]) -> str:
    """One Markdown table row per round: held-out metrics and the evaluation pool's win rate vs round 0
    (Wilson 95 % interval). Judgments are by SIMULATED annotators."""
    from .evaluation import KEYS

    cols = [k for k in KEYS if any(k in r["eval"]["metrics"] for r in results)]
    regions = list(results[0]["eval"]["win_rate_vs_round0"])
    head = ["round", "judgments"] + cols + [f"win {r} vs r0 [95% CI]" for r in regions]
    lines = ["Judgments by simulated annotators (a simulation, not people).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total = 0
    for res in results:
        total += int(res.get("train", {}).get("n_judgments", 0))
        m, w = res["eval"]["metrics"], res["eval"]["win_rate_vs_round0"]
        cells = [str(res["round"]), str(total)] + [f"{m.get(k, math.nan):.4f}" for k in cols]
        cells += [f"{w[r]['rate']:.3f} [{w[r]['lo']:.3f}, {w[r]['hi']:.3f}]" for r in regions]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
