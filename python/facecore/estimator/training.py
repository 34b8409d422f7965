"""Training the estimator: :class:`TrainConfig` and :func:`train`, one readable loop top to bottom.

Data: synthetic faces from :mod:`facecore.synth`, either written shards (``data=`` a folder written by
``facecore synth``) or rendered on the fly (``data=`` a ``manifest.json``, or ``data=None`` and the
``rig``/``domain``/``resolution``/``data_seed``/``n`` fields: the same samples ``facecore.synth.Dataset``
yields for that spec). Labels: ``labels="pseudo"`` (the SuperFace baseline: the truth goes through
:class:`facecore.estimator.PseudoLabeler` inside the data path, and the loop only ever receives the
corrupted labels) or ``labels="truth"`` (the upper bound).

Per step: face crops from the landmark boxes with crop jitter, colour jitter and horizontal flips
(labels mirrored with :func:`facecore.arkit.mirror`, the function behind
``facecore.animate.mirror(params, "flip")``), the loss (below), AdamW (no decay on norms, biases and
position tables), linear warmup then cosine decay, bf16 autocast (on CUDA by default; ``amp="bf16"`` on a
CPU with bfloat16 instructions halves the step), gradient clipping, an EMA of the weights (what is
exported). The head's mean starts at the median of the training labels (:meth:`Estimator.init_mean`).

Losses: ``"l1+mse"`` (default): L1 + MSE on the mean, and the Gaussian NLL of the labels trains
``log_std`` around the mean with the mean's gradient stopped. ``"nll"`` and ``"nll+l1"`` put the NLL's
gradient on the mean as well; it is scaled by ``1 / sigma^2`` per channel, which starves the uncertain
channels: on held-out faces both stayed worse than predicting the training median (docs/estimator.md).
L1 alone pulls to the median so hard that the sparse channels never leave 0; the MSE term gives them a
gradient in proportion to their error.

Outputs in ``out``: ``metrics.jsonl`` (one line per logged step: loss, nll, l1, lr, grad norm, data and
step seconds), TensorBoard events in ``tb/`` when ``tensorboard`` is installed, ``checkpoint.pt``
(model, optimizer, scheduler, EMA, RNG states, data position; written to a temporary file and renamed),
``config.json`` and the exported EMA model ``estimator.safetensors`` (:meth:`Estimator.save`).

Resume: rerunning with the same config continues from ``checkpoint.pt``. Every random draw of the data
path is a function of ``(seed, step, rank)`` and the data position is the step, so on CPU with
``deterministic=True`` a resumed run reproduces the uninterrupted one exactly (same losses, same weights).

DDP: launched by ``torchrun --nproc-per-node N`` (or with a process group already initialised), each
rank renders / reads its own samples (rank r of W takes the r-th block of every W blocks), gradients
are all-reduced by ``DistributedDataParallel``, rank 0 writes every file. ``batch_size`` is per rank.

The shipped checkpoint (``facecore/estimator/data/estimator.safetensors``) is trained on the exact
synthetic truth (the best network facecore makes; the pseudo-label network, the SuperFace baseline, is
the same command with ``--labels pseudo -o runs/est-pseudo``; docs/estimator.md compares them). About
65 minutes for both, side by side at one thread each, on 2 CPU cores::

    facecore synth -o runs/synth-ict-wild-32k -n 32768 --rig ict --domain wild --resolution 112 --seed 0
    OMP_NUM_THREADS=1 facecore estimator train --labels truth --data runs/synth-ict-wild-32k \\
        --image-size 64 --steps 16000 --batch-size 64 --lr 2e-3 --warmup-steps 200 --amp bf16 \\
        --checkpoint-every 1000 -o runs/est-truth
    cp runs/est-truth/estimator.safetensors runs/est-truth/metrics.jsonl python/facecore/estimator/data/

(drop ``--amp bf16`` on a CPU without bfloat16 instructions -- it is emulated there, about 15x slower,
and training warns --, add ``--device cuda`` on a GPU;
``torchrun --nproc-per-node 4 -m facecore.cli estimator train ...`` for DDP.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import arkit
from ..config_files import check_real, check_whole, config_from_dict, read_config_file
from ..losses import gaussian_logprob
from ..training_utils import (
    EMA,
    all_mean,
    atomic_save,
    barrier,
    choose_device,
    dist_setup,
    read_checkpoint,
    rng_state,
    seed_of,
    set_rng_state,
    warmup_cosine,
)
from .model import Estimator, EstimatorConfig
from .predict import boxes_from_landmarks, crop_faces

Progress = Callable[[str, int, int], None]
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
MODEL = "estimator.safetensors"
LABELS = ("pseudo", "truth")
LOSSES = ("l1+mse", "nll", "nll+l1")
AMP = ("auto", "bf16", "off")
# Fields that may change between a run and its resumption (they do not change the result).
_RESUMABLE = ("steps", "stop_after", "resume", "checkpoint_every", "log_every", "tensorboard", "device",
              "out")


@dataclasses.dataclass
class TrainConfig:
    """Everything :func:`train` reads (JSON/YAML loadable with :meth:`from_file`).

    Data: ``data`` (a shard folder or a manifest.json; None: render on the fly from ``rig``,
    ``domain``, ``resolution``, ``data_seed``, and ``n`` samples, None meaning an endless stream of
    fresh samples). ``labels``: ``"pseudo"`` or ``"truth"``; ``pseudo_profile``/``pseudo_seed``: the
    labeler's. ``model``: :class:`EstimatorConfig` fields. Optimisation: ``steps``, ``batch_size`` (per
    rank), ``lr``, ``weight_decay``, ``warmup_steps``, ``min_lr_ratio`` (the cosine's floor),
    ``grad_clip``, ``loss``, ``l1_weight``, ``ema_decay``. Augmentation (``augment``): ``jitter``
    (box centre shift, fraction of the crop), ``scale_jitter`` (log-scale of the crop), ``color_jitter``
    (brightness/contrast/saturation/channel gains), ``flip`` (probability). ``shuffle_buffer``: samples
    mixed when reading shards. Run: ``seed``, ``deterministic``, ``device`` (auto/cpu/cuda[:i]),
    ``amp`` (auto = bf16 autocast on CUDA, bf16 = also on CPU, off), ``log_every``, ``checkpoint_every``,
    ``stop_after`` (end
    this run after that many steps, with a checkpoint, e.g. to fit a job's time limit), ``resume``
    (continue from ``out/checkpoint.pt``; False refuses a folder that has one), ``tensorboard``.
    """

    out: str = "estimator-run"
    labels: str = "pseudo"
    pseudo_profile: str = "livelink"
    pseudo_seed: int = 0
    data: str | None = None
    rig: str = "ict"
    domain: str = "clean"
    resolution: int = 128
    data_seed: int = 0
    n: int | None = None
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0
    loss: str = "l1+mse"
    l1_weight: float = 1.0
    ema_decay: float = 0.999
    augment: bool = True
    jitter: float = 0.06
    scale_jitter: float = 0.1
    color_jitter: float = 0.2
    flip: float = 0.5
    shuffle_buffer: int = 256
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: str = "auto"
    log_every: int = 1
    checkpoint_every: int = 500
    stop_after: int | None = None
    resume: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        def whole(name: str, lo: int, none_ok: bool = False) -> None:
            setattr(self, name, check_whole(f"TrainConfig.{name}", getattr(self, name), lo, none_ok))

        def real(name: str, lo: float, hi: float = math.inf) -> None:
            setattr(self, name, check_real(f"TrainConfig.{name}", getattr(self, name), lo, hi))

        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            whole(name, 1)
        for name in ("warmup_steps", "shuffle_buffer", "seed", "data_seed", "pseudo_seed"):
            whole(name, 0)
        whole("n", 1, none_ok=True)
        whole("stop_after", 1, none_ok=True)
        whole("resolution", 16)
        real("lr", 0.0)
        real("weight_decay", 0.0)
        real("min_lr_ratio", 0.0, 1.0)
        real("grad_clip", 0.0)
        real("l1_weight", 0.0)
        real("ema_decay", 0.0, 1.0)
        real("jitter", 0.0, 0.5)
        real("scale_jitter", 0.0, 1.0)
        real("color_jitter", 0.0, 1.0)
        real("flip", 0.0, 1.0)
        if self.labels not in LABELS:
            raise ValueError(f"TrainConfig.labels must be one of {', '.join(LABELS)}, got {self.labels!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.amp not in AMP:
            raise ValueError(f"TrainConfig.amp must be one of {', '.join(AMP)}, got {self.amp!r}")
        if not isinstance(self.model, Mapping):
            raise ValueError(f"TrainConfig.model must be a dict of EstimatorConfig fields, got "
                             f"{self.model!r}")
        self.model = dict(self.model)
        EstimatorConfig.from_dict(self.model)  # a bad model config fails here, before any work
        self.out = os.fspath(self.out)
        if self.data is not None:
            self.data = os.fspath(self.data)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        return config_from_dict(cls, d)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` config; ``overrides`` replace its fields."""
        obj = read_config_file(path, "train config", "TrainConfig")
        return cls.from_dict({**obj, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------
# Data: labelled batches. The truth is read here and replaced by the labels; nothing else sees it.
# ---------------------------------------------------------------------------------------------------
class _Labels:
    def __init__(self, cfg: TrainConfig):
        self.labeler = None
        if cfg.labels == "pseudo":
            from .pseudo import PseudoLabeler

            self.labeler = PseudoLabeler(cfg.pseudo_profile, seed=cfg.pseudo_seed)

    def __call__(self, truth: torch.Tensor) -> torch.Tensor:
        truth = truth.to(torch.float32).cpu()
        if self.labeler is None:
            return truth
        return torch.as_tensor(self.labeler(truth), dtype=torch.float32)


def _labelled(samples: list[dict[str, Any]], labels: _Labels) -> dict[str, Any]:
    """Per-sample dicts -> ``images`` (uint8 [H, W, 3] list), ``boxes`` [B, 4], ``labels`` [B, 61],
    ``index``."""
    images = [torch.as_tensor(s["image"]).cpu() for s in samples]
    if any(im.ndim != 3 for im in images):
        raise ValueError("training needs single-image samples; clip datasets (clips=True) are not supported")
    lm = torch.stack([torch.as_tensor(s["landmarks2d"], dtype=torch.float32).cpu() for s in samples])
    mask = None
    if all(s.get("mask") is not None for s in samples) and len({im.shape for im in images}) == 1:
        mask = torch.stack([torch.as_tensor(s["mask"]).cpu() for s in samples])
    boxes = boxes_from_landmarks(lm, mask=mask)
    truth = torch.stack([torch.as_tensor(s["params"]) for s in samples])
    return {"images": images, "boxes": boxes, "labels": labels(truth),
            "index": [int(s["index"]) for s in samples]}


class _RenderStream:
    """On-the-fly samples by index: step ``s`` of rank ``r`` (of ``W``) takes samples
    ``[(s W + r) B, (s W + r + 1) B)`` (modulo ``n`` when the set is finite), each rendered exactly as
    ``facecore.synth.Dataset`` renders sample ``i`` of the same spec."""

    def __init__(self, spec: Any, n: int | None, batch: int, rank: int, world: int, device: torch.device,
                 labels: _Labels):
        from .. import synth

        self.synth, self.spec = synth, spec
        self.batch, self.rank, self.world, self.labels = batch, rank, world, labels
        self.scene = synth.load_preset(spec.domain)
        self.prior = getattr(self.scene, "prior", "default")
        self.rig: Any = spec.rig
        if device.type != "cpu":
            from ..rig import BUILTIN_RIGS, FaceRig, builtin_rig

            rig = builtin_rig(spec.rig) if spec.rig in (*BUILTIN_RIGS, "default") else FaceRig.load(spec.rig)
            self.rig = rig.to(device)
        self.n = n  # None: an endless stream of fresh indices

    def state(self, step: int) -> dict[str, Any]:
        return {"kind": "render", "samples_per_rank": step * self.batch}

    def batches(self, step: int) -> Iterator[dict[str, Any]]:
        while True:
            first = (step * self.world + self.rank) * self.batch
            idx = [(first + j) % self.n if self.n else first + j for j in range(self.batch)]
            samples: list[dict[str, Any]] = []
            j = 0
            while j < len(idx):  # contiguous runs render together (one break where the set wraps)
                k = j
                while k + 1 < len(idx) and idx[k + 1] == idx[k] + 1:
                    k += 1
                samples += self._render(idx[j], k - j + 1)
                j = k + 1
            yield _labelled(samples, self.labels)
            step += 1

    def _render(self, start: int, count: int) -> list[dict[str, Any]]:
        s = self.synth
        with torch.no_grad():
            params = s.sample_params(count, self.spec.seed, prior=self.prior, index0=start)
            out = s.render_batch(params, self.rig, self.scene, self.spec.resolution, self.spec.seed,
                                 index0=start)
        return [{"image": out["image"][b], "landmarks2d": out["landmarks2d"][b], "mask": out["mask"][b],
                 "params": out["params"][b], "index": start + b} for b in range(count)]


class _ShardStream:
    """Written shards, epoch after epoch, through a seeded shuffle buffer. Rank ``r`` reads its part
    (``facecore.synth.Dataset`` splits over ranks); its stream is a function of ``(seed, rank)``, so the
    data position after ``s`` steps is ``s * batch`` samples into it (resume replays and skips them)."""

    def __init__(self, path: str, batch: int, rank: int, seed: int, buffer: int, labels: _Labels):
        from .. import synth

        self.dataset = synth.Dataset(path)
        self.spec = self.dataset.spec
        if self.spec.clips:
            raise ValueError(f"{path}: a clip dataset (clips=True); training needs single images")
        self.prior = getattr(synth.load_preset(self.spec.domain), "prior", "default")
        self.batch, self.rank, self.seed, self.buffer, self.labels = batch, rank, seed, buffer, labels

    def state(self, step: int) -> dict[str, Any]:
        return {"kind": "shards", "samples_per_rank": step * self.batch}

    def _samples(self) -> Iterator[dict[str, Any]]:
        epoch = 0
        while True:
            rng = np.random.default_rng(seed_of(self.seed, self.rank, epoch, 1))
            buf: list[dict[str, Any]] = []
            got = 0
            for s in self.dataset:
                got += 1
                buf.append(s)
                if len(buf) > self.buffer:
                    yield buf.pop(int(rng.integers(len(buf))))
            if got == 0:
                raise ValueError("the dataset yields no samples for this rank (fewer samples than ranks?)")
            while buf:
                yield buf.pop(int(rng.integers(len(buf))))
            epoch += 1

    def batches(self, step: int) -> Iterator[dict[str, Any]]:
        it = self._samples()
        for _ in range(step * self.batch):  # replay to the data position of the checkpoint
            next(it)
        while True:
            yield _labelled([next(it) for _ in range(self.batch)], self.labels)


def label_median(spec: Any, prior: Any, labels: _Labels, n: int = 2048) -> torch.Tensor:
    """The median label ``[61]`` of the first ``n`` parameter draws of the data spec (the labels training
    reads; no image is rendered): where the estimator's mean starts."""
    from .. import synth

    return labels(synth.sample_params(n, spec.seed, prior=prior)).median(0).values


def _stream(cfg: TrainConfig, rank: int, world: int, device: torch.device, labels: _Labels):
    from .. import synth

    if cfg.data is not None:
        path = Path(cfg.data)
        if path.is_dir():
            return _ShardStream(str(path), cfg.batch_size, rank, cfg.seed, cfg.shuffle_buffer, labels)
        spec = synth.Dataset(path).spec  # a manifest: render its samples on the fly
        n = spec.n
    else:
        spec = synth.Dataset({"n": cfg.n or 1, "rig": cfg.rig, "domain": cfg.domain,
                              "resolution": cfg.resolution, "seed": cfg.data_seed}).spec
        n = cfg.n
    if spec.domain not in synth.PRESETS:
        raise ValueError(f"unknown domain {spec.domain!r}; expected one of {', '.join(synth.PRESETS)}")
    if spec.clips:
        raise ValueError(f"{cfg.data}: a clip dataset (clips=True); training needs single images")
    return _RenderStream(spec, n, cfg.batch_size, rank, world, device, labels)


# ---------------------------------------------------------------------------------------------------
# Augmentation (seeded per step and rank)
# ---------------------------------------------------------------------------------------------------
def _jitter_boxes(boxes: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    B = boxes.shape[0]
    c = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    half = 0.5 * (boxes[:, 2:] - boxes[:, :2]).amax(1, keepdim=True)
    scale = torch.exp((2 * torch.rand(B, 1, generator=g) - 1) * cfg.scale_jitter)
    shift = (2 * torch.rand(B, 2, generator=g) - 1) * cfg.jitter * 2 * half
    c, half = c + shift, half * scale
    return torch.cat([c - half, c + half], 1)


def _color_jitter(x: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and per-channel gains on crops ``[B, S, S, 3]`` in [0, 1]."""
    B, a = x.shape[0], cfg.color_jitter
    u = lambda *shape: (2 * torch.rand(*shape, generator=g) - 1) * a
    grey = x.mean(-1, keepdim=True)
    x = grey + (x - grey) * (1 + u(B, 1, 1, 1))  # saturation
    m = x.mean((1, 2, 3), keepdim=True)
    x = m + (x - m) * (1 + u(B, 1, 1, 1))  # contrast
    x = x * (1 + u(B, 1, 1, 1)) * (1 + 0.25 * u(B, 1, 1, 3))  # brightness, white balance
    return x.clamp(0.0, 1.0)


def _augment(batch: dict[str, Any], cfg: TrainConfig, size: int, crop_scale: float, g: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    boxes, labels = batch["boxes"], batch["labels"]
    if cfg.augment:
        boxes = _jitter_boxes(boxes, cfg, g)
    crops = crop_faces(batch["images"], boxes, size, crop_scale)
    if cfg.augment:
        crops = _color_jitter(crops, cfg, g)
        flip = torch.rand(crops.shape[0], generator=g) < cfg.flip
        if bool(flip.any()):
            crops = torch.where(flip[:, None, None, None], crops.flip(2), crops)
            labels = torch.where(flip[:, None], arkit.mirror(labels), labels)
    return crops, labels


# ---------------------------------------------------------------------------------------------------
# Optimisation pieces
# ---------------------------------------------------------------------------------------------------
def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "rel_bias" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at ``step``: linear warmup, then cosine from 1 to ``min_lr_ratio``."""
    return warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)


def _loss(mean: torch.Tensor, log_std: torch.Tensor, target: torch.Tensor, cfg: TrainConfig
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, nll per channel, l1) for ``cfg.loss`` (module docstring): the NLL of the labels under the
    predicted Gaussian averaged over the batch and the 61 channels, and ``l1_weight`` times the mean's
    error terms."""
    l1 = F.l1_loss(mean, target)
    if cfg.loss == "l1+mse":
        nll = -gaussian_logprob(mean.detach(), log_std, target).mean() / arkit.NUM_CHANNELS
        return nll + cfg.l1_weight * (l1 + F.mse_loss(mean, target)), nll, l1
    nll = -gaussian_logprob(mean, log_std, target).mean() / arkit.NUM_CHANNELS
    loss = nll + cfg.l1_weight * l1 if cfg.loss == "nll+l1" else nll
    return loss, nll, l1


# ---------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------
def _comparable(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _RESUMABLE}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint (``checkpoint.pt``) written by :func:`train` (tensors and plain
    values only: loaded with ``weights_only=True``)."""
    return read_checkpoint(path, "facecore.estimator.train", "facecore estimator training checkpoint")


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop logged steps after ``step`` (a run that stopped after its last checkpoint logged them; the
    resumed run logs them again), so the log reads like the uninterrupted run's."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------
def train(config: TrainConfig | Mapping[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Train an estimator (see the module docstring). Returns ``{"model": the EMA Estimator (rank 0's
    weights on every rank), "step", "losses" (this run's per-step mean loss over ranks), "metrics"
    (the last logged row), "files", "rank", "world_size", "last_indices" (this rank's last sample
    indices)}``."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    rank, world, started = dist_setup()
    try:
        return _train(cfg, rank, world, progress or (lambda stage, done, total: None))
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(cfg: TrainConfig, rank: int, world: int, progress: Progress) -> dict[str, Any]:
    device = choose_device(cfg.device, rank)
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = None
    if ckpt_path.is_file():
        if not cfg.resume:
            raise ValueError(f"{out} already holds a training run ({CHECKPOINT}); pass resume=True "
                             "(--resume) to continue it or choose another output folder")
        ckpt = load_checkpoint(ckpt_path)
        diff = sorted(k for k, v in _comparable(cfg.to_dict()).items()
                      if _comparable(ckpt["config"]).get(k, v) != v)
        if diff:
            raise ValueError(f"{out}: the checkpoint was trained with different settings "
                             f"({', '.join(diff)}); use the same settings to resume or another output folder")
        if ckpt["world_size"] != world:
            raise ValueError(f"{out}: the checkpoint was written by {ckpt['world_size']} processes, this "
                             f"run has {world}; resume with the same number (the data split depends on it)")
    prev_det = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        return _loop(cfg, rank, world, device, out, ckpt, progress)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _loop(cfg: TrainConfig, rank: int, world: int, device: torch.device, out: Path, ckpt: dict | None,
          progress: Progress) -> dict[str, Any]:
    torch.manual_seed(seed_of(cfg.seed, 0))  # the same init on every rank (DDP also broadcasts it)
    model = Estimator(EstimatorConfig.from_dict(cfg.model)).to(device)
    S, crop_scale = model.config.image_size, model.config.crop_scale
    labels = _Labels(cfg)
    stream = _stream(cfg, rank, world, device, labels)
    if ckpt is None:
        model.init_mean(label_median(stream.spec, stream.prior, labels))
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    start = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        ema.shadow = {k: v.to(device) for k, v in ckpt["ema"].items()}
        start = int(ckpt["step"])
        set_rng_state(ckpt["rng"][rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])
    else:
        torch.manual_seed(seed_of(cfg.seed, 1, rank))
    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    if use_amp and device.type == "cpu" and rank == 0 and not _cpu_has_bf16():
        import warnings

        warnings.warn("TrainConfig.amp='bf16' on a CPU without AVX512-BF16/AMX: bfloat16 is emulated here "
                      "(measured 15x slower than float32 on an AVX2 CPU); use amp='off'", stacklevel=2)
    end = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
    metrics_path = out / METRICS
    tb = None
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
        if ckpt is None:
            metrics_path.unlink(missing_ok=True)
        else:
            _truncate_metrics(metrics_path, start)
        tb = _tensorboard(out / "tb") if cfg.tensorboard else None

    def save_checkpoint(step: int) -> None:
        rng = rng_state()
        if world > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        if rank == 0:
            atomic_save({"format": "facecore.estimator.train", "version": 1, "step": step,
                          "config": cfg.to_dict(), "world_size": world, "model": model.state_dict(),
                          "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "ema": ema.shadow,
                          "rng": rng, "data": stream.state(step)}, out / CHECKPOINT)
        barrier(world)

    losses: list[float] = []
    last: dict[str, Any] = {}
    last_indices: list[int] = []
    batches = stream.batches(start)
    net.train()
    progress("train", start, cfg.steps)
    for step in range(start, end):
        t0 = time.perf_counter()
        batch = next(batches)
        g = torch.Generator().manual_seed(seed_of(cfg.seed, 2, step, rank))
        crops, target = _augment(batch, cfg, S, crop_scale, g)
        x, target = model.normalize(crops).to(device), target.to(device)
        t1 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            mean, log_std = net(x)
        loss, nll, l1 = _loss(mean.float(), log_std.float(), target, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else \
            torch.zeros(())
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        ema.update(model, step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        stats = all_mean(torch.stack([loss.detach(), nll.detach(), l1.detach(),
                                       gnorm.detach().to(loss.device)]).float(), world).tolist()
        losses.append(stats[0])
        last_indices = batch["index"]
        last = {"step": step + 1, "loss": stats[0], "nll": stats[1], "l1": stats[2], "grad_norm": stats[3],
                "lr": lr, "data_s": t1 - t0, "step_s": t2 - t1,
                "samples": (step + 1) * cfg.batch_size * world}
        if (step + 1) % cfg.log_every == 0 or step + 1 == end:
            if rank == 0:
                _write_metrics(metrics_path, [last])
            if tb is not None:
                for k in ("loss", "nll", "l1", "grad_norm", "lr", "data_s", "step_s"):
                    tb.add_scalar(f"train/{k}", last[k], step + 1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
            save_checkpoint(step + 1)
        progress("train", step + 1, cfg.steps)

    if world > 1:
        # BatchNorm's running statistics move per rank between DDP's buffer broadcasts: every rank
        # returns rank 0's average (the one rank 0 writes).
        import torch.distributed as dist

        for v in ema.shadow.values():
            dist.broadcast(v, 0)
    final = Estimator(model.config)
    final.load_state_dict({k: v.detach().cpu() for k, v in ema.shadow.items()})
    files = {"checkpoint": out / CHECKPOINT, "metrics": metrics_path, "config": out / "config.json"}
    if rank == 0 and end == cfg.steps:
        final.save(out / MODEL)
        files["model"] = out / MODEL
    if tb is not None:
        tb.close()
    barrier(world)
    return {"model": final.eval(), "step": end, "losses": losses, "metrics": last, "files": files,
            "rank": rank, "world_size": world, "last_indices": last_indices}


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); True when torch cannot say."""
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [p for p in probes if p is not None]
    return not probes or any(p() for p in probes)
