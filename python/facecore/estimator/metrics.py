"""``evaluate``: an estimator's (or a labeler's) parameters against synthetic truth; ``format_table``.

Metrics (all computed over every sample of the dataset):

* ``mae_blendshapes``, ``mae_pose``: mean absolute error over the 52 blendshapes ([0, 1]) and the 9
  pose channels ([-1, 1] units of :mod:`facecore.pose`); ``mae_<region>`` per :data:`REGIONS`;
  ``mae_channel``: ``{name: MAE}`` for all 61 channels.
* ``auc_<name>`` for :data:`RARE_ACTIONS`: ROC-AUC of the predicted value as a detector of the action
  (truth > 0.3 is a positive), by the rank statistic (Mann-Whitney U, ties counted half). NaN when the
  dataset holds only positives or only negatives. A dead channel (constant output) scores 0.5.
* ``asymmetry_error``: mean over samples and bilateral pairs (:data:`facecore.estimator.pseudo.SIDE_PAIRS`
  blendshapes) of ``|(pred_L - pred_R) - (true_L - true_R)|``: how well one-sided actions survive.
* ``calibration_slope``: least-squares slope of predicted on true magnitude, pooled over the 52
  blendshapes after centring each channel (1 = right magnitudes, < 1 = under-reported, 0 = dead);
  ``calibration_slope_channel`` per channel (NaN for a channel whose truth is constant).
* ``vertex_error_mm``: mean distance between the deformed meshes of the predicted and the true
  parameters (the sample's identity when it has one for this rig), rig units converted to mm from
  ``rig.metadata["units"]`` (centimetres when absent).
* ``landmark_nme``: mean distance between the 68 landmarks projected with the sample's camera (the
  projection of :mod:`facecore.synth.landmarks`, exactly as the data engine labels them) from the
  predicted and the true parameters, over the inter-ocular distance (outer eye corners 36 and 45).

The vertex and landmark metrics need a rig: ``rig=`` or the built-in rig named by the samples' ``rig``
field; they are left out when neither is available.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from .. import arkit
from .pseudo import SIDE_PAIRS

__all__ = ["COLUMNS", "RARE_ACTIONS", "REGIONS", "auc", "evaluate", "format_table"]

REGIONS: dict[str, np.ndarray] = {
    "brows": arkit.GROUP_INDICES["brows"],
    "eyes": arkit.GROUP_INDICES["eyes"],
    "cheeks_nose": np.sort(np.concatenate([arkit.GROUP_INDICES["cheeks"], arkit.GROUP_INDICES["nose"]])),
    "mouth": arkit.GROUP_INDICES["mouth"],
    "jaw": arkit.GROUP_INDICES["jaw"],
    "tongue": arkit.GROUP_INDICES["tongue"],
    "pose": arkit.GROUP_INDICES["pose"],
}
"""Region -> channel indices (from :data:`facecore.arkit.GROUPS`; cheeks and nose together)."""

RARE_ACTIONS = ("TongueOut", "CheekPuff", "JawLeft", "JawRight")
POSITIVE_THRESHOLD = 0.3
_EYE_CORNERS = (36, 45)  # iBUG-68 outer eye corners
_UNITS_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}

COLUMNS: tuple[tuple[str, str], ...] = (
    ("mae_blendshapes", "MAE bs"), ("mae_pose", "MAE pose"), ("mae_brows", "brows"), ("mae_eyes", "eyes"),
    ("mae_cheeks_nose", "cheeks/nose"), ("mae_mouth", "mouth"), ("mae_jaw", "jaw"), ("mae_tongue", "tongue"),
    ("auc_TongueOut", "AUC tongue"), ("auc_CheekPuff", "AUC puff"), ("auc_JawLeft", "AUC jawL"),
    ("auc_JawRight", "AUC jawR"), ("asymmetry_error", "asym"), ("calibration_slope", "slope"),
    ("vertex_error_mm", "vertex mm"), ("landmark_nme", "NME"),
)
"""``format_table``'s columns: (result key, header), in order."""


# ---------------------------------------------------------------------------------------------
# Pure metrics on arrays
# ---------------------------------------------------------------------------------------------


def auc(scores, labels) -> float:
    """ROC-AUC of ``scores [N]`` for boolean ``labels [N]`` by the rank statistic (ties get average
    ranks, i.e. count half); NaN when only one class is present."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"auc: scores and labels must have the same length, got {s.size} and {y.size}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]  # 1-based average ranks
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _slope(pred: np.ndarray, true: np.ndarray) -> float:
    """Pooled least-squares slope of ``pred`` on ``true`` ([N, K], each column centred)."""
    t = true - true.mean(0)
    p = pred - pred.mean(0)
    den = float((t * t).sum())
    return float((t * p).sum() / den) if den > 1e-12 else math.nan


def parameter_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """The metrics that need only parameters ``[N, 61]`` (see the module docstring)."""
    err = np.abs(pred - true)
    out: dict[str, Any] = {"n": int(pred.shape[0]),
                           "mae_blendshapes": float(err[:, :arkit.NUM_BLENDSHAPES].mean()),
                           "mae_pose": float(err[:, arkit.NUM_BLENDSHAPES:].mean())}
    for region, idx in REGIONS.items():
        out[f"mae_{region}"] = float(err[:, idx].mean())
    for name in RARE_ACTIONS:
        i = arkit.INDEX[name]
        out[f"auc_{name}"] = auc(pred[:, i], true[:, i] > POSITIVE_THRESHOLD)
    bs_pairs = SIDE_PAIRS[SIDE_PAIRS[:, 0] < arkit.NUM_BLENDSHAPES]
    d_pred = pred[:, bs_pairs[:, 0]] - pred[:, bs_pairs[:, 1]]
    d_true = true[:, bs_pairs[:, 0]] - true[:, bs_pairs[:, 1]]
    out["asymmetry_error"] = float(np.abs(d_pred - d_true).mean())
    bs = slice(0, arkit.NUM_BLENDSHAPES)
    out["calibration_slope"] = _slope(pred[:, bs], true[:, bs])
    out["mae_channel"] = {n: float(v) for n, v in zip(arkit.NAMES, err.mean(0))}
    out["calibration_slope_channel"] = {n: _slope(pred[:, i:i + 1], true[:, i:i + 1])
                                        for i, n in enumerate(arkit.NAMES)}
    return out


# ---------------------------------------------------------------------------------------------
# Geometry: vertices and landmarks through the rig
# ---------------------------------------------------------------------------------------------


def posed_vertices(params: torch.Tensor, rig, identity: torch.Tensor | None = None) -> torch.Tensor:
    """Posed vertices ``[B, V, 3]``: with the sample's ``identity [B, I]`` when it fits the rig (the
    data engine's deformation), else ``rig.deform``."""
    from ..synth import deform_batch, num_identity

    if identity is not None and num_identity(rig) and identity.shape[1] == num_identity(rig):
        return deform_batch(params, rig, identity)
    return rig.deform(params)


def _clip_space(projection: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``[B, 4, 4] x [B, N, 3] -> [B, N, 4]``."""
    return torch.einsum("bij,bnj->bni", projection[..., :3], p) + projection[:, None, :, 3]


def geometry_errors(pred: torch.Tensor, true: torch.Tensor, rig, *, identity: torch.Tensor | None = None,
                    projection: torch.Tensor | None = None, resolution: tuple[int, int] | None = None
                    ) -> dict[str, torch.Tensor]:
    """Per-sample ``vertex`` error (rig units) and, with a camera, ``landmark`` NME ``[B]``."""
    from ..synth import landmark_indices
    from ..synth import project_landmarks as project

    dev, dt = rig.device, rig.dtype
    pred, true = pred.to(dev, dt), true.to(dev, dt)
    ident = None if identity is None else identity.to(dev, dt)
    with torch.no_grad():
        vp, vt = posed_vertices(pred, rig, ident), posed_vertices(true, rig, ident)
        out = {"vertex": (vp - vt).norm(dim=-1).mean(-1)}
        lm = landmark_indices(rig, required=False)
        if lm is not None and projection is not None and resolution is not None:
            P = projection.to(dev, dt)
            xy_p = project(_clip_space(P, vp[:, lm]), resolution)
            xy_t = project(_clip_space(P, vt[:, lm]), resolution)
            iod = (xy_t[:, _EYE_CORNERS[0]] - xy_t[:, _EYE_CORNERS[1]]).norm(dim=-1).clamp_min(1e-6)
            out["landmark"] = (xy_p - xy_t).norm(dim=-1).mean(-1) / iod
    return out


def _mm_per_unit(rig) -> float:
    units = str(rig.metadata.get("units", "cm")).lower()
    if units not in _UNITS_MM:
        raise ValueError(f"rig.metadata['units'] must be one of {', '.join(_UNITS_MM)}, got {units!r}")
    return _UNITS_MM[units]


# ---------------------------------------------------------------------------------------------
# Dataset plumbing
# ---------------------------------------------------------------------------------------------


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _batches(dataset, batch: int) -> Iterable[dict[str, Any]]:
    """Regroup single samples (``image [H, W, 3]``) or batches (``[B, H, W, 3]``) into batches of at
    most ``batch`` samples: ``image`` uint8 numpy, ``params`` float64, optional ``projection``,
    ``identity``, and ``rig`` (names)."""
    if isinstance(dataset, Mapping):
        dataset = [dataset]
    buf: dict[str, list] = {"image": [], "params": [], "projection": [], "identity": [], "rig": []}

    def flush():
        if not buf["image"]:
            return None
        out = {"image": np.concatenate(buf["image"]), "params": np.concatenate(buf["params"])}
        for k in ("projection", "identity"):
            if all(v is not None for v in buf[k]) and len({v.shape[1:] for v in buf[k]}) == 1:
                out[k] = np.concatenate(buf[k])
        out["rig"] = list(buf["rig"])
        for v in buf.values():
            v.clear()
        return out

    for i, sample in enumerate(dataset):
        if not isinstance(sample, Mapping) or "image" not in sample or "params" not in sample:
            raise ValueError(f"dataset item {i} must be a dict with 'image' and 'params' (a render_batch / "
                             f"facecore.synth.Dataset sample), got {type(sample).__name__}")
        img = _np(sample["image"])
        single = img.ndim == 3
        if single:
            img = img[None]
        if img.ndim != 4 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"dataset item {i}: image must be uint8 [H, W, 3] or [B, H, W, 3], got "
                             f"{img.dtype} {list(img.shape)}")
        B = img.shape[0]
        params = _np(sample["params"]).astype(np.float64).reshape(B, -1)
        if params.shape[1] != arkit.NUM_CHANNELS:
            raise ValueError(f"dataset item {i}: params must have 61 channels, got {params.shape[1]}")
        cam = sample.get("camera")
        proj = None if not isinstance(cam, Mapping) or cam.get("projection") is None else \
            _np(cam["projection"]).astype(np.float64).reshape(B, 4, 4)
        ident = sample.get("identity")
        ident = None if ident is None else _np(ident).astype(np.float64).reshape(B, -1)
        rig_name = sample.get("rig")
        if buf["image"] and buf["image"][0].shape[1:] != img.shape[1:]:
            yield flush()  # one image size per batch
        pos = 0
        while pos < B:
            take = min(B - pos, batch - sum(len(x) for x in buf["image"]))
            buf["image"].append(img[pos:pos + take])
            buf["params"].append(params[pos:pos + take])
            buf["projection"].append(None if proj is None else proj[pos:pos + take])
            buf["identity"].append(None if ident is None else ident[pos:pos + take])
            buf["rig"].extend([rig_name] * take)
            pos += take
            if sum(len(x) for x in buf["image"]) >= batch:
                yield flush()
    last = flush()
    if last is not None:
        yield last


def _predictor(model, predict_kwargs):
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise ValueError("model_or_predictions must have predict(uint8 images [B, H, W, 3]) -> [B, 61], "
                         f"or be an [N, 61] array of predictions; got {type(model).__name__}")
    if predict_kwargs is None:
        # Synthetic renders are framed faces: an Estimator reads them whole instead of detecting a face.
        try:
            accepts = "assume_cropped" in inspect.signature(predict).parameters
        except (TypeError, ValueError):
            accepts = False
        predict_kwargs = {"assume_cropped": True} if accepts else {}
    return lambda images: predict(images, **predict_kwargs)


def _resolve_rig(rig, names: list):
    if rig is not None:
        from ..synth import resolve_rig

        return resolve_rig(rig)
    named = {n for n in names if isinstance(n, str)}
    if len(named) == 1:
        from ..rig import BUILTIN_RIGS
        from ..synth import resolve_rig

        name = named.pop()
        if name in BUILTIN_RIGS:
            return resolve_rig(name)
    return None


def evaluate(model_or_predictions, dataset, *, rig=None, batch: int = 64,
             predict_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Metrics (module docstring) of an estimator, or of precomputed predictions, on ``dataset``.

    ``model_or_predictions``: anything with ``predict(uint8 images [B, H, W, 3]) -> [B, 61]`` (called
    with ``predict_kwargs``; by default ``assume_cropped=True`` when its ``predict`` takes that, as
    :class:`facecore.estimator.Estimator`'s does), or an ``[N, 61]`` array in dataset order.
    ``dataset``: a :class:`facecore.synth.Dataset`, a :func:`facecore.synth.render_batch` result, or an
    iterable of such dicts (``image`` uint8, ``params``; ``camera["projection"]`` and ``identity`` for
    the landmark metric and the sample's own face). ``rig``: a FaceRig or built-in name for the
    geometric metrics (default: the samples' ``rig``). Returns a flat dict of floats plus
    ``mae_channel`` / ``calibration_slope_channel`` dicts.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    given = None
    if isinstance(model_or_predictions, (np.ndarray, torch.Tensor, list, tuple)):
        given = _np(model_or_predictions).astype(np.float64)
        if given.ndim != 2 or given.shape[1] != arkit.NUM_CHANNELS:
            raise ValueError(f"predictions must have shape [N, 61], got {list(given.shape)}")
        predict = None
    else:
        predict = _predictor(model_or_predictions, predict_kwargs)

    preds, trues, vert, land = [], [], [], []
    the_rig, used = None, 0
    for b in _batches(dataset, batch):
        B = b["image"].shape[0]
        if given is not None:
            if used + B > given.shape[0]:
                raise ValueError(f"predictions has {given.shape[0]} rows but the dataset has more samples")
            p = given[used:used + B]
        else:
            p = _np(predict(b["image"])).astype(np.float64).reshape(B, -1)
            if p.shape != (B, arkit.NUM_CHANNELS):
                raise ValueError(f"model.predict returned shape {list(p.shape)} for {B} images; "
                                 f"expected [{B}, 61]")
        used += B
        if not np.isfinite(p).all():
            raise ValueError("predictions contain NaN or infinite values")
        preds.append(p)
        trues.append(b["params"])
        if the_rig is None:
            the_rig = _resolve_rig(rig, b["rig"])
        if the_rig is not None:
            proj = b.get("projection")
            ident = b.get("identity")
            g = geometry_errors(torch.from_numpy(p), torch.from_numpy(b["params"]), the_rig,
                                identity=None if ident is None else torch.from_numpy(ident),
                                projection=None if proj is None else torch.from_numpy(proj),
                                resolution=b["image"].shape[1:3])
            vert.append(g["vertex"].double().cpu().numpy())
            if "landmark" in g:
                land.append(g["landmark"].double().cpu().numpy())
    if used == 0:
        raise ValueError("dataset is empty")
    if given is not None and used != given.shape[0]:
        raise ValueError(f"predictions has {given.shape[0]} rows but the dataset has {used} samples")
    out = parameter_metrics(np.concatenate(preds), np.concatenate(trues))
    if the_rig is not None:
        out["vertex_error_mm"] = float(np.concatenate(vert).mean() * _mm_per_unit(the_rig))
        if land and sum(len(x) for x in land) == used:
            out["landmark_nme"] = float(np.concatenate(land).mean())
    return out


def format_table(results: Mapping[str, Mapping[str, Any]], columns=None) -> str:
    """A Markdown table: one row per method (``results``' keys), one column per metric of
    :data:`COLUMNS` that any row has (or ``columns``: ``(key, header)`` pairs). NaN/missing -> ``n/a``."""
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty dict {method: evaluate(...) result}")
    cols = list(COLUMNS if columns is None else columns)
    cols = [(k, h) for k, h in cols if any(k in r for r in results.values())]
    if not cols:
        raise ValueError("results: no row has any of the table's metrics")

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return str(int(v))
        return f"{float(v):.3f}"

    lines = ["| method | " + " | ".join(h for _, h in cols) + " |",
             "| --- | " + " | ".join("---:" for _ in cols) + " |"]
    for method, r in results.items():
        lines.append(f"| {method} | " + " | ".join(cell(r.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"
