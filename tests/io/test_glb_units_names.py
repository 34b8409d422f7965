"""write_glb: metres by default (glTF's unit) from a centimetre rig, ARKit camelCase target names by default,
the convention and units in asset.extras, round trips through read_glb and facecore.rig.load_gltf."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from facecore import arkit
from facecore.io.gltf import GLB_NAMES, glb_target_names, read_glb, write_glb
from facecore.io.track import Track

HALF_PI = pytest.approx(np.pi / 2)  # write_glb's default head_max_angle


@pytest.fixture(scope="module")
def track():
    rng = np.random.default_rng(7)
    n = 23
    params = np.zeros((n, 61), np.float32)
    params[:, :52] = rng.random((n, 52))
    params[:, 52:55] = rng.uniform(-0.4, 0.4, (n, 3))
    return Track(times=np.arange(n) / 30.0 + 1.5, params=params, fps=30.0)


def position_accessor(js: dict) -> dict:
    return js["accessors"][js["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]


def test_default_is_metres_and_arkit_camelcase(rig, track, tmp_path):
    assert rig.metadata["units"] == "cm"
    path = tmp_path / "face.glb"
    write_glb(path, rig, track)
    g = read_glb(path)
    js = g["json"]
    # the POSITION accessor's bounds are a head in metres (the default rig: head and neck, ~0.32 m)
    acc = position_accessor(js)
    lo, hi = np.array(acc["min"]), np.array(acc["max"])
    height = hi[1] - lo[1]
    assert 0.2 < height < 0.5, height
    rig_lo, rig_hi = rig.neutral.numpy().min(0), rig.neutral.numpy().max(0)
    np.testing.assert_allclose(hi - lo, (rig_hi - rig_lo) * 0.01, rtol=1e-6)
    # positions, the head node's translation and the morph deltas are all scaled
    world = g["positions"] + np.asarray(g["node_translations"][0])
    np.testing.assert_allclose(world, rig.neutral.numpy() * 0.01, atol=1e-7)
    np.testing.assert_allclose(g["node_translations"][0], rig.neck_pivot.numpy() * 0.01, atol=1e-7)
    np.testing.assert_allclose(g["targets"], rig.dense_deltas().numpy() * 0.01, rtol=1e-6, atol=1e-10)
    # names: ARKit camelCase, in both places readers look
    assert g["target_names"] == list(arkit.names("arkit")[:52])
    assert g["target_names"][:2] == ["eyeBlinkLeft", "eyeLookDownLeft"]
    assert g["target_names"][51] == "tongueOut"
    assert js["asset"]["extras"]["facecore"] == {"names": "arkit", "units": "m", "rig_units": "cm",
                                                 "scale": 0.01, "head_max_angle": HALF_PI}
    # the animation is untouched by the unit change
    np.testing.assert_array_equal(g["weights"], track.params[:, :52])
    np.testing.assert_allclose(g["times"], track.times - track.times[0], atol=1e-6)
    assert g["rotations"].shape == (len(track), 4)


@pytest.mark.parametrize("names", GLB_NAMES)
def test_name_conventions(rig, tmp_path, names):
    write_glb(tmp_path / "n.glb", rig, names=names)
    g = read_glb(tmp_path / "n.glb")
    expected = [arkit.convert(n, names) for n in arkit.BLENDSHAPES]
    assert g["target_names"] == expected == list(glb_target_names(names))
    assert g["json"]["asset"]["extras"]["facecore"]["names"] == names
    # every written name reads back as its own channel, in order (Live Link Face's JawRight-first kept)
    assert [arkit.index(n) for n in g["target_names"]] == list(range(52))
    first = {"arkit": "eyeBlinkLeft", "livelinkface": "EyeBlinkLeft", "arkit_raw": "eyeBlink_L"}[names]
    assert g["target_names"][0] == first
    assert arkit.index(g["target_names"][15]) == arkit.INDEX["JawRight"]


def test_centimetres_keep_the_rig_numbers(rig, tmp_path):
    write_glb(tmp_path / "cm.glb", rig, units="cm")
    g = read_glb(tmp_path / "cm.glb")
    np.testing.assert_array_equal(g["targets"], rig.dense_deltas().numpy())
    np.testing.assert_allclose(g["positions"] + np.asarray(g["node_translations"][0]), rig.neutral.numpy(),
                               atol=1e-5)
    assert g["json"]["asset"]["extras"]["facecore"] == {"names": "arkit", "units": "cm", "rig_units": "cm",
                                                        "scale": 1.0, "head_max_angle": HALF_PI}


def _to_rig_units(back, path):
    """The loaded rig's neutral and deltas in the written rig's units, whichever way load_gltf reports them:
    as stored in the file (glTF metres) or already divided by asset.extras.facecore.scale."""
    info = read_glb(path)["json"]["asset"]["extras"]["facecore"]
    neutral, deltas = back.neutral.numpy(), back.dense_deltas().numpy()
    if back.metadata.get("units") != info["rig_units"]:
        neutral, deltas = neutral / info["scale"], deltas / info["scale"]
    return neutral, deltas


def test_load_gltf_round_trip(rig, tmp_path):
    from facecore.rig import load_gltf

    path = tmp_path / "m.glb"
    write_glb(path, rig)
    back = load_gltf(path)
    assert back.num_vertices == rig.num_vertices and set(back.channels) == set(arkit.BLENDSHAPES)
    neutral, deltas = _to_rig_units(back, path)
    np.testing.assert_allclose(neutral, rig.neutral.numpy(), atol=1e-4)  # float32 metres -> cm
    np.testing.assert_allclose(deltas, rig.dense_deltas().numpy(), atol=1e-5)
    # writing the loaded rig again does not scale twice: it is known to be in metres (or cm if converted)
    again = tmp_path / "again.glb"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_glb(again, back)
    a, b = read_glb(path), read_glb(again)
    np.testing.assert_allclose(b["positions"] + np.asarray(b["node_translations"][0]),
                               a["positions"] + np.asarray(a["node_translations"][0]), atol=1e-6)
    np.testing.assert_allclose(b["targets"], a["targets"], atol=1e-8)


def test_rig_units_from_metadata_or_argument(rig, tmp_path):
    import copy

    mm = copy.copy(rig)
    mm.metadata = {**rig.metadata, "units": "mm"}
    write_glb(tmp_path / "mm.glb", mm)
    g = read_glb(tmp_path / "mm.glb")
    assert g["json"]["asset"]["extras"]["facecore"]["scale"] == pytest.approx(0.001)
    np.testing.assert_allclose(g["targets"], rig.dense_deltas().numpy() * 0.001, rtol=1e-6, atol=1e-12)
    unknown = copy.copy(rig)
    unknown.metadata = {**rig.metadata, "units": "unknown"}
    with pytest.warns(UserWarning, match="assuming centimetres"):
        write_glb(tmp_path / "u.glb", unknown)
    assert read_glb(tmp_path / "u.glb")["json"]["asset"]["extras"]["facecore"]["rig_units"] == "cm"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_glb(tmp_path / "u2.glb", unknown, rig_units="m")
    g = read_glb(tmp_path / "u2.glb")
    assert g["json"]["asset"]["extras"]["facecore"]["scale"] == 1.0
    np.testing.assert_array_equal(g["targets"], rig.dense_deltas().numpy())


def test_bad_names_and_units(rig, tmp_path):
    p = tmp_path / "bad.glb"
    expected = r"names must be one of 'arkit', 'livelinkface', 'arkit_raw', got 'x'$"
    with pytest.raises(ValueError, match=expected):
        write_glb(p, rig, names="x")
    with pytest.raises(ValueError, match="tongueOut"):
        write_glb(p, rig, names="mediapipe")
    with pytest.raises(ValueError, match="halves"):
        write_glb(p, rig, names="ict")
    with pytest.raises(ValueError, match=r"units must be one of 'm', 'cm', got 'inch'"):
        write_glb(p, rig, units="inch")
    with pytest.raises(ValueError, match="units must be one of"):
        write_glb(p, rig, units="M")
    with pytest.raises(ValueError, match="units must be one of"):
        write_glb(p, rig, units=["m"])
    with pytest.raises(ValueError, match="names must be one of"):
        write_glb(p, rig, names=["arkit"])
    with pytest.raises(ValueError, match="rig_units must be"):
        write_glb(p, rig, rig_units="furlong")
    with pytest.raises(ValueError, match="head_max_angle"):
        write_glb(p, rig, head_max_angle=0.0)
    assert not p.exists()  # nothing written on a bad argument
