"""Evaluating the face-reading models on synthetic splits (``facecore semantic eval``).

:func:`evaluate` renders ``n`` faces per split (:data:`facecore.semantic.data.SPLITS`: seen identities,
held-out identities, the other rig, the ``toon`` domain) and measures, with 95 % intervals
(mean ± 1.96 standard errors over the faces):

* ``mae`` (all 61 channels), ``mae_blendshapes``, ``mae_pose``, ``mae_<region>`` (:data:`REGIONS`);
* ``parse_rate``: answers that ``facecore.io.parse_semanticface`` reads (strict for T1: four sections
  and 61 channels; T0 writes no analysis, so channels only); 1.0 for R (no text);
* ``category_acc`` / ``symmetry_acc``: the written analysis against ``describe(truth)`` (T1), and
  ``category_acc_coeffs`` / ``symmetry_acc_coeffs``: ``describe(prediction)`` against ``describe(truth)``
  (every variant: what the coefficients alone imply);
* ``self_consistency`` (T1): the written category and symmetry agree with ``describe(prediction)``;
* ``vertex_error``: mean distance (rig units, cm) between the meshes deformed by the prediction and by the
  truth, with the sample's identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import arkit
from . import data as sd

REGIONS = {
    "brows": arkit.GROUP_INDICES["brows"], "eyes": arkit.GROUP_INDICES["eyes"],
    "cheeks_nose": np.sort(np.concatenate([arkit.GROUP_INDICES["cheeks"], arkit.GROUP_INDICES["nose"]])),
    "mouth": arkit.GROUP_INDICES["mouth"], "jaw": arkit.GROUP_INDICES["jaw"],
    "tongue": arkit.GROUP_INDICES["tongue"], "head_pose": arkit.GROUP_INDICES["head_pose"],
    "eye_pose": arkit.GROUP_INDICES["eye_pose"],
}


def _interval(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "ci95": float(half)}


def _vertex_error(pred: np.ndarray, truth: torch.Tensor, identity: torch.Tensor, rig_name: str) -> np.ndarray:
    from ..synth import deform_batch, resolve_rig

    rig = resolve_rig(rig_name)
    ident = identity if identity.shape[1] else None
    with torch.no_grad():
        a = deform_batch(torch.as_tensor(pred, dtype=torch.float32, device=rig.device), rig, ident)
        b = deform_batch(truth.to(rig.device), rig, ident)
    return (a - b).norm(dim=-1).mean(-1).cpu().numpy()


def evaluate_split(model, spec: sd.RenderSpec, n: int = 64, batch: int = 16,
                   max_analysis_tokens: int = 512, per_face: bool = False) -> dict[str, Any]:
    """The metrics of ``model`` (:func:`facecore.semantic.load`'s object) on ``n`` faces of ``spec``;
    with ``per_face`` also ``"per_face": {metric: [value per face]}`` (for paired comparisons: every
    model sees the same faces of a spec)."""
    from ..io.semanticface import parse_semanticface
    from .describe import describe

    rows: dict[str, list[float]] = {}

    def add(k: str, v: Any) -> None:
        rows.setdefault(k, []).extend(np.atleast_1d(np.asarray(v, dtype=np.float64)).tolist())

    strict = model.variant == "T1"
    for start in range(0, n, batch):
        b = sd.render(spec, start, min(batch, n - start))
        truth = b["params"].clamp(torch.tensor(arkit.LOW), torch.tensor(arkit.HIGH))
        if model.variant in sd.REGRESSION_VARIANTS:
            preds = np.stack([p for _, p in model.predict(b["image"])])
            texts = [None] * len(preds)
        else:
            decoded = model.generate(b["image"], max_analysis_tokens=max_analysis_tokens)
            preds, texts = np.stack([d.params for d in decoded]), [d.text for d in decoded]
        err = np.abs(preds - truth.numpy())
        add("mae", err.mean(1))
        add("mae_blendshapes", err[:, : arkit.NUM_BLENDSHAPES].mean(1))
        add("mae_pose", err[:, arkit.NUM_BLENDSHAPES:].mean(1))
        for r, idx in REGIONS.items():
            add(f"mae_{r}", err[:, idx].mean(1))
        add("vertex_error", _vertex_error(preds, b["params"], b["identity"], spec.rig))
        for pred, t, text in zip(preds, truth.numpy(), texts):
            want, got = describe(t), describe(pred)
            add("category_acc_coeffs", got["expression_category"] == want["expression_category"])
            add("symmetry_acc_coeffs", got["symmetry"] == want["symmetry"])
            if text is None:
                add("parse_rate", 1.0)
                continue
            try:
                written, _ = parse_semanticface(text, strict=strict)
                ok = True
            except (ValueError, TypeError):
                written, ok = {}, False
            add("parse_rate", ok)
            if model.variant == "T1":
                cat, sym = written.get("expression_category"), written.get("symmetry")
                add("category_acc", cat == want["expression_category"])
                add("symmetry_acc", sym == want["symmetry"])
                add("self_consistency", (cat == got["expression_category"]) and (sym == got["symmetry"]))
    out = {k: _interval(v) for k, v in rows.items()} | {"n": n}
    return out | {"per_face": rows} if per_face else out


def evaluate(model, spec: sd.RenderSpec | None = None, *, n: int = 64, splits: Sequence[str] = sd.SPLITS,
             batch: int = 16, max_analysis_tokens: int = 512,
             per_face: bool = False) -> dict[str, dict[str, Any]]:
    """``{split: metrics}`` (see the module docstring) for the training spec ``spec`` (default: the
    defaults of :class:`facecore.semantic.data.RenderSpec`)."""
    spec = spec or sd.RenderSpec()
    return {s: evaluate_split(model, sd.split_spec(spec, s), n, batch, max_analysis_tokens, per_face)
            for s in splits}


def format_table(results: dict[str, dict[str, dict[str, Any]]],
                 keys: Sequence[str] = ("mae", "mae_blendshapes", "mae_pose", "vertex_error", "parse_rate",
                                        "category_acc", "category_acc_coeffs", "symmetry_acc",
                                        "self_consistency")) -> str:
    """``{name: evaluate(...)}`` -> a Markdown table: one row per model and split, ``mean ± ci95``."""
    lines = ["| model | split | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, per_split in results.items():
        for split, m in per_split.items():
            cells = [f"{m[k]['mean']:.3f} ± {m[k]['ci95']:.3f}" if k in m else "–" for k in keys]
            lines.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
