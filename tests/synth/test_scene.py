"""Scenes and presets: documented data, validation, materials, backgrounds, and presets that differ."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facecore.rig import builtin_rig
from facecore.synth import PRESETS, Scene, load_preset, render_batch, sample_params
from facecore.synth.scene import PRESET_DIR, drawn_triangles, materials_for


def test_every_preset_is_a_documented_data_file():
    assert set(PRESETS) == {"clean", "studio", "wild", "toon"}
    for name in PRESETS:
        data = json.loads((PRESET_DIR / f"{name}.json").read_text())
        assert data["$comment"] and data["name"] == name
        scene = load_preset(name)
        assert scene.name == name
        assert Scene.from_dict(scene.to_dict()).to_dict() == scene.to_dict()
    assert load_preset("toon").lighting.model == "toon"
    assert load_preset("toon").identity_scale > load_preset("clean").identity_scale


def test_preset_from_a_json_file(tmp_path):
    d = load_preset("studio").to_dict()
    d["camera"]["fov_deg"] = [30, 40]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(d))
    assert load_preset(path).camera.fov_deg == (30.0, 40.0)


def test_bad_scenes():
    with pytest.raises(ValueError, match="unknown preset 'moon'"):
        load_preset("moon")
    with pytest.raises(ValueError, match="unknown scene keys"):
        Scene.from_dict({"camara": {}})
    with pytest.raises(ValueError, match="unknown camera keys"):
        Scene.from_dict({"camera": {"fov": [1, 2]}})
    with pytest.raises(ValueError, match="camera.fov_deg"):
        Scene.from_dict({"camera": {"fov_deg": [30, 10]}})
    with pytest.raises(ValueError, match="lighting.model"):
        Scene.from_dict({"lighting": {"model": "pbr"}})
    with pytest.raises(ValueError, match="background kind"):
        Scene.from_dict({"background": {"kinds": {"sky": 1}}})
    with pytest.raises(ValueError, match="materials"):
        Scene(materials={"skin": "glass"})
    with pytest.raises(ValueError, match="prior"):
        Scene(prior="nope")
    with pytest.raises(ValueError, match="unknown preset"):
        render_batch(torch.zeros(1, 61), "stylized", "moon", 16)


def test_materials_hide_groups():
    rig = builtin_rig("stylized")
    scene = Scene(materials={"tongue": "hidden"})
    mats = materials_for(rig, scene)
    assert mats == {"tongue": "hidden"}
    tri = drawn_triangles(rig, mats)
    tongue = torch.zeros(rig.num_vertices, dtype=torch.bool)
    tongue[rig.groups["tongue"]] = True
    assert 0 < rig.num_triangles - tri.shape[0] == int(tongue[rig.triangles.long()].all(1).sum())
    assert not tongue[tri.long()].all(1).any()


def _stats(img: torch.Tensor) -> np.ndarray:
    x = img.float().numpy() / 255
    lap = np.abs(4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
    return np.array([x.mean(), x.std(), x.std(axis=(1, 2)).mean(), lap.mean()])


def test_presets_differ_measurably():
    p = sample_params(6, 2)
    out = {name: render_batch(p, "stylized", name, 48, seed=2) for name in PRESETS}
    stats = {name: _stats(o["image"]) for name, o in out.items()}
    for a in PRESETS:
        for b in PRESETS:
            if a < b:
                assert np.abs(stats[a] - stats[b]).max() > 0.01, (a, b, stats[a], stats[b])
    # clean: one background colour; wild: textured, noisy, blurred or compressed -> more high frequencies
    corners = out["clean"]["image"][:, [0, -1]][:, :, [0, -1]].reshape(-1, 3)  # away from the face
    assert len(torch.unique(corners, dim=0)) == 1
    assert stats["wild"][3] > stats["clean"][3]

    # toon: flat cel bands -> far fewer distinct face colours than smooth studio shading
    def face_colours(o):
        m = o["mask"][0]
        return len(torch.unique(o["image"][0][m], dim=0)) / int(m.sum())

    clean_toon = Scene.from_dict({**load_preset("toon").to_dict(), "albedo_variation": 0.0})
    clean_smooth = Scene.from_dict({**load_preset("toon").to_dict(), "lighting": {"model": "lambert"}})
    toon = render_batch(p[:1], "stylized", clean_toon, 64, seed=2)
    smooth = render_batch(p[:1], "stylized", clean_smooth, 64, seed=2)
    assert face_colours(toon) < 0.75 * face_colours(smooth)  # (the albedo still varies per vertex)


def test_backgrounds_from_an_image_folder(tmp_path):
    import imageio.v3 as iio

    red = np.zeros((40, 60, 3), np.uint8)
    red[..., 0] = 200
    iio.imwrite(tmp_path / "red.png", red)
    scene = Scene(background={"kinds": {"image": 1.0}, "image_dir": str(tmp_path)})
    out = render_batch(torch.zeros(2, 61), "stylized", scene, 32, seed=0)
    bg = out["image"][:, [0, -1]][:, :, [0, -1]].reshape(-1, 3).int()  # corners, away from the face
    assert (bg[:, 0] - 200).abs().max() <= 2 and bg[:, 1:].max() <= 2
    with pytest.raises(FileNotFoundError, match="image_dir"):
        render_batch(
            torch.zeros(1, 61),
            "stylized",
            Scene(background={"kinds": {"image": 1.0}, "image_dir": str(tmp_path / "none")}),
            16,
        )


@pytest.mark.parametrize("kind", ["solid", "gradient", "noise"])
def test_background_kinds(kind):
    scene = Scene(background={"kinds": {kind: 1.0}, "brightness": [0.1, 0.9], "saturation": 0.5})
    out = render_batch(torch.zeros(1, 61), "stylized", scene, 32, seed=4)
    assert out["background"] == [kind]
    bg = out["image"][0].float()
    corners = out["image"][0][[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (len(torch.unique(corners, dim=0)) == 1) == (kind == "solid")
    if kind == "gradient":  # monotone along some direction: corners differ
        assert float((bg[0, 0] - bg[-1, -1]).abs().max() + (bg[0, -1] - bg[-1, 0]).abs().max()) > 1
