"""The faces a round shows: synthetic photos with exact truth, cropped the way the estimator reads them.

Each image is a :func:`facecore.synth.render_batch` face (parameters from
:func:`facecore.synth.sample_params` with the domain preset's own prior unless told otherwise -- the
prior the estimator's training shards of that domain were drawn from --,
a fresh identity, the scene preset's camera and lights), cropped around its 68 landmarks exactly as
:mod:`facecore.estimator.training` crops (:func:`facecore.estimator.predict.boxes_from_landmarks`,
:func:`~facecore.estimator.predict.crop_faces`). Image ``i`` of ``(seed, index0)`` is the same every time.
"""

from __future__ import annotations

import numpy as np
import torch


def make_images(n: int, seed: int, *, image_size: int, crop_scale: float = 1.25, rig="ict",
                domain: str = "wild", resolution: int = 112, index0: int = 0, batch: int = 32,
                prior=None) -> dict:
    """``n`` synthetic faces (parameters from ``prior``, a :func:`facecore.synth.sample_params` prior;
    None: ``domain``'s preset prior): ``crops`` float32 ``[n, S, S, 3]`` in [0, 1] (``S = image_size``),
    ``photos`` uint8 ``[n, resolution, resolution, 3]`` (what a person is shown), ``params`` float32
    ``[n, 61]`` (the truth), ``prior`` (the one the parameters came from) and ``eval_batch``, a dict
    :func:`facecore.estimator.evaluate` reads (``image``, ``params``, ``camera``, ``identity``, ``rig``)."""
    from ..estimator.predict import boxes_from_landmarks, crop_faces
    from ..synth import load_preset, render_batch, sample_params

    for name, v, lo in (("n", n, 1), ("seed", seed, 0), ("image_size", image_size, 16),
                        ("resolution", resolution, 16), ("index0", index0, 0), ("batch", batch, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"make_images: {name} must be an integer >= {lo}, got {v!r}")
    scene = load_preset(domain)
    prior = scene.prior if prior is None else prior
    crops, photos, params, proj, ident = [], [], [], [], []
    rig_name = None
    for i0 in range(index0, index0 + n, batch):
        b = min(batch, index0 + n - i0)
        p = sample_params(b, seed, prior, index0=i0)
        out = render_batch(p, rig, scene, resolution, seed, index0=i0)
        boxes = boxes_from_landmarks(out["landmarks2d"].cpu(), mask=out["mask"].cpu())
        img = out["image"].cpu()
        crops.append(crop_faces(img, boxes, image_size, crop_scale))
        photos.append(img.numpy())
        params.append(out["params"].cpu().numpy())
        proj.append(out["camera"]["projection"].cpu().numpy())
        ident.append(out["identity"].cpu().numpy())
        rig_name = out["rig"]
    photos_np = np.concatenate(photos)
    params_np = np.concatenate(params).astype(np.float32)
    return {
        "crops": torch.cat(crops),
        "photos": photos_np,
        "params": params_np,
        "prior": prior,
        "eval_batch": {"image": photos_np, "params": params_np,
                       "camera": {"projection": np.concatenate(proj)},
                       "identity": np.concatenate(ident), "rig": rig_name},
    }


@torch.no_grad()
def policy_outputs(policy, crops: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's Gaussian ``(mean, log_std)`` ``[N, 61]`` on ``crops`` (eval mode, no gradient)."""
    was = policy.training
    policy.eval()
    means, stds = [], []
    try:
        for i in range(0, crops.shape[0], batch):
            m, s = policy(policy.normalize(crops[i:i + batch]))
            means.append(m)
            stds.append(s)
    finally:
        policy.train(was)
    return torch.cat(means), torch.cat(stds)
