"""The estimator evaluation table (issue 13): pseudo labels vs the truth, each with and without refinement.

    python tools/estimator_experiment.py --pseudo RUN_P/estimator.safetensors \\
        --truth RUN_T/estimator.safetensors -n 128 --refine-n 16 -o runs/estimator_results.md

RUN_P / RUN_T come from ``facecore estimator train --labels pseudo|truth ...`` (the exact commands are in
docs/estimator.md). Test sets are rendered on the fly with data seed 1000 (training
uses data seed 0, so no test image was seen in training), each with its domain preset's parameter prior,
on these splits: ``ict/clean``, ``ict/wild``,
``ict/toon`` (domain shift) and ``stylized/wild`` (the other rig: the networks are trained on ``ict``),
all with held-out identities (each test face's identity coefficients are a fresh continuous draw), and
``ict/wild, seen identities``: the identity coefficients of the first ``n`` training samples (data seed 0,
exactly what the shards hold) with fresh expressions, poses, cameras, lights and skin (test seed).
Rows per split:

* ``constant`` -- the same answer for every image: the per-channel median of the split's prior
  (:func:`render_split`); a network that does not beat it has not learned to read faces;
* ``pseudo-labeler`` -- the simulated capture labels of the test images themselves (what training on
  pseudo labels learns to imitate; facecore.estimator.PseudoLabeler, profile ``livelink``);
* ``estimator (pseudo labels)`` -- the SuperFace baseline; ``estimator (truth)`` -- the upper bound;
* ``... + refine`` -- analysis-by-synthesis refinement (50 iterations) of the first ``--refine-n``
  images of the split, started from the network's mean with its Gaussian as the prior. Refinement is
  given each synthetic sample's true camera, lights and identity (it refines expression and pose,
  not the scene), so it is an upper bound on what refinement from an estimated scene would give; the
  network rows are evaluated on the same subset in ``... (refine subset)`` rows for a like-for-like pair.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SPLITS = [("ict", "clean", "held-out"), ("ict", "wild", "held-out"), ("ict", "wild", "seen"),
          ("ict", "toon", "held-out"), ("stylized", "wild", "held-out")]  # (rig, domain, identities)
TEST_SEED = 1000
TRAIN_SEED = 0  # the data seed of the training runs (docs/estimator.md)
COLUMNS = ["mae_blendshapes", "mae_pose", "mae_brows", "mae_eyes", "mae_mouth", "mae_jaw", "mae_tongue",
           "auc_TongueOut", "auc_CheekPuff", "calibration_slope", "vertex_error_mm", "landmark_nme"]


def render_split(rig: str, domain: str, n: int, resolution: int, identities: str = "held-out"
                 ) -> tuple[dict, torch.Tensor]:
    """The split's faces (the domain preset's own prior: ``expressive`` for wild and toon, ``default``
    for clean) and the image-blind constant for it: the per-channel median of 4,096 other draws of that
    prior (the best constant under MAE, and it knows the test distribution, which the networks do not).
    ``identities="seen"``: the first ``n`` training samples' identity coefficients."""
    from facecore.rig import load_rig
    from facecore.synth import load_preset, render_batch, sample_identity, sample_params

    scene = load_preset(domain)
    p = sample_params(n, TEST_SEED, prior=scene.prior)
    constant = sample_params(4096, TEST_SEED + 1, prior=scene.prior).median(0).values
    identity = None
    if identities == "seen":
        identity = sample_identity(load_rig(rig), n, TRAIN_SEED, scale=scene.identity_scale, index0=0)
    return render_batch(p, rig, scene, resolution=resolution, seed=TEST_SEED, identity=identity), constant


def subset(batch: dict, k: int) -> dict:
    out = {}
    for key, v in batch.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch["params"].shape[0]:
            out[key] = v[:k]
        elif isinstance(v, dict):
            out[key] = subset({**v, "params": batch["params"]}, k)
            out[key].pop("params")
        else:
            out[key] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pseudo", type=Path, help="the pseudo-label network (its rows are left out without it)")
    ap.add_argument("--truth", type=Path, required=True)
    ap.add_argument("--splits", help="comma-separated subset of the split names (ict/wild, ict/wild-seen, "
                                     "ict/clean, ict/toon, stylized/wild); default all")
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("--refine-n", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=112)
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()

    from facecore.estimator import Estimator, PseudoLabeler, evaluate, refine
    from facecore.estimator.predict import boxes_from_landmarks

    torch.manual_seed(0)
    models = {"pseudo labels": Estimator.load(a.pseudo)} if a.pseudo else {}
    models["truth"] = Estimator.load(a.truth)
    names = {f"{r}/{d}" + ("-seen" if i == "seen" else ""): (r, d, i) for r, d, i in SPLITS}
    wanted = list(names) if a.splits is None else a.splits.split(",")
    if not set(wanted) <= set(names):
        raise SystemExit(f"--splits: choose from {', '.join(names)}, got {a.splits!r}")
    labeler = PseudoLabeler("livelink", seed=0)
    sections, raw = [], {}
    for rig, domain, identities in (names[w] for w in wanted):
        t0 = time.perf_counter()
        data, constant = render_split(rig, domain, a.n, a.resolution, identities)
        split = f"{rig}/{domain}" + (", seen identities" if identities == "seen" else "")
        boxes = boxes_from_landmarks(data["landmarks2d"], data["landmarks_visible"], data["mask"])
        images = data["image"].numpy()
        rows = {"constant: the split prior's median (image-blind)": evaluate(constant.expand(a.n, -1), data),
                "pseudo-labeler (simulated capture labels)": evaluate(labeler(data["params"]), data)}
        sub = subset(data, a.refine_n)
        for name, model in models.items():
            mean, std = model.predict(images, boxes.numpy(), return_std=True)
            rows[f"estimator ({name})"] = evaluate(mean, data)
            k = a.refine_n
            rows[f"estimator ({name}), refine subset n={k}"] = evaluate(mean[:k], sub)
            init = torch.as_tensor(mean[:k])
            prior = (init, torch.as_tensor(np.log(std[:k])))
            res = refine(sub["image"], init, rig, camera=sub["camera"], lights=sub["lights"],
                         identity=sub["identity"], landmarks=None, prior=prior, iters=50)
            rows[f"estimator ({name}) + refine, n={k}"] = evaluate(res.params.detach(), sub)
        raw[split] = {k: {m: v for m, v in r.items() if not isinstance(v, dict)}
                                  for k, r in rows.items()}
        lines = [f"### {rig} rig, {domain} domain, {identities} identities (n = {a.n}; "
                 f"{time.perf_counter() - t0:.0f} s)", "",
                 "| row | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for name, r in rows.items():
            cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) and np.isfinite(r[c]) else "–"
                     for c in COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
        print(sections[-1], flush=True)
    a.out.write_text("\n\n".join(sections) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=float))


if __name__ == "__main__":
    main()
