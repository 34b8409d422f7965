"""Which synthetic clips to add to real training data: ``select(candidates, real_val, k, method)``.

Methods (each returns ``k`` indices into ``candidates``, best first):

* ``"domain"`` -- a real-vs-synthetic domain classifier: L2-regularised logistic regression on clip
  descriptors (``features``: a callable ``clips -> [N, F]``, e.g. ``FVDEncoder.features``; default
  :func:`clip_descriptor`: colour means / spreads / 8-bin histograms, spatial and temporal gradient
  energy, and a 4 x 4 thumbnail of the mean frame), trained with ``real_val`` as class 1 and the
  candidates as class 0; the candidates the classifier finds most real-like win.
* ``"gradient"`` -- gradient similarity to the real validation set: for each diffusion timestep t of
  ``timesteps``, ``grad_fn(sample, t) -> flat gradient`` of the model's loss; every gradient is
  normalised to unit length per timestep (loss scales differ by orders of magnitude across timesteps),
  the real set's mean direction per t is taken, and a candidate's score is its mean cosine to those
  directions over t. What t means (an integer step, a noise level) is up to ``grad_fn``.
* ``"coverage"`` -- motion coverage: k-centre greedy on ARKit trajectories (``params [T, 61]``
  resampled to 16 frames and flattened, Euclidean): the real clips are the initial centres and each
  step takes the candidate farthest from every centre so far -- the motions real data lacks.
* ``"random"`` -- a seeded random ``k`` (the baseline every selector is compared with).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Sequence

import numpy as np
import torch

METHODS = ("domain", "gradient", "coverage", "random")
DEFAULT_TIMESTEPS = (50, 250, 500, 750, 950)
_TRAJ_LEN = 16


def clip_descriptor(clips) -> np.ndarray:
    """``float64 [N, 54]`` handcrafted domain descriptors of uint8 clips (a list of ``[T, H, W, 3]``)."""
    rows = []
    for c in clips:
        x = np.asarray(c, np.float64) / 255.0  # [T, H, W, 3]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"clip_descriptor: clips must be [T, H, W, 3], got {list(x.shape)}")
        mean, std = x.mean((0, 1, 2)), x.std((0, 1, 2))
        hist = np.concatenate([np.histogram(x[..., ch], 8, (0.0, 1.0))[0] / x[..., ch].size
                               for ch in range(3)])
        gy = np.abs(np.diff(x, axis=1)).mean()
        gx = np.abs(np.diff(x, axis=2)).mean()
        gt = np.abs(np.diff(x, axis=0)).mean() if x.shape[0] > 1 else 0.0
        m = x.mean((0, 3))
        H, W = m.shape
        thumb = np.array([m[i * H // 4:(i + 1) * H // 4, j * W // 4:(j + 1) * W // 4].mean()
                          for i in range(4) for j in range(4)])
        rows.append(np.concatenate([mean, std, hist, [gy, gx, gt], thumb, [x.mean()]]))
    return np.stack(rows)


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 200) -> np.ndarray:
    """Weights ``[F + 1]`` of logistic regression on standardised features (LBFGS, float64)."""
    X = torch.as_tensor(x, dtype=torch.float64)
    Y = torch.as_tensor(y, dtype=torch.float64)
    w = torch.zeros(X.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    # class weights balance a small real set against many candidates
    pos = float(Y.mean())
    weight = torch.where(Y > 0, 0.5 / max(pos, 1e-9), 0.5 / max(1 - pos, 1e-9))
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = X @ w[:-1] + w[-1]
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, Y, weight=weight)
                + l2 * (w[:-1] ** 2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def domain_scores(candidates: Sequence[dict], real_val: Sequence[dict],
                  features: Callable | None = None) -> np.ndarray:
    """Per-candidate realness logits of the domain classifier (module docstring)."""
    feat = features or clip_descriptor
    fc = np.asarray(feat([c["frames"] for c in candidates]), np.float64)
    fr = np.asarray(feat([c["frames"] for c in real_val]), np.float64)
    allf = np.concatenate([fr, fc])
    mu, sd = allf.mean(0), allf.std(0) + 1e-8
    z = (allf - mu) / sd
    y = np.concatenate([np.ones(len(fr)), np.zeros(len(fc))])
    w = _logistic(z, y)
    return ((fc - mu) / sd) @ w[:-1] + w[-1]


def _flat(g) -> torch.Tensor:
    g = g.detach() if isinstance(g, torch.Tensor) else torch.as_tensor(np.asarray(g))
    g = g.to(torch.float64).reshape(-1)
    if not bool(torch.isfinite(g).all()):
        raise ValueError("grad_fn returned a gradient with NaN or infinite values")
    return g


def gradient_scores(candidates: Sequence[dict], real_val: Sequence[dict], grad_fn: Callable,
                    timesteps: Sequence = DEFAULT_TIMESTEPS) -> np.ndarray:
    """Per-candidate mean cosine (over ``timesteps``) between its unit loss gradient and the real set's
    mean unit gradient at the same timestep (module docstring)."""
    if grad_fn is None or not callable(grad_fn):
        raise ValueError("select(method='gradient') needs grad_fn(sample, t) -> flat gradient")
    if len(timesteps) == 0:
        raise ValueError("timesteps must hold at least one timestep")
    scores = np.zeros(len(candidates))
    for t in timesteps:
        unit = []
        for s in real_val:
            g = _flat(grad_fn(s, t))
            unit.append(g / g.norm().clamp_min(1e-30))
        direction = torch.stack(unit).mean(0)
        direction = direction / direction.norm().clamp_min(1e-30)
        for i, c in enumerate(candidates):
            g = _flat(grad_fn(c, t))
            if g.shape != direction.shape:
                raise ValueError(f"grad_fn returned {g.numel()} values for a candidate but "
                                 f"{direction.numel()} for the real set")
            scores[i] += float(g @ direction / g.norm().clamp_min(1e-30))
    return scores / len(timesteps)


def trajectory_features(samples: Sequence[dict]) -> np.ndarray:
    """``float64 [N, 16 * 61]``: each ``params [T, 61]`` linearly resampled to 16 frames, flattened."""
    out = []
    for s in samples:
        p = np.asarray(s["params"], np.float64)
        if p.ndim != 2 or p.shape[1] != 61 or len(p) == 0:
            raise ValueError(f"params must be [T >= 1, 61], got {list(p.shape)}")
        src = np.linspace(0, 1, len(p))
        dst = np.linspace(0, 1, _TRAJ_LEN)
        out.append(np.stack([np.interp(dst, src, p[:, c]) for c in range(61)], 1).reshape(-1))
    return np.stack(out) if out else np.zeros((0, _TRAJ_LEN * 61))


def k_center_greedy(points: np.ndarray, k: int, centres: np.ndarray | None = None) -> list[int]:
    """Greedy k-centre: ``k`` rows of ``points`` each farthest from all centres so far (``centres``
    first; without them the first pick is the point farthest from the mean). Ties take the lower index."""
    points = np.asarray(points, np.float64)
    if centres is None or len(centres) == 0:
        d = np.linalg.norm(points - points.mean(0), axis=1)
        first = int(np.argmax(d))
        picks = [first]
        dmin = np.linalg.norm(points - points[first], axis=1)
    else:
        picks = []
        dmin = np.min(np.linalg.norm(points[:, None] - np.asarray(centres, np.float64)[None], axis=2), axis=1)
    while len(picks) < k:
        d = dmin.copy()
        d[picks] = -np.inf
        j = int(np.argmax(d))
        picks.append(j)
        dmin = np.minimum(dmin, np.linalg.norm(points - points[j], axis=1))
    return picks


def select(candidates: Sequence[dict], real_val: Sequence[dict], k: int, method: str = "domain", *,
           seed: int = 0, grad_fn: Callable | None = None, timesteps: Sequence = DEFAULT_TIMESTEPS,
           features: Callable | None = None, return_scores: bool = False):
    """``k`` indices into ``candidates`` (sample dicts with ``frames`` and ``params``), best first, by
    ``method`` (module docstring). ``real_val``: real (or real-proxy) validation sample dicts.
    ``return_scores=True`` also returns the per-candidate scores (higher is better; for ``coverage`` the
    distance to the nearest earlier centre when picked, -inf for the rest; for ``random`` zeros)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    candidates, real_val = list(candidates), list(real_val)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(candidates):
        raise ValueError(f"k must be an int in [0, {len(candidates)}] (the number of candidates), got {k!r}")
    if method != "random" and method != "coverage" and not real_val:
        raise ValueError(f"select(method={method!r}) needs a non-empty real_val")
    k = int(k)
    if method == "random":
        order = np.random.Generator(np.random.PCG64(seed)).permutation(len(candidates))[:k]
        picks, scores = [int(i) for i in order], np.zeros(len(candidates))
    elif method == "coverage":
        pts = trajectory_features(candidates)
        picks = k_center_greedy(pts, k, trajectory_features(real_val) if real_val else None)
        scores = np.full(len(candidates), -np.inf)
        centres = trajectory_features(real_val) if real_val else np.zeros((0, pts.shape[1]))
        for j in picks:
            scores[j] = float(np.min(np.linalg.norm(centres - pts[j], axis=1))) if len(centres) else np.inf
            centres = np.concatenate([centres, pts[j:j + 1]])
    else:
        scores = (domain_scores(candidates, real_val, features) if method == "domain"
                  else gradient_scores(candidates, real_val, grad_fn, timesteps))
        picks = [int(i) for i in np.argsort(-scores, kind="stable")[:k]]
    return (picks, scores) if return_scores else picks


class _CallableModule(types.ModuleType):
    """Importing this module binds it on the package as ``facecore.video.select``, shadowing the function
    the package exports under that name; calling the module calls :func:`select`, so
    ``facecore.video.select(...)`` works whichever of the two the attribute holds."""

    def __call__(self, *args, **kwargs):
        return select(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
