"""facecore.ops.shade: the CPU kernel against the reference (values and gradients) on fresh random
rows for every model, with and without SH and specular; gradcheck in float64; bad input."""

from __future__ import annotations

import pytest
import torch

from facecore import ops
from facecore import reference as ref

MODELS = ["lambert", "blinn_phong", "toon"]


def _inputs(N=123, B=5, L=3, dtype=torch.float32, sh=True, view=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    d = torch.nn.functional.normalize(r(B, L, 3), dim=-1)
    return dict(
        albedo=torch.rand(N, 3, generator=g, dtype=dtype),
        normal=r(N, 3),
        view=r(N, 3) if view else None,
        batch=torch.randint(0, B, (N,), generator=g),
        ambient=torch.rand(B, 3, generator=g, dtype=dtype) * 0.5,
        directions=d,
        colors=torch.rand(B, L, 3, generator=g, dtype=dtype),
        sh=r(B, 9, 3) * 0.3 if sh else None,
        specular=torch.rand(B, generator=g, dtype=dtype),
        shininess=torch.rand(B, generator=g, dtype=dtype) * 60 + 2,
    )


def _ref(x, model, bands=3):
    return ref.shade(**x, model=model, bands=bands)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("sh", [True, False])
@pytest.mark.parametrize("view", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_matches_reference(model, sh, view, dtype):
    x = _inputs(dtype=dtype, sh=sh, view=view, seed=hash((model, sh, view)) % 1000)
    out = ops.shade(**x, model=model)
    want = _ref(x, model)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    if model == "toon":
        # floor() bands: a value within rounding of a band edge may land on either side; compare the
        # rows away from every edge, and require nearly all rows to be there.
        same = (out - want).abs().amax(-1) <= tol * 10
        assert same.float().mean() > 0.97
    else:
        torch.testing.assert_close(out, want, atol=tol, rtol=tol)


@pytest.mark.parametrize("model", ["lambert", "blinn_phong"])
def test_gradients_match_reference(model):
    x = _inputs(N=37, dtype=torch.float64, seed=3)
    names = [k for k, v in x.items() if v is not None and k != "batch"]
    a = {k: (v.clone().requires_grad_(True) if k in names else v) for k, v in x.items()}
    b = {k: (v.clone().requires_grad_(True) if k in names else v) for k, v in x.items()}
    up = torch.randn(37, 3, dtype=torch.float64)
    (ops.shade(**a, model=model) * up).sum().backward()
    (_ref(b, model) * up).sum().backward()
    for k in names:  # (lambert reads no view: the reference leaves its grad None, the op gives zeros)
        want = b[k].grad if b[k].grad is not None else torch.zeros_like(b[k])
        torch.testing.assert_close(a[k].grad, want, atol=1e-10, rtol=1e-10, msg=k)


def test_gradcheck_float64():
    x = _inputs(N=7, B=2, L=2, dtype=torch.float64, seed=5)
    keys = ["albedo", "normal", "view", "ambient", "colors", "sh", "specular"]

    def f(*xs):
        y = dict(x)
        y.update(zip(keys, xs))
        return ops.shade(**y, model="blinn_phong")

    assert torch.autograd.gradcheck(f, [x[k].clone().requires_grad_(True) for k in keys])


def test_rows_do_not_depend_on_each_other():
    x = _inputs(N=64, seed=7)
    full = ops.shade(**x, model="blinn_phong")
    sub = {k: (v[10:20] if k in ("albedo", "normal", "view", "batch") else v) for k, v in x.items()}
    assert torch.equal(ops.shade(**sub, model="blinn_phong"), full[10:20])


def test_empty_rows():
    x = _inputs(N=0)
    assert ops.shade(**x, model="toon").shape == (0, 3)


def test_bad_batch_index_is_named():
    x = _inputs(N=10, B=2)
    x["batch"][4] = 2
    with pytest.raises(ValueError, match=r"batch\[4\] = 2 is outside \[0, B=2\)"):
        ops.shade(**x)
    x["batch"][4] = -1
    with pytest.raises(ValueError, match="outside"):
        ops.shade(**x, backend="reference")


@pytest.mark.parametrize("change, match", [
    (lambda x: x.update(normal=x["normal"][:5]), "normal must have shape"),
    (lambda x: x.update(ambient=x["ambient"][:, :2]), "ambient must have shape"),
    (lambda x: x.update(sh=x["sh"][:, :4]), "sh must have shape"),
    (lambda x: x.update(colors=x["colors"].double()), "colors must have dtype float32"),
    (lambda x: x.update(batch=x["batch"].int()), "batch must have dtype int64"),
    (lambda x: x.update(specular=x["specular"][:1]), "specular must have shape"),
])
def test_bad_shapes_and_dtypes_are_named(change, match):
    x = _inputs(N=10, B=3)
    change(x)
    with pytest.raises((ValueError, TypeError), match=match):
        ops.shade(**x)


def test_bad_model_and_bands():
    x = _inputs(N=4)
    with pytest.raises(ValueError, match="model must be one of"):
        ops.shade(**x, model="phong")
    with pytest.raises(ValueError, match="bands must be a positive int"):
        ops.shade(**x, model="toon", bands=0)


def test_rows_may_be_columns_of_a_wider_array():
    """albedo / normal / view as column slices of one [N, 10] attribute array (what the renderers pass) read
    the same rows as contiguous copies; rows closer than 3 apart are refused by the kernel."""
    x = _inputs(N=77, seed=9)
    wide = torch.randn(77, 10, generator=torch.Generator().manual_seed(1))
    wide[:, 7:10] = x["albedo"]
    wide[:, 0:3], wide[:, 3:6] = x["normal"], x["view"]
    sliced = dict(x, albedo=wide[:, 7:10], normal=wide[:, 0:3], view=wide[:, 3:6])
    assert not sliced["albedo"].is_contiguous()
    for model in MODELS:
        assert torch.equal(ops.shade(**sliced, model=model), ops.shade(**x, model=model))
    from facecore import _C

    overlapping = torch.as_strided(torch.rand(80), (77, 3), (1, 1))
    args = [x[k] for k in ("albedo", "normal", "view", "batch", "ambient", "directions", "colors", "sh",
                           "specular", "shininess")]
    args[1] = overlapping
    with pytest.raises(Exception, match="normal must have unit column stride"):
        _C.shade_forward(*args, 0, 3, torch.empty(77, 3), 1)
