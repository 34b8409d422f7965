"""Training data of the face-reading model: synthetic renders and, per variant, the answer it must write.

Images come from :func:`facecore.synth.render_batch` (parameters from :func:`facecore.synth.sample_params`).
Identities are drawn from a fixed pool (``identity_pool`` faces of seed ``identity_seed``): the
"seen identities" split renders new expressions on the same pool, "held-out identities" draws a pool
from another seed, "other rig" renders through the second built-in rig and "toon" uses the cartoon preset.

The answer (stage-1 targets, :mod:`facecore.semantic.describe`) is laid out in *pieces* that are
tokenized one by one and concatenated, so the token ids of a piece never depend on its neighbours and
constrained decoding can force the JSON skeleton with exactly the ids the model was trained on:

    T1: [analysis_text(describe(q)) + "\\n\\n"] + JSON pieces        T0: JSON pieces only
    JSON pieces: '{"EyeBlinkLeft": ', '0.3', ', "EyeLookDownLeft": ', '0.0', …, '-0.0', '}'

``q`` is the parameter vector rounded to one decimal (:func:`facecore.semantic.describe.quantize`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import torch

from .. import arkit

VARIANTS = ("R", "R+S", "T0", "T1")
REGRESSION_VARIANTS = ("R", "R+S")  # a coefficient head, no text
SPLITS = ("seen", "heldout", "other_rig", "toon")
PROMPT = "Analyse the face: expression category, muscle movements, emotional implication, symmetry; " \
         "then the 61 ARKit coefficients as JSON.\n"

# The JSON skeleton: KEY_PIECES[i] precedes value i, CLOSE ends the object.
KEY_PIECES = tuple(("{" if i == 0 else ", ") + json.dumps(n) + ": " for i, n in enumerate(arkit.NAMES))
CLOSE = "}"
ANALYSIS_END = "\n\n"


def value_strings(channel: int) -> tuple[str, ...]:
    """The values channel ``channel`` may take in an answer (one decimal, in range; ``-0.0`` for pose)."""
    from .tokenizer import BLENDSHAPE_VALUES, POSE_VALUES

    return BLENDSHAPE_VALUES if channel < arkit.NUM_BLENDSHAPES else POSE_VALUES


def format_value(v: float) -> str:
    return json.dumps(float(v))  # quantized values: "0.3", "-0.0", "1.0"


def answer_pieces(params: Any, variant: str) -> list[str]:
    """The answer of ``variant`` ("T0" or "T1") for one parameter vector, as pieces (see the module)."""
    from .describe import quantize

    if variant not in ("T0", "T1"):
        raise ValueError(f"variant must be 'T0' or 'T1' for a text answer, got {variant!r}")
    q = quantize(params)
    pieces = [analysis_target(q) + ANALYSIS_END] if variant == "T1" else []
    for i, k in enumerate(KEY_PIECES):
        pieces += [k, format_value(q[i])]
    return pieces + [CLOSE]


def analysis_target(params: Any) -> str:
    """The stage-1 analysis (numbered Markdown) of one parameter vector: what T1 writes before the JSON,
    and the text whose sentence embedding R+S aligns its image features with."""
    from .describe import analysis_text, describe, quantize

    return analysis_text(describe(quantize(params)))


class AnalysisEmbeddings:
    """R+S's targets: ``embeddings(params [B, 61]) -> [B, D]``, the sentence encoder's unit-norm embedding
    of each face's :func:`analysis_target`. Each text is encoded alone (no padding, so its embedding is a
    function of the text only and a resumed run sees the same bits), and texts seen before come from a
    bounded cache (a finite training set, ``n_samples``, is encoded once, in its first epoch)."""

    def __init__(self, encoder: Any, cache_size: int = 65536):
        from collections import OrderedDict

        self.encoder, self.cache_size = encoder, cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        texts = [analysis_target(p) for p in params]
        for t in dict.fromkeys(t for t in texts if t not in self._cache):
            self._cache[t] = self.encoder.encode([t])[0]
        out = torch.stack([self._cache[t] for t in texts])
        for t in texts:
            self._cache.move_to_end(t)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out


def answer(params: Any, variant: str = "T1") -> str:
    """The answer text ``variant`` writes for ``params`` (the pieces joined)."""
    return "".join(answer_pieces(params, variant))


def encode_pieces(tokenizer, pieces: list[str]) -> list[int]:
    ids: list[int] = []
    for p in pieces:
        ids += tokenizer.encode(p, add_special_tokens=False)
    return ids


def prompt_ids(tokenizer, n_image_tokens: int) -> list[int]:
    """``[<s>] + <image> x n + PROMPT``: the prefix every sequence starts with."""
    from .tokenizer import image_token_id

    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    text = tokenizer.encode(PROMPT, add_special_tokens=False)
    return bos + [image_token_id(tokenizer)] * n_image_tokens + text


def text_batch(tokenizer, params: torch.Tensor, variant: str, n_image_tokens: int,
               ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids [B, L]`` (right-padded with pad) and ``labels [B, L]`` (``ignore_index`` on the prompt
    and padding; the answer then ``</s>``): unshifted, label t is the token at t."""
    prefix = prompt_ids(tokenizer, n_image_tokens)
    rows = [encode_pieces(tokenizer, answer_pieces(p, variant)) + [tokenizer.eos_token_id] for p in params]
    L = len(prefix) + max(len(r) for r in rows)
    ids = torch.full((len(rows), L), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), L), ignore_index, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(prefix) + len(r)] = torch.tensor(prefix + r)
        labels[b, len(prefix): len(prefix) + len(r)] = torch.tensor(r)
    return ids, labels


@dataclasses.dataclass
class RenderSpec:
    """Where the faces come from (see the module docstring)."""

    rig: str = "ict"
    domain: str = "wild"
    resolution: int = 64
    data_seed: int = 0
    identity_pool: int = 16
    identity_seed: int = 0
    prior: str = "default"


def split_spec(spec: RenderSpec, split: str) -> RenderSpec:
    """The evaluation split ``split`` (:data:`SPLITS`) of the training spec."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    s = dataclasses.replace(spec, data_seed=spec.data_seed + 10_000)  # new expressions in every split
    if split == "heldout":
        s.identity_seed = spec.identity_seed + 10_000
    elif split == "other_rig":
        s.rig = "stylized" if spec.rig != "stylized" else "ict"
    elif split == "toon":
        s.domain = "toon"
    return s


def _identity_pool(spec: RenderSpec) -> torch.Tensor | None:
    from ..synth import num_identity, resolve_rig, sample_identity

    rig = resolve_rig(spec.rig)
    if not num_identity(rig):
        return None
    return sample_identity(rig, spec.identity_pool, spec.identity_seed)


def render(spec: RenderSpec, start: int, count: int) -> dict[str, torch.Tensor]:
    """Samples ``start … start + count - 1`` of ``spec``: ``{"image" uint8 [B, H, W, 3], "params" [B, 61],
    "identity" [B, I], "index" [B]}``; a pure function of ``(spec, index)``."""
    from ..synth import render_batch, sample_params

    params = sample_params(count, spec.data_seed, spec.prior, index0=start)
    pool = _identity_pool(spec)
    identity = None if pool is None else pool[torch.arange(start, start + count) % pool.shape[0]]
    out = render_batch(params, spec.rig, spec.domain, spec.resolution, spec.data_seed, index0=start,
                       identity=identity)
    return {"image": out["image"].cpu(), "params": out["params"].cpu(), "identity": out["identity"].cpu(),
            "index": torch.arange(start, start + count)}


def label_median(spec: RenderSpec, n: int = 2048) -> torch.Tensor:
    """The per-channel median ``[61]`` of the first ``n`` coefficient vectors of ``spec`` (clamped into
    the ranges; no image is rendered): the best image-blind answer under MAE, where R starts."""
    from ..synth import sample_params

    truth = sample_params(n, spec.data_seed, spec.prior)
    return truth.clamp(torch.tensor(arkit.LOW), torch.tensor(arkit.HIGH)).median(0).values


def tokenizer_corpus(n: int = 512, seed: int = 12345) -> list[str]:
    """The texts the tokenizer is trained on: T1 answers of ``n`` sampled parameter vectors plus the
    prompt (a seed of its own: the tokenizer never depends on the training data's seed)."""
    from ..synth import sample_params

    params = sample_params(n, seed).numpy()
    return [PROMPT] + [answer(p, "T1") for p in np.asarray(params)]
