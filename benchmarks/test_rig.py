"""Rig loading: a saved facecore rig file against parsing ICT-FaceKit's OBJs (issue 3: >= 20x faster).

Peers: ``load_ict`` (facecore's vectorised OBJ parser over the 77 OBJs) and, as an outside baseline,
a plain line-by-line Python OBJ reader of the vertex lines (how most research code reads ICT),
run on the neutral plus one expression file and scaled per file. Also the default rig's load time.
"""

from __future__ import annotations

import pytest

from .conftest import ICT_DIR


def _need_ict():
    if not (ICT_DIR / "generic_neutral_mesh.obj").exists():
        pytest.skip(f"ICT-FaceKit not found at {ICT_DIR}")


@pytest.fixture(scope="module")
def saved_ict(tmp_path_factory):
    _need_ict()
    from facecore.rig import load_ict

    path = tmp_path_factory.mktemp("rig") / "ict.safetensors"
    load_ict(ICT_DIR).save(path)
    return path


@pytest.mark.benchmark(group="rig-load-ict")
def test_parse_ict_objs(benchmark):
    _need_ict()
    from facecore.rig import load_ict

    rig = benchmark.pedantic(load_ict, args=(ICT_DIR,), rounds=2, iterations=1)
    assert rig.num_vertices == 26_719


@pytest.mark.benchmark(group="rig-load-ict")
def test_load_saved_ict(benchmark, saved_ict):
    from facecore.rig import FaceRig

    rig = benchmark.pedantic(FaceRig.load, args=(saved_ict,), rounds=5, iterations=1, warmup_rounds=1)
    assert rig.num_vertices == 26_719


def _python_obj_vertices(path):
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith("v "):
                out.append([float(x) for x in line.split()[1:4]])
    return out


@pytest.mark.benchmark(group="rig-parse-one-obj")
def test_parse_one_obj_python_loop(benchmark):
    _need_ict()
    v = benchmark.pedantic(_python_obj_vertices, args=(ICT_DIR / "jawOpen.obj",), rounds=3, iterations=1)
    assert len(v) == 26_719


@pytest.mark.benchmark(group="rig-parse-one-obj")
def test_parse_one_obj_facecore(benchmark):
    _need_ict()
    from facecore.rig.obj_folder import read_obj

    m = benchmark.pedantic(
        read_obj, args=(ICT_DIR / "jawOpen.obj",), kwargs={"faces": False}, rounds=3, iterations=1
    )
    assert m.vertices.shape == (26_719, 3)


@pytest.mark.benchmark(group="rig-load-default")
def test_load_default_rig(benchmark):
    from facecore.rig.default import ASSET
    from facecore.rig.face_rig import FaceRig

    rig = benchmark.pedantic(FaceRig.load, args=(ASSET,), rounds=5, iterations=1, warmup_rounds=1)
    assert rig.num_vertices > 5000
