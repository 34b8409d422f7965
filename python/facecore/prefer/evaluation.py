"""Measuring a round on held-out truth: per-region MAE, dead-channel AUC, calibration, and win rates.

* :func:`policy_metrics`: :func:`facecore.estimator.evaluate` of the policy's mean predictions
  (``mae_<region>`` for the estimator's regions, ``mae_upper`` / ``mae_lower`` for the judged regions,
  ``auc_TongueOut`` / ``auc_CheekPuff``, ``calibration_slope``, ``vertex_error_mm``).
* :func:`win_rate`: how often the EVALUATION pool (simulated, disjoint from the training pool) prefers a
  round's prediction over round 0's on the same held-out image, per region; a tie counts half;
  :func:`wilson` gives the 95 % interval.
"""

from __future__ import annotations

import math

import numpy as np

from .regions import REGION_CHANNELS

KEYS = ("mae_blendshapes", "mae_pose", "mae_upper", "mae_lower", "mae_brows", "mae_eyes", "mae_cheeks_nose",
        "mae_mouth", "mae_jaw", "mae_tongue", "auc_TongueOut", "auc_CheekPuff", "calibration_slope",
        "vertex_error_mm")


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (``successes`` may be fractional: ties count half)."""
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= n:
        raise ValueError(f"wilson: successes must be in [0, n={n}], got {successes}")
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def policy_metrics(pred, eval_batch: dict) -> dict:
    """The metrics of :data:`KEYS` for predictions ``pred [N, 61]`` on ``eval_batch`` (from
    :func:`facecore.prefer.data.make_images`)."""
    from ..estimator import evaluate

    pred = np.asarray(pred, dtype=np.float64)
    res = evaluate(pred, eval_batch)
    err = np.abs(pred - np.asarray(eval_batch["params"], dtype=np.float64))
    res["mae_upper"] = float(err[:, REGION_CHANNELS["upper"]].mean())
    res["mae_lower"] = float(err[:, REGION_CHANNELS["lower"]].mean())
    return {k: float(res[k]) for k in KEYS if k in res}


def win_rate(avatar, pool, truth, pred, pred_ref, regions=("upper", "lower"), seed: int = 0) -> dict:
    """Per region ``{"win", "tie", "loss", "n", "rate", "lo", "hi"}``: ``pool`` judges ``pred`` (A) against
    ``pred_ref`` (B) on each image, sides shown at random."""
    from .judging import judge_in_process, score_candidates

    truth = np.asarray(truth, dtype=np.float32)
    cand = np.stack([np.asarray(pred, np.float32), np.asarray(pred_ref, np.float32)], 1)
    dist, expr = score_candidates(avatar, truth, cand, regions)
    N = truth.shape[0]
    pairs = np.stack([np.arange(N), np.zeros(N, np.int64), np.ones(N, np.int64)], 1)
    j = judge_in_process(pool, pairs, dist, expr, regions, np.random.default_rng([int(seed), 11]))
    out = {}
    for r_i, r in enumerate(regions):
        p = j.preference[j.region == r_i]
        win, tie = int((p == 1).sum()), int((p == 0.5).sum())
        n = int(p.size)
        score = win + 0.5 * tie
        lo, hi = wilson(score, n)
        out[r] = {"win": win, "tie": tie, "loss": n - win - tie, "n": n, "rate": score / n if n else math.nan,
                  "lo": lo, "hi": hi}
    return out
