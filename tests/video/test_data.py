"""ClipDataset: the two rendered domains (a sim-to-real proxy), the gap, determinism, real folders."""

from __future__ import annotations

import numpy as np
import pytest

from facecore.video.data import ClipDataset, domain_settings

KEYS = {"frames", "reference", "params", "motion_maps", "domain", "identity", "rig", "clip_id"}


def test_sample_layout():
    s = ClipDataset("real_proxy", n=2, frames=3, size=24, seed=0)[1]
    assert KEYS <= set(s)
    assert s["frames"].shape == (3, 24, 24, 3) and s["frames"].dtype == np.uint8
    assert s["reference"].shape == (24, 24, 3) and s["reference"].dtype == np.uint8
    assert s["params"].shape == (3, 61) and s["params"].dtype == np.float32
    assert s["motion_maps"].shape == (3, 24, 24, 4) and s["motion_maps"].dtype == np.float32
    assert s["domain"] == "real_proxy" and s["rig"] == "ict" and s["identity"].shape == (20,)
    normals, depth = s["motion_maps"][..., :3], s["motion_maps"][..., 3]
    face = depth > 0
    assert face.mean() > 0.1
    np.testing.assert_allclose(np.linalg.norm(normals[face], axis=-1), 1.0, atol=1e-3)
    assert depth.max() < 1 and np.all(normals[~face] == 0)
    # the reference is not one of the clip's frames
    assert all(not np.array_equal(s["reference"], f) for f in s["frames"])


def test_deterministic_per_seed_and_index():
    a = ClipDataset("synthetic", n=2, frames=2, size=16, seed=5)[1]
    b = ClipDataset("synthetic", n=7, frames=2, size=16, seed=5)[1]
    for k in ("frames", "reference", "params", "motion_maps", "identity"):
        assert np.array_equal(a[k], b[k]), k
    assert a["clip_id"] == b["clip_id"]
    c = ClipDataset("synthetic", n=2, frames=2, size=16, seed=6)[1]
    assert not np.array_equal(a["frames"], c["frames"])
    # the motion maps depend on the motion only (the canonical avatar), not on the domain
    d = ClipDataset("real_proxy", n=2, frames=2, size=16, seed=5)[1]
    assert not np.array_equal(a["params"], d["params"])


def test_domains_differ_in_appearance_and_noise():
    def clips(domain):
        data = ClipDataset(domain, n=6, frames=3, size=32, seed=0)
        return np.stack([s["frames"] for s in data]).astype(float)

    real, syn = clips("real_proxy"), clips("synthetic")
    # wild exposure / lighting / backgrounds spread the clips' brightness far more than studio does
    assert real.mean((1, 2, 3, 4)).std() > 1.2 * syn.mean((1, 2, 3, 4)).std()
    # the real proxy carries per-frame sensor noise (the median pixel changes between frames); the
    # synthetic domain's static pixels stay exactly still
    assert np.median(np.abs(np.diff(real, axis=1))) >= 1.0
    assert np.median(np.abs(np.diff(syn, axis=1))) == 0.0


def test_gap_interpolates_scene_settings():
    real = domain_settings("real_proxy")
    g0 = domain_settings("synthetic", 0.0, synthetic_rig="ict")
    g1 = domain_settings("synthetic", 1.0)
    gh = domain_settings("synthetic", 0.5)
    assert g0["scene"].lighting.ambient == real["scene"].lighting.ambient
    assert g0["scene"].sensor.noise == real["scene"].sensor.noise and g0["rig"] == "ict"
    assert g0["prior"] == real["prior"] and g0["frame_noise"] == real["frame_noise"]
    assert g1["scene"].sensor.noise == (0.0, 0.008)  # studio's
    assert g1["scene"].identity_scale == 1.6 and g1["rig"] == "stylized"
    mid = gh["scene"].sensor.jpeg
    assert mid == pytest.approx(0.5 * (real["scene"].sensor.jpeg + g1["scene"].sensor.jpeg))
    assert gh["scene"].background.kinds["noise"] == pytest.approx(1.0)  # 2.0 in wild, absent in studio
    assert real["prior"].head_sd < g1["prior"].head_sd
    assert domain_settings("real_proxy", 0.3)["scene"].to_dict() == real["scene"].to_dict()


def test_bad_arguments():
    with pytest.raises(ValueError, match="domain"):
        ClipDataset("photos")
    with pytest.raises(ValueError, match="gap"):
        ClipDataset("synthetic", gap=1.5)
    with pytest.raises(ValueError, match="frames"):
        ClipDataset("synthetic", frames=0)
    d = ClipDataset("synthetic", n=2, frames=1, size=16)
    with pytest.raises(IndexError):
        d[2]
    with pytest.raises(TypeError):
        d["0"]


def test_cache_round_trip(tmp_path):
    d = ClipDataset("synthetic", n=1, frames=2, size=16, seed=1, cache_dir=tmp_path)
    a = d[0]
    assert len(list(tmp_path.glob("*.npz"))) == 1
    b = ClipDataset("synthetic", n=1, frames=2, size=16, seed=1, cache_dir=tmp_path)[0]
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype, k
        else:
            assert a[k] == b[k], k


def _write_take(folder, name, frames, params, fps=30.0):
    from facecore.io import Track, write_csv
    from facecore.io.video import write_video

    write_video(folder / f"{name}.mp4", list(frames), fps, quality=0)
    times = 3600.0 + np.arange(len(params)) / fps  # a time-of-day start, as Live Link Face writes
    write_csv(folder / f"{name}.csv", Track(times, params, fps=fps))


def test_from_folder(tmp_path):
    rng = np.random.default_rng(0)
    n = 10
    # a moving bright square on a 40 x 48 frame (cropped to its centre square and resized)
    frames = np.zeros((n, 40, 48, 3), np.uint8)
    for t in range(n):
        frames[t, 10:20, 8 + 2 * t: 18 + 2 * t] = 250
    params = rng.uniform(0, 1, (n, 61)).astype(np.float32)
    params[:, 52:] = 0
    _write_take(tmp_path, "take_a", frames, params)
    _write_take(tmp_path, "take_b", frames[:3], params[:3])  # shorter than a clip: skipped
    d = ClipDataset.from_folder(tmp_path, frames=4, size=16)
    assert len(d) == 2 and d.skipped and "take_b" in d.skipped[0]
    s = d[1]
    assert KEYS <= set(s) and s["domain"] == "real" and s["identity"] == 0
    assert s["frames"].shape == (4, 16, 16, 3) and s["motion_maps"].shape == (4, 16, 16, 4)
    np.testing.assert_allclose(s["params"], params[4:8], atol=1e-6)  # rows aligned to frames by time
    assert s["clip_id"] == "take_a:4"
    # the bright square moves right: its column centroid grows over the clip
    cols = [np.nonzero(f[..., 0].max(0) > 128)[0].mean() for f in s["frames"]]
    assert cols[-1] > cols[0]
    # the reference is a frame of the same video outside the clip (frame (4 + 5) = 9)
    ref_cols = np.nonzero(s["reference"][..., 0].max(0) > 128)[0].mean()
    assert ref_cols > cols[-1]


def test_from_folder_errors(tmp_path):
    from facecore.io import FormatError
    from facecore.io.video import write_video

    with pytest.raises(FileNotFoundError):
        ClipDataset.from_folder(tmp_path / "missing")
    with pytest.raises(FormatError, match="no videos"):
        ClipDataset.from_folder(tmp_path)
    write_video(tmp_path / "x.mp4", [np.zeros((16, 16, 3), np.uint8)] * 2, 30.0)
    with pytest.raises(FormatError, match="x.csv"):
        ClipDataset.from_folder(tmp_path)


def test_render_stills():
    from facecore.video.data import render_stills

    a = render_stills("real_proxy", 3, 16, seed=2)
    assert a["frames"].shape == (3, 16, 16, 3) and a["frames"].dtype == np.uint8
    assert a["params"].shape == (3, 61) and a["identity"].shape == (3, 20)
    b = render_stills("real_proxy", 2, 16, seed=2)
    assert np.array_equal(a["frames"][:2], b["frames"]) and np.array_equal(a["params"][:2], b["params"])
    assert render_stills("synthetic", 1, 16)["identity"].shape == (1, 11)
