"""Rendering candidates and collecting judgments, in-process (simulated pool) or over the labeling app.

:func:`score_candidates` renders each image's truth and candidates on the canonical avatar once and keeps
only what a simulated rater needs: the per-region distance of each candidate to the truth and its
expressiveness. :func:`judge_in_process` lets a pool answer every (pair, region) from those numbers
(the fast path of the experiments); :func:`judge_over_http` sends the same pairs through the labeling
app's ``/api/v1`` API as tasks with PNG renders, and lets the simulated pool answer them as clients do.

:class:`Judgments` holds the answers; :meth:`Judgments.records` writes them in the export's Pick-a-Pic
shape (``image_uid, candidate_0, candidate_1, label_0, label_1`` with 0.5/0.5 for a tie, plus
``region, shown_left, round, annotator_id, response_ms``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch

from .annotators import CHOICES
from .regions import expressiveness


@torch.no_grad()
def score_candidates(avatar, truth, candidates, regions, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``truth [N, 61]``, ``candidates [N, K, 61]`` -> ``(distance [N, K, R], expressiveness [N, K, R])``
    (:func:`facecore.prefer.avatar.region_distances` to the truth's render, in ``regions``' order)."""
    from .avatar import region_distances

    truth = np.asarray(truth, dtype=np.float32)
    cand = np.asarray(candidates, dtype=np.float32)
    if cand.ndim != 3 or truth.ndim != 2 or cand.shape[0] != truth.shape[0] or \
            cand.shape[2] != truth.shape[1]:
        raise ValueError(f"score_candidates: candidates must be [N, K, 61] and truth [N, 61], got "
                         f"{list(cand.shape)} and {list(truth.shape)}")
    N, K, _ = cand.shape
    regions = tuple(regions)
    dist = np.empty((N, K, len(regions)))
    per = max(1, batch // (K + 1))  # images per render call
    for i0 in range(0, N, per):
        i1 = min(N, i0 + per)
        rt = avatar.render(torch.from_numpy(truth[i0:i1]))
        rc = avatar.render(torch.from_numpy(cand[i0:i1].reshape(-1, cand.shape[2])))
        rt = {k: v.repeat_interleave(K, 0) for k, v in rt.items()}
        dist[i0:i1] = region_distances(rc, rt, regions).double().numpy().reshape(i1 - i0, K, -1)
    expr = np.stack([expressiveness(cand.reshape(-1, cand.shape[2]), r).reshape(N, K) for r in regions], -1)
    return dist, expr


@dataclasses.dataclass
class Judgments:
    """Answers to (pair, region) questions. ``pairs [P, 3]`` rows ``(image, a, b)``; per answer ``[M]``:
    ``pair``, ``region`` (index into ``regions``), ``preference`` (1 A, 0 B, 0.5 tie), ``annotator``
    (index into ``annotator_names``), ``a_left`` (A was shown on the left), ``response_ms``."""

    pairs: np.ndarray
    regions: tuple[str, ...]
    pair: np.ndarray
    region: np.ndarray
    preference: np.ndarray
    annotator: np.ndarray
    a_left: np.ndarray
    annotator_names: tuple[str, ...]
    response_ms: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.pair.shape[0])

    def matrix(self) -> np.ndarray:
        """``[P, R]`` preferences (NaN where a region of a pair was not judged; the mean of repeats)."""
        P, R = self.pairs.shape[0], len(self.regions)
        s, c = np.zeros((P, R)), np.zeros((P, R))
        np.add.at(s, (self.pair, self.region), self.preference)
        np.add.at(c, (self.pair, self.region), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(c > 0, s / np.maximum(c, 1), np.nan)

    def records(self, round_index: int, uid_prefix: str = "") -> list[dict]:
        """One dict per answer in the Pick-a-Pic shape of the labeling app's export."""
        out = []
        for m in range(len(self)):
            img, a, b = (int(x) for x in self.pairs[self.pair[m]])
            p = float(self.preference[m])
            out.append({
                "image_uid": f"{uid_prefix}img{img}",
                "candidate_0": f"{uid_prefix}img{img}-c{a}",
                "candidate_1": f"{uid_prefix}img{img}-c{b}",
                "label_0": p, "label_1": 1.0 - p,
                "task_id": f"{uid_prefix}pair{int(self.pair[m])}-{self.regions[self.region[m]]}",
                "region": self.regions[self.region[m]],
                "shown_left": "candidate_0" if bool(self.a_left[m]) else "candidate_1",
                "round": int(round_index),
                "annotator_id": self.annotator_names[int(self.annotator[m])],
                "response_ms": None if self.response_ms is None else int(self.response_ms[m]),
                "simulated": self.annotator_names[int(self.annotator[m])].startswith("sim-"),
            })
        return out

    def write_jsonl(self, path: str | os.PathLike, round_index: int, uid_prefix: str = "") -> Path:
        """Write :meth:`records` as JSONL atomically (temporary file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.partial")
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in self.records(round_index, uid_prefix):
                f.write(json.dumps(rec, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path


def judge_in_process(pool, pairs: np.ndarray, distance: np.ndarray, expr: np.ndarray, regions,
                     rng: np.random.Generator) -> Judgments:
    """Every pair judged in every region by one annotator of ``pool`` each (a simulation); the side
    A is shown on is a fair coin per answer."""
    pairs = np.asarray(pairs, dtype=np.int64)
    regions = tuple(regions)
    P, R = pairs.shape[0], len(regions)
    if distance.shape[-1] != R or expr.shape != distance.shape:
        raise ValueError(f"judge_in_process: distance/expr must be [N, K, R={R}], got {list(distance.shape)}"
                         f" and {list(expr.shape)}")
    pair = np.repeat(np.arange(P), R)
    region = np.tile(np.arange(R), P)
    img, a, b = pairs[pair, 0], pairs[pair, 1], pairs[pair, 2]
    a_left = rng.random(P * R) < 0.5
    pref, who = pool.judge(distance[img, a, region], distance[img, b, region], a_left,
                           expr[img, a, region], expr[img, b, region], rng)
    return Judgments(pairs=pairs, regions=regions, pair=pair, region=region, preference=pref,
                     annotator=who, a_left=a_left, annotator_names=tuple(x.name for x in pool))


def _b64(png: bytes) -> str:
    import base64

    return base64.b64encode(png).decode("ascii")


def _photo_png(img: np.ndarray) -> bytes:
    import io

    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, np.ascontiguousarray(img), extension=".png")
    return buf.getvalue()


def judge_over_http(admin, client_for, pool, pairs, candidates, photos, distance, expr, regions, avatar,
                    round_index: int, rng: np.random.Generator, tokens: dict | None = None) -> Judgments:
    """Send every (pair, region) to the labeling app as a task (input photo and both candidates'
    canonical renders as base64 PNGs) and let the SIMULATED ``pool`` answer through the annotator API.

    ``admin``: a ``facecore.label.LabelClient`` with the admin token; ``client_for(token)`` makes an
    annotator's client. ``tokens`` caches ``{annotator name: (annotator_id, token)}`` across rounds. The
    annotators take turns drawing ``GET /api/v1/tasks/next``; the first to draw a task answers it (a
    simulation cannot look at a photo, so it reads the task's truth distances from this side of the
    experiment, and the side the app showed A on from the task), later ones answer ``skip``. The result
    is read back from ``GET /api/v1/export``, so what trains the policy is what the app stored."""
    tokens = {} if tokens is None else tokens
    regions = tuple(regions)
    pairs = np.asarray(pairs, dtype=np.int64)
    P = pairs.shape[0]
    pngs = {}  # (image, candidate) -> base64 PNG, rendered once
    need = sorted({(int(i), int(c)) for i, a, b in pairs for c in (a, b)})
    flat = np.stack([candidates[i, c] for i, c in need])
    for key, png in zip(need, avatar.png(flat)):
        pngs[key] = _b64(png)
    photo = {int(i): _b64(_photo_png(photos[int(i)])) for i in np.unique(pairs[:, 0])}
    tasks, index = [], []
    for p in range(P):
        img, a, b = (int(x) for x in pairs[p])
        for r_i, r in enumerate(regions):
            tasks.append({"image": photo[img], "candidate_a": {"png": pngs[(img, a)]},
                          "candidate_b": {"png": pngs[(img, b)]}, "region": r,
                          "meta": {"round": int(round_index), "image_uid": f"r{round_index}-img{img}",
                                   "candidate_a": f"r{round_index}-img{img}-c{a}",
                                   "candidate_b": f"r{round_index}-img{img}-c{b}", "pair": p, "region": r}})
            index.append((p, r_i))
    task_ids = admin.load_tasks(tasks)
    where = dict(zip(task_ids, index))
    for ann in pool:
        if ann.name not in tokens:
            from ..label import LabelError

            try:
                made = admin.add_annotator(ann.name)
            except LabelError:  # the name is taken (an earlier run on this app): a fresh account
                import uuid

                made = admin.add_annotator(f"{ann.name}-{uuid.uuid4().hex[:6]}")
            tokens[ann.name] = (made["annotator_id"], made["token"])
    clients = [client_for(tokens[ann.name][1]) for ann in pool]
    taken: set[str] = set()
    active = list(range(len(pool)))
    try:
        while active and len(taken) < len(where):
            for n in list(active):
                task = clients[n].next_task()
                if task is None:
                    active.remove(n)
                    continue
                tid = task["task_id"]
                if tid not in where or tid in taken:
                    clients[n].judge(tid, task["region"], "skip", response_ms=0)
                    continue
                p, r_i = where[tid]
                img, a, b = (int(x) for x in pairs[p])
                a_left = np.array([task["shown_left"] == "a"])
                pref = pool[n].judge(distance[img, a, r_i][None], distance[img, b, r_i][None], a_left,
                                     expr[img, a, r_i][None], expr[img, b, r_i][None], rng)[0]
                choice = CHOICES[float(pref)]
                clients[n].judge(tid, task["region"], choice, response_ms=int(rng.integers(400, 4000)))
                taken.add(tid)
    finally:
        for c in clients:
            c.close()
    by_id = {v[0]: k for k, v in tokens.items()}
    names = tuple(a.name for a in pool)
    rows = [row for row in admin.export() if row["task_id"] in where and row["label_0"] is not None]
    if len(rows) != len(where):
        raise RuntimeError(f"labeling app export holds {len(rows)} answers to this round's "
                           f"{len(where)} tasks")
    pair = np.array([where[row["task_id"]][0] for row in rows], dtype=np.int64)
    region = np.array([where[row["task_id"]][1] for row in rows], dtype=np.int64)
    return Judgments(pairs=pairs, regions=regions, pair=pair, region=region,
                     preference=np.array([float(row["label_0"]) for row in rows]),
                     annotator=np.array([names.index(by_id[row["annotator_id"]]) for row in rows]),
                     a_left=np.array([row["shown_left"] == "a" for row in rows]), annotator_names=names,
                     response_ms=np.array([int(row["response_ms"]) for row in rows]))


def http_judge(config):
    """The ``judge`` of :func:`facecore.prefer.run_round` that goes through the labeling app at
    ``config.app`` with admin token ``config.app_token`` (:func:`judge_over_http`)."""
    from ..label import LabelClient
    from .annotators import parse_pool
    from .avatar import CanonicalAvatar

    if not config.app or not config.app_token:
        raise ValueError("judging over HTTP needs the app URL (--app) and its admin token (--app-token)")
    admin = LabelClient(config.app, config.app_token)
    pool = parse_pool(config.pool, config.pool_seed, "train")
    avatar = CanonicalAvatar(config.rig, max(config.avatar_resolution, 96),  # what people see
                             frontal=config.avatar_frontal)
    tokens: dict = {}
    state = {"round": 0}

    def judge(pairs, candidates, data, distance, expr, regions, rng):
        state["round"] += 1
        rnd = int(data.get("round", state["round"]))
        return judge_over_http(admin, lambda tok: LabelClient(config.app, tok), pool, pairs, candidates,
                               data["photos"], distance, expr, regions, avatar, rnd, rng, tokens)

    return judge
