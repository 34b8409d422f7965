"""FaceRig: construction checks, to(), save/load round trip, identity, file-format errors."""

from __future__ import annotations

import json

import pytest
import torch

from facecore.arkit import BLENDSHAPES
from facecore.rig import FaceRig
from facecore.rig.face_rig import FORMAT_VERSION, channel_of


def tiny_rig(gen: torch.Generator, V: int = 37, identity: bool = True) -> FaceRig:
    neutral = torch.randn(V, 3, generator=gen)
    tris = torch.randint(0, V, (2 * V, 3), generator=gen, dtype=torch.int32)
    deltas = torch.zeros(52, V, 3)
    have = [0, 7, 17, 43]
    for k in have:  # sparse, like real shapes
        idx = torch.randperm(V, generator=gen)[: V // 3]
        deltas[k, idx] = torch.randn(len(idx), 3, generator=gen)
    kw = {}
    if identity:
        kw = dict(
            identity_basis=torch.randn(3, V, 3, generator=gen),
            identity_names=("a", "b", "c"),
            identity_pivots=torch.randn(3, 4, 3, generator=gen),
        )
    return FaceRig(
        neutral=neutral,
        triangles=tris,
        deltas=deltas,
        channels=[BLENDSHAPES[k] for k in have],
        groups={
            "left_eye": torch.arange(0, 5),
            "right_eye": torch.arange(5, 10),
            "skin": torch.arange(10, V),
        },
        eye_centers=torch.randn(2, 3, generator=gen),
        neck_pivot=torch.randn(3, generator=gen),
        jaw_pivot=torch.randn(3, generator=gen),
        uvs=torch.rand(V + 4, 2, generator=gen),
        uv_triangles=torch.randint(0, V + 4, (2 * V, 3), generator=gen, dtype=torch.int32),
        colors=torch.rand(V, 3, generator=gen),
        metadata={"source": "test", "units": "cm"},
        **kw,
    )


def assert_same(a: FaceRig, b: FaceRig) -> None:
    for name in (
        "neutral",
        "triangles",
        "deltas",
        "eye_centers",
        "neck_pivot",
        "jaw_pivot",
        "uvs",
        "uv_triangles",
        "colors",
        "identity_basis",
        "identity_pivots",
        "identity",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), name
    assert a.channels == b.channels and a.identity_names == b.identity_names and a.metadata == b.metadata
    assert a.groups.keys() == b.groups.keys()
    for k in a.groups:
        assert torch.equal(a.groups[k], b.groups[k])


def test_save_load_round_trip(tmp_path, gen):
    rig = tiny_rig(gen)
    rig.save(tmp_path / "r.safetensors")
    back = FaceRig.load(tmp_path / "r.safetensors")
    assert_same(rig, back)
    assert back.channels == tuple(n for n in BLENDSHAPES if n in rig.channels)
    assert set(back.missing_channels) == set(BLENDSHAPES) - set(rig.channels)


def test_header_documents_format(tmp_path, gen):
    from safetensors import safe_open

    tiny_rig(gen).save(tmp_path / "r.safetensors")
    with safe_open(str(tmp_path / "r.safetensors"), framework="pt") as f:
        header = json.loads(f.metadata()["facecore_rig"])
        keys = set(f.keys())
    assert header["format"] == "facecore.rig" and header["version"] == FORMAT_VERSION
    assert {"neutral", "triangles", "group/left_eye"} <= keys
    assert "deltas" in keys or {"delta_ptr", "delta_index", "delta_values"} <= keys


def test_sparse_deltas_cached_and_exact(gen):
    rig = tiny_rig(gen)
    s = rig.sparse_deltas()
    assert s is rig.sparse_deltas()
    assert torch.equal(s.to_dense(), rig.dense_deltas())


def test_to_dtype_and_deform(gen):
    from facecore import ops, reference

    rig = tiny_rig(gen).to(dtype=torch.float64)
    assert rig.neutral.dtype == torch.float64 and rig.triangles.dtype == torch.int32
    assert rig.groups["left_eye"].dtype == torch.int64
    params = torch.rand(3, 61, generator=gen, dtype=torch.float64) * 2 - 1
    params[:, :52] = params[:, :52].abs()
    torch.testing.assert_close(ops.deform(params, rig), reference.deform(params, rig))


def test_with_identity_is_absolute(gen):
    rig = tiny_rig(gen)
    c = torch.tensor([0.5, -1.0, 2.0])
    a = rig.with_identity(c)
    torch.testing.assert_close(a.neutral, rig.neutral + torch.einsum("i,ivc->vc", c, rig.identity_basis))
    torch.testing.assert_close(
        a.eye_centers, rig.eye_centers + torch.einsum("i,ijc->jc", c, rig.identity_pivots)[1:3]
    )
    b = a.with_identity({"b": -1.0})
    torch.testing.assert_close(b.neutral, rig.neutral - rig.identity_basis[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown identity control 'zz'"):
        rig.with_identity({"zz": 1.0})
    with pytest.raises(ValueError, match=r"coeffs must have shape \[3\]"):
        rig.with_identity([1.0])
    with pytest.raises(ValueError, match="no identity basis"):
        tiny_rig(gen, identity=False).with_identity([1.0])


def test_weights_accept_any_convention(gen):
    rig = tiny_rig(gen)
    w = rig.weights({"eyeBlink_L": 0.5, "jawOpen": 1.0, "MouthSmileLeft": 0.25})
    assert w[BLENDSHAPES.index("EyeBlinkLeft")] == 0.5 and w[BLENDSHAPES.index("JawOpen")] == 1.0
    assert channel_of("browInnerUp_R") == BLENDSHAPES.index("BrowInnerUp")
    assert channel_of("cheekRaiser_L") is None
    with pytest.raises(ValueError, match="unknown"):
        channel_of("eyeBlinkk")


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(neutral=torch.full((4, 3), float("nan"))), "neutral contains NaN"),
        (
            dict(triangles=torch.tensor([[0, 1, 9]], dtype=torch.int32)),
            r"triangles has indices outside \[0, 4\)",
        ),
        (dict(groups={"left_eye": torch.arange(2)}), "groups must contain 'right_eye'"),
        (dict(deltas=torch.zeros(51, 4, 3)), r"deltas must have shape \[52, 4, 3\]"),
        (dict(channels=("Blink",)), "channels must be Live Link Face"),
        (dict(eye_centers=torch.zeros(3)), r"eye_centers must have shape \[2, 3\]"),
        (dict(triangles=torch.zeros(0, 3, dtype=torch.int32)), "triangles is empty"),
    ],
)
def test_construction_errors(bad, match):
    kw = dict(
        neutral=torch.zeros(4, 3),
        triangles=torch.tensor([[0, 1, 2]], dtype=torch.int32),
        deltas=torch.zeros(52, 4, 3),
        channels=(),
        groups={"left_eye": torch.arange(1), "right_eye": torch.arange(1)},
        eye_centers=torch.zeros(2, 3),
        neck_pivot=torch.zeros(3),
    )
    kw.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        FaceRig(**kw)


def test_load_errors_name_the_file(tmp_path, gen):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        FaceRig.load(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="junk.safetensors"):
        FaceRig.load(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="other.safetensors.*not a facecore rig"):
        FaceRig.load(other)
    # A newer format version is refused.
    rig = tiny_rig(gen)
    rig.save(tmp_path / "r.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "r.safetensors"), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header = json.loads(f.metadata()["facecore_rig"])
    header["version"] = FORMAT_VERSION + 1
    save_file(t, str(tmp_path / "new.safetensors"), metadata={"facecore_rig": json.dumps(header)})
    with pytest.raises(ValueError, match="new.safetensors.*version"):
        FaceRig.load(tmp_path / "new.safetensors")


def test_values_beyond_float32_are_refused_after_the_cast():
    kw = dict(
        neutral=torch.zeros(4, 3),
        triangles=torch.tensor([[0, 1, 2]], dtype=torch.int32),
        channels=(),
        groups={"left_eye": torch.arange(1), "right_eye": torch.arange(1)},
        eye_centers=torch.zeros(2, 3),
        neck_pivot=torch.zeros(3),
    )
    deltas = torch.zeros(52, 4, 3, dtype=torch.float64)
    deltas[3, 1, 2] = 1e39  # finite in float64, inf once stored as the rig's float32
    with pytest.raises(ValueError, match="deltas contains NaN or infinite"):
        FaceRig(deltas=deltas, **kw)
    with pytest.raises(ValueError, match="neck_pivot contains NaN or infinite"):
        FaceRig(**{**kw, "neck_pivot": torch.tensor([0.0, 1e300, 0.0], dtype=torch.float64)},
                deltas=torch.zeros(52, 4, 3))
    big = FaceRig(**{**kw, "neutral": torch.full((4, 3), 1e300, dtype=torch.float64)},
                  deltas=torch.zeros(52, 4, 3))  # float64 values whose float64 sum overflows are fine
    assert big.dtype == torch.float64


def _tensors_and_header(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["facecore_rig"])  # noqa: SIM118


@pytest.mark.parametrize("change, match", [
    (lambda t, h: t.update(delta_values=t["delta_values"].double() * 1e39),
     r"'delta_values' has dtype torch.float64"),
    (lambda t, h: t.update(neck_pivot=torch.tensor([0.0, 1e39, 0.0], dtype=torch.float64)),
     r"'neck_pivot' has dtype"),
    (lambda t, h: t.update(delta_ptr=t["delta_ptr"].float()), r"'delta_ptr' has dtype torch.float32"),
    (lambda t, h: t.update(neutral=torch.tensor(1.0)), r"tensor 'neutral' has shape \[\], expected \[V, 3\]"),
    (lambda t, h: h.update(version=1e400), r"format version inf is not supported"),
    (lambda t, h: h.update(version="1"), r"format version '1' is not supported"),
    (lambda t, h: h.update(groups=["left_eye", "right_eye", "nose"]), r"groups without tensors: \['nose'\]"),
    (lambda t, h: h.update(channels="JawOpen"), r"'channels' is 'JawOpen', expected a list of strings"),
    (lambda t, h: h.update(metadata=[1, 2]), r"'metadata' is \[1, 2\], expected an object"),
    (lambda t, h: h.clear() or h.update(format=[[[[[["deep"]]]]]]),
     r"format is \[\[\[\[...\]\]\]\], expected"),
])
def test_crafted_rig_files_raise_format_errors(tmp_path, gen, change, match):
    from safetensors.torch import save_file

    from facecore.io.errors import FormatError

    tiny_rig(gen).save(tmp_path / "r.safetensors")
    t, header = _tensors_and_header(tmp_path / "r.safetensors")
    assert "delta_ptr" in t  # tiny_rig's few moving rows are stored sparse
    change(t, header)
    p = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in t.items()}, str(p),
              metadata={"facecore_rig": json.dumps(header)})
    with pytest.raises(FormatError, match=match) as e:
        FaceRig.load(p)
    assert "bad.safetensors" in str(e.value)


def test_deeply_nested_header_json(tmp_path, gen):
    from safetensors.torch import save_file

    from facecore.io.errors import FormatError

    tiny_rig(gen).save(tmp_path / "r.safetensors")
    t, _ = _tensors_and_header(tmp_path / "r.safetensors")
    save_file(t, str(tmp_path / "deep.safetensors"), metadata={"facecore_rig": "[" * 100_000})
    with pytest.raises(FormatError, match=r"deep.safetensors: .*nested too deeply"):
        FaceRig.load(tmp_path / "deep.safetensors")
