"""DDP: two CPU processes (gloo) train a tiny estimator; ranks see different samples, end with the
same weights, and only rank 0 writes."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.estimator.conftest import TINY
from tests.gloo import run_gloo


def _worker(rank: int, out: str) -> None:
    from facecore.estimator.training import TrainConfig, train

    cfg = TrainConfig(out=out, steps=2, batch_size=3, resolution=24, model=TINY, warmup_steps=1,
                      deterministic=True, tensorboard=False, device="cpu")
    r = train(cfg)
    torch.save({"indices": r["last_indices"], "losses": r["losses"],
                "weights": r["model"].state_dict()}, os.path.join(out, f"rank{rank}.pt"))


@pytest.mark.timeout(300)
def test_two_process_gloo(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    run_gloo(_worker, out)
    r0, r1 = (torch.load(os.path.join(out, f"rank{r}.pt")) for r in (0, 1))
    assert set(r0["indices"]).isdisjoint(r1["indices"])  # each rank rendered its own samples
    assert r0["losses"] == r1["losses"]  # the logged loss is the mean over ranks
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])
    rows = [json.loads(ln) for ln in open(os.path.join(out, "metrics.jsonl")).read().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]  # one writer: no duplicated lines
    assert rows[-1]["samples"] == 2 * 3 * 2
    from facecore.estimator.training import load_checkpoint

    assert load_checkpoint(os.path.join(out, "checkpoint.pt"))["world_size"] == 2
