"""The animate pipeline's hot spots (issue 8).

- interpolation: facecore's eased PCHIP (numpy, all 61 channels at once) against scipy's
  PchipInterpolator (the outside peer) on 20 keyframes -> 60 s at 30 fps;
- keyframe generation: the semantic generator (lexical path) on a 5-keyframe script;
- rendering one batch of 16 frames of the default rig at 256x256: the facecore Renderer, facecore's
  rasterize/interpolate kernels with a plain shader, and the numpy rasteriser of facecore.rig.sheet
  (the fallback, standing in for a pure-Python renderer).
"""

from __future__ import annotations

import numpy as np
import pytest

KEYS = 20
rng = np.random.default_rng(0)
X = np.cumsum(rng.uniform(1.0, 5.0, KEYS))
X -= X[0]
Y = rng.uniform(0, 1, (KEYS, 61))
T = np.arange(0, X[-1], 1 / 30)


@pytest.mark.benchmark(group="animate-interpolate")
def test_interpolate_facecore(benchmark):
    from facecore.animate.interpolate import eval_knots

    out = benchmark(eval_knots, X, Y, T, 0.0)
    assert out.shape == (T.shape[0], 61)


@pytest.mark.benchmark(group="animate-interpolate")
def test_interpolate_scipy(benchmark):
    interp = pytest.importorskip("scipy.interpolate")

    out = benchmark(lambda: interp.PchipInterpolator(X, Y, axis=0)(T))
    assert out.shape == (T.shape[0], 61)


@pytest.mark.benchmark(group="animate-semantic")
def test_semantic_generator(benchmark):
    from facecore.animate import SemanticGenerator
    from facecore.animate.demo import DEMO_SCRIPT

    gen = SemanticGenerator(encoder="off")
    texts = [k["text"] for k in DEMO_SCRIPT["keyframes"]]
    out = benchmark(gen.generate, texts, DEMO_SCRIPT["background"], DEMO_SCRIPT["emotion"])
    assert out.shape == (5, 61)


@pytest.fixture(scope="module")
def frames():
    p = np.zeros((16, 61), np.float32)
    p[:, 17] = np.linspace(0, 0.6, 16)  # JawOpen
    p[:, 23:25] = 0.5
    return p


@pytest.mark.parametrize("backend", ["facecore", "kernels", "numpy"])
@pytest.mark.benchmark(group="animate-render-16x256")
def test_render(benchmark, frames, backend):
    from facecore.animate.frames import FrameRenderer

    r = FrameRenderer(size=(256, 256), backend=backend)
    r.render(frames[:2])  # warm-up (first op call)
    out = benchmark.pedantic(r.render, args=(frames,), rounds=3, iterations=1)
    assert out.shape == (16, 256, 256, 3)
