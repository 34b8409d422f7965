"""A per-region Bradley-Terry reward model on (image features, parameters).

``r_region(x, a) = -sum_c w_rc (a_c - t_c(x))^2 + sum_c v_rc a_c`` (:class:`RewardModel`), where the
target ``t(x)`` is a small MLP on ``phi(x)`` (:func:`reward_features`: the frozen round-0 policy's
Gaussian ``(mu, log sigma)`` on the image plus an 8 x 8 grey thumbnail of the crop). It is fit to the
judgments of a round with
:func:`facecore.losses.bradley_terry_loss` (ties as 0.5 labels) and then relabels extra, unjudged pairs
(:meth:`RewardModel.prefer`), which is how it tempers the rounds: many soft labels that average out the
quirks of a few raters. Saved as one safetensors file with its config in the metadata.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import arkit
from ..training_utils import atomic_write, read_safetensors

FORMAT = "facecore.prefer.reward"
_META_KEY = "facecore_reward"
THUMB = 8


def reward_features(mean: torch.Tensor, log_std: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """``[N, 2 * 61 + 64]``: the frozen policy's ``mean``, ``log_std`` and a grey 8 x 8 thumbnail of
    ``crops [N, S, S, 3]`` (values in [0, 1])."""
    grey = crops.float().mean(-1, keepdim=True).permute(0, 3, 1, 2)
    thumb = F.adaptive_avg_pool2d(grey, THUMB).flatten(1)
    return torch.cat([mean.float(), log_std.float(), thumb], 1).detach()


class RewardModel(nn.Module):
    """Per-region rewards ``[N, R]`` of parameters ``[N, 61]`` given image features ``[N, F]``.

    The reward is a learned target with learned tolerances plus a linear term:
    ``r_region(x, a) = -sum_c w_rc (a_c - t_c(x))^2 + sum_c v_rc a_c`` over the region's channels, where
    ``t(x) = mu(x) + MLP(phi(x))`` (the frozen policy's mean corrected by a small MLP, zero at the start),
    ``w = softplus(.) > 0`` and ``v`` captures systematic pulls such as a taste for expressive faces. This
    shape (Bradley-Terry on a Gaussian-like target) generalises from a few thousand pairs where a plain
    MLP on ``[phi(x), a]`` memorises them (held-out accuracy 0.58 against 0.91 on the training pairs in
    the synthetic test).
    """

    def __init__(self, regions=("upper", "lower"), feature_dim: int = 2 * arkit.NUM_CHANNELS + THUMB * THUMB,
                 hidden: int = 64):
        from .regions import channel_mask

        super().__init__()
        self.regions = tuple(regions)
        if not self.regions:
            raise ValueError("RewardModel: regions must name at least one region")
        if feature_dim < arkit.NUM_CHANNELS or hidden < 1:
            raise ValueError(f"RewardModel: feature_dim must be >= 61 (it starts with the policy's mean) and "
                             f"hidden >= 1, got {feature_dim}, {hidden}")
        self.feature_dim, self.hidden = int(feature_dim), int(hidden)
        C = arkit.NUM_CHANNELS
        self.target = nn.Sequential(nn.Linear(feature_dim, hidden), nn.GELU(), nn.Linear(hidden, C))
        self.raw_tolerance = nn.Parameter(torch.zeros(len(self.regions), C))
        self.linear = nn.Parameter(torch.zeros(len(self.regions), C))
        self.register_buffer("mask", channel_mask(self.regions))
        self.register_buffer("feat_mean", torch.zeros(feature_dim))
        self.register_buffer("feat_std", torch.ones(feature_dim))
        self._zero_init()

    def _zero_init(self) -> None:
        for layer in self.target:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        with torch.no_grad():
            self.target[-1].weight.zero_()
            self.target[-1].bias.zero_()
            self.raw_tolerance.fill_(1.0)
            self.linear.zero_()

    def target_params(self, features: torch.Tensor) -> torch.Tensor:
        """The parameters the reward model thinks the image shows, ``[N, 61]``."""
        f = (features.float() - self.feat_mean) / self.feat_std
        return features[:, :arkit.NUM_CHANNELS].float() + self.target(f)

    def forward(self, features: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"RewardModel: features must be [N, {self.feature_dim}], "
                             f"got {list(features.shape)}")
        if params.dim() != 2 or params.shape != (features.shape[0], arkit.NUM_CHANNELS):
            raise ValueError(f"RewardModel: params must be [N={features.shape[0]}, 61], "
                             f"got {list(params.shape)}")
        p = params.float()
        sq = (p - self.target_params(features)) ** 2  # [N, C]
        w = F.softplus(self.raw_tolerance) * self.mask  # [R, C]
        return -(sq @ w.T) + p @ (self.linear * self.mask).T

    def fit(self, features, a, b, preference, *, steps: int = 300, lr: float = 3e-3, batch: int = 256,
            weight_decay: float = 1e-4, val_fraction: float = 0.2, seed: int = 0) -> dict:
        """Fit on judged pairs: ``features [M, F]``, candidates ``a``/``b`` ``[M, 61]``, ``preference
        [M, R]`` (1 A, 0 B, 0.5 tie, NaN unjudged). A ``val_fraction`` of the pairs is held out;
        returns ``{"loss", "val_accuracy", "val_accuracy_region": {region: acc}, "n_train", "n_val"}``
        (accuracy over decisive held-out answers)."""
        features, a, b = (torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in (features, a, b))
        pref = torch.as_tensor(np.asarray(preference, dtype=np.float64), dtype=torch.float32)
        M = features.shape[0]
        if pref.shape != (M, len(self.regions)):
            raise ValueError(f"RewardModel.fit: preference must be [M={M}, R={len(self.regions)}], got "
                             f"{list(pref.shape)}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"RewardModel.fit: val_fraction must be in [0, 1), got {val_fraction}")
        g = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(M, generator=g)
        n_val = int(round(val_fraction * M))
        val, train = perm[:n_val], perm[n_val:]
        if train.numel() == 0:
            raise ValueError("RewardModel.fit: no training pairs")
        with torch.no_grad():
            self.feat_mean.copy_(features[train].mean(0))
            self.feat_std.copy_(features[train].std(0).clamp_min(1e-3) if train.numel() > 1 else
                                torch.ones_like(self.feat_std))
        torch.manual_seed(int(seed))
        self._zero_init()
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        self.train()
        loss_v = float("nan")
        for _ in range(int(steps)):
            idx = train[torch.randint(0, train.numel(), (min(batch, train.numel()),), generator=g)]
            loss = self._loss(features[idx], a[idx], b[idx], pref[idx])
            if loss is None:
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_v = float(loss.detach())
        self.eval()
        out = {"loss": loss_v, "n_train": int(train.numel()), "n_val": int(n_val)}
        acc = self.accuracy(features[val], a[val], b[val], pref[val]) if n_val else {}
        out["val_accuracy"] = acc.get("all", float("nan"))
        out["val_accuracy_region"] = {r: acc.get(r, float("nan")) for r in self.regions}
        return out

    def _loss(self, f, a, b, pref):
        from ..losses import bradley_terry_loss

        ra, rb = self(f, a), self(f, b)
        rated = ~torch.isnan(pref)
        if not bool(rated.any()):
            return None
        loss, _ = bradley_terry_loss(ra[rated], rb[rated], labels=pref[rated])
        return loss

    @torch.no_grad()
    def prefer(self, features, a, b) -> np.ndarray:
        """``P(a preferred over b)`` per region ``[M, R]`` (``sigmoid(r(a) - r(b))``)."""
        f, a, b = (torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in (features, a, b))
        return torch.sigmoid(self(f, a) - self(f, b)).double().numpy()

    def accuracy(self, features, a, b, preference) -> dict:
        """Share of decisive answers (preference 0 or 1) that :meth:`prefer` ranks right: ``{"all": …,
        region: …}`` (NaN where none)."""
        p = self.prefer(features, a, b)
        y = np.asarray(preference, dtype=np.float64)
        decisive = (y == 0) | (y == 1)
        hit = (p > 0.5) == (y == 1)
        out = {"all": float(hit[decisive].mean()) if decisive.any() else float("nan")}
        for i, r in enumerate(self.regions):
            d = decisive[:, i]
            out[r] = float(hit[d, i].mean()) if d.any() else float("nan")
        return out

    # -- file format --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """One safetensors file, written atomically."""
        from safetensors.torch import save_file

        header = {"format": FORMAT, "version": 1, "regions": list(self.regions),
                  "feature_dim": self.feature_dim, "hidden": self.hidden}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: json.dumps(header)}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> RewardModel:
        """Read :meth:`save`'s file (FileNotFoundError / FormatError naming the file)."""

        from ..io.errors import FormatError

        tensors, header = read_safetensors(path, _META_KEY, "facecore reward model")
        try:
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}, expected {FORMAT!r}")
            model = cls(header["regions"], header["feature_dim"], header["hidden"])
            model.load_state_dict(tensors, strict=True)
        except Exception as e:  # noqa: BLE001 - safetensors and json raise several types
            msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise FormatError(f"not a facecore reward model ({msg})", path=path) from None
        return model.eval()
