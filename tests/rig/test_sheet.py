"""Contact sheet: 53 labelled tiles, the numpy fallback renderer, and facecore.render when present."""

from __future__ import annotations

import numpy as np
import pytest

from facecore.rig import default_rig
from facecore.rig.sheet import contact_sheet, main, render_orthographic


def test_orthographic_fallback_draws_nearest_front_faces():
    # Two triangles on top of each other: the nearer (z = 1) and red one must win.
    v = np.array([[-1, -1, 0], [1, -1, 0], [0, 1, 0], [-1, -1, 1], [1, -1, 1], [0, 1, 1]], dtype=np.float64)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    col = np.array([[0, 0, 1.0]] * 3 + [[1.0, 0, 0]] * 3)
    img = render_orthographic(v, f, col, size=32, center=np.zeros(3), extent=1.5)
    centre = img[16, 16]
    assert centre[0] > 0.3 and centre[2] < 1e-6
    # Seen from behind (yaw 180) both are back faces: culled, background only.
    back = render_orthographic(v, f, col, size=32, center=np.zeros(3), extent=1.5, yaw=180)
    assert np.allclose(back, 1.0)


def test_contact_sheet_numpy(tmp_path):
    rig = default_rig()
    sheet = contact_sheet(rig, size=40, columns=9, renderer="numpy")
    assert sheet.shape == (6 * 40, 9 * 40, 3) and sheet.dtype == np.uint8
    tiles = sheet.reshape(6, 40, 9, 40, 3).transpose(0, 2, 1, 3, 4).reshape(54, 40, 40, 3)
    assert all((t < 200).any() for t in tiles[:53])  # every shape drew something
    assert (tiles[53] == 255).all()  # the unused last cell stays blank
    # JawOpen differs from the neutral face.
    assert np.abs(tiles[0].astype(int) - tiles[1 + 17].astype(int)).sum() > 1000
    with pytest.raises(ValueError, match="renderer must be"):
        contact_sheet(rig, renderer="opengl")


def test_main_writes_png(tmp_path):
    import imageio.v3 as iio

    rig_path = tmp_path / "rig.safetensors"
    default_rig().save(rig_path)
    out = main(tmp_path / "sheet" / "s.png", rig_path, size=32, renderer="numpy")
    img = iio.imread(out)
    assert img.shape == (6 * 32, 9 * 32, 3)


def test_contact_sheet_with_facecore_renderer():
    pytest.importorskip("facecore.render")
    rig = default_rig()
    sheet = contact_sheet(rig, size=32, renderer="facecore")
    assert sheet.shape == (6 * 32, 9 * 32, 3)
    assert (sheet[:32, :32] < 200).any()
