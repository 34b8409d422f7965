"""Rig loading: a saved facecore rig file against parsing ICT-FaceKit's OBJs (issue 3: >= 20x faster).

    pytest benchmarks/test_rig.py --benchmark-only --benchmark-group-by=group

``rig-load-ict`` (all 78 OBJs of FaceXModel: the neutral, 57 expressions, 20 identities):

* ``facecore-saved``: ``FaceRig.load`` of the rig saved by ``rig.save`` (safetensors) -> a ready FaceRig.
* ``facecore-load_ict``: ``load_ict``: facecore's vectorised OBJ parser on every file (vertices, uvs, faces
  and materials of the neutral; only the vertices of the 77 shape files, which share its topology), then
  the rig (deltas, channel merge, part groups, eye fits per identity).
* ``trimesh``: ``trimesh.load(path, process=False)`` on each of the same 78 files: a full OBJ parse per file
  (every file has faces, uvs and materials; trimesh returns a Scene of 12 per-material meshes, 28,911
  vertices split at uv seams, 52,220 triangles), and nothing else: no rig. It has no vertices-only mode,
  so on the 77 shape files it does work that ``load_ict`` skips.

``rig-parse-one-obj``: one file, ``generic_neutral_mesh.obj`` (26,719 vertices, 26,384 mostly-quad faces
-> 52,220 triangles, 28,911 uvs, 12 materials): ``read_obj`` in full, ``read_obj(faces=False)`` (what
``load_ict`` does for shape files), trimesh.

Threads: torch's setting (2 here); the parsers on both sides are numpy code on one thread.
"""

from __future__ import annotations

import pytest

from .conftest import ICT_DIR, load_rig

NEUTRAL = ICT_DIR / "generic_neutral_mesh.obj"


def _need_ict():
    if not NEUTRAL.exists():
        pytest.skip(f"ICT-FaceKit not found at {ICT_DIR}")


@pytest.fixture(scope="module")
def saved_ict(tmp_path_factory):
    _need_ict()
    path = tmp_path_factory.mktemp("rig") / "ict.safetensors"
    load_rig("ict").save(path)
    return path


def _trimesh_objs(paths):
    import trimesh

    return [trimesh.load(p, process=False) for p in paths]


def _num_vertices(loaded) -> int:
    """Vertices of a trimesh load result (a Trimesh, or a Scene of per-material meshes)."""
    geoms = loaded.geometry.values() if hasattr(loaded, "geometry") else [loaded]
    return sum(len(g.vertices) for g in geoms)


@pytest.mark.parametrize("impl", ["facecore-saved", "facecore-load_ict", "trimesh"])
def test_load_ict(benchmark, impl, request):
    _need_ict()
    from facecore.rig import FaceRig, load_ict

    benchmark.group = "rig-load-ict"
    files = sorted(ICT_DIR.glob("*.obj"))
    rig = load_rig("ict")
    # The peer parses exactly the files load_ict reads.
    assert len(files) == 1 + rig.metadata["num_expression_files"] + len(rig.identity_names) == 78
    benchmark.extra_info["files"] = len(files)
    if impl == "facecore-saved":
        out = benchmark.pedantic(
            FaceRig.load, args=(request.getfixturevalue("saved_ict"),), rounds=5, warmup_rounds=1
        )
        assert out.num_vertices == 26_719
    elif impl == "facecore-load_ict":
        out = benchmark.pedantic(load_ict, args=(ICT_DIR,), rounds=3, warmup_rounds=1)
        assert out.num_vertices == 26_719
    else:
        pytest.importorskip("trimesh")
        out = benchmark.pedantic(_trimesh_objs, args=(files,), rounds=3, warmup_rounds=1)
        assert all(_num_vertices(m) >= 26_719 for m in out)


@pytest.mark.parametrize("impl", ["facecore", "facecore-vertices_only", "trimesh"])
def test_parse_one_obj(benchmark, impl):
    _need_ict()
    from facecore.rig.obj_folder import read_obj

    benchmark.group = "rig-parse-one-obj"
    if impl == "trimesh":
        pytest.importorskip("trimesh")
        out = benchmark.pedantic(_trimesh_objs, args=([NEUTRAL],), rounds=10, warmup_rounds=1)[0]
        assert _num_vertices(out) >= 26_719
        return
    faces = impl == "facecore"
    m = benchmark.pedantic(read_obj, args=(NEUTRAL,), kwargs={"faces": faces}, rounds=10, warmup_rounds=1)
    assert m.vertices.shape == (26_719, 3)


@pytest.mark.benchmark(group="rig-load-default")
def test_load_default_rig(benchmark):
    from facecore.rig.default import ASSET
    from facecore.rig.face_rig import FaceRig

    rig = benchmark.pedantic(FaceRig.load, args=(ASSET,), rounds=5, iterations=1, warmup_rounds=1)
    assert rig.num_vertices > 5000
