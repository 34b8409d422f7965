"""DDP: two CPU processes (gloo) train a tiny video model; ranks see different clips, end with the same
weights, log the mean loss, and only rank 0 writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tests.gloo import run_gloo

TINY = dict(image_size=16, frames=4, patch_size=4, dim=32, depth=1, heads=2, guider_channels=8)


def _clips(n: int = 8) -> list[dict]:
    """Distinct hand-made clips (rendering would double the test's time for nothing DDP-specific)."""
    g = np.random.default_rng(0)
    return [{"frames": g.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8),
             "reference": g.integers(0, 256, (16, 16, 3), dtype=np.uint8),
             "motion_maps": g.random((4, 16, 16, 4), dtype=np.float32), "clip_id": f"clip-{i}"}
            for i in range(n)]


def _worker(rank: int, out: str) -> None:
    from facecore.video.training import VideoTrainConfig, train

    cfg = VideoTrainConfig(out=out, steps=2, batch_size=2, dataset=_clips(), model=TINY, warmup_steps=1,
                           deterministic=True, device="cpu")
    r = train(cfg)
    torch.save({"clips": r["last_clip_ids"], "losses": r["losses"], "weights": r["model"].state_dict()},
               os.path.join(out, f"rank{rank}.pt"))


@pytest.mark.timeout(300)
def test_two_process_gloo(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    run_gloo(_worker, out)
    r0, r1 = (torch.load(os.path.join(out, f"rank{r}.pt")) for r in (0, 1))
    assert set(r0["clips"]).isdisjoint(r1["clips"])  # each rank read its own clips
    assert r0["losses"] == r1["losses"]  # the logged loss is the mean over ranks
    assert all(torch.equal(r0["weights"][k], r1["weights"][k]) for k in r0["weights"])
    rows = [json.loads(ln) for ln in open(os.path.join(out, "metrics.jsonl")).read().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]  # one writer
    assert rows[-1]["samples"] == 2 * 2 * 2
    from facecore.video.training import load_checkpoint

    assert load_checkpoint(os.path.join(out, "checkpoint.pt"))["world_size"] == 2
