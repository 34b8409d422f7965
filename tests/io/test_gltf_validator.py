"""The Khronos glTF-Validator (npm package ``gltf-validator``, run by node) on GLBs that write_glb exports:
0 errors and 0 warnings, for a rig alone and a rig with an animation, in every name convention and unit.

Never installs anything: skips when node or the package is absent. The package is found through
``FACECORE_GLTF_VALIDATOR`` (its folder, e.g. ``/opt/npm/node_modules/gltf-validator``), else by node's own
``require.resolve('gltf-validator')`` from the repository (a local or global install). To run it:
``mkdir -p ~/npm && cd ~/npm && npm install gltf-validator`` and set
``FACECORE_GLTF_VALIDATOR=~/npm/node_modules/gltf-validator``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from facecore.io.gltf import write_glb
from facecore.io.track import Track

REPO = Path(__file__).resolve().parents[2]

RUNNER = r"""
const fs = require("fs");
const validator = require(process.argv[2]);
const files = process.argv.slice(3);
const check = (f) => validator.validateBytes(new Uint8Array(fs.readFileSync(f)), {uri: f, maxIssues: 0});
Promise.all(files.map(check))
  .then((reports) => { process.stdout.write(JSON.stringify(reports)); })
  .catch((e) => { process.stderr.write(String(e)); process.exit(2); });
"""


def _validator_path() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the glTF-Validator runs on node)")
    env = os.environ.get("FACECORE_GLTF_VALIDATOR")
    if env:
        p = Path(env).expanduser()
        if not (p / "package.json").is_file():
            pytest.skip(f"FACECORE_GLTF_VALIDATOR={env} is not the gltf-validator package folder "
                        "(no package.json there)")
        return str(p.resolve())
    r = subprocess.run([node, "-e", "process.stdout.write(require.resolve('gltf-validator'))"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not r.stdout:
        pytest.skip("npm package gltf-validator not found (set FACECORE_GLTF_VALIDATOR to its folder, "
                    "or npm install gltf-validator)")
    return r.stdout


@pytest.fixture(scope="module")
def validate(tmp_path_factory):
    validator = _validator_path()
    script = tmp_path_factory.mktemp("validator") / "run.js"
    script.write_text(RUNNER)

    def run(*paths: Path) -> list[dict]:
        r = subprocess.run([shutil.which("node"), str(script), validator, *map(str, paths)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"glTF-Validator failed to run: {r.stderr[-2000:]}"
        return json.loads(r.stdout)

    return run


@pytest.fixture(scope="module")
def track():
    rng = np.random.default_rng(3)
    n = 31
    params = np.zeros((n, 61), np.float32)
    params[:, :52] = rng.random((n, 52))
    params[:, 52:61] = rng.uniform(-0.5, 0.5, (n, 9))
    return Track(times=np.arange(n) / 24.0, params=params, fps=24.0)


def _summary(report: dict) -> str:
    msgs = report["issues"]["messages"]
    return "\n".join(f"{m['severity']} {m['code']} {m.get('pointer', '')}: {m['message']}" for m in msgs[:20])


def test_exports_validate_clean(validate, rig, track, tmp_path):
    files = {
        "rig.glb": dict(track=None),
        "anim.glb": dict(track=track),
        "anim_livelinkface_cm.glb": dict(track=track, names="livelinkface", units="cm"),
        "anim_raw.glb": dict(track=track, names="arkit_raw"),
    }
    paths = []
    for fname, kw in files.items():
        t = kw.pop("track")
        write_glb(tmp_path / fname, rig, t, **kw)
        paths.append(tmp_path / fname)
    reports = validate(*paths)
    for path, report in zip(paths, reports):
        issues = report["issues"]
        assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, f"{path.name}:\n{_summary(report)}"
        info = report["info"]
        assert info["hasMorphTargets"] is True and info["totalVertexCount"] == rig.num_vertices
        assert info["totalTriangleCount"] == rig.triangles.shape[0]
        assert info["animationCount"] == (0 if path.name == "rig.glb" else 1)


def _patch_json(path: Path, edit) -> None:
    raw = path.read_bytes()
    (jlen,) = struct.unpack_from("<I", raw, 12)
    doc = json.loads(raw[20 : 20 + jlen])
    edit(doc)
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    rest = raw[20 + jlen :]
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(js) + len(rest))
                     + struct.pack("<II", len(js), 0x4E4F534A) + js + rest)


def test_the_validator_does_catch_errors(validate, rig, tmp_path):
    """The harness is not vacuous: a wrong POSITION bound (cm bounds on metre data) is an error."""
    path = tmp_path / "broken.glb"
    write_glb(path, rig)

    def wrong_bounds(doc):
        acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
        acc["min"] = [v * 100 for v in acc["min"]]
        acc["max"] = [v * 100 for v in acc["max"]]

    _patch_json(path, wrong_bounds)
    (report,) = validate(path)
    codes = {m["code"] for m in report["issues"]["messages"]}
    assert report["issues"]["numErrors"] > 0 and "ACCESSOR_MIN_MISMATCH" in codes, _summary(report)
