"""Loaders: ICT-FaceKit (skipped without the data), OBJ folders, glTF; bad input names file and problem."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facecore.arkit import BLENDSHAPES
from facecore.io.errors import FormatError
from facecore.rig import FaceRig, load_ict, load_obj_folder
from facecore.rig.obj_folder import read_obj


# ----------------------------------------------------------------------------------------------
# OBJ reading
# ----------------------------------------------------------------------------------------------
def write_obj(
    path: Path, v: np.ndarray, faces: list[list[int]] | None, uv: bool = False, extra: str = ""
) -> Path:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    if uv:
        lines += [f"vt {i / len(v):.4f} 0.5" for i in range(len(v))]
    lines.append(extra)
    for f in faces or []:
        lines.append("f " + " ".join(f"{i + 1}/{i + 1}" if uv else str(i + 1) for i in f))
    path.write_text("\n".join(lines) + "\n")
    return path


CUBE_V = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
CUBE_Q = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


def test_read_obj_triangulates_quads_and_groups(tmp_path):
    p = tmp_path / "m.obj"
    text = ["v {:g} {:g} {:g}".format(*c) for c in CUBE_V] + ["vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1"]
    text += ["usemtl Skin"] + [f"f {a + 1}/1 {b + 1}/2 {c + 1}/3 {d + 1}/4" for a, b, c, d in CUBE_Q[:3]]
    text += ["usemtl M_ScleraLeft"] + [
        f"f {a + 1}/1 {b + 1}/2 {c + 1}/3 {d + 1}/4" for a, b, c, d in CUBE_Q[3:]
    ]
    text += ["f 1/1 2/2 4/3"]  # a triangle
    p.write_text("\n".join(text))
    m = read_obj(p)
    assert m.vertices.shape == (8, 3) and m.triangles.shape == (13, 3) and m.triangles.dtype == np.int32
    np.testing.assert_array_equal(m.triangles[:2], [[0, 1, 3], [0, 3, 2]])  # fan from the first corner
    assert m.uvs.shape == (4, 2) and m.uv_triangles.shape == (13, 3)
    assert m.group_names == ["Skin", "M_ScleraLeft"]
    np.testing.assert_array_equal(np.unique(m.face_group), [0, 1])
    assert set(m.group_vertices("sclera").tolist()) == set(np.unique(np.array(CUBE_Q[3:])).tolist())


def test_read_obj_formats(tmp_path):
    base = ["v {:g} {:g} {:g}".format(*c) for c in CUBE_V[:4]] + ["vn 0 0 1"]
    for corner in ("{i}", "{i}//1", "-{j}"):
        p = tmp_path / "f.obj"
        p.write_text("\n".join(base + ["f " + " ".join(corner.format(i=i, j=4 - i + 1) for i in (1, 2, 3))]))
        m = read_obj(p)
        assert m.triangles.shape == (1, 3)
        assert sorted(m.triangles[0].tolist()) == [0, 1, 2]


@pytest.mark.parametrize(
    "content, match",
    [
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n", "vertex 2 has NaN"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n", "references vertex 7"),
        ("f 1 2 3\n", "no vertices"),
        ("v 0 0 0\nv 1 zz 0\nv 0 1 0\nf 1 2 3\n", "malformed vertex line"),
    ],
)
def test_read_obj_errors_name_file(tmp_path, content, match):
    p = tmp_path / "bad_mesh.obj"
    p.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        read_obj(p)
    assert "bad_mesh.obj" in str(e.value)


@pytest.mark.parametrize("faces", [True, False])  # False: the one-block fast path for shape files
@pytest.mark.parametrize(
    "content, match",
    [
        ("v 1 2 3 4\nv 5 6\nv 7 8 9\n", r":2: vertex line has 2 numbers \(like the first vertex line\)"),
        ("v 1 2\nv 3 4\nv 5 6\n", r":1: vertex line has 2 numbers \(expected 3..7\)"),
        ("v 0 0 0\nv 1e39 0 0\nv 0 1 0\n", r":2: vertex 2 has NaN or infinite coordinates \(in float32\)"),
        ("# c\nv 0 0 0\nv 0 0 -1e39\nv 0 1 0\n", r":3: vertex 2 has NaN or infinite"),
        ("v 0 0 0\nv 1 zz 0\n", r":2: malformed vertex line: '1 zz 0'"),
    ],
)
def test_read_obj_vertex_lines(tmp_path, content, match, faces):
    p = tmp_path / "bad_mesh.obj"
    p.write_text(content + ("f 1 2 3\n" if faces else ""))
    with pytest.raises(FormatError, match="bad_mesh.obj" + match):
        read_obj(p, faces=faces)


@pytest.mark.parametrize(
    "tail, match",
    [
        ("vt 0 0\nvt 1 0 0 0\nf 1/1 2/1 3/1\n", r":5: texture coordinate line has 4 numbers"),
        ("vt 0 0\nvt 1e40 0\nf 1/1 2/2 3/1\n", r":5: texture coordinate 2 has NaN or infinite"),
        ("f 1// 2// 3//\n", r": face corners are not all i/i/i"),
        ("f 1 2\n", r":4: face has fewer than 3 corners"),
        ("f 1 2 3.5\n", r":4: malformed face line: '1 2 3.5'"),
        ("f 1 2 3\nf 1 2 -9\n", r":5: face references vertex -9 but the file has 3"),
    ],
)
def test_read_obj_texture_and_face_lines(tmp_path, tail, match):
    p = tmp_path / "bad_mesh.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n" + tail)
    with pytest.raises(FormatError, match="bad_mesh.obj" + match):
        read_obj(p)


def test_obj_folder_shape_overflowing_float32(tmp_path):
    d = tmp_path / "rig"
    d.mkdir()
    write_obj(d / "jawForward.obj", CUBE_V * 3e38, None)
    write_obj(d / "head_neutral.obj", CUBE_V * -3e38, [[a, b, c] for a, b, c, e in CUBE_Q])
    with pytest.raises(FormatError, match=r"jawForward.obj: its difference to the neutral .* overflows"):
        load_obj_folder(d)


def test_read_obj_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        read_obj(tmp_path / "missing.obj")


# ----------------------------------------------------------------------------------------------
# OBJ folders
# ----------------------------------------------------------------------------------------------
def make_folder(tmp_path: Path, gen: torch.Generator) -> tuple[Path, dict[str, np.ndarray]]:
    d = tmp_path / "rig"
    d.mkdir()
    v = CUBE_V + 0.01 * torch.randn(8, 3, generator=gen, dtype=torch.float64).numpy()
    tris = [[a, b, c] for a, b, c, e in CUBE_Q] + [[a, c, e] for a, b, c, e in CUBE_Q]
    write_obj(d / "head_neutral.obj", v, tris)
    shapes = {}
    for name in ("eyeBlinkLeft", "JawOpen", "browInnerUp_L", "browInnerUp_R", "mouthSmile_R"):
        dv = torch.randn(8, 3, generator=gen, dtype=torch.float64).numpy() * 0.1
        write_obj(d / f"{name}.obj", v + dv, tris)
        shapes[name] = dv
    return d, shapes


def test_load_obj_folder(tmp_path, gen):
    d, shapes = make_folder(tmp_path, gen)
    rig = load_obj_folder(d)
    assert rig.num_vertices == 8 and rig.num_triangles == 12
    assert set(rig.channels) == {"EyeBlinkLeft", "JawOpen", "BrowInnerUp", "MouthSmileRight"}
    D = rig.dense_deltas().double().numpy()
    np.testing.assert_allclose(D[BLENDSHAPES.index("EyeBlinkLeft")], shapes["eyeBlinkLeft"], atol=2e-6)
    np.testing.assert_allclose(
        D[BLENDSHAPES.index("BrowInnerUp")], shapes["browInnerUp_L"] + shapes["browInnerUp_R"], atol=4e-6
    )
    assert np.abs(D[BLENDSHAPES.index("TongueOut")]).max() == 0
    # round trip through the file format
    rig.save(tmp_path / "r.safetensors")
    assert torch.equal(FaceRig.load(tmp_path / "r.safetensors").deltas, rig.deltas)


def test_obj_folder_errors(tmp_path, gen):
    d, _ = make_folder(tmp_path, gen)
    # vertex-count mismatch names the file
    write_obj(d / "jawForward.obj", CUBE_V[:7], [[0, 1, 2]])
    with pytest.raises(
        ValueError, match=r"jawForward.obj has 7 vertices but the neutral head_neutral.obj has 8"
    ):
        load_obj_folder(d)
    (d / "jawForward.obj").unlink()
    # unknown shape name
    write_obj(d / "eyeBlinkk_L.obj", CUBE_V, [[0, 1, 2]])
    with pytest.raises(ValueError, match=r"eyeBlinkk_L.obj: unknown shape name"):
        load_obj_folder(d)
    rig = load_obj_folder(d, strict=False)
    assert rig.metadata["ignored_shapes"] == ["eyeBlinkk_L"]
    (d / "eyeBlinkk_L.obj").unlink()
    # NaN in a shape
    (d / "mouthClose.obj").write_text("v 0 0 0\n" * 7 + "v nan 0 0\n")
    with pytest.raises(ValueError, match=r"mouthClose.obj:8: vertex 8 has NaN"):
        load_obj_folder(d)
    (d / "mouthClose.obj").unlink()
    # neutral without faces
    write_obj(d / "head_neutral.obj", CUBE_V, None)
    with pytest.raises(ValueError, match=r"head_neutral.obj: OBJ has no faces"):
        load_obj_folder(d)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_obj_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="other.obj"):
        load_obj_folder(d, neutral="other.obj")


# ----------------------------------------------------------------------------------------------
# ICT-FaceKit (reads ../shared/data/ict-facekit when present)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ict(request):
    from tests.conftest import ICT_DIR

    if not (ICT_DIR / "generic_neutral_mesh.obj").exists():
        pytest.skip(f"ICT-FaceKit not found at {ICT_DIR}")
    t = time.perf_counter()
    rig = load_ict(ICT_DIR)
    return rig, time.perf_counter() - t


def test_ict_rig(ict, ict_dir):
    rig, _ = ict
    assert rig.num_vertices == 26_719
    assert rig.missing_channels == ("TongueOut",)
    assert set(rig.metadata["ignored_shapes"]) == {
        "cheekRaiser_L",
        "cheekRaiser_R",
        "PupilDilate_L",
        "PupilDilate_R",
    }
    d = rig.dense_deltas()[BLENDSHAPES.index("EyeBlinkLeft")]
    m = d.norm(dim=1)
    assert float((m * rig.neutral[:, 0]).sum() / m.sum()) > 1.0  # the subject's left is +x
    assert rig.eye_centers[0, 0] > 0 > rig.eye_centers[1, 0]
    assert len(rig.identity_names) == len(list(ict_dir.glob("identity*.obj")))
    # Both ICT halves of browInnerUp add up into the ARKit channel.
    neutral = read_obj(ict_dir / "generic_neutral_mesh.obj", faces=False).vertices
    halves = sum(read_obj(ict_dir / f"browInnerUp_{s}.obj", faces=False).vertices - neutral for s in "LR")
    torch.testing.assert_close(rig.dense_deltas()[BLENDSHAPES.index("BrowInnerUp")], torch.from_numpy(halves))
    # Deform runs, and eye pose turns the eyeballs about their centres.
    params = torch.zeros(1, 61)
    params[0, 52 + 3] = 0.5
    out = rig.deform(params)[0]
    idx = rig.groups["left_eye"]
    torch.testing.assert_close(
        (out[idx] - rig.eye_centers[0]).norm(dim=1),
        (rig.neutral[idx] - rig.eye_centers[0]).norm(dim=1),
        atol=1e-4,
        rtol=0,
    )


def test_ict_save_load_round_trip(ict, tmp_path):
    # The >= 20x load-vs-parse speed-up is measured in benchmarks/test_rig.py, not asserted here.
    rig, _ = ict
    path = tmp_path / "ict.safetensors"
    rig.save(path)
    back = FaceRig.load(path)
    assert torch.equal(back.deltas, rig.deltas) and torch.equal(back.identity_basis, rig.identity_basis)
    assert torch.equal(back.neutral, rig.neutral) and torch.equal(back.triangles, rig.triangles)


def test_ict_identity(ict, ict_dir):
    rig, _ = ict
    c = torch.zeros(len(rig.identity_names))
    c[0] = 1.0
    moved = rig.with_identity(c)
    ident = read_obj(ict_dir / "identity000.obj", faces=False).vertices
    torch.testing.assert_close(moved.neutral, torch.from_numpy(ident), atol=1e-5, rtol=0)


def test_ict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="generic_neutral_mesh.obj"):
        load_ict(tmp_path)
