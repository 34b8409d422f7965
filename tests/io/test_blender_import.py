"""Blender's own glTF importer (``bpy.ops.import_scene.gltf``) on GLBs that write_glb exports: shape-key
names, the size of the head in metres, the animation's frame range at the scene's frame rate, and the
shape-key values against the track.

Marked ``blender``; skipped unless a Python with ``bpy`` is available: this interpreter, or the one named
by ``FACECORE_BLENDER_PYTHON`` (bpy wheels pin their own Python and numpy<2, so a separate venv is the
usual setup: ``python3.11 -m venv ~/bpy && ~/bpy/bin/pip install bpy``). Blender runs in a subprocess, so
its bundled libraries never meet torch's in one process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facecore import arkit
from facecore.io.gltf import write_glb
from facecore.io.track import Track

pytestmark = pytest.mark.blender

SCRIPT = r"""
import json, sys
import bpy

args = json.loads(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
fps = args["scene_fps"]
scene.render.fps, scene.render.fps_base = round(fps), round(fps) / fps  # an integer fps over a float base
bpy.ops.import_scene.gltf(filepath=args["path"])


def fcurves(id_data):
    ad = id_data.animation_data
    if ad is None or ad.action is None:
        return []
    slot = getattr(ad, "action_slot", None)
    if slot is not None:  # Blender >= 4.4: slotted actions
        from bpy_extras import anim_utils
        bag = anim_utils.action_get_channelbag_for_slot(ad.action, slot)
        return list(bag.fcurves) if bag else []
    return list(ad.action.fcurves)


meshes = [o for o in bpy.data.objects if o.type == "MESH"]
mesh = meshes[0]
keys = mesh.data.shape_keys
curves = {fc.data_path: [list(k.co) for k in fc.keyframe_points] for fc in (fcurves(keys) if keys else [])}
head = mesh.parent
# The rest shape's size (mesh.dimensions and matrix_world show the animated pose at the current frame);
# the importer turns glTF's y-up into Blender's z-up in the vertex data itself.
rest = [v.co for v in mesh.data.vertices]
extent = [max(p[i] for p in rest) - min(p[i] for p in rest) for i in range(3)]
out = {
    "meshes": len(meshes),
    "shape_keys": [k.name for k in keys.key_blocks] if keys else [],
    "reference_key": keys.reference_key.name if keys else None,
    "extent": extent,
    "world_scale": list(mesh.matrix_world.to_scale()),
    "vertices": len(mesh.data.vertices),
    "scene_fps": scene.render.fps / scene.render.fps_base,
    "curves": curves,
    "head": head.name if head else None,
    "head_curves": [fc.data_path for fc in fcurves(head)] if head else [],
    "head_range": [list(fc.range()) for fc in fcurves(head)][:1] if head else [],
    "version": bpy.app.version_string,
}
print("FACECORE_RESULT " + json.dumps(out))
"""


def _blender_python() -> str:
    env = os.environ.get("FACECORE_BLENDER_PYTHON")
    if env:
        if not Path(env).is_file():
            pytest.skip(f"FACECORE_BLENDER_PYTHON={env} is not a file")
        return env
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:  # absent, or only a folder named bpy (a namespace package)
        pytest.skip("bpy (Blender as a Python module) is not importable; set FACECORE_BLENDER_PYTHON to a "
                    "Python that has it")
    return sys.executable


@pytest.fixture(scope="module")
def blender(tmp_path_factory):
    python = _blender_python()
    script = tmp_path_factory.mktemp("blender") / "import_glb.py"
    script.write_text(SCRIPT)

    def run(path: Path, scene_fps: float) -> dict:
        arg = json.dumps({"path": str(path), "scene_fps": scene_fps})
        r = subprocess.run([python, str(script), arg], capture_output=True, text=True, timeout=300,
                           cwd=script.parent)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("FACECORE_RESULT ")]
        assert r.returncode == 0 and lines, f"Blender import failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        return json.loads(lines[-1].removeprefix("FACECORE_RESULT "))

    return run


@pytest.fixture(scope="module")
def track():
    rng = np.random.default_rng(11)
    n = 31
    params = np.zeros((n, 61), np.float32)
    params[:, :52] = rng.random((n, 52))
    params[:, 52] = np.linspace(-0.5, 0.5, n)  # the head turns
    return Track(times=np.arange(n) / 30.0, params=params, fps=30.0)


def test_blender_reads_names_size_and_animation(blender, rig, track, tmp_path):
    path = tmp_path / "face.glb"
    write_glb(path, rig, track)
    out = blender(path, scene_fps=track.fps)
    assert out["meshes"] == 1 and out["vertices"] == rig.num_vertices
    # shape keys: Blender's Basis, then the 52 ARKit camelCase names in channel order
    assert out["shape_keys"][0] == out["reference_key"]
    assert out["shape_keys"][1:] == list(arkit.names("arkit")[:52])
    # metres: the head and neck are ~0.32 m tall in Blender (Z up after the importer's Y-up conversion)
    x, y, z = rig.neutral.numpy().max(0) - rig.neutral.numpy().min(0)
    np.testing.assert_allclose(out["extent"], np.array([x, z, y]) * 0.01, rtol=1e-5)  # glTF +y is Blender +z
    assert 0.2 < out["extent"][2] < 0.5
    np.testing.assert_allclose(out["world_scale"], 1.0, atol=1e-6)  # no scale on the nodes: metres as stored
    # animation: one keyframe per track frame, on whole frames 0..N-1 at the track's frame rate
    assert out["scene_fps"] == pytest.approx(track.fps)
    n = len(track)
    curve = out["curves"]['key_blocks["eyeBlinkLeft"].value']
    assert len(out["curves"]) == 52 and len(curve) == n
    frames = np.array([k[0] for k in curve])
    np.testing.assert_allclose(frames, np.arange(n), atol=1e-3)
    np.testing.assert_allclose([k[1] for k in curve], track.params[:, 0], atol=1e-6)
    jaw = out["curves"]['key_blocks["jawOpen"].value']
    np.testing.assert_allclose([k[1] for k in jaw], track.params[:, arkit.INDEX["JawOpen"]], atol=1e-6)
    assert out["head"] == "head" and "rotation_quaternion" in out["head_curves"]
    np.testing.assert_allclose(out["head_range"][0], [0, n - 1], atol=1e-3)


def test_blender_frame_rate_conversion_and_livelinkface_names(blender, rig, track, tmp_path):
    path = tmp_path / "llf.glb"
    write_glb(path, rig, track, names="livelinkface")
    out = blender(path, scene_fps=24.0)  # Blender's default rate: 1 s of animation spans 24 frames
    assert out["shape_keys"][1:] == list(arkit.BLENDSHAPES)
    curve = out["curves"]['key_blocks["EyeBlinkLeft"].value']
    duration = (len(track) - 1) / track.fps
    np.testing.assert_allclose([curve[0][0], curve[-1][0]], [0.0, duration * 24.0], atol=1e-3)
