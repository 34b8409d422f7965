"""DDP: two CPU processes (gloo) run a preference round; both hold the same round, train on halves of
each DPO batch with averaged gradients, end with the same policy, and only rank 0 writes the files."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.gloo import run_gloo

from .conftest import tiny_config


def _worker(rank: int, out: str, init: str) -> None:
    from facecore.estimator import Estimator
    from facecore.prefer import run_round, run_rounds

    cfg = tiny_config(os.path.join(out, "rounds"), init, rounds=1)
    res = run_round(Estimator.load(init), cfg, 1, out_dir=os.path.join(out, "single"))
    torch.save({"weights": res.policy.state_dict(), "loss": res.metrics["dpo_loss_after"]},
               os.path.join(out, f"rank{rank}.pt"))  # this rank's own trained policy, in memory
    run_rounds(cfg, log=None)


@pytest.mark.timeout(300)
def test_two_process_gloo(tmp_path, tiny_checkpoint):
    out = str(tmp_path / "run")
    os.makedirs(out)
    run_gloo(_worker, out, str(tiny_checkpoint))
    r0, r1 = (torch.load(os.path.join(out, f"rank{r}.pt")) for r in (0, 1))
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])  # same steps
    assert r0["loss"] == r1["loss"]
    from facecore.estimator import Estimator

    init = Estimator.load(tiny_checkpoint).state_dict()
    assert any(not torch.equal(r0["weights"][k], init[k]) for k in init)  # the round trained
    state = json.loads(open(os.path.join(out, "rounds", "state.json")).read())
    assert state["completed"] == 1
    for folder in ("single", os.path.join("rounds", "round_01")):
        rows = open(os.path.join(out, folder, "judgments.jsonl")).read().splitlines()
        assert len(rows) == 30 * 2  # one writer: no duplicated judgments
