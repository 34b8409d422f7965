"""Preference rounds: :class:`RoundConfig`, :func:`run_round` and :func:`run_rounds`, one loop top to bottom.

One round ``r`` (1, 2, ...), starting from the round ``r - 1`` policy (round 0 is the ``init`` estimator
checkpoint, e.g. one trained on pseudo labels with ``facecore estimator train``):

1. ``images`` fresh synthetic faces (data seed ``data_seed + r``), cropped as the estimator reads them;
2. the policy's Gaussian on them and ``k`` candidates per image (:mod:`.candidates`: policy samples plus
   region-targeted exploration);
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
   A Gaussian KL to the reference (``kl_weight``) is added on all channels: the judgments pull hard on
   the explored blendshapes, and without an anchor the shared trunk dragged the head-pose outputs along
   (pose MAE 0.09 -> 0.17 -> 0.25 over two rounds while the blendshape MAE fell 0.113 -> 0.084).

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

from .regions import channel_mask, check_mode

STATE = "state.json"
_RESUMABLE = ("rounds", "out", "resume", "app", "app_token")  # may change between a run and its resumption


@dataclasses.dataclass
class RoundConfig:
    """Everything :func:`run_rounds` reads (JSON/YAML loadable with :meth:`from_file`).

    Run: ``out``, ``init`` (round-0 estimator checkpoint), ``rounds``, ``seed``, ``resume``. Raters:
    ``pool`` / ``eval_pool`` (``"sim:N"``, N in 5-13, simulated), ``pool_seed`` / ``eval_pool_seed``,
    ``app`` (labeling app URL; None = in-process) with ``app_token`` (its admin token), ``mode``
    (``"regionwise"`` or ``"face"``). Data: ``rig``, ``domain``, ``resolution``, ``images`` per round,
    ``eval_images``, ``data_seed``, ``eval_seed``, ``avatar_resolution`` (the canonical renders).
    Candidates: ``k``, ``explore``, ``std_scale``, ``min_std``, ``rare_prob``; ``pairs`` judged per round.
    Reward: ``reward``, ``reward_steps``, ``reward_lr``, ``relabel_pairs``, ``relabel_confidence``.
    DPO: ``steps``, ``batch_size``, ``lr``, ``beta``, ``weight_decay``, ``grad_clip``, ``reference``
    (``"previous"`` or ``"ema"``), ``ema_decay``, ``dpo_std`` (the fixed standard deviation of the
    Gaussian policy in the DPO log-likelihoods; None: the networks' own ``log_std``), ``train_std`` (with
    ``dpo_std=None``: let DPO move the policy's ``log_std`` too), ``kl_weight`` (weight of the Gaussian KL
    ``sum_c (mu_c - mu_ref_c)^2 / (2 sigma^2)`` to the reference on every channel).
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
    resolution: int = 112
    images: int = 256
    eval_images: int = 128
    data_seed: int = 0
    eval_seed: int = 10_000
    avatar_resolution: int = 64
    k: int = 6
    explore: float = 0.5
    std_scale: float = 1.0
    min_std: float = 0.05
    rare_prob: float = 0.3
    pairs: int = 1000
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
    kl_weight: float = 0.1
    train_std: bool = False

    def __post_init__(self) -> None:
        def whole(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"RoundConfig.{name} must be an integer >= {lo}, got {v!r}")
            setattr(self, name, int(v))

        def real(name: str, lo: float, hi: float = math.inf) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"RoundConfig.{name} must be a number in [{lo}, {hi}], got {v!r}")
            setattr(self, name, float(v))

        for name in ("rounds", "images", "eval_images", "pairs", "steps", "batch_size"):
            whole(name, 1)
        for name in ("seed", "pool_seed", "eval_pool_seed", "data_seed", "eval_seed", "reward_steps",
                     "relabel_pairs"):
            whole(name, 0)
        whole("k", 2)
        whole("resolution", 16)
        whole("avatar_resolution", 16)
        for name in ("explore", "rare_prob", "ema_decay"):
            real(name, 0.0, 1.0)
        real("relabel_confidence", 0.5, 1.0)
        for name in ("std_scale", "min_std", "reward_lr", "lr", "weight_decay", "grad_clip"):
            real(name, 0.0)
        real("beta", 1e-6)
        real("kl_weight", 0.0)
        if self.dpo_std is not None:
            real("dpo_std", 1e-3, 10.0)
        check_mode(self.mode)
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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"RoundConfig: unknown keys {unknown}; expected some of {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> RoundConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` config; ``overrides`` replace its fields."""
        from ..io.errors import FormatError, json_loads, read_text

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"round config not found: {path}")
        text = read_text(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                obj = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise FormatError(f"invalid YAML ({str(e).splitlines()[0]})", path=path) from None
        else:
            obj = json_loads(text, path=path)
        if not isinstance(obj, dict):
            raise FormatError("a round config must be a mapping of RoundConfig fields", path=path)
        return cls.from_dict({**obj, **overrides})

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


def _rng(config: RoundConfig, round_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, round_index, stream])


def _dpo_loss(policy, crops, ref_mean, ref_log_std, img, a, b, pref, mask, config):
    from ..losses import region_dpo_loss

    mean, log_std = policy(policy.normalize(crops[img]))
    if config.dpo_std is not None:  # one temperature for every channel (see the module docstring)
        ls = ref_ls = math.log(config.dpo_std)
    else:
        ls, ref_ls = (log_std if config.train_std else ref_log_std[img]), ref_log_std[img]
    loss, info = region_dpo_loss(mean, ref_mean[img], a, b, pref, mask, log_std=ls, ref_log_std=ref_ls,
                                 beta=config.beta)
    if config.kl_weight:  # anchors the channels the judgments say little about (see the module docstring)
        var = math.exp(2 * ls) if isinstance(ls, float) else torch.exp(2 * ref_ls)
        kl = ((mean - ref_mean[img]) ** 2 / (2 * var)).sum(1).mean()
        loss = loss + config.kl_weight * kl
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
    from .candidates import sample_candidates, sample_pairs
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
    avatar = avatar if avatar is not None else CanonicalAvatar(config.rig, config.avatar_resolution)
    reference = reference if reference is not None else policy
    feature_model = feature_model if feature_model is not None else policy
    lap("setup")

    data = make_images(config.images, config.data_seed + round_index, image_size=policy.config.image_size,
                       crop_scale=policy.config.crop_scale, rig=config.rig, domain=config.domain,
                       resolution=config.resolution)
    crops = data["crops"]
    lap("images")
    mean, log_std = policy_outputs(policy, crops)
    ref_mean, ref_log_std = (mean, log_std) if reference is policy else policy_outputs(reference, crops)
    feats = reward_features(*policy_outputs(feature_model, crops), crops) if config.reward else None
    lap("policy")
    cands, kind, _ = sample_candidates(mean, log_std, config.k, rng=_rng(config, round_index, 1),
                                       explore=config.explore, std_scale=config.std_scale,
                                       min_std=config.min_std, rare_prob=config.rare_prob)
    pairs = sample_pairs(cands.shape[0], config.k, config.pairs, _rng(config, round_index, 2))
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
    trained = copy.deepcopy(policy).eval()
    for p_ in trained.parameters():
        p_.requires_grad_(True)
    args = (crops, ref_mean, ref_log_std, img_t, a_t, b_t, pref_t, mask, config)
    loss_before = _full_loss(trained, *args)
    params = [p_ for p_ in trained.parameters() if p_.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed * 1000 + round_index)
    torch.manual_seed(config.seed * 1000 + round_index)
    losses, accs = [], []
    M = img_t.shape[0]
    for _ in range(config.steps):
        idx = torch.randint(0, M, (min(config.batch_size, M),), generator=g)
        if not bool((~torch.isnan(pref_t[idx])).any()):
            continue
        loss, info = _dpo_loss(trained, crops, ref_mean, ref_log_std, img_t[idx], a_t[idx], b_t[idx],
                               pref_t[idx], mask, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
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
        "explored_share": float((kind == 2).mean()),
        "dpo_loss_before": loss_before, "dpo_loss_after": loss_after,
        "dpo_loss_first_steps": float(np.mean(losses[:10])) if losses else math.nan,
        "dpo_loss_last_steps": float(np.mean(losses[-10:])) if losses else math.nan,
        "dpo_accuracy_last_steps": float(np.nanmean(accs[-10:])) if accs else math.nan,
        "reward": reward_info,
    }
    if out_dir is not None:
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
    from ..estimator import Estimator
    from .annotators import parse_pool
    from .avatar import CanonicalAvatar
    from .data import make_images

    say = log or (lambda s: None)
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
    avatar = CanonicalAvatar(config.rig, config.avatar_resolution)
    round0 = Estimator.load(config.init)
    eval_data = make_images(config.eval_images, config.eval_seed, image_size=round0.config.image_size,
                            crop_scale=round0.config.crop_scale, rig=config.rig, domain=config.domain,
                            resolution=config.resolution)
    from .data import policy_outputs

    round0_pred = policy_outputs(round0, eval_data["crops"])[0].numpy()
    results = []
    r0_dir = out / "round_00"
    if not (r0_dir / "metrics.json").is_file():
        r0_dir.mkdir(exist_ok=True)
        round0.save(r0_dir / "policy.safetensors")
        ev, _ = evaluate_round(round0, round0_pred, eval_data, avatar, eval_pool, config, 0)
        _write_json(r0_dir / "metrics.json", {"round": 0, "eval": ev, "pools": {
            "train": pool.describe(), "eval": eval_pool.describe(), "simulated": True}})
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
        t0 = time.perf_counter()
        ev, _ = evaluate_round(res.policy, round0_pred, eval_data, avatar, eval_pool, config, r)
        res.metrics["timing"]["eval"] = time.perf_counter() - t0
        if ema is not None:
            _ema_update(ema, res.policy, config.ema_decay)
            ema.save(rdir / "ema.safetensors")
        metrics = {"round": r, "train": res.metrics, "eval": ev}
        _write_json(rdir / "metrics.json", metrics)
        _write_json(state_path, {"config": cfg, "completed": r})
        results.append(metrics)
        m, w = ev["metrics"], ev["win_rate_vs_round0"]
        say(f"round {r}: MAE upper {m['mae_upper']:.4f} lower {m['mae_lower']:.4f}, AUC tongue "
            f"{m.get('auc_TongueOut', math.nan):.3f} puff {m.get('auc_CheekPuff', math.nan):.3f}, win rate "
            + ", ".join(f"{k} {v['rate']:.3f}" for k, v in w.items()))
        policy = res.policy
    if not state_path.is_file():
        _write_json(state_path, {"config": cfg, "completed": 0})
    (out / "results.md").write_text(format_rounds(results[: config.rounds + 1]), encoding="utf-8")
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
