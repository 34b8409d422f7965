"""sRGB at the output edge: the IEC 61966-2-1 curve, uint8 quantisation, and every path that writes uint8
(RenderResult, the animation frame renderer's three backends, the rig contact sheet)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecore.render import Lights, Renderer, RenderResult
from facecore.render.color import SRGB_KNEE, linear_to_srgb, srgb_to_linear, to_uint8

from ..meshes import uv_sphere

# (linear, sRGB) pairs from the standard's formulas, evaluated independently in float64:
# 12.92 * 0.0031308; 1.055 * l ** (1 / 2.4) - 0.055 for the others.
REFERENCE = [
    (0.0, 0.0),
    (0.001, 0.01292),
    (SRGB_KNEE, 0.040449936),
    (0.01, 0.0998528),
    (0.18, 0.4613561),  # photographic mid-grey
    (0.2140411, 0.5),
    (0.5, 0.7353570),
    (1.0, 1.0),
]


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_curve_matches_the_standard(kind):
    lin = np.array([r[0] for r in REFERENCE])
    enc = np.array([r[1] for r in REFERENCE])
    if kind == "torch":
        out = linear_to_srgb(torch.tensor(lin)).numpy()
        back = srgb_to_linear(torch.tensor(enc)).numpy()
    else:
        out, back = linear_to_srgb(lin), srgb_to_linear(enc)
    np.testing.assert_allclose(out, enc, atol=2e-7)
    np.testing.assert_allclose(back, lin, atol=2e-7)
    # The two pieces meet at the knee (the standard's constants make the curve continuous to ~1e-7).
    below = 12.92 * SRGB_KNEE
    above = 1.055 * SRGB_KNEE ** (1 / 2.4) - 0.055
    assert abs(below - above) < 1e-6
    assert float(linear_to_srgb(np.float64(0.5))) == pytest.approx(0.7354, abs=1e-4)


def test_inverse_round_trip_and_types(gen):
    x = torch.rand(5, 123, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12, rtol=0)
    x32 = x.float()
    y32 = linear_to_srgb(x32)
    assert y32.dtype == torch.float32 and y32.shape == x32.shape
    torch.testing.assert_close(srgb_to_linear(y32), x32, atol=2e-6, rtol=0)
    a = x32.numpy()
    out = linear_to_srgb(a)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, y32.numpy(), atol=1e-6)
    # monotone, so quantised sRGB never inverts an ordering
    ramp = torch.linspace(0, 1, 4097, dtype=torch.float64)
    assert bool((linear_to_srgb(ramp).diff() > 0).all())
    with pytest.raises(TypeError, match="float"):
        linear_to_srgb(np.arange(4))
    with pytest.raises(TypeError, match="float"):
        srgb_to_linear(torch.arange(4))


def test_gradients_are_finite_and_match():
    x = torch.tensor([0.0, 1e-4, SRGB_KNEE / 2, 0.02, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear_to_srgb, (x,))
    assert torch.autograd.gradcheck(srgb_to_linear, (x,))
    (g,) = torch.autograd.grad(linear_to_srgb(x).sum(), x)
    assert bool(torch.isfinite(g).all())  # no NaN from the discarded power branch at 0
    assert float(g[0]) == pytest.approx(12.92)


def test_to_uint8_values():
    grey = np.full((2, 3), 0.5)
    assert (to_uint8(grey) == 188).all()  # 0.7354 * 255 = 187.5 -> 188
    assert (to_uint8(grey, srgb=False) == 128).all()
    t = to_uint8(torch.tensor([-1.0, 0.0, float("nan"), 0.2141, 1.0, 7.0]))  # 0.2141 -> 0.50007
    assert t.dtype == torch.uint8 and t.tolist() == [0, 0, 0, 128, 255, 255]
    n = to_uint8(np.array([0.0, 1.0], np.float32))
    assert n.dtype == np.uint8 and n.tolist() == [0, 255]
    # every code is reachable and sRGB spends more codes on the darks than linear does
    codes = to_uint8(np.linspace(0, 1, 100_001))
    assert len(np.unique(codes)) == 256
    assert int(to_uint8(np.array(0.05))) > 3 * int(to_uint8(np.array(0.05), srgb=False))
    with pytest.raises(TypeError, match="integer"):
        to_uint8(np.zeros(3, np.uint8))
    with pytest.raises(TypeError, match="float tensor"):
        to_uint8(torch.zeros(3, dtype=torch.int64))


def test_mid_grey_render_is_written_as_srgb(tmp_path):
    verts, faces = uv_sphere(24)
    lights = Lights(ambient=(0.5, 0.5, 0.5), colors=[[0.0, 0.0, 0.0]])  # every surface pixel: 0.5 linear
    r = Renderer(verts=verts.float(), triangles=faces, colors=torch.ones(verts.shape[0], 3), lights=lights,
                 resolution=33, background=(0.0, 0.0, 0.0))
    out = r.render_vertices(verts.float()[None])
    inside = out.alpha[0, ..., 0] == 1
    assert inside.float().mean() > 0.1
    torch.testing.assert_close(out.image[0][inside], torch.full((int(inside.sum()), 3), 0.5))  # linear inside
    u8 = out.to_uint8()
    assert u8.shape == (1, 33, 33, 4) and u8.dtype == torch.uint8
    assert bool((u8[0][inside][:, :3] == 188).all())
    assert bool((u8[0][inside][:, 3] == 255).all())  # alpha is not encoded
    lin = out.to_uint8(srgb=False)[0][inside][:, :3].int()
    assert bool(((lin == 127) | (lin == 128)).all())  # 127.5 is a tie: float noise picks the side
    assert out.to_uint8(alpha=False).shape == (1, 33, 33, 3)
    import imageio.v3 as iio

    png = iio.imread(out.save_png(tmp_path / "grey.png"))
    assert torch.equal(torch.from_numpy(png), u8[0])
    linear_png = iio.imread(out.save_png(tmp_path / "grey_linear.png", srgb=False))
    assert np.isin(linear_png[inside.numpy()][:, :3], (127, 128)).all()


def test_alpha_is_quantised_linearly():
    res = RenderResult(image=torch.full((1, 2, 2, 3), 0.5), alpha=torch.full((1, 2, 2, 1), 0.5),
                       depth=torch.zeros(1, 2, 2, 1), normal=torch.zeros(1, 2, 2, 3),
                       triangle_id=torch.zeros(1, 2, 2, dtype=torch.int64), rast=torch.zeros(1, 2, 2, 4))
    assert res.to_uint8()[0, 0, 0].tolist() == [188, 188, 188, 128]


@pytest.fixture(scope="module")
def rig():
    from facecore.rig import default_rig

    return default_rig()


@pytest.mark.parametrize("backend", ["facecore", "kernels", "numpy"])
def test_frame_renderer_encodes(rig, backend):
    from facecore.animate.frames import FrameRenderer

    r = FrameRenderer(rig, size=(48, 40), backend=backend)
    assert r.backend_used == backend
    img = r.render(np.zeros((1, 61), np.float32))
    bg = np.asarray(r.background)
    corner = img[0, 0, 0]
    np.testing.assert_array_equal(corner, to_uint8(bg))
    assert (np.abs(corner.astype(int) - np.floor(bg * 255 + 0.5)) > 20).all()  # not the linear value


def test_rig_contact_sheet_encodes(rig):
    from facecore.rig.sheet import contact_sheet, render_orthographic

    size = 40
    sheet = contact_sheet(rig, size=size, columns=9, renderer="numpy", yaw=0.0)
    eyes = rig.eye_centers.numpy()
    ipd = float(np.linalg.norm(eyes[0] - eyes[1]))
    center = np.array([0.0, eyes[:, 1].mean() - 0.6 * ipd, eyes[:, 2].mean()])
    ref = render_orthographic(rig.neutral.numpy(), rig.triangles.numpy(), rig.colors.numpy(), size=size,
                              center=center, extent=1.55 * ipd)
    tile = sheet[:size, :size]
    below_label = slice(14, size)  # the label is drawn in the top rows
    np.testing.assert_array_equal(tile[below_label], to_uint8(ref)[below_label])
    face = (ref[below_label] < 0.99).any(-1)
    assert face.mean() > 0.3
    lin = np.floor(np.clip(ref[below_label], 0, 1) * 255 + 0.5)
    assert (tile[below_label][face].astype(int) - lin[face]).mean() > 20  # skin is brighter once encoded
