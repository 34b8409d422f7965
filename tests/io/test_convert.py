"""``facecore.io.convert`` and ``facecore convert``: every pair of Live Link Face CSV, KeyframeFace
JSONL responses, SemanticFace JSON and GLB round-trips its values (to each format's precision);
pairs that cannot hold a track fail with one clear line."""

from __future__ import annotations

import json
import math
import os
import re
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facecore import arkit
from facecore.cli import app
from facecore.io import (
    FormatError,
    Track,
    TrackingLostWarning,
    read_csv,
    read_keyframeface,
    read_semanticface,
    write_csv,
    write_keyframeface,
    write_semanticface,
)
from facecore.io.convert import (
    FORMATS,
    KEYFRAME_FORMATS,
    _pose_from_quaternions,
    convert,
    format_of,
    read_glb_track,
    read_track,
    write_track,
)
from facecore.io.gltf import pose_quaternions, write_glb
from facecore.rig import FaceRig

from ..conftest import KEYFRAMEFACE_DIR
from ..meshes import uv_sphere

SUFFIX = {"csv": ".csv", "keyframeface": ".jsonl", "semanticface": ".json", "glb": ".glb"}
runner = CliRunner()


@pytest.fixture
def rng() -> np.random.Generator:
    seed = int.from_bytes(os.urandom(4), "little")  # fresh inputs every run; printed on failure
    print(f"numpy seed: {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def rig() -> FaceRig:
    """A small sphere rig (a few hundred vertices): GLB writing stays fast."""
    g = torch.Generator().manual_seed(0)
    v, f = uv_sphere(8, torch.float32)
    V = len(v)
    deltas = torch.zeros(52, V, 3)
    deltas[[0, 17, 24], : V // 3] = torch.randn(3, V // 3, 3, generator=g) * 0.1
    return FaceRig(neutral=v * 10, triangles=f, deltas=deltas,
                   channels=tuple(arkit.BLENDSHAPES[k] for k in (0, 17, 24)),
                   groups={"left_eye": torch.arange(0, 4), "right_eye": torch.arange(4, 8)},
                   eye_centers=torch.tensor([[3.0, 2.0, 8.0], [-3.0, 2.0, 8.0]]),
                   neck_pivot=torch.tensor([0.0, -9.0, -2.0]), metadata={"units": "cm"})


@pytest.fixture(scope="module")
def rig_file(rig, tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("rig") / "sphere.safetensors"
    rig.save(p)
    return str(p)


def random_track(rng, n: int, fps: float, *, eyes: bool = True) -> Track:
    params = rng.uniform(arkit.LOW, arkit.HIGH, size=(n, 61)).astype(np.float32)
    params[:, 52:55] *= np.float32(0.9)  # head pose within +-0.9 (81 degrees): away from gimbal lock
    if not eyes:
        params[:, 55:] = 0
    return Track.from_params(params, fps=fps)


# --- every pair ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dst", FORMATS)
@pytest.mark.parametrize("src", FORMATS)
def test_each_pair_round_trips(tmp_path, rng, rig, src, dst):
    n = 1 if "semanticface" in (src, dst) else 7
    fps = 2.0  # times k / 2 are exact in CSV timecodes and in GLB float32 times
    glb = "glb" in (src, dst)
    track = random_track(rng, n, fps, eyes=not glb)
    a = tmp_path / f"a{SUFFIX[src]}"
    b = tmp_path / f"b{SUFFIX[dst]}"
    write_track(a, track, src, rig=rig if src == "glb" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped: no warning
        written = convert(a, b, fps=fps if src in KEYFRAME_FORMATS else None,
                          rig=rig if dst == "glb" else None)
    back = read_track(b, fps=fps if dst in KEYFRAME_FORMATS else None)
    assert len(back) == len(written) == n and back.tracked.all()
    np.testing.assert_array_equal(back.times, track.times)
    if n > 1:
        assert back.fps == fps
    # CSV/JSONL/JSON: the shortest text of each float32 reads back exactly; GLB: float32 weights.
    np.testing.assert_array_equal(back.params[:, :52], track.params[:, :52])
    np.testing.assert_array_equal(back.params[:, 55:], track.params[:, 55:])
    if glb:
        # The head pose goes through a float32 quaternion (components to 6e-8) and asin, whose slope
        # 1/cos(pitch) is <= 6.4 at |pitch| <= 0.9 * pi/2: about 5e-7 of the channel's unit (pi/2).
        np.testing.assert_allclose(back.params[:, 52:55], track.params[:, 52:55], rtol=0, atol=2e-6)
    else:
        np.testing.assert_array_equal(back.params[:, 52:55], track.params[:, 52:55])


def test_pose_decomposition_inverts_pose_quaternions(rng):
    # Near gimbal lock (pitch -> +-pi/2) yaw and roll are ill-conditioned: a float32 quaternion
    # (6e-8) moves them by ~6e-8 / cos(pitch), i.e. <= 8e-7 rad for |pitch| <= 0.95 * pi/2.
    angles = rng.uniform(-1, 1, size=(500, 3)) * (math.pi / 2) * np.array([1, 0.95, 1])
    q = pose_quaternions(angles[:, 0], angles[:, 1], angles[:, 2]).astype(np.float64)
    np.testing.assert_allclose(_pose_from_quaternions(q), angles, rtol=0, atol=2e-6)
    exact = np.array([[0.3, -0.2, 0.1], [0.0, 0.0, 0.0], [-1.2, 0.7, -0.4]])
    q64 = _quaternions64(exact)
    np.testing.assert_allclose(_pose_from_quaternions(q64), exact, rtol=0, atol=1e-12)


def _quaternions64(angles: np.ndarray) -> np.ndarray:
    """pose_quaternions in float64 (the writer rounds to float32): Ry(yaw) Rx(-pitch) Rz(-roll)."""
    from scipy.spatial.transform import Rotation

    yaw, pitch, roll = angles.T
    r = Rotation.from_euler("YXZ", np.stack([yaw, -pitch, -roll], axis=1))
    return r.as_quat()  # x, y, z, w


def test_semanticface_analysis_travels_and_is_empty_otherwise(tmp_path, rng):
    params = random_track(rng, 1, 1.0).params[0]
    src = tmp_path / "a.json"
    analysis = {"expression_category": "smile", "muscle_movements": "AU12", "emotional_implication": "joy",
                "symmetry": "symmetric"}
    write_semanticface(src, analysis, params)
    convert(src, tmp_path / "b.json")
    got, back = read_semanticface(tmp_path / "b.json")
    assert got == analysis
    np.testing.assert_array_equal(back, params)
    convert(src, tmp_path / "c.csv")
    convert(tmp_path / "c.csv", tmp_path / "d.json")
    got, back = read_semanticface(tmp_path / "d.json")
    assert list(got) == ["expression_category", "muscle_movements", "emotional_implication", "symmetry"]
    assert set(got.values()) == {""}
    np.testing.assert_array_equal(back, params)


def test_keyframeface_order_and_spacing(tmp_path, rng):
    keys = random_track(rng, 3, 1.0).params
    p = tmp_path / "r.jsonl"
    # Responses written in the order they finished: read in keyframe-number order.
    write_keyframeface(p, [{"Keyframe_three": keys[2]}, {"Keyframe_one": keys[0]}, {"Keyframe_two": keys[1]}])
    track = read_track(p)
    np.testing.assert_array_equal(track.params, keys)
    np.testing.assert_array_equal(track.times, [0, 1, 2])
    np.testing.assert_array_equal(read_track(p, fps=4).times, [0, 0.25, 0.5])
    convert(p, tmp_path / "r.csv", fps=4)
    np.testing.assert_array_equal(read_csv(tmp_path / "r.csv").params, keys)
    convert(tmp_path / "r.csv", tmp_path / "again.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert [next(iter(json.loads(x["response"]))) for x in lines] == ["Keyframe_one", "Keyframe_two",
                                                                        "Keyframe_three"]
    write_keyframeface(p, [{"Keyframe_one": keys[0]}, {"Keyframe_one": keys[1]}])
    with pytest.raises(FormatError, match=r"r\.jsonl: keyframe 'Keyframe_one' is given twice"):
        read_track(p)


def test_example_result_jsonl_becomes_example_result_csv(tmp_path):
    if not (KEYFRAMEFACE_DIR / "example_result.jsonl").exists():
        pytest.skip(f"KeyframeFace examples not found at {KEYFRAMEFACE_DIR}")
    out = tmp_path / "r.csv"
    convert(KEYFRAMEFACE_DIR / "example_result.jsonl", out)  # fps 1: KeyframeFace's own spacing
    assert read_csv(out) == read_csv(KEYFRAMEFACE_DIR / "example_result.csv")
    # and back: the same keyframes as the published responses
    convert(KEYFRAMEFACE_DIR / "example_result.csv", tmp_path / "r.jsonl")

    def lists(path):
        return [{k: v.tolist() for k, v in r.items()} for r in read_keyframeface(path)]

    assert lists(tmp_path / "r.jsonl") == lists(KEYFRAMEFACE_DIR / "example_result.jsonl")


# --- tracking-lost CSV input -----------------------------------------------------------------------


@pytest.fixture
def lost_take(tmp_path):
    """Five frames at 30 fps, frames 1 and 2 lost (0.0 -> 0.75 across the gap)."""
    track = Track.from_params(np.zeros((5, 61), np.float32), fps=30,
                              tracked=np.array([True, False, False, True, True]))
    track.params[3:, :55] = 0.75  # no eye pose: a GLB would drop it (with a warning)
    p = tmp_path / "take.csv"
    write_csv(p, track)
    return p


def test_csv_lost_rows_through_each_format(lost_take, tmp_path, rig):
    with pytest.warns(TrackingLostWarning, match="tracking lost in 2 of 5"):
        convert(lost_take, tmp_path / "keep.csv")  # lost not given: a CSV keeps its lost rows
    assert (tmp_path / "keep.csv").read_text() == lost_take.read_text()
    with pytest.warns(TrackingLostWarning):
        convert(lost_take, tmp_path / "filled.csv", lost="interpolate")  # asked to fill: filled
    filled = read_csv(tmp_path / "filled.csv")
    assert filled.tracked.all()
    np.testing.assert_array_equal(filled.params[:, 0], np.float32([0, 0.25, 0.5, 0.75, 0.75]))
    with pytest.warns(TrackingLostWarning):
        convert(lost_take, tmp_path / "nan.csv", lost="nan")  # NaN frames are CSV lost rows
    assert (tmp_path / "nan.csv").read_text() == lost_take.read_text()
    with pytest.warns(TrackingLostWarning):
        convert(lost_take, tmp_path / "held.glb", rig=rig)  # default: hold
    np.testing.assert_array_equal(read_glb_track(tmp_path / "held.glb").params[:, 0], [0, 0, 0, 0.75, 0.75])
    for dst in ("x.jsonl", "x.glb"):
        with pytest.warns(TrackingLostWarning), pytest.raises(ValueError, match=r"NaN parameters .* "
                                                              r"--lost hold or interpolate"):
            convert(lost_take, tmp_path / dst, lost="nan", rig=rig if dst.endswith(".glb") else None)
        assert not (tmp_path / dst).exists()


def test_resampling_csv(tmp_path, rng):
    track = random_track(rng, 31, 30.0)  # one second at 30 fps
    write_csv(tmp_path / "t.csv", track)
    out = convert(tmp_path / "t.csv", tmp_path / "t10.csv", fps=10)
    back = read_csv(tmp_path / "t10.csv")
    assert len(back) == 11 and back.fps == 10 and out == back
    np.testing.assert_array_equal(back.params, track.params[::3])  # on the source frames: exact
    half = convert(tmp_path / "t.csv", tmp_path / "t60.csv", fps=60)
    np.testing.assert_allclose(half.params[1], (track.params[0].astype(np.float64) + track.params[1]) / 2,
                               rtol=0, atol=1e-7)
    convert(tmp_path / "t.csv", tmp_path / "k.jsonl", fps=1)  # a take -> keyframes, 1 per second
    np.testing.assert_array_equal(read_track(tmp_path / "k.jsonl").params, track.params[[0, 30]])


# --- GLB input -------------------------------------------------------------------------------------


def _edit_glb_json(path, edit) -> None:
    """Rewrite the JSON chunk of a GLB (same length: the binary chunk stays where it is)."""
    raw = bytearray(path.read_bytes())
    size = int.from_bytes(raw[12:16], "little")
    text = raw[20:20 + size].decode()
    new = edit(text)
    assert len(new.encode()) == size
    raw[20:20 + size] = new.encode()
    path.write_bytes(bytes(raw))


def test_glb_names_are_read_in_any_case_and_unknown_ones_refused(tmp_path, rng, rig):
    track = random_track(rng, 4, 30.0, eyes=False)
    p = tmp_path / "a.glb"
    write_track(p, track, rig=rig)
    _edit_glb_json(p, lambda t: re.sub(r'"(jawopen)"', lambda m: f'"{m.group(1).upper()}"', t, flags=re.I))
    back = read_glb_track(p)
    np.testing.assert_array_equal(back.params[:, :52], track.params[:, :52])
    _edit_glb_json(p, lambda t: t.replace('"JAWOPEN"', '"JAWOPEX"'))
    with pytest.raises(FormatError, match=r"a\.glb: morph target names: unknown ARKit channel name 'JAWOPEX"):
        read_glb_track(p)


def test_glb_names_in_each_convention_and_recorded_head_angle(tmp_path, rng, rig):
    """Whatever convention the writer names the morph targets in (camelCase by default in newer
    write_glb versions, the Live Link Face spelling before), and whatever head angle it records in
    asset.extras.facecore, the track reads back."""
    import inspect

    params = inspect.signature(write_glb).parameters
    conventions = [None] + (["arkit", "livelinkface", "arkit_raw"] if "names" in params else [])
    track = random_track(rng, 5, 30.0, eyes=False)
    for names in conventions:
        p = tmp_path / f"{names}.glb"
        kw = {} if names is None else {"names": names}
        if "head_max_angle" in params and names is not None:
            kw["head_max_angle"] = 1.0  # recorded in the file (newer writers): must be used to read it
        write_glb(path=p, rig=rig, track=track, **kw)
        back = read_glb_track(p)
        np.testing.assert_array_equal(back.params[:, :52], track.params[:, :52])
        np.testing.assert_allclose(back.params[:, 52:55], track.params[:, 52:55], rtol=0, atol=2e-6)


def test_glb_without_animation(tmp_path, rig):
    p = tmp_path / "rig.glb"
    write_glb(path=p, rig=rig)
    with pytest.raises(FormatError, match=r"rig\.glb: has no morph-target weights animation"):
        convert(p, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_glb_output_warns_about_eyes(tmp_path, rng, rig):
    track = random_track(rng, 3, 30.0)
    write_csv(tmp_path / "t.csv", track)
    with pytest.warns(UserWarning, match="no eye rotations"):
        convert(tmp_path / "t.csv", tmp_path / "t.glb", rig=rig)
    back = read_glb_track(tmp_path / "t.glb")
    assert (back.params[:, 55:] == 0).all()
    np.testing.assert_array_equal(back.params[:, :52], track.params[:, :52])


# --- errors ----------------------------------------------------------------------------------------


def test_pairs_that_cannot_hold_the_track(tmp_path, rng):
    track = random_track(rng, 150, 30.0)
    write_csv(tmp_path / "t.csv", track)
    with pytest.raises(ValueError, match=r"SemanticFace answer holds one frame, the track has 150: take one "
                                         r"with --frame N \(frame=N\), N in 0\.\.149"):
        convert(tmp_path / "t.csv", tmp_path / "t.json")
    convert(tmp_path / "t.csv", tmp_path / "t.json", frame=42)
    np.testing.assert_array_equal(read_semanticface(tmp_path / "t.json")[1], track.params[42])
    with pytest.raises(ValueError, match="at most 99 keyframes, the track has 150 frames: sample keyframes "
                                         "with --fps F"):
        convert(tmp_path / "t.csv", tmp_path / "t.jsonl")
    for bad in (150, -1):
        with pytest.raises(ValueError, match=r"frame .* is out of range: .* has 150 frames \(0\.\.149\)"):
            convert(tmp_path / "t.csv", tmp_path / "t.json", frame=bad)
    with pytest.raises(ValueError, match="frame must be an int"):
        convert(tmp_path / "t.csv", tmp_path / "t.json", frame=1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.json"]


def test_bad_formats_and_options(tmp_path, rng, keyframeface_dir):
    write_csv(tmp_path / "t.csv", random_track(rng, 3, 30.0))
    with pytest.raises(ValueError, match=r"cannot tell the format of output .*t\.txt.* from its suffix"):
        convert(tmp_path / "t.csv", tmp_path / "t.txt")
    convert(tmp_path / "t.csv", tmp_path / "t.txt", dst_format="livelinkface")  # an alias of csv
    assert read_csv(tmp_path / "t.txt") == read_csv(tmp_path / "t.csv")
    with pytest.raises(ValueError, match="output format must be one of csv, keyframeface, semanticface, glb"):
        convert(tmp_path / "t.csv", tmp_path / "t.txt", dst_format="fbx")
    with pytest.raises(ValueError, match="lost applies to Live Link Face CSV input only"):
        convert(keyframeface_dir / "example_result.jsonl", tmp_path / "x.csv", lost="hold")
    with pytest.raises(ValueError, match="rig applies to GLB output only"):
        convert(tmp_path / "t.csv", tmp_path / "x.jsonl", rig="default")
    with pytest.raises(ValueError, match="fps must be a positive number"):
        convert(tmp_path / "t.csv", tmp_path / "x.jsonl", fps=0)
    with pytest.raises(ValueError, match="lost must be one of"):
        convert(tmp_path / "t.csv", tmp_path / "x.jsonl", lost="drop")
    with pytest.raises(ValueError, match=r"binary glTF: name the output \.glb"):
        convert(tmp_path / "t.csv", tmp_path / "x.gltf")
    with pytest.raises(FormatError, match=r"example\.jsonl: holds KeyframeFace requests"):
        convert(keyframeface_dir / "example.jsonl", tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="input not found"):
        convert(tmp_path / "missing.csv", tmp_path / "x.json")
    assert format_of("a.GLB") == "glb" and format_of("x", "jsonl") == "keyframeface"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.txt"]


# --- the command -----------------------------------------------------------------------------------


def run(*args):
    return runner.invoke(app, ["convert", *map(str, args)])


def one_line_error(r, *words):
    assert r.exit_code == 1, r.output
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("error: ") and "Traceback" not in r.output, r.output
    for w in words:
        assert w in err, err


def test_cli_converts_and_reports(tmp_path, rng, rig_file):
    track = random_track(rng, 5, 30.0)
    write_csv(tmp_path / "t.csv", track)
    r = run(tmp_path / "t.csv", "-o", tmp_path / "out" / "t.glb", "--rig", rig_file)
    assert r.exit_code == 0, r.output
    assert "wrote 1 files (5 frames, glb)" in r.stdout and "t.glb" in r.stdout
    assert r.stderr.startswith("warning: a GLB holds no eye rotations")
    back = read_glb_track(tmp_path / "out" / "t.glb")
    np.testing.assert_array_equal(back.params[:, :52], track.params[:, :52])
    r = run(tmp_path / "out" / "t.glb", "-o", tmp_path / "t.jsonl")
    assert r.exit_code == 0, r.output
    r = run(tmp_path / "t.jsonl", "-o", tmp_path / "t.json", "--frame", "2")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_semanticface(tmp_path / "t.json")[1][:52], track.params[2, :52])
    r = run(tmp_path / "t.csv", "-o", tmp_path / "copy", "--to", "csv", "--lenient")
    assert r.exit_code == 0 and read_csv(tmp_path / "copy") == read_csv(tmp_path / "t.csv")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "t.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert not [p for p in tmp_path.rglob(".*partial*")]


def test_cli_default_rig(tmp_path, rng):
    write_csv(tmp_path / "t.csv", random_track(rng, 2, 30.0, eyes=False))
    r = run(tmp_path / "t.csv", "-o", tmp_path / "t.glb")
    assert r.exit_code == 0, r.output
    assert len(read_glb_track(tmp_path / "t.glb")) == 2


def test_cli_one_line_errors_and_nothing_left_behind(tmp_path, rng, lost_take):
    write_csv(tmp_path / "long.csv", random_track(rng, 120, 30.0))
    (tmp_path / "old.json").write_text("old")
    one_line_error(run(tmp_path / "long.csv", "-o", tmp_path / "old.json"), "holds one frame", "--frame N")
    assert (tmp_path / "old.json").read_text() == "old"  # a failed run leaves the old output as it was
    one_line_error(run(tmp_path / "long.csv", "-o", tmp_path / "k.jsonl"), "at most 99 keyframes", "--fps")
    one_line_error(run(tmp_path / "long.csv", "-o", tmp_path / "x.fbx"), "cannot tell the format")
    one_line_error(run(tmp_path / "long.csv", "-o", tmp_path / "x.csv", "--to", "fbx"), "output format")
    one_line_error(run(tmp_path / "long.csv", "-o", tmp_path / "x.csv", "--lost", "drop"), "--lost must be")
    one_line_error(run(tmp_path / "long.csv", "-o", tmp_path / "x.csv", "--fps", "0"), "--fps")
    one_line_error(run(tmp_path / "missing.csv", "-o", tmp_path / "x.csv"), "input not found")
    one_line_error(run(tmp_path / "long.csv", "-o", tmp_path / "x.jsonl", "--rig", "default"),
                   "rig applies to GLB output only")
    (tmp_path / "dir.csv").mkdir()
    one_line_error(run(tmp_path / "long.csv", "-o", tmp_path / "dir.csv"), "is a folder")
    r = run(lost_take, "-o", tmp_path / "n.jsonl", "--lost", "nan")
    one_line_error(r, "NaN parameters", "--lost hold or interpolate")
    assert r.stderr.startswith("warning: ") and "tracking lost in 2 of 5 frames" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.csv", "long.csv", "old.json", "take.csv"]
