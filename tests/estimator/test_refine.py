"""refine: analysis-by-synthesis lowers the vertex error of noisy initial parameters on renders whose
truth is known (tiny resolution, a few images, so it stays within seconds)."""

from __future__ import annotations

import pytest
import torch

from facecore import arkit
from facecore.estimator import RefineResult, refine
from facecore.estimator.metrics import posed_vertices

RES = 40


@pytest.fixture(scope="module")
def scene():
    from facecore.synth import render_batch, sample_appearance, sample_params
    from facecore.synth.identity import vertex_albedo
    from facecore.synth.render import resolve_rig

    rig = resolve_rig("stylized")
    truth = sample_params(3, seed=3)
    out = render_batch(truth, rig, "clean", RES, seed=3)
    # the exact albedo the clean preset rendered with (its skin-tone span and variation)
    albedo = vertex_albedo(rig, sample_appearance(3, 3, tone=(0.0, 1.0), variation=0.03))
    noise = torch.randn(3, 61, generator=torch.Generator().manual_seed(1)) * 0.1
    noise[:, 52:] *= 0.3
    init = torch.maximum(torch.minimum(truth + noise, torch.tensor(arkit.HIGH)), torch.tensor(arkit.LOW))
    kw = dict(camera=out["camera"], lights=out["lights"], albedo=albedo, identity=out["identity"])
    return rig, truth, init, out, kw


def _first(kw, n):
    """The scene keywords of the first ``n`` images (camera and light tensors sliced too)."""
    def cut(v):
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        return v[:n] if isinstance(v, torch.Tensor) and v.dim() > 0 else v
    return {k: cut(v) for k, v in kw.items()}


def _vertex_error(rig, a, b, identity):
    return (posed_vertices(a, rig, identity) - posed_vertices(b, rig, identity)).norm(dim=-1).mean(-1)


def test_refine_reduces_vertex_error_for_each_image(scene):
    rig, truth, init, out, kw = scene
    r = refine(out["image"], init, rig, iters=20, mask=out["mask"], landmarks=out["landmarks2d"],
               landmarks_visible=out["landmarks_visible"], **kw)
    assert isinstance(r, RefineResult)
    before = _vertex_error(rig, init, truth, out["identity"])
    after = _vertex_error(rig, r.params, truth, out["identity"])
    assert bool((after < 0.6 * before).all()), (before, after)  # typically ~0.2x
    assert r.history.shape == (21, 3) and r.loss.shape == (3,)
    assert bool((r.history[-1] < r.history[0]).all())
    assert set(r.terms) >= {"photometric", "silhouette", "landmarks"}
    lo, hi = torch.tensor(arkit.LOW), torch.tensor(arkit.HIGH)
    assert bool((r.params >= lo).all()) and bool((r.params <= hi).all())


def test_photometric_alone_and_prior(scene):
    rig, truth, init, out, kw = scene
    r = refine(out["image"][:2], init[:2], rig, iters=15, optimize_lighting=False, optimize_albedo=False,
               **_first(kw, 2))
    before = _vertex_error(rig, init[:2], truth[:2], out["identity"][:2])
    after = _vertex_error(rig, r.params, truth[:2], out["identity"][:2])
    assert bool((after < before).all()), (before, after)
    # a confident prior at the initial values holds the parameters there
    prior = (init[:2], torch.full((2, 61), -6.0))
    held = refine(out["image"][:2], init[:2], rig, iters=10, prior=prior, weights={"prior": 1.0},
                  **_first(kw, 2))
    assert "prior" in held.terms
    assert float((held.params - init[:2]).abs().max()) < 0.05


def test_channels_frozen_and_zero_iters(scene):
    rig, truth, init, out, kw = scene
    r = refine(out["image"][:1], init[:1], rig, iters=3, channels=["pose"], **_first(kw, 1))
    assert torch.equal(r.params[0, :52], init[0, :52])
    r0 = refine(out["image"][:1], init[:1], rig, iters=0, **_first(kw, 1))
    assert torch.allclose(r0.params, init[:1]) and r0.history.shape == (1, 1)


def test_bad_input(scene):
    rig, truth, init, out, kw = scene
    with pytest.raises(ValueError, match="init_params"):
        refine(out["image"], init[:, :60], rig, **kw)
    with pytest.raises(ValueError, match="images"):
        refine(out["image"][..., :2], init, rig, **kw)
    with pytest.raises(ValueError, match="camera"):
        refine(out["image"], init, rig, camera={"K": 1})
    with pytest.raises(ValueError, match="loss"):
        refine(out["image"], init, rig, loss="l3", **kw)
    with pytest.raises(ValueError, match="landmarks"):
        refine(out["image"], init, rig, landmarks=torch.zeros(3, 5, 2), **kw)
