"""facecore.synth datasets: WebDataset shards, manifest + index, resume, k/N sharding, Dataset readers."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import facecore.synth.dataset as ds
from facecore.synth.dataset import Dataset, write_dataset

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(rig="stylized", resolution=32, samples_per_shard=3, batch=2)  # as conftest.written


def assert_same(a, b, where="sample"):
    """Two samples (nested dicts of tensors and plain values) are equal, dtypes included."""
    assert isinstance(b, type(a)) or isinstance(a, type(b)), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{list(a.shape)} vs " \
                                                          f"{b.dtype}{list(b.shape)}"
        assert torch.equal(a, b), f"{where}: values differ"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.tar"))}


# ---------------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------------
def test_layout_manifest_and_index(written):
    out, result = written
    assert result["written"] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert result["samples"] == 7 and result["skipped"] == []
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "manifest.json", *result["written"]]
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "facecore.synth" and m["seed"] == 5 and m["n"] == 7 and m["resolution"] == 32
    assert m["rig"]["name"] == "stylized" and len(m["rig"]["sha256"]) == 64
    assert m["samples_per_shard"] == 3 and m["num_shards"] == 3 and m["facecore_version"]
    assert m["domain"] == "clean" and m["preset"] and "created" in m
    assert m["fields"]["params"] == {"dtype": "float32", "shape": [61]}
    assert m["fields"]["landmarks2d"] == {"dtype": "float32", "shape": [68, 2]}
    index = json.loads((out / "index.json").read_text())
    assert [(s["url"], s["first"], s["nsamples"]) for s in index["shardlist"]] == [
        ("shard-000000.tar", 0, 3), ("shard-000001.tar", 3, 3), ("shard-000002.tar", 6, 1)]
    names = []
    for s in index["shardlist"]:
        with tarfile.open(out / s["url"]) as tar:
            members = tar.getmembers()
        assert len(members) == s["members"]
        assert all(t.mtime == 0 and t.uid == 0 and t.uname == "" and t.mode == 0o644 for t in members)
        names += [t.name for t in members]
    keys = [n.split(".")[0] for n in names]
    assert keys == sorted(keys) and len(set(keys)) == 7 and keys[0] == "000000000"
    assert {n.partition(".")[2] for n in names} == set(m["members"])
    assert {"png", "params.npy", "json", "mask.png"} <= set(m["members"])


def test_reads_every_sample_in_order_with_labels(written):
    out, _ = written
    samples = list(Dataset(out))
    assert [s["index"] for s in samples] == list(range(7))
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(7)]
    s = samples[0]
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (32, 32, 3)
    assert s["params"].dtype == torch.float32 and s["params"].shape == (61,)
    assert s["landmarks2d"].shape == (68, 2) and s["landmarks_visible"].dtype == torch.bool
    assert s["seed"] == 5 and s["domain"] == "clean" and isinstance(s["rig"], str)
    assert len(Dataset(out)) == 7


# ---------------------------------------------------------------------------------------------------
# determinism: same seed -> same bytes; written == rendered on the fly
# ---------------------------------------------------------------------------------------------------
def test_same_seed_same_bytes(written, tmp_path):
    out, _ = written
    again = tmp_path / "again"
    write_dataset(again, 7, seed=5, **SMALL)
    assert shard_bytes(again) == shard_bytes(out)
    assert (again / "index.json").read_bytes() == (out / "index.json").read_bytes()
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (out, again))
    a.pop("created"), b.pop("created")
    assert a == b
    other = tmp_path / "other"
    write_dataset(other, 7, seed=6, **SMALL)
    assert all(x != y for x, y in zip(shard_bytes(other).values(), shard_bytes(out).values()))


def test_batch_size_does_not_change_the_bytes(written, tmp_path):
    out, _ = written
    write_dataset(tmp_path / "b5", 7, seed=5, **{**SMALL, "batch": 5})
    assert shard_bytes(tmp_path / "b5") == shard_bytes(out)


def test_written_equals_on_the_fly(written):
    out, _ = written
    from_disk = list(Dataset(out))
    from_manifest = list(Dataset(out / "manifest.json", batch=4))
    spec = dict(n=7, seed=5, rig="stylized", resolution=32)
    from_spec = list(Dataset(spec, batch=3))
    for a, b, c in zip(from_disk, from_manifest, from_spec, strict=True):
        assert_same(a, b)
        assert_same(a, c)


def test_json_floats_are_short_and_exact():
    a = np.array([0.1, 1 / 3, 1e-45, 3.4028235e38, -0.0, np.nan, np.inf, 12.573022], np.float32)
    values = ds._labels(torch.from_numpy(a))
    assert values[0] == 0.1 and values[-1] == 12.573022  # shortest forms, not 0.10000000149011612
    back = np.array(json.loads(json.dumps(values)), np.float64).astype(np.float32)
    assert np.array_equal(back.view(np.uint32), a.view(np.uint32))  # bit-exact, -0.0 and NaN included
    grid = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(0)) * 1e3
    restored = ds._restore({"g": json.loads(json.dumps(ds._labels(grid)))},
                           {"g": {"dtype": "float32", "shape": [5, 7, 3]}})["g"]
    assert torch.equal(restored, grid)


def test_maps_and_jpeg(tmp_path):
    out = tmp_path / "maps"
    write_dataset(out, 2, maps=True, image_format="jpg", **SMALL)
    m = json.loads((out / "manifest.json").read_text())
    assert {"jpg", "depth.npy", "normal.npy"} <= set(m["members"]) and "png" not in m["members"]
    disk, live = list(Dataset(out)), list(Dataset(out / "manifest.json"))
    for a, b in zip(disk, live, strict=True):
        for k in ("depth", "normal", "params", "mask", "landmarks2d"):
            assert torch.equal(a[k], b[k]), k
        assert a["image"].shape == b["image"].shape  # JPEG: lossy, close
        assert (a["image"].float() - b["image"].float()).abs().mean() < 40


@pytest.mark.parametrize("rig,domain", [("ict", "wild"), ("stylized", "toon")])
def test_other_rigs_and_domains_round_trip(tmp_path, rig, domain):
    out = tmp_path / "d"
    write_dataset(out, 3, rig=rig, domain=domain, resolution=24, samples_per_shard=2, batch=2)
    m = json.loads((out / "manifest.json").read_text())
    assert m["rig"]["name"] == rig and m["domain"] == domain and m["preset"]["name"] == domain
    disk = list(Dataset(out))
    for a, b in zip(disk, Dataset({"n": 3, "rig": rig, "domain": domain, "resolution": 24}, batch=1),
                    strict=True):
        assert_same(a, b)
    assert disk[0]["rig"] == rig and disk[0]["domain"] == domain
    assert not torch.equal(disk[0]["image"], disk[1]["image"])


def test_clips(tmp_path):
    out = tmp_path / "clips"
    write_dataset(out, 3, clips=True, frames=4, samples_per_shard=2, rig="stylized", resolution=24, batch=2)
    m = json.loads((out / "manifest.json").read_text())
    assert m["clips"] is True and m["frames"] == 4 and m["fps"] == 30.0
    assert m["members"][:3] == ["frames.npy", "params.npy", "json"] and "mask.npy" in m["members"]
    clips = list(Dataset(out))
    assert [c["index"] for c in clips] == [0, 1, 2]
    c = clips[0]
    assert c["image"].shape == (4, 24, 24, 3) and c["image"].dtype == torch.uint8
    assert c["params"].shape == (4, 61) and c["mask"].shape == (4, 24, 24) and c["mask"].dtype == torch.bool
    assert c["landmarks2d"].shape == (4, 68, 2) and c["landmarks_visible"].shape == (4, 68)
    # one identity, camera and light for the whole clip; the expression moves
    assert (c["identity"] == c["identity"][:1]).all()
    assert (c["camera"]["projection"] == c["camera"]["projection"][:1]).all()
    assert (c["params"][1:] != c["params"][:1]).any()
    from facecore.synth import sample_trajectory

    assert torch.equal(c["params"], sample_trajectory(4, 0, index=0))
    for a, b, one in zip(clips, Dataset(out / "manifest.json"), Dataset(out / "manifest.json", batch=1),
                         strict=True):  # clips rendered 2, 3 and 1 at a time
        assert_same(a, b)
        assert_same(a, one)
    wds = pytest.importorskip("webdataset")
    first = next(iter(wds.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False).decode()))
    assert np.array_equal(first["frames.npy"], c["image"].numpy())


# ---------------------------------------------------------------------------------------------------
# resume, interruption, k/N sharding
# ---------------------------------------------------------------------------------------------------
def test_resume_rewrites_only_the_missing_shard(written, tmp_path):
    src, _ = written
    out = tmp_path / "resume"
    write_dataset(out, 7, seed=5, **SMALL)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    (out / "shard-000001.tar").unlink()
    time.sleep(0.01)
    result = write_dataset(out, 7, seed=5, **SMALL)
    assert result["written"] == ["shard-000001.tar"]
    assert result["skipped"] == ["shard-000000.tar", "shard-000002.tar"] and result["samples"] == 3
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    assert after["shard-000000.tar"] == before["shard-000000.tar"]
    assert after["shard-000002.tar"] == before["shard-000002.tar"]
    assert shard_bytes(out) == shard_bytes(src)
    # everything finished: nothing to do
    assert write_dataset(out, 7, seed=5, **SMALL)["written"] == []


def test_damaged_shard_is_rewritten(written, tmp_path):
    src, _ = written
    out = tmp_path / "damaged"
    write_dataset(out, 7, seed=5, **SMALL)
    path = out / "shard-000000.tar"
    path.write_bytes(path.read_bytes()[:2000])  # truncated, e.g. by a copy that stopped
    with pytest.raises(ValueError, match="damaged shard|shard"):
        list(Dataset(out))
    assert write_dataset(out, 7, seed=5, **SMALL)["written"] == ["shard-000000.tar"]
    assert shard_bytes(out) == shard_bytes(src)


def test_a_temporary_file_is_never_a_shard(written, tmp_path):
    src, _ = written
    out = tmp_path / "tmpfile"
    write_dataset(out, 7, seed=5, **SMALL)
    (out / "shard-000001.tar").unlink()
    leftover = out / ".shard-000001.tar.partial-x1y2z3"  # what a killed writer leaves
    with tarfile.open(out / "shard-000000.tar") as tar, tarfile.open(leftover, "w") as part:
        for m in tar.getmembers()[:3]:
            part.addfile(m, tar.extractfile(m))
    with pytest.raises(FileNotFoundError, match="1 of 3 shards missing"):
        Dataset(out)
    write_dataset(out, 7, seed=5, **SMALL)
    assert not leftover.exists()
    assert shard_bytes(out) == shard_bytes(src)
    assert [s["index"] for s in Dataset(out)] == list(range(7))


_KILLED_WRITER = """
import facecore.synth.dataset as ds
slow = ds._ShardFile.add
def add(self, name, data):  # slow enough to be killed mid-shard
    import time; time.sleep(0.05); slow(self, name, data)
ds._ShardFile.add = add
ds.write_dataset({out!r}, 7, seed=5, rig="stylized", resolution=32, samples_per_shard=3, batch=1)
"""


def test_killed_writer_leaves_no_complete_looking_shard(written, tmp_path):
    src, _ = written
    out = tmp_path / "killed"
    code = _KILLED_WRITER.format(out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".shard-000001.tar.partial-*")):  # killed while writing shard 1
            assert proc.poll() is None, "the writer ended before it could be killed"
            assert time.monotonic() < deadline, "the writer never started shard 1"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert [p.name for p in out.glob("shard-*.tar")] == ["shard-000000.tar"]
    assert ds._shard_members(out / "shard-000000.tar") is not None
    result = write_dataset(out, 7, seed=5, **SMALL)
    assert result["written"] == ["shard-000001.tar", "shard-000002.tar"]
    assert not list(out.glob(".*partial*"))
    assert shard_bytes(out) == shard_bytes(src)


@pytest.mark.parametrize("N", [2, 3, 5])
def test_k_of_n_machines_cover_every_shard_once(written, tmp_path, N):
    src, _ = written
    out = tmp_path / f"of{N}"
    seen: list[str] = []
    for k in range(N):
        if len(seen) < 3:  # until every shard is there the reader refuses the dataset
            with pytest.raises(FileNotFoundError, match="missing|not found"):
                Dataset(out)
        result = write_dataset(out, 7, seed=5, shard=(k, N), **SMALL)
        assert all(int(s[6:12]) % N == k for s in result["written"])
        seen += result["written"]
    assert sorted(seen) == sorted(set(seen)) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert shard_bytes(out) == shard_bytes(src)
    assert write_dataset(out, 7, seed=5, shard=f"{N - 1}/{N}", **SMALL)["written"] == []


def test_refuses_to_mix_datasets(written, tmp_path):
    out = tmp_path / "mix"
    write_dataset(out, 7, seed=5, **SMALL)
    with pytest.raises(ValueError, match="different dataset.*seed"):
        write_dataset(out, 7, seed=6, **SMALL)
    with pytest.raises(ValueError, match="different dataset.*resolution"):
        write_dataset(out, 7, seed=5, **{**SMALL, "resolution": 48})
    with pytest.raises(ValueError, match="different dataset"):
        write_dataset(out, 9, seed=5, **SMALL)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "shard-000000.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="no manifest.json"):
        write_dataset(stray, 7, **SMALL)


# ---------------------------------------------------------------------------------------------------
# readers: DataLoader workers, torchrun ranks, webdataset, HF datasets
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["folder", "spec"])
@pytest.mark.parametrize("slots", [2, 3, 4, 7])  # 2, 3: whole shards per reader; 4, 7: every k-th sample
def test_readers_split_the_samples_exactly_once(written, monkeypatch, source, slots):
    out, _ = written
    data = Dataset(out) if source == "folder" else Dataset(dict(n=7, seed=5, rig="stylized", resolution=32),
                                                           batch=2)
    indices = []
    for slot in range(slots):
        monkeypatch.setattr(ds, "_slot", lambda slot=slot: (slot, slots))
        indices += [s["index"] for s in data]
    assert sorted(indices) == list(range(7))


def test_slots_follow_workers_and_ranks(monkeypatch):
    assert ds._slot() == (0, 1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    assert ds._slot() == (1, 3)

    class Info:
        id, num_workers = 1, 2

    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: Info)
    assert ds._slot() == (3, 6)  # rank 1 x 2 workers + worker 1, of 3 ranks x 2 workers


def test_dataloader_workers(written):
    out, _ = written
    loader = torch.utils.data.DataLoader(Dataset(out), batch_size=None, num_workers=2)
    samples = list(loader)
    assert sorted(s["index"] for s in samples) == list(range(7))
    batched = torch.utils.data.DataLoader(Dataset(out), batch_size=4, num_workers=0,
                                          collate_fn=lambda b: torch.stack([s["image"] for s in b]))
    assert [tuple(b.shape) for b in batched] == [(4, 32, 32, 3), (3, 32, 32, 3)]


@pytest.mark.parametrize("domain", ["clean", "studio"])
def test_default_collate_batches_samples(tmp_path, domain):
    out = tmp_path / domain
    write_dataset(out, 5, domain=domain, **SMALL)
    for data in (Dataset(out), Dataset(out / "manifest.json")):
        batches = list(torch.utils.data.DataLoader(data, batch_size=4))
        assert [b["image"].shape[0] for b in batches] == [4, 1]
        b = batches[0]
        assert b["params"].shape == (4, 61) and b["landmarks2d"].shape == (4, 68, 2)
        assert b["camera"]["projection"].shape == (4, 4, 4) and b["index"].tolist() == [0, 1, 2, 3]
        assert ("sh" in b["lights"]) == (domain == "studio")


def test_webdataset_reads_the_shards(written):
    wds = pytest.importorskip("webdataset")
    out, _ = written
    ours = list(Dataset(out))
    urls = [str(p) for p in sorted(out.glob("shard-*.tar"))]
    theirs = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert [s["__key__"] for s in theirs] == [s["__key__"] for s in ours]
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(b["png"], a["image"].numpy())
        assert np.array_equal(b["params.npy"], a["params"].numpy())
        labels = b["json"]
        assert labels["index"] == a["index"]
        assert np.array_equal(np.asarray(labels["landmarks2d"], np.float32), a["landmarks2d"].numpy())
        assert np.array_equal(b["mask.png"][..., 0] > 127, a["mask"].numpy().astype(bool))  # rgb8: 3 channels


def test_hf_datasets_reads_the_shards(written):
    datasets = pytest.importorskip("datasets", reason="HF datasets is not installed (optional)")
    out, _ = written
    ours = list(Dataset(out))
    files = sorted(str(p) for p in out.glob("shard-*.tar"))
    hf = datasets.load_dataset("webdataset", data_files={"train": files}, split="train")
    assert len(hf) == 7
    for a, b in zip(ours, hf, strict=True):
        assert b["__key__"] == a["__key__"]
        assert np.array_equal(np.asarray(b["png"].convert("RGB")), a["image"].numpy())
        assert np.array_equal(np.asarray(b["params.npy"], np.float32), a["params"].numpy())


# ---------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(n=0), ValueError, "n must be an integer >= 1"),
    (dict(n=2.5), ValueError, "n must be an integer"),
    (dict(resolution=8), ValueError, "resolution must be an integer in 16..4096"),
    (dict(samples_per_shard=0), ValueError, "samples_per_shard"),
    (dict(shard=(2, 2)), ValueError, "shard must be"),
    (dict(shard="1-2"), ValueError, "shard must be K/N"),
    (dict(batch=0), ValueError, "batch must be"),
    (dict(image_format="gif"), ValueError, "image_format must be one of png, jpg"),
    (dict(domain="moonlight"), ValueError, "unknown domain preset 'moonlight'"),
    (dict(rig="no/such/rig.safetensors"), FileNotFoundError, "neither a built-in rig"),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    args = {"n": 2, **SMALL, **kwargs}
    with pytest.raises(error, match=match):
        write_dataset(tmp_path / "out", args.pop("n"), **args)
    assert not (tmp_path / "out").exists()  # found before anything is written


def test_unreadable_rig(tmp_path):
    bad = tmp_path / "rig.safetensors"
    bad.write_bytes(b"not a rig at all")
    with pytest.raises(ValueError, match="does not load"):
        write_dataset(tmp_path / "out", 2, **{**SMALL, "rig": str(bad)})
    assert not (tmp_path / "out").exists()


def test_output_that_cannot_be_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        write_dataset(f, 2, **SMALL)
    with pytest.raises(NotADirectoryError):
        write_dataset(f / "sub", 2, **SMALL)


def test_rig_objects_and_paths(tmp_path):
    from facecore.rig import builtin_rig

    rig = builtin_rig("stylized")
    with pytest.raises(TypeError, match="save a FaceRig with rig.save"):
        write_dataset(tmp_path / "obj", 2, rig=rig, resolution=32)
    rig.save(tmp_path / "mine.safetensors")
    write_dataset(tmp_path / "path", 2, rig=tmp_path / "mine.safetensors", resolution=32)
    m = json.loads((tmp_path / "path" / "manifest.json").read_text())
    builtin = write_dataset(tmp_path / "builtin", 2, rig="stylized", resolution=32)["manifest"]
    assert m["rig"]["name"] == "mine" and m["rig"]["sha256"] == builtin["rig"]["sha256"]  # same tensors
    for a, b in zip(Dataset(tmp_path / "path"), Dataset(tmp_path / "builtin"), strict=True):
        assert torch.equal(a["image"], b["image"])


def test_unwritable_folder_message(tmp_path, monkeypatch):
    """The check itself (as root a read-only folder is still writable, so os.access is made to say no)."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="not writable"):
        write_dataset(tmp_path / "out", 2, **SMALL)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            write_dataset(ro / "out", 2, **SMALL)
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("failure", ["disk full", "interrupt"])
def test_failure_mid_shard_leaves_no_partial_shard(tmp_path, monkeypatch, failure):
    out = tmp_path / "fail"
    real_add, calls = ds._ShardFile.add, [0]

    def add(self, name, data):
        calls[0] += 1
        if calls[0] == 5:  # inside shard 0 (3 samples x 4 members)
            if failure == "disk full":
                raise OSError(errno.ENOSPC, "No space left on device")
            raise KeyboardInterrupt
        real_add(self, name, data)

    monkeypatch.setattr(ds._ShardFile, "add", add)
    if failure == "disk full":
        with pytest.raises(OSError, match="the disk is full; the partial shard was removed") as e:
            write_dataset(out, 7, **SMALL)
        assert e.value.errno == errno.ENOSPC
    else:
        with pytest.raises(KeyboardInterrupt):
            write_dataset(out, 7, **SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "manifest.json"]
    monkeypatch.setattr(ds._ShardFile, "add", real_add)
    assert len(write_dataset(out, 7, **SMALL)["written"]) == 3



@pytest.mark.parametrize("failure", ["disk full", "interrupt"])
def test_failure_as_a_shard_opens_leaves_no_partial_shard(tmp_path, monkeypatch, failure):
    # The temporary file exists once mkstemp returns; a failure before the shard object exists used to
    # leave it behind.
    out = tmp_path / "fail"
    real_open = ds.tarfile.open

    def open_tar(*args, **kwargs):
        if kwargs.get("mode", args[1] if len(args) > 1 else "r") == "w":
            if failure == "disk full":
                raise OSError(errno.ENOSPC, "No space left on device")
            raise KeyboardInterrupt
        return real_open(*args, **kwargs)

    monkeypatch.setattr(ds.tarfile, "open", open_tar)
    with pytest.raises(OSError if failure == "disk full" else KeyboardInterrupt):
        write_dataset(out, 7, **SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "manifest.json"]

def test_bad_dataset_sources(tmp_path, written):
    with pytest.raises(FileNotFoundError, match="not found"):
        Dataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no dataset manifest"):
        Dataset(tmp_path / "empty")
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad JSON"):
        Dataset(bad)
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a facecore.synth manifest"):
        Dataset(bad)
    m = json.loads((written[0] / "manifest.json").read_text())
    bad.write_text(json.dumps({**m, "version": 99}))
    with pytest.raises(ValueError, match="newer"):
        Dataset(bad)
    with pytest.raises(ValueError, match="unknown keys"):
        Dataset({"n": 3, "colour": "red"})
    with pytest.raises(ValueError, match="needs 'n'"):
        Dataset({"seed": 3})
    with pytest.raises(ValueError, match="batch"):
        Dataset({"n": 3}, batch=0)


def test_on_the_fly_needs_the_manifest_engine(written):
    m = json.loads((written[0] / "manifest.json").read_text())
    with pytest.raises(ValueError, match="not the rig this manifest was written with"):
        next(iter(Dataset({**m, "rig": {**m["rig"], "sha256": "0" * 64}})))
    with pytest.raises(ValueError, match="the preset of domain 'clean' changed"):
        next(iter(Dataset({**m, "preset": {**m["preset"], "albedo_variation": 0.5}})))
    with pytest.warns(UserWarning, match="manifest written by facecore 0.0.1"):
        next(iter(Dataset({**m, "facecore_version": "0.0.1"})))
