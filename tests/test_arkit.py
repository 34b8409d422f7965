"""facecore.arkit: channel order, ranges, groups, name conversion, dict/array conversion, mirror, validate."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from facecore import _names, arkit
from facecore.pose import pose_rotations

CONVS = arkit.CONVENTIONS

# MediaPipe FaceLandmarker's blendshape categories, copied from its model card (index order).
MEDIAPIPE_PUBLISHED = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)


@pytest.fixture
def rng() -> np.random.Generator:
    seed = int.from_bytes(os.urandom(4), "little")  # fresh inputs every run; printed on failure
    print(f"numpy seed: {seed}")
    return np.random.default_rng(seed)


def random_params(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(arkit.LOW, arkit.HIGH, size=(*shape, 61)).astype(np.float32)


# --- schema -------------------------------------------------------------------------------------


def test_names_order_and_reexport():
    assert arkit.NAMES is _names.NAMES and arkit.BLENDSHAPES is _names.BLENDSHAPES
    assert len(arkit.NAMES) == 61 and len(arkit.BLENDSHAPES) == 52 and len(arkit.POSE) == 9
    assert arkit.NAMES[0] == "EyeBlinkLeft" and arkit.NAMES[51] == "TongueOut"
    assert arkit.NAMES[52:] == ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                                "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
    # Live Link Face's own order: JawRight before JawLeft, MouthRight before MouthLeft.
    assert arkit.index("JawRight") + 1 == arkit.index("JawLeft")
    assert arkit.index("MouthRight") + 1 == arkit.index("MouthLeft")
    assert all(arkit.INDEX[n] == i for i, n in enumerate(arkit.NAMES))


def test_ranges():
    assert arkit.RANGES.shape == (61, 2) and arkit.RANGES.dtype == np.float32
    assert (arkit.LOW[:52] == 0).all() and (arkit.HIGH[:52] == 1).all()
    assert (arkit.LOW[52:] == -1).all() and (arkit.HIGH[52:] == 1).all()
    with pytest.raises(ValueError):
        arkit.LOW[0] = 5  # read-only: nobody can corrupt the schema by accident


def test_groups_partition_the_channels():
    g = arkit.GROUPS
    assert sorted(g["upper_face"] + g["lower_face"]) == sorted(arkit.BLENDSHAPES)
    assert not set(g["upper_face"]) & set(g["lower_face"])
    parts = ("eyes", "jaw", "mouth", "brows", "cheeks", "nose", "tongue")
    assert sorted(sum((g[p] for p in parts), ())) == sorted(arkit.BLENDSHAPES)
    assert g["head_pose"] + g["eye_pose"] == arkit.POSE
    assert g["tongue"] == ("TongueOut",) and "JawOpen" in g["jaw"] and "BrowInnerUp" in g["brows"]
    assert "EyeBlinkLeft" in g["upper_face"] and "MouthSmileLeft" in g["lower_face"]
    for name, names in g.items():
        idx = arkit.group(name)
        assert idx.dtype == np.int64 and tuple(arkit.NAMES[i] for i in idx) == names
    with pytest.raises(ValueError, match="unknown group 'lips'.*mouth"):
        arkit.group("lips")


# --- conversion ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,conv,expected", [
    ("EyeBlinkLeft", "arkit", "eyeBlinkLeft"),
    ("EyeBlinkLeft", "arkit_raw", "eyeBlink_L"),
    ("eyeBlink_L", "livelinkface", "EyeBlinkLeft"),
    ("mouthSmile_R", "mediapipe", "mouthSmileRight"),
    ("JawLeft", "arkit_raw", "jawLeft"),  # a direction, not a side: no _L
    ("MouthRight", "ict", "mouthRight"),
    ("browInnerUp_L", "livelinkface", "BrowInnerUp"),
    ("cheekPuff_R", "arkit", "cheekPuff"),
    ("cheekPuff_R", "ict", "cheekPuff_R"),
    ("HeadYaw", "arkit", "headYaw"),
    ("rightEyePitch", "livelinkface", "RightEyePitch"),
    ("TongueOut", "arkit_raw", "tongueOut"),
    ("EYEBLINKLEFT", "livelinkface", "EyeBlinkLeft"),  # case-insensitive input
    ("_neutral", "mediapipe", "_neutral"),
    ("noseSneerRight", "ict", "noseSneer_R"),
])
def test_convert_examples(name, conv, expected):
    assert arkit.convert(name, conv) == expected


@pytest.mark.parametrize("conv", CONVS)
def test_convert_round_trips_every_channel(conv):
    for i, n in enumerate(arkit.NAMES):
        spellings = arkit.expand(n, conv)
        for s in spellings:
            assert arkit.index(s) == i and arkit.convert(s, conv) == s
            for other in ("livelinkface", "arkit", "arkit_raw"):
                via = arkit.convert(s, other)
                assert arkit.index(via) == i
                if len(spellings) == 1:  # ICT halves cannot come back from their single ARKit name
                    assert arkit.convert(via, conv) == s
        if len(spellings) == 1:
            assert arkit.convert(n, conv) == spellings[0]


def test_convention_name_lists():
    assert arkit.MEDIAPIPE_NAMES == MEDIAPIPE_PUBLISHED
    assert arkit.names("mediapipe") == MEDIAPIPE_PUBLISHED
    assert "tongueOut" not in arkit.MEDIAPIPE_NAMES
    assert arkit.names("livelinkface") == arkit.NAMES
    assert arkit.names("arkit")[0] == "eyeBlinkLeft" and len(arkit.names("arkit_raw")) == 61
    assert len(arkit.ICT_NAMES) == 57 and "tongueOut" not in arkit.ICT_NAMES
    assert {"browInnerUp_L", "browInnerUp_R", "cheekPuff_L", "cheekPuff_R"} <= set(arkit.ICT_NAMES)
    assert arkit.expand("BrowInnerUp", "ict") == ("browInnerUp_L", "browInnerUp_R")
    assert arkit.expand("TongueOut", "ict") == () and arkit.expand("HeadYaw", "mediapipe") == ()
    assert len(set(arkit.names("arkit_raw"))) == 61


def test_ict_names_match_the_ict_facekit_files(ict_dir):
    shapes = {p.stem for p in ict_dir.glob("*.obj")
              if p.stem != "generic_neutral_mesh" and not p.stem.startswith("identity")}
    assert shapes == set(arkit.ICT_NAMES)


@pytest.mark.parametrize("name,conv,match", [
    ("eyeBlnkLeft", "arkit", r"unknown ARKit channel name 'eyeBlnkLeft'; did you mean 'eyeBlinkLeft'"),
    ("MouthSmile_Left", "livelinkface", r"did you mean .*mouthSmile"),
    ("TongueOut", "mediapipe", "mediapipe convention has no channel for 'TongueOut'"),
    ("HeadYaw", "ict", "ict convention has no channel for 'HeadYaw'"),
    ("CheekPuff", "ict", r"split into cheekPuff_L and cheekPuff_R.*expand"),
    ("_neutral", "livelinkface", "has no ARKit channel"),
    ("cheekRaiser_L", "arkit", "has no ARKit channel"),
    ("EyeBlinkLeft", "facs", "unknown naming convention 'facs'"),
])
def test_convert_errors(name, conv, match):
    with pytest.raises(ValueError, match=match):
        arkit.convert(name, conv)


def test_lookup():
    assert arkit.lookup("mouthSmile_L") == arkit.index("MouthSmileLeft") == 23
    assert arkit.lookup("_neutral") is None and arkit.lookup("PupilDilate_R") is None
    with pytest.raises(ValueError, match="did you mean"):
        arkit.lookup("mouthSmile_Left")
    with pytest.raises(ValueError, match="'_neutral' has no ARKit channel.*mediapipe"):
        arkit.index("_neutral")


def test_convert_rejects_non_strings():
    with pytest.raises(TypeError, match="must be a str"):
        arkit.convert(3, "arkit")


# --- dicts and arrays ---------------------------------------------------------------------------


@pytest.mark.parametrize("conv", CONVS)
def test_to_dict_to_vector_round_trip(conv, rng):
    v = random_params(rng)
    d = arkit.to_dict(v, conv)
    back = arkit.to_vector(d)
    assert back.dtype == np.float32 and back.shape == (61,)
    kept = np.array([bool(arkit.expand(n, conv)) for n in arkit.NAMES])
    np.testing.assert_array_equal(back[kept], v[kept])
    assert (back[~kept] == 0).all()
    assert kept.sum() == {"livelinkface": 61, "arkit": 61, "arkit_raw": 61, "mediapipe": 51, "ict": 51}[conv]


def test_to_vector_details():
    v = arkit.to_vector({"browInnerUp_L": 0.2, "browInnerUp_R": 0.6, "_neutral": 0.9, "cheekRaiser_L": 1,
                         "jawOpen": 1, "HeadPitch": -0.5})
    assert v[arkit.index("BrowInnerUp")] == pytest.approx(0.4)
    assert v[arkit.index("JawOpen")] == 1 and v[arkit.index("HeadPitch")] == -0.5
    assert np.count_nonzero(v) == 3
    with pytest.raises(ValueError, match=r"60 channel\(s\) missing: EyeBlinkLeft"):
        arkit.to_vector({"JawOpen": 1}, missing="raise")
    with pytest.raises(ValueError, match="did you mean 'JawOpen'"):
        arkit.to_vector({"JawOpn": 1})
    assert arkit.to_vector({"JawOpn": 1, "JawOpen": 0.5}, unknown="ignore")[17] == 0.5
    with pytest.raises(ValueError, match="given twice"):
        arkit.to_vector({"JawOpen": 1, "jawOpen": 0.5})
    with pytest.raises(TypeError, match="value of 'JawOpen' must be a number"):
        arkit.to_vector({"JawOpen": "wide"})
    with pytest.raises(TypeError, match="from_columns"):
        arkit.to_vector({"JawOpen": np.zeros(3)})
    with pytest.raises(TypeError, match="mapping must be a dict"):
        arkit.to_vector([0.0] * 61)
    with pytest.raises(ValueError, match="missing must be"):
        arkit.to_vector({}, missing="nan")


def test_to_dict_inputs():
    t = torch.linspace(0, 1, 61)
    d = arkit.to_dict(t)
    assert list(d) == list(arkit.NAMES) and d["RightEyeRoll"] == 1.0
    ict = arkit.to_dict(t, "ict")
    assert ict["browInnerUp_L"] == ict["browInnerUp_R"] == d["BrowInnerUp"] and "tongueOut" not in ict
    assert "_neutral" not in arkit.to_dict(t, "mediapipe")
    with pytest.raises(ValueError, match=r"shape \[61\], got \[60\]"):
        arkit.to_dict(np.zeros(60))


def test_batch_dicts(rng):
    x = random_params(rng, 7)
    ds = arkit.to_dicts(x, "arkit_raw")
    assert len(ds) == 7
    np.testing.assert_array_equal(arkit.to_vectors(ds), x)
    with pytest.raises(ValueError, match=r"mappings\[1\]: unknown"):
        arkit.to_vectors([{}, {"nope": 1}])
    with pytest.raises(ValueError, match=r"\[N, 61\]"):
        arkit.to_dicts(x[0])


def test_columns_numpy_and_torch(rng):
    x = random_params(rng, 5, 3)
    cols = arkit.to_columns(x, "arkit")
    assert cols["eyeBlinkLeft"].shape == (5, 3)
    np.testing.assert_array_equal(arkit.from_columns(cols), x)
    # torch: differentiable, any dtype/device of the columns
    jaw = torch.rand(4, dtype=torch.float64, requires_grad=True)
    out = arkit.from_columns({"jawOpen": jaw, "browInnerUp_L": torch.ones(4, dtype=torch.float64),
                              "browInnerUp_R": torch.zeros(4, dtype=torch.float64)})
    assert out.shape == (4, 61) and out.dtype == torch.float64
    assert torch.equal(out[:, arkit.index("BrowInnerUp")], torch.full((4,), 0.5, dtype=torch.float64))
    out[:, arkit.index("JawOpen")].sum().backward()
    assert torch.equal(jaw.grad, torch.ones(4, dtype=torch.float64))
    tc = arkit.to_columns(torch.from_numpy(x))
    assert torch.is_tensor(tc["JawOpen"]) and tc["JawOpen"].shape == (5, 3)
    with pytest.raises(ValueError, match="same shape"):
        arkit.from_columns({"JawOpen": np.zeros(3), "JawLeft": np.zeros(4)})


def test_from_order_mediapipe_scores(rng):
    scores = rng.random((6, 52)).astype(np.float32)  # FaceLandmarker output, MediaPipe index order
    x = arkit.from_order(scores, arkit.MEDIAPIPE_NAMES)
    assert x.shape == (6, 61) and x.dtype == np.float32
    for j, n in enumerate(arkit.MEDIAPIPE_NAMES[1:], start=1):
        np.testing.assert_array_equal(x[:, arkit.index(n)], scores[:, j])
    assert (x[:, arkit.index("TongueOut")] == 0).all() and (x[:, 52:] == 0).all()
    back = arkit.to_order(x, arkit.MEDIAPIPE_NAMES, fill=-1.0)
    assert (back[:, 0] == -1).all()
    np.testing.assert_array_equal(back[:, 1:], scores[:, 1:])
    xt = arkit.from_order(torch.from_numpy(scores), arkit.MEDIAPIPE_NAMES)
    assert torch.is_tensor(xt)
    np.testing.assert_array_equal(xt.numpy(), x)
    with pytest.raises(ValueError, match=r"\[\.\.\., 52\]"):
        arkit.from_order(scores[:, :50], arkit.MEDIAPIPE_NAMES)
    scores[0, 0] = np.nan  # a NaN in one input (here _neutral, which is dropped) stays where it is
    assert np.isfinite(arkit.from_order(scores, arkit.MEDIAPIPE_NAMES)).all()
    scores[0, 1] = np.nan
    assert np.isnan(arkit.from_order(scores, arkit.MEDIAPIPE_NAMES)[0]).sum() == 1


def test_to_order_ict_and_torch(rng):
    x = torch.from_numpy(random_params(rng, 2, 3))
    ict = arkit.to_order(x, arkit.ICT_NAMES)
    assert ict.shape == (2, 3, 57)
    j = arkit.ICT_NAMES.index
    assert torch.equal(ict[..., j("cheekPuff_L")], x[..., arkit.index("CheekPuff")])
    assert torch.equal(ict[..., j("cheekPuff_R")], x[..., arkit.index("CheekPuff")])
    assert (ict[..., j("PupilDilate_L")] == 0).all()
    back = arkit.from_order(ict.requires_grad_(), arkit.ICT_NAMES)
    keep = [bool(arkit.expand(n, "ict")) for n in arkit.NAMES]
    torch.testing.assert_close(back[..., keep], x[..., keep], rtol=0, atol=0)
    assert (back[..., arkit.index("TongueOut")] == 0).all()
    back[..., arkit.index("BrowInnerUp")].sum().backward()
    assert (ict.grad[..., j("browInnerUp_L")] == 0.5).all() and ict.grad.sum() == 6 * 1.0


# --- mirror -------------------------------------------------------------------------------------


def test_mirror_channels(rng):
    x = random_params(rng, 4)
    m = arkit.mirror(x)
    c = lambda name: arkit.index(name)  # noqa: E731
    np.testing.assert_array_equal(m[:, c("EyeBlinkLeft")], x[:, c("EyeBlinkRight")])
    np.testing.assert_array_equal(m[:, c("JawLeft")], x[:, c("JawRight")])
    np.testing.assert_array_equal(m[:, c("MouthRight")], x[:, c("MouthLeft")])
    np.testing.assert_array_equal(m[:, c("JawOpen")], x[:, c("JawOpen")])
    np.testing.assert_array_equal(m[:, c("BrowInnerUp")], x[:, c("BrowInnerUp")])
    np.testing.assert_array_equal(m[:, c("HeadYaw")], -x[:, c("HeadYaw")])
    np.testing.assert_array_equal(m[:, c("HeadPitch")], x[:, c("HeadPitch")])
    np.testing.assert_array_equal(m[:, c("HeadRoll")], -x[:, c("HeadRoll")])
    np.testing.assert_array_equal(m[:, c("LeftEyeYaw")], -x[:, c("RightEyeYaw")])
    np.testing.assert_array_equal(m[:, c("LeftEyePitch")], x[:, c("RightEyePitch")])
    np.testing.assert_array_equal(m[:, c("RightEyeRoll")], -x[:, c("LeftEyeRoll")])
    np.testing.assert_array_equal(arkit.mirror(m), x)
    assert len(arkit.MIRROR_PAIRS) == 23
    d = arkit.mirror({"EyeBlinkLeft": 0.7, "HeadYaw": 0.25})
    assert d["EyeBlinkRight"] == pytest.approx(0.7) and d["HeadYaw"] == -0.25 and d["EyeBlinkLeft"] == 0


def test_mirror_is_the_x_reflection_of_the_pose_rotations(gen):
    pose = torch.rand(5, 61, generator=gen, dtype=torch.float64) * 2 - 1
    r = pose_rotations(pose[:, 52:])
    rm = pose_rotations(arkit.mirror(pose)[:, 52:])
    m = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(rm[:, 0], m @ r[:, 0] @ m)  # head
    torch.testing.assert_close(rm[:, 1], m @ r[:, 2] @ m)  # new left eye = mirrored right eye
    torch.testing.assert_close(rm[:, 2], m @ r[:, 1] @ m)


def test_mirror_torch_gradient(gen):
    x = torch.rand(3, 61, generator=gen, requires_grad=True)
    w = torch.rand(3, 61, generator=gen)
    (arkit.mirror(x) * w).sum().backward()
    torch.testing.assert_close(x.grad, arkit.mirror(w))  # mirror is its own inverse and orthogonal
    with pytest.raises(ValueError, match=r"\[\.\.\., 61\], got \[3, 60\]"):
        arkit.mirror(torch.zeros(3, 60))


# --- validate -----------------------------------------------------------------------------------


def test_validate(rng):
    x = random_params(rng, 3)
    assert arkit.validate(x) is x
    y = x.copy()
    y[1, 0], y[2, 55] = 1.5, -2.0
    with pytest.raises(ValueError, match=r"out of range in 2 channel\(s\): EyeBlinkLeft, LeftEyeYaw"):
        arkit.validate(y)
    with pytest.warns(UserWarning, match="clipped"):
        z = arkit.validate(y, mode="clip")
    assert z[1, 0] == 1 and z[2, 55] == -1 and y[1, 0] == 1.5  # input untouched
    y[0, 3] = np.nan
    for mode in ("raise", "clip"):
        with pytest.raises(ValueError, match="NaN or infinite values in EyeLookOutLeft"):
            arkit.validate(y, mode=mode)
    with pytest.raises(ValueError, match="mode must be"):
        arkit.validate(x, mode="fix")


def test_validate_torch_and_dict():
    t = torch.zeros(2, 61)
    t[0, 60] = 3.0
    with pytest.warns(UserWarning, match="RightEyeRoll"):
        c = arkit.validate(t, "clip")
    assert torch.is_tensor(c) and c[0, 60] == 1
    t[1, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite values in EyeLookDownLeft"):
        arkit.validate(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert arkit.validate({"jawOpen": 0.5, "_neutral": 3}) == {"jawOpen": 0.5, "_neutral": 3}
    with pytest.warns(UserWarning):
        assert arkit.validate({"eyeBlink_L": -0.5}, "clip") == {"eyeBlink_L": 0.0}
    with pytest.raises(ValueError, match="NaN"):
        arkit.validate({"HeadYaw": float("nan")}, "clip")


def test_to_vector_keeps_a_written_negative_zero_and_averages_halves():
    import math

    v = arkit.to_vector({"HeadRoll": -0.0, "browInnerUp_L": 0.2, "browInnerUp_R": 0.4})
    assert v[arkit.index("HeadRoll")] == 0.0 and math.copysign(1.0, v[arkit.index("HeadRoll")]) < 0
    assert abs(v[arkit.index("BrowInnerUp")] - 0.3) < 1e-7
