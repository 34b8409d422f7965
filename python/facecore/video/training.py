"""Training the video diffusion model: :class:`VideoTrainConfig` and :func:`train`, one loop top to bottom.

Data (sample dicts with ``frames``, ``reference``, ``params``, ``motion_maps``, ``domain``, ``identity``,
``clip_id``; see docs/video.md):

* ``dataset=`` a sequence of sample dicts (a list, ``facecore.video.ClipDataset``, anything with
  ``len`` and ``[i]``): global sample ``g`` of the run is item ``perm_e[g mod len]`` with a fresh
  permutation per epoch ``e`` (seeded), rank ``r`` of ``W`` taking the ``r``-th block of each ``W``;
* ``dataset=`` any other iterable: read in order, rank ``r`` taking every ``W``-th sample (resume skips
  what was consumed; exact only when the iterable restarts identically);
* ``dataset=None``: clips from the ``domains`` mix, ``{name: ratio}``; each name is a
  :mod:`facecore.synth` scene preset (``clean``, ``studio``, ``wild``, ``toon``) rendered on the fly by
  :func:`render_clip`, or a :class:`facecore.video.ClipDataset` domain (``real_proxy``, ``synthetic``).
  Every slot of every step draws its domain from the ratios with a generator keyed by
  ``(data_seed, step, rank, slot)`` and takes clip ``g mod n`` of that domain (``n=None``: fresh clips).

Per step: DDPM noise at uniform timesteps, independent condition dropout of the reference and the
motion (classifier-free guidance), MSE to the v-prediction target, AdamW (no decay on norms, biases,
position tables and null tokens), warmup + cosine, bf16 autocast on CUDA, gradient clipping, EMA.

Outputs in ``out``: ``metrics.jsonl`` (loss, grad norm, lr, data and step seconds, samples, per-domain
sample counts), ``checkpoint.pt`` (model, optimizer, scheduler, EMA, RNG, written to a temporary file
and renamed), ``config.json`` and the exported EMA model ``video.safetensors``.

Resume: rerunning with the same config continues from ``checkpoint.pt``; every random draw is a
function of ``(seed, step, rank)``, so on CPU with ``deterministic=True`` a resumed run reproduces the
uninterrupted one exactly. DDP: under ``torchrun --nproc-per-node N`` (or an initialised process group)
each rank takes its own samples, ``DistributedDataParallel`` all-reduces, rank 0 writes every file.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config_files import check_real, check_whole, config_from_dict, read_config_file
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
from .model import VideoDiffusion, VideoDiffusionConfig

Progress = Callable[[str, int, int], None]
CHECKPOINT, METRICS, MODEL = "checkpoint.pt", "metrics.jsonl", "video.safetensors"
AMP = ("auto", "bf16", "off")
CLIP_DOMAINS = ("real_proxy", "synthetic")  # served by facecore.video.ClipDataset
# Fields that may change between a run and its resumption (they do not change the result).
RESUMABLE = ("steps", "stop_after", "resume", "checkpoint_every", "log_every", "device", "out")


@dataclasses.dataclass
class VideoTrainConfig:
    """Everything :func:`train` reads (JSON/YAML loadable with :meth:`from_file`, except ``dataset``).

    Data: ``dataset`` (sample dicts, see the module docstring; not saved in config.json), or
    ``domains`` ``{name: ratio}`` with ``n`` clips per domain (None: fresh clips), ``data_seed``,
    ``rig`` (for synth presets), ``frames``, ``clip_options`` (keyword arguments of
    :class:`facecore.video.ClipDataset`, e.g. ``{"gap": 0.5}``); the clip side is the model's
    ``image_size``. ``model``: :class:`VideoDiffusionConfig` fields (``frames`` defaults to the clips'
    ``frames``). Optimisation: ``steps``, ``batch_size`` (per rank), ``lr``, ``weight_decay``,
    ``warmup_steps``, ``min_lr_ratio``, ``grad_clip``, ``ema_decay``, ``drop_reference`` /
    ``drop_motion`` (condition dropout for classifier-free guidance). Run: ``seed``, ``deterministic``,
    ``device``, ``amp`` (auto = bf16 autocast on CUDA), ``log_every``, ``checkpoint_every``,
    ``stop_after`` (end this run early with a checkpoint), ``resume``.
    """

    out: str = "video-run"
    dataset: Any = None
    domains: dict[str, float] = dataclasses.field(default_factory=lambda: {"clean": 1.0})
    n: int | None = None
    data_seed: int = 0
    rig: str = "ict"
    frames: int = 8
    clip_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    drop_reference: float = 0.1
    drop_motion: float = 0.1
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: str = "auto"
    log_every: int = 1
    checkpoint_every: int = 200
    stop_after: int | None = None
    resume: bool = True

    def __post_init__(self) -> None:
        def whole(name: str, lo: int, none_ok: bool = False) -> None:
            setattr(self, name, check_whole(f"VideoTrainConfig.{name}", getattr(self, name), lo, none_ok))

        def real(name: str, lo: float, hi: float = math.inf) -> None:
            setattr(self, name, check_real(f"VideoTrainConfig.{name}", getattr(self, name), lo, hi))

        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "frames"):
            whole(name, 1)
        for name in ("warmup_steps", "seed", "data_seed"):
            whole(name, 0)
        whole("n", 1, none_ok=True)
        whole("stop_after", 1, none_ok=True)
        real("lr", 0.0)
        real("weight_decay", 0.0)
        real("min_lr_ratio", 0.0, 1.0)
        real("grad_clip", 0.0)
        real("ema_decay", 0.0, 1.0)
        real("drop_reference", 0.0, 1.0)
        real("drop_motion", 0.0, 1.0)
        if self.amp not in AMP:
            raise ValueError(f"VideoTrainConfig.amp must be one of {', '.join(AMP)}, got {self.amp!r}")
        if not isinstance(self.model, Mapping):
            raise ValueError(f"VideoTrainConfig.model must be a dict of VideoDiffusionConfig fields, "
                             f"got {self.model!r}")
        self.model = dict(self.model)
        self.model.setdefault("frames", self.frames)  # the temporal bias covers the clips' length
        if not isinstance(self.clip_options, Mapping):
            raise ValueError(f"VideoTrainConfig.clip_options must be a dict of ClipDataset keyword "
                             f"arguments, got {self.clip_options!r}")
        self.clip_options = dict(self.clip_options)
        VideoDiffusionConfig.from_dict(self.model)  # a bad model config fails here, before any work
        if self.dataset is None:
            if not isinstance(self.domains, Mapping) or not self.domains:
                raise ValueError(f"VideoTrainConfig.domains must be a non-empty {{name: ratio}} mapping, "
                                 f"got {self.domains!r}")
            bad = {k: v for k, v in self.domains.items() if isinstance(v, bool)
                   or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0)}
            if bad or sum(self.domains.values()) <= 0:
                raise ValueError(f"VideoTrainConfig.domains: ratios must be non-negative numbers with a "
                                 f"positive sum, got {dict(self.domains)}")
            self.domains = {str(k): float(v) for k, v in self.domains.items()}
            from ..synth import PRESETS

            unknown = sorted(set(self.domains) - set(PRESETS) - set(CLIP_DOMAINS))
            if unknown:
                raise ValueError(f"VideoTrainConfig.domains: unknown domains {unknown}; expected synth "
                                 f"presets {list(PRESETS)} or ClipDataset domains {list(CLIP_DOMAINS)}")
        elif isinstance(self.dataset, (str, bytes, Mapping)) or not isinstance(self.dataset, Iterable):
            raise ValueError("VideoTrainConfig.dataset must be a sequence or iterable of sample dicts "
                             f"(or None for the domains mix), got {type(self.dataset).__name__}")
        self.out = os.fspath(self.out)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoTrainConfig:
        return config_from_dict(cls, d)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> VideoTrainConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` config; ``overrides`` replace its fields."""
        obj = read_config_file(path, "video train config", "VideoTrainConfig")
        if "dataset" in obj:
            from ..io.errors import FormatError

            raise FormatError("'dataset' cannot come from a file (it is a Python iterable); use "
                              "'domains' and 'n'", path=path)
        return cls.from_dict({**obj, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able fields; ``dataset`` is replaced by a description (its type and length)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "dataset"}
        d = json.loads(json.dumps(d))
        if self.dataset is not None:
            n = len(self.dataset) if isinstance(self.dataset, Sequence) or hasattr(self.dataset, "__len__") \
                else None
            d["dataset"] = {"type": type(self.dataset).__name__, "len": n}
        else:
            d["dataset"] = None
        return d


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------
def lr_factor(step: int, cfg: VideoTrainConfig) -> float:
    """Learning-rate multiplier at ``step``: linear warmup, then cosine from 1 to ``min_lr_ratio``."""
    return warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            flat = p.ndim < 2 or "rel_" in name or "null" in name
            (no_decay if flat else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint (``checkpoint.pt``) written by :func:`train` (``weights_only``)."""
    return read_checkpoint(path, "facecore.video.train", "facecore video training checkpoint")


# ---------------------------------------------------------------------------------------------------
# On-the-fly synthetic clips
# ---------------------------------------------------------------------------------------------------
def render_clip(domain: str, index: int, *, frames: int = 8, size: int = 32, seed: int = 0,
                rig: Any = "ict") -> dict[str, Any]:
    """Synthetic clip ``index`` of a :mod:`facecore.synth` scene preset, as a sample dict.

    Motion: ``sample_trajectory(frames, seed, index=index)`` under the preset's prior. Every frame and
    the reference are rendered as sample ``index`` of ``seed`` (one identity, appearance, camera,
    light, background and sensor draw for the clip); the reference's pose is an independent draw of
    the prior (a frame of the same person not in the clip). ``motion_maps`` are the driving parameters
    on the canonical avatar (:func:`facecore.video.data.motion_maps`, as :class:`ClipDataset` renders
    them, so a model trained on either reads the same maps), ``identity`` the sampled coefficients."""
    from .. import synth
    from .data import motion_maps

    sc = synth.load_preset(domain)
    traj = synth.sample_trajectory(frames, seed, index=index, prior=sc.prior)
    pose = synth.sample_params(1, seed_of(seed, 7, index) & (2**31 - 1), sc.prior)
    r = synth.resolve_rig(rig)
    rows = [synth.render_batch(p[None], r, sc, size, seed, index0=index) for p in torch.cat([traj, pose])]
    img = torch.cat([o["image"] for o in rows]).cpu().numpy()
    return {"frames": img[:-1], "reference": img[-1], "params": traj.numpy(),
            "motion_maps": np.asarray(motion_maps(traj, size), dtype=np.float32), "domain": domain,
            "identity": rows[0]["identity"][0].cpu().numpy(), "clip_id": f"{domain}-{seed}-{index}"}


class _MixSource:
    """Clips of the ``domains`` mix by global sample number (see the module docstring)."""

    def __init__(self, cfg: VideoTrainConfig, size: int):
        names = [k for k, v in cfg.domains.items() if v > 0]
        w = np.asarray([cfg.domains[k] for k in names], dtype=np.float64)
        self.names, self.cum = names, np.cumsum(w / w.sum())
        self.cfg, self.size = cfg, size
        self.cache: dict[tuple[str, int], dict[str, Any]] = {}
        self.clip_sets: dict[str, Any] = {}

    def _clip_set(self, name: str) -> Any:
        if name not in self.clip_sets:
            try:
                video = importlib.import_module("facecore.video")
                clip_dataset = video.ClipDataset
            except (ImportError, AttributeError):
                raise ValueError(f"domain {name!r} needs facecore.video.ClipDataset, which is not "
                                 "available in this installation; use synth presets instead") from None
            n = self.cfg.n or 1_000_000
            self.clip_sets[name] = clip_dataset(domain=name, n=n, frames=self.cfg.frames, size=self.size,
                                                seed=self.cfg.data_seed, **self.cfg.clip_options)
        return self.clip_sets[name]

    def get(self, g: int, step: int, rank: int, slot: int) -> dict[str, Any]:
        u = np.random.default_rng(seed_of(self.cfg.data_seed, 5, step, rank, slot)).random()
        name = self.names[min(int(np.searchsorted(self.cum, u, side="right")), len(self.names) - 1)]
        index = g % self.cfg.n if self.cfg.n else g
        key = (name, index)
        if key in self.cache:
            return self.cache[key]
        if name in CLIP_DOMAINS:
            s = self._clip_set(name)[index]
        else:
            s = render_clip(name, index, frames=self.cfg.frames, size=self.size, seed=self.cfg.data_seed,
                            rig=self.cfg.rig)
        if self.cfg.n and len(self.cache) < 4096:  # a finite set is rendered once
            self.cache[key] = s
        return s


class _Batches:
    """Per-rank batches of sample dicts: step ``s`` of rank ``r`` (of ``W``) takes global samples
    ``[(s W + r) B, (s W + r + 1) B)``."""

    def __init__(self, cfg: VideoTrainConfig, rank: int, world: int, size: int):
        self.cfg, self.rank, self.world, self.B = cfg, rank, world, cfg.batch_size
        ds = cfg.dataset
        self.seq = ds if ds is not None and hasattr(ds, "__len__") and hasattr(ds, "__getitem__") else None
        if self.seq is not None and len(self.seq) == 0:
            raise ValueError("VideoTrainConfig.dataset is empty")
        self.mix = _MixSource(cfg, size) if ds is None else None
        self.perms: dict[int, np.ndarray] = {}

    def _from_sequence(self, g: int) -> dict[str, Any]:
        n = len(self.seq)
        epoch, i = divmod(g, n)
        if epoch not in self.perms:
            self.perms = {epoch: np.random.default_rng(seed_of(self.cfg.data_seed, 6, epoch)).permutation(n)}
        return self.seq[int(self.perms[epoch][i])]

    def batches(self, start: int) -> Iterator[list[dict[str, Any]]]:
        if self.seq is None and self.mix is None:  # a plain iterable: every W-th sample, in order
            it = iter(self.cfg.dataset)
            try:
                for _ in range(start * self.B * self.world):  # what the interrupted run consumed
                    next(it)
                while True:
                    yield [next(it) for _ in range(self.B * self.world)][self.rank::self.world]
            except StopIteration:
                return  # the loop turns the end of the data into a clear error
        step = start
        while True:
            first = (step * self.world + self.rank) * self.B
            if self.seq is not None:
                yield [self._from_sequence(first + j) for j in range(self.B)]
            else:
                yield [self.mix.get(first + j, step, self.rank, j) for j in range(self.B)]
            step += 1


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------
def train(config: VideoTrainConfig | Mapping[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Train a :class:`VideoDiffusion` (see the module docstring). Returns ``{"model": the EMA model
    (eval mode, CPU), "step", "losses" (this run's per-step mean loss over ranks), "metrics" (the last
    logged row), "files", "rank", "world_size", "last_clip_ids" (this rank's last batch)}``."""
    cfg = config if isinstance(config, VideoTrainConfig) else VideoTrainConfig.from_dict(config)
    rank, world, started = dist_setup()
    try:
        return _train(cfg, rank, world, progress or (lambda stage, done, total: None))
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _comparable(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in RESUMABLE}


def _train(cfg: VideoTrainConfig, rank: int, world: int, progress: Progress) -> dict[str, Any]:
    device = choose_device(cfg.device, rank)
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    barrier(world)
    ckpt = None
    if ckpt_path.is_file():
        if not cfg.resume:
            raise ValueError(f"{out} already holds a training run ({CHECKPOINT}); pass resume=True to "
                             "continue it or choose another output folder")
        ckpt = load_checkpoint(ckpt_path)
        diff = sorted(k for k, v in _comparable(cfg.to_dict()).items()
                      if _comparable(ckpt["config"]).get(k, v) != v)
        if diff:
            raise ValueError(f"{out}: the checkpoint was trained with different settings "
                             f"({', '.join(diff)}); use the same settings to resume or another output folder")
        if ckpt["world_size"] != world:
            raise ValueError(f"{out}: the checkpoint was written by {ckpt['world_size']} processes, this run "
                             f"has {world}; resume with the same number (the data split depends on it)")
    if cfg.amp == "bf16" and device.type != "cuda":
        raise ValueError("amp='bf16' needs a CUDA device; use amp='auto' or 'off'")
    prev_det = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        return _loop(cfg, rank, world, device, out, ckpt, progress)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _loop(cfg: VideoTrainConfig, rank: int, world: int, device: torch.device, out: Path, ckpt: dict | None,
          progress: Progress) -> dict[str, Any]:
    torch.manual_seed(seed_of(cfg.seed, 0))  # the same init on every rank
    model = VideoDiffusion(cfg.model).to(device)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    start = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        ema.shadow = {k: v.to(device) for k, v in ckpt["ema"].items()}
        start = int(ckpt["step"])
        set_rng_state(ckpt["rng"][rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])
    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = device.type == "cuda" and cfg.amp in ("auto", "bf16")
    data = _Batches(cfg, rank, world, model.config.image_size)
    end = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
    metrics_path = out / METRICS
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
        if ckpt is None:
            metrics_path.unlink(missing_ok=True)
        elif metrics_path.is_file():  # drop rows logged after the checkpoint: they are logged again
            keep = [ln for ln in metrics_path.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start]
            metrics_path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

    def save_checkpoint(step: int) -> None:
        rng: Any = rng_state()
        if world > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        if rank == 0:
            atomic_save({"format": "facecore.video.train", "version": 1, "step": step,
                          "config": cfg.to_dict(), "world_size": world, "model": model.state_dict(),
                          "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "ema": ema.shadow,
                          "rng": rng}, out / CHECKPOINT)
        barrier(world)

    losses: list[float] = []
    last: dict[str, Any] = {}
    clip_ids: list[str] = []
    batches = data.batches(start)
    net.train()
    progress("train", start, cfg.steps)
    for step in range(start, end):
        t0 = time.perf_counter()
        try:
            samples = next(batches)
        except StopIteration:
            raise ValueError(f"VideoTrainConfig.dataset ran out of samples at step {step}; pass a sequence "
                             "(it is repeated in shuffled epochs) or a longer iterable") from None
        batch = model.batch(samples, device)
        g = torch.Generator().manual_seed(seed_of(cfg.seed, 2, step, rank))
        args, target = model.training_inputs(batch, g, cfg.drop_reference, cfg.drop_motion)
        t1 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            pred = net(*args)
        loss = torch.nn.functional.mse_loss(pred.float(), target.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 \
            else torch.zeros(())
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        ema.update(model, step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        stats = all_mean(torch.stack([loss.detach(), gnorm.detach().to(loss.device)]).float(), world)
        stats = stats.tolist()
        losses.append(stats[0])
        clip_ids = [str(s.get("clip_id", "")) for s in samples]
        domains: dict[str, int] = {}
        for s in samples:
            domains[str(s.get("domain", "?"))] = domains.get(str(s.get("domain", "?")), 0) + 1
        last = {"step": step + 1, "loss": stats[0], "grad_norm": stats[1], "lr": lr, "data_s": t1 - t0,
                "step_s": t2 - t1, "samples": (step + 1) * cfg.batch_size * world, "domains": domains}
        if rank == 0 and ((step + 1) % cfg.log_every == 0 or step + 1 == end):
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(last) + "\n")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
            save_checkpoint(step + 1)
        progress("train", step + 1, cfg.steps)

    final = VideoDiffusion(model.config)
    final.load_state_dict({k: v.detach().cpu() for k, v in ema.shadow.items()})
    files = {"checkpoint": out / CHECKPOINT, "metrics": metrics_path, "config": out / "config.json"}
    if rank == 0 and end == cfg.steps:
        final.save(out / MODEL)
        files["model"] = out / MODEL
    barrier(world)
    return {"model": final.eval(), "step": end, "losses": losses, "metrics": last, "files": files,
            "rank": rank, "world_size": world, "last_clip_ids": clip_ids}
