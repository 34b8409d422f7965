"""``facecore synth``: render a synthetic face dataset into WebDataset tar shards.

:func:`synth_main` is the command itself (typer reads its annotated parameters); ``facecore.cli``
registers it with ``app.command("synth")(synth_main)``. It only checks and passes its options to
:func:`facecore.synth.write_dataset`: every rule (layout, resume, ``--shard K/N``, errors) lives there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def synth_main(
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder (created; a rerun resumes it)")],
    n: Annotated[int, typer.Option("-n", help="number of samples (clips with --clips)")],
    rig: Annotated[str, typer.Option(help="built-in rig (ict, stylized, default) or a rig file/folder")]
    = "ict",
    domain: Annotated[str, typer.Option(help="scene preset: clean, studio, wild, toon")] = "clean",
    resolution: Annotated[int, typer.Option(help="image side in pixels, 16..4096")] = 128,
    seed: Annotated[int, typer.Option(help="dataset seed: sample i depends only on (seed, i)")] = 0,
    shard: Annotated[str, typer.Option(help="K/N: write only the shards i with i % N == K (machine K of N)")]
    = "0/1",
    clips: Annotated[bool, typer.Option("--clips/--no-clips", help="video clips instead of single images")]
    = False,
    frames: Annotated[int, typer.Option(help="frames per clip (--clips)")] = 16,
    fps: Annotated[float, typer.Option(help="frame rate of the clips' motion (--clips)")] = 30.0,
    samples_per_shard: Annotated[int, typer.Option("--samples-per-shard", help="samples in each tar shard")]
    = 1000,
    batch: Annotated[int, typer.Option(help="samples rendered together")] = 64,
    maps: Annotated[bool, typer.Option("--maps/--no-maps", help="also write depth and normal maps")] = False,
    image_format: Annotated[str, typer.Option("--format", help="image encoding: png (lossless) or jpg")]
    = "png",
    device: Annotated[str, typer.Option(help="render on this torch device (cpu, cuda, cuda:1)")] = "cpu",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
) -> None:
    """Render N synthetic faces with exact labels (61 ARKit parameters, identity, camera, lights,
    68 landmarks, mask) into WebDataset tar shards, with index.json and manifest.json.

    Rerun the same command to resume (finished shards are skipped); run it on N machines with
    --shard 0/N ... --shard N-1/N to split one dataset with no coordination."""
    from ..cli_support import progress_bar, user_errors
    from .dataset import _parse_shard, write_dataset

    with user_errors():
        k, of = _parse_shard(shard)
        if device != "cpu":
            import torch

            dev = torch.device(device)  # a malformed name fails here with its own message
            if dev.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"--device {device}: no CUDA device is available")
        t = time.perf_counter()
        with progress_bar(progress) as bar:
            result = write_dataset(out, n, rig=rig, domain=domain, resolution=resolution, seed=seed,
                                   shard=(k, of), samples_per_shard=samples_per_shard, clips=clips,
                                   frames=frames, fps=fps, batch=batch, progress=bar, maps=maps,
                                   image_format=image_format, device=device)
    elapsed = time.perf_counter() - t
    m = result["manifest"]
    what = "clips" if clips else "samples"
    typer.echo(f"{out}: wrote {len(result['written'])} shards ({result['samples']} {what}), skipped "
               f"{len(result['skipped'])} finished; shard {k}/{of} of {m['num_shards']} shards, "
               f"{m['n']} {what} in all")
    if result["samples"]:
        per = result["samples"] * (frames if clips else 1) / max(elapsed, 1e-9)
        typer.echo(f"{per:.0f} images/s")
    typer.echo("stage timings:")
    for stage, sec in result["timings"].items():
        typer.echo(f"  {stage:<8} {sec:7.2f} s")
