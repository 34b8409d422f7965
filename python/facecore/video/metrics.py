"""Metrics of generated clips against held-out real-proxy truth (self-reenactment: the truth exists).

* :func:`l1`, :func:`psnr`, :func:`ssim` -- pixel metrics on uint8 sRGB frames. ``ssim`` follows
  scikit-image's ``structural_similarity`` defaults (7 x 7 uniform window, sample covariance, K1 0.01,
  K2 0.03, the mean over the window-valid interior, channels averaged), so the numbers match it.
* :func:`fvd_proxy` -- the Fréchet distance between Gaussian fits of clip features of
  :class:`FVDEncoder`, a small 3D-CNN trained by :func:`train_fvd_encoder` **only on real-proxy clips**
  and frozen before any study run. It is an FVD-*proxy*: its numbers are on their own scale and are never
  to be compared with I3D-based FVD.
* :func:`motion_error` -- ARKit MAE (61 channels) of a facecore :class:`facecore.estimator.Estimator`
  run on generated frames against the driving parameters; :func:`train_motion_estimator` trains a small
  one on real-proxy frames when no checkpoint is given.
* :func:`identity_similarity` -- cosine similarity in :class:`IdentityEncoder`, trained by
  :func:`train_identity_encoder` to regress the ICT rig's identity coefficients from rendered faces of
  random identities, expressions and scenes (so its features follow identity, not expression).
* :func:`warp_error` -- temporal consistency: frame t warped by the flow from t to t+1 against frame t+1
  (mean absolute error in uint8 levels). The flow is block matching (8 x 8 blocks by default, integer
  shifts within +-``radius`` px) on ``flow_from`` -- the truth clip or the driving render -- so a
  generated clip is judged against the motion it should have, and a static clip scores exactly 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FVDEncoder", "IdentityEncoder", "fvd_proxy", "frechet_distance", "identity_similarity", "l1",
    "motion_error", "psnr", "ssim", "train_fvd_encoder", "train_identity_encoder", "train_motion_estimator",
    "warp_error",
]


def _pair(a, b, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.as_tensor(np.asarray(a)).to(torch.float64)
    b = torch.as_tensor(np.asarray(b)).to(torch.float64)
    if a.shape != b.shape or a.dim() < 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"{what}: expected two images or clips of one shape [..., H, W, C] (C 1 or 3), "
                         f"got {list(a.shape)} and {list(b.shape)}")
    return a, b


def l1(a, b) -> float:
    """Mean absolute difference (uint8 levels when given uint8)."""
    a, b = _pair(a, b, "l1")
    return float((a - b).abs().mean())


def psnr(a, b, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of images ``[..., H, W, C]``: per image, then the mean over the
    leading dims; ``inf`` when every image is identical to its pair (any identical one makes it inf)."""
    a, b = _pair(a, b, "psnr")
    mse = (a - b).pow(2).reshape(-1, *a.shape[-3:]).mean((1, 2, 3))
    with np.errstate(divide="ignore"):
        vals = 10 * np.log10(data_range**2 / mse.numpy())
    return float(np.mean(vals))


def ssim(a, b, data_range: float = 255.0, win_size: int = 7) -> float:
    """Structural similarity (scikit-image's defaults, module docstring) of images ``[..., H, W, C]``;
    per image, then the mean over the leading dims. 1.0 for identical images."""
    a, b = _pair(a, b, "ssim")
    if min(a.shape[-3], a.shape[-2]) < win_size:
        raise ValueError(f"ssim: images must be at least {win_size} px per side, got {list(a.shape[-3:-1])}")
    C = a.shape[-1]
    x = a.reshape(-1, *a.shape[-3:]).permute(0, 3, 1, 2).reshape(-1, 1, *a.shape[-3:-1])
    y = b.reshape(-1, *b.shape[-3:]).permute(0, 3, 1, 2).reshape(-1, 1, *b.shape[-3:-1])

    def mean(z):  # the uniform filter on the interior, which is all skimage averages
        return F.avg_pool2d(z, win_size, stride=1)

    npix = win_size * win_size
    cov_norm = npix / (npix - 1)
    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    per_channel = s.mean((1, 2, 3)).reshape(-1, C)
    return float(per_channel.mean(1).mean())


# ---------------------------------------------------------------------------------------------
# Temporal consistency
# ---------------------------------------------------------------------------------------------
def block_flow(clip, block: int = 8, radius: int = 2) -> torch.Tensor:
    """Integer flow ``[T-1, H, W, 2]`` (dy, dx) from frame t to t+1 of ``clip [T, H, W, C]``: for each
    ``block`` x ``block`` block of frame t+1 the shift ``(dy, dx)`` in ``[-radius, radius]`` whose source
    pixels ``frame_t[y - dy, x - dx]`` match best (sum of absolute differences; ties keep the smaller
    shift). Channels may be colours or the driving render's maps."""
    x = torch.as_tensor(np.asarray(clip)).to(torch.float32)
    if x.dim() != 4 or x.shape[0] < 2:
        raise ValueError(f"block_flow: clip must be [T >= 2, H, W, C], got {list(x.shape)}")
    x = x.permute(0, 3, 1, 2)  # [T, C, H, W]
    T, C, H, W = x.shape
    src, dst = x[:-1], x[1:]
    pad = F.pad(src, (radius,) * 4, mode="replicate")
    shifts = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    shifts.sort(key=lambda s: (abs(s[0]) + abs(s[1]), s))  # zero shift first: it wins ties
    costs = []
    for dy, dx in shifts:
        moved = pad[:, :, radius - dy: radius - dy + H, radius - dx: radius - dx + W]
        sad = (moved - dst).abs().sum(1, keepdim=True)
        costs.append(F.avg_pool2d(sad, block, stride=block, ceil_mode=True))
    best = torch.stack(costs, 0).argmin(0)[:, 0]  # [T-1, h, w]; argmin returns the first minimum
    table = torch.tensor(shifts, dtype=torch.int64)
    flow = table[best]  # [T-1, h, w, 2]
    flow = flow.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :H, :W]
    return flow


def warp(frames, flow) -> torch.Tensor:
    """Frames ``[T-1, H, W, C]`` moved by integer ``flow [T-1, H, W, 2]``: ``out[y, x] = f[y - dy, x - dx]``
    (clamped at the border)."""
    f = torch.as_tensor(np.asarray(frames)).to(torch.float32)
    T, H, W, _ = f.shape
    ys = torch.arange(H).view(1, H, 1).expand(T, H, W)
    xs = torch.arange(W).view(1, 1, W).expand(T, H, W)
    sy = (ys - flow[..., 0]).clamp(0, H - 1)
    sx = (xs - flow[..., 1]).clamp(0, W - 1)
    t = torch.arange(T).view(T, 1, 1).expand(T, H, W)
    return f[t, sy, sx]


def warp_error(frames, flow_from=None, *, block: int = 8, radius: int = 2) -> float:
    """Mean ``|frame[t+1] - warp(frame[t])|`` (uint8 levels) of ``frames [T, H, W, 3]``, the flow from
    block matching on ``flow_from`` (same T, H, W: the truth clip or the driving maps; default the frames
    themselves). 0 for a static clip; 0.0 for a single frame."""
    f = torch.as_tensor(np.asarray(frames)).to(torch.float32)
    if f.dim() != 4:
        raise ValueError(f"warp_error: frames must be [T, H, W, C], got {list(f.shape)}")
    if f.shape[0] < 2:
        return 0.0
    ref = f if flow_from is None else torch.as_tensor(np.asarray(flow_from)).to(torch.float32)
    if ref.dim() != 4 or ref.shape[:3] != f.shape[:3]:
        raise ValueError(f"warp_error: flow_from must be [T={f.shape[0]}, H={f.shape[1]}, "
                         f"W={f.shape[2]}, C], got {list(ref.shape)}")
    flow = block_flow(ref, block, radius)
    return float((warp(f[:-1], flow) - f[1:]).abs().mean())


# ---------------------------------------------------------------------------------------------
# Learned judges: FVD-proxy 3D-CNN, identity encoder, motion estimator
# ---------------------------------------------------------------------------------------------
def _clips_tensor(clips) -> torch.Tensor:
    """uint8 clips (``[N, T, H, W, 3]`` array or a list of ``[T, H, W, 3]``) -> float ``[N, 3, T, H, W]``."""
    if isinstance(clips, (list, tuple)):
        if not clips:
            raise ValueError("expected at least one clip, got none")
        clips = np.stack([np.asarray(c) for c in clips])
    x = torch.as_tensor(np.asarray(clips))
    if x.dim() != 5 or x.shape[-1] != 3:
        raise ValueError(f"clips must be [N, T, H, W, 3], got {list(x.shape)}")
    return (x.to(torch.float32) / 127.5 - 1.0).permute(0, 4, 1, 2, 3).contiguous()


def _images_tensor(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images))
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() < 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [..., H, W, 3], got {list(x.shape)}")
    x = x.reshape(-1, *x.shape[-3:])
    return (x.to(torch.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


class _Saveable(nn.Module):
    """save/load of a small judge: weights plus its constructor arguments in safetensors metadata."""

    def _config(self) -> dict:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        import json

        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {"config": json.dumps(self._config()), "kind": type(self).__name__}
        save_file(state, str(tmp), metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike):
        import json

        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{cls.__name__}.load: no such file: {path}")
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("kind") != cls.__name__:
            from ..io.errors import FormatError

            raise FormatError(f"not a {cls.__name__} file (kind {meta.get('kind')!r})", path=path)
        model = cls(**json.loads(meta["config"]))
        model.load_state_dict(load_file(str(path)))
        return model.eval()


class FVDEncoder(_Saveable):
    """A small 3D-CNN over clips ``[N, 3, T, H, W]`` (values in [-1, 1]) -> features ``[N, width * 4]``.
    Trained (:func:`train_fvd_encoder`) to regress a clip's mean ARKit parameters and its motion energy
    (mean |frame-to-frame change| per channel) and to tell a clip from its time-shuffled copy, so its
    features see appearance, expression and temporal order."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.width = int(width)
        w = self.width
        self.body = nn.Sequential(
            nn.Conv3d(3, w, 3, stride=(1, 2, 2), padding=1), nn.GroupNorm(4, w), nn.SiLU(),
            nn.Conv3d(w, 2 * w, 3, stride=(1, 2, 2), padding=1), nn.GroupNorm(4, 2 * w), nn.SiLU(),
            nn.Conv3d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GroupNorm(4, 4 * w), nn.SiLU(),
            nn.Conv3d(4 * w, 4 * w, 3, stride=1, padding=1),
        )
        self.head = nn.Linear(4 * w, 61 + 61 + 1)

    def _config(self) -> dict:
        return {"width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3, 4))

    @torch.no_grad()
    def features(self, clips, batch_size: int = 16) -> np.ndarray:
        """float64 ``[N, F]`` features of uint8 clips ``[N, T, H, W, 3]``."""
        x = _clips_tensor(clips)
        self.eval()
        return torch.cat([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).double().numpy()


class IdentityEncoder(_Saveable):
    """A small 2D CNN over images ``[N, 3, H, W]`` (values in [-1, 1]) -> ``dim`` identity coefficients
    (the embedding: trained to regress them, so cosine similarity compares identities)."""

    def __init__(self, dim: int = 20, width: int = 16):
        super().__init__()
        self.dim, self.width = int(dim), int(width)
        w = self.width
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.GroupNorm(4, w), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GroupNorm(4, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GroupNorm(4, 4 * w), nn.SiLU(),
            nn.Conv2d(4 * w, 4 * w, 3, stride=1, padding=1), nn.SiLU(),
        )
        self.head = nn.Linear(4 * w, self.dim)

    def _config(self) -> dict:
        return {"dim": self.dim, "width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))

    @torch.no_grad()
    def embed(self, images, batch_size: int = 64) -> torch.Tensor:
        """float32 ``[N, dim]`` embeddings of uint8 images ``[..., H, W, 3]`` (leading dims flattened)."""
        x = _images_tensor(images)
        self.eval()
        return torch.cat([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _shuffle_time(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``x [N, 3, T, H, W]`` with each clip's frames in a random order that is not the identity."""
    T = x.shape[2]
    out = x.clone()
    for i in range(x.shape[0]):
        perm = torch.randperm(T, generator=g)
        if T > 1 and bool((perm == torch.arange(T)).all()):
            perm = perm.roll(1)
        out[i] = x[i][:, perm]
    return out


def train_fvd_encoder(clips: Iterable[dict], *, steps: int = 200, batch_size: int = 8, lr: float = 2e-3,
                      width: int = 16, seed: int = 0, out: str | os.PathLike | None = None) -> FVDEncoder:
    """Train :class:`FVDEncoder` on real-proxy sample dicts (``frames``, ``params``; a sample of another
    domain is an error: the FVD-proxy's features must never see synthetic clips), return it frozen (eval,
    no gradients) and save it to ``out`` when given."""
    clips = list(clips)
    if not clips:
        raise ValueError("train_fvd_encoder: clips is empty")
    bad = [c.get("domain") for c in clips if c.get("domain") not in ("real_proxy", "real")]
    if bad:
        raise ValueError(f"train_fvd_encoder: the FVD-proxy encoder trains on real-proxy (or real) clips "
                         f"only, got domain {bad[0]!r}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = _clips_tensor([c["frames"] for c in clips])
    p = torch.as_tensor(np.stack([c["params"] for c in clips]), dtype=torch.float32)
    target = torch.cat([p.mean(1), (p[:, 1:] - p[:, :-1]).abs().mean(1) * 10.0], 1)
    model = FVDEncoder(width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(int(steps)):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=g)
        xb, tb = x[idx], target[idx]
        shuffled = _shuffle_time(xb, g)
        out_real = model.head(model(xb))
        out_shuf = model.head(model(shuffled))
        loss = F.mse_loss(out_real[:, :122], tb)
        logits = torch.cat([out_real[:, 122], out_shuf[:, 122]])
        labels = torch.cat([torch.ones(len(xb)), torch.zeros(len(xb))])
        loss = loss + F.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    if out is not None:
        model.save(out)
    return model


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of feature sets ``a [N, F]`` and ``b [M, F]``:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)`` through symmetric eigen-decompositions
    (stable for the singular covariances of small sets; exactly 0 for identical sets up to rounding)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: expected feature sets [N >= 2, F] of one width, got "
                         f"{list(a.shape)} and {list(b.shape)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ sb @ root
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * cross)
    return max(d, 0.0)


def fvd_proxy(real_clips, generated_clips, encoder: FVDEncoder | str | os.PathLike) -> float:
    """FVD-proxy (module docstring) between two sets of uint8 clips ``[N, T, H, W, 3]`` (N >= 2 each) in
    the features of a frozen :class:`FVDEncoder` (or the path of a saved one)."""
    if not isinstance(encoder, FVDEncoder):
        encoder = FVDEncoder.load(encoder)
    return frechet_distance(encoder.features(real_clips), encoder.features(generated_clips))


def train_identity_encoder(n: int = 512, size: int = 32, *, steps: int = 300, batch_size: int = 32,
                           lr: float = 2e-3, width: int = 16, seed: int = 0, rig: str = "ict",
                           scenes: Sequence[str] = ("wild", "studio"),
                           out: str | os.PathLike | None = None) -> IdentityEncoder:
    """Render ``n`` faces of ``rig`` (random identities, expressions from the ``expressive`` prior, the
    ``scenes`` in turn) at ``size`` and train :class:`IdentityEncoder` to regress their identity
    coefficients; return it frozen and save it to ``out`` when given."""
    from ..synth import render_batch, resolve_rig, sample_params

    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"train_identity_encoder: n must be an int >= 2, got {n!r}")
    r = resolve_rig(rig)
    if r.identity_basis is None:
        raise ValueError(f"train_identity_encoder: rig {rig!r} has no identity basis")
    images, ids = [], []
    per = math.ceil(n / len(scenes))
    for k, scene in enumerate(scenes):
        m = min(per, n - k * per)
        if m <= 0:
            break
        params = sample_params(m, seed * 8 + k, "expressive")
        o = render_batch(params, r, scene, size, seed * 8 + k)
        images.append(o["image"].cpu())
        ids.append(o["identity"].cpu())
    x = _images_tensor(torch.cat(images).numpy())
    y = torch.cat(ids).float()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = IdentityEncoder(y.shape[1], width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(int(steps)):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=g)
        loss = F.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    if out is not None:
        model.save(out)
    return model


def identity_similarity(frames, reference, encoder: IdentityEncoder | str | os.PathLike) -> float:
    """Mean cosine similarity between the :class:`IdentityEncoder` embedding of each generated frame
    (``[..., H, W, 3]`` uint8) and that of ``reference`` (one image ``[H, W, 3]``, or images of the same
    shape as ``frames``, compared pairwise)."""
    if not isinstance(encoder, IdentityEncoder):
        encoder = IdentityEncoder.load(encoder)
    e = encoder.embed(frames)
    r = encoder.embed(reference)
    if r.shape[0] == 1:
        r = r.expand_as(e)
    if r.shape != e.shape:
        raise ValueError(f"identity_similarity: reference must be one image or as many as frames "
                         f"({e.shape[0]}), got {r.shape[0]}")
    return float(F.cosine_similarity(e, r, dim=1).mean())


def _load_estimator(estimator):
    from ..estimator import Estimator

    if isinstance(estimator, Estimator):
        return estimator
    if isinstance(estimator, (str, os.PathLike)):
        return Estimator.load(estimator)
    raise TypeError(f"estimator must be a facecore Estimator or a checkpoint path, "
                    f"got {type(estimator).__name__}")


def motion_error(frames, params, estimator) -> float:
    """ARKit MAE (mean over the 61 channels and the frames) of ``estimator`` (a facecore
    :class:`~facecore.estimator.Estimator` or its checkpoint path) run on uint8 ``frames [..., H, W, 3]``
    (the whole frame is the face crop) against the driving ``params [..., 61]``."""
    est = _load_estimator(estimator)
    imgs = np.asarray(frames).reshape(-1, *np.asarray(frames).shape[-3:])
    p = np.asarray(params, np.float32).reshape(-1, 61)
    if len(imgs) != len(p):
        raise ValueError(f"motion_error: {len(imgs)} frames but {len(p)} parameter rows")
    pred = est.predict(imgs, assume_cropped=True)
    return float(np.abs(pred - p).mean())


def train_motion_estimator(clips: Iterable[dict], *, steps: int = 300, batch_size: int = 32, lr: float = 2e-3,
                           seed: int = 0, image_size: int | None = None, channels=(16, 16, 32, 32),
                           dim: int = 32, depth: int = 1, out: str | os.PathLike | None = None):
    """A small facecore :class:`~facecore.estimator.Estimator` (``image_size`` default: the clips' side
    rounded up to a multiple of 16; ``channels``, ``dim``, ``depth`` its shape) trained with L1 (the
    metric is an MAE) on the per-frame truth of real-proxy sample dicts (``frames [T, H, W, 3]``,
    ``params [T, 61]``; any T, so a batch of stills is one dict); frozen, saved to ``out`` when given.
    The study's motion judge when no estimator checkpoint is configured. At 32 px and a CPU budget of a
    few hundred steps it barely beats a constant prediction (docs/video.md): give the study a real
    checkpoint (``estimator:``) for motion numbers that mean something."""
    from ..estimator import Estimator

    clips = list(clips)
    if not clips:
        raise ValueError("train_motion_estimator: clips is empty")
    imgs = torch.as_tensor(np.concatenate([c["frames"] for c in clips]))
    y = torch.as_tensor(np.concatenate([c["params"] for c in clips]), dtype=torch.float32)
    S = int(image_size) if image_size else int(math.ceil(imgs.shape[1] / 16) * 16)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    est = Estimator(image_size=S, channels=tuple(channels), dim=dim, depth=depth, heads=2, groups=8)
    x = imgs.permute(0, 3, 1, 2).float()
    if x.shape[-1] != S:  # as Estimator.predict resizes a whole-image crop
        x = F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False)
    x = est.normalize(x.permute(0, 2, 3, 1) / 255.0)
    opt = torch.optim.AdamW(est.parameters(), lr=lr, weight_decay=1e-4)
    est.train()
    for _ in range(int(steps)):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=g)
        mean, _ = est(x[idx])
        loss = F.l1_loss(mean, y[idx])  # the metric is an MAE
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    est.eval().requires_grad_(False)
    if out is not None:
        est.save(out)
    return est
