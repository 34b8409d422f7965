"""Shading of surface rows with one light set per image ``-> rgb [N, 3]``, forward and backward.

Custom op ``facecore::shade``; formula in :mod:`facecore.render.lights`, specification in
:func:`facecore.reference.shade`. The CPU kernel fuses the whole formula into one pass over the rows
(the reference makes ~30 full-size intermediate tensors). The backward is not a kernel: it recomputes
the reference under ``torch.func.vjp`` (shading is cheap next to rasterization, and gradients through
it are needed only by analysis-by-synthesis, not by data generation). On CUDA the reference runs.
"""

from __future__ import annotations

import torch

from .. import _C
from .. import reference as ref
from ._common import check_same_device, check_tensor, choose_backend, threads

_FLOATS = (torch.float32, torch.float64)
MODELS = ref.shade_models


def _reference(*tensors_model_bands):
    *tensors, model, bands = tensors_model_bands
    return ref.shade(*tensors, MODELS[model], bands)


@torch.library.custom_op("facecore::shade", mutates_args=())
def _shade(albedo: torch.Tensor, normal: torch.Tensor, view: torch.Tensor | None, batch: torch.Tensor,
           ambient: torch.Tensor, directions: torch.Tensor, colors: torch.Tensor, sh: torch.Tensor | None,
           specular: torch.Tensor, shininess: torch.Tensor, model: int, bands: int) -> torch.Tensor:
    rgb = torch.empty_like(albedo)
    empty = albedo.new_empty(0, 3)
    _C.shade_forward(albedo, normal, empty if view is None else view, batch, ambient, directions, colors,
                     albedo.new_empty(0, 9, 3) if sh is None else sh, specular, shininess, model, bands, rgb,
                     threads())
    return rgb


@_shade.register_fake
def _(albedo, normal, view, batch, ambient, directions, colors, sh, specular, shininess, model, bands):
    return torch.empty_like(albedo)


def _setup(ctx, inputs, output):
    ctx.model, ctx.bands = inputs[10], inputs[11]
    ctx.has = [t is not None for t in inputs[:10]]
    ctx.save_for_backward(*[t for t in inputs[:10] if t is not None])


def _backward(ctx, grad_rgb):
    saved = iter(ctx.saved_tensors)
    tensors = [next(saved) if h else None for h in ctx.has]
    float_idx = [i for i, t in enumerate(tensors) if t is not None and i != 3]  # all but batch

    def f(*xs):
        args = list(tensors)
        for i, x in zip(float_idx, xs):
            args[i] = x
        return _reference(*args, ctx.model, ctx.bands)

    _, vjp = torch.func.vjp(f, *[tensors[i] for i in float_idx])
    grads = vjp(grad_rgb)
    out: list[torch.Tensor | None] = [None] * 12
    for i, g in zip(float_idx, grads):
        out[i] = g
    return tuple(out)


torch.library.register_autograd("facecore::shade", _backward, setup_context=_setup)


def shade(albedo: torch.Tensor, normal: torch.Tensor, view: torch.Tensor | None, batch: torch.Tensor,
          ambient: torch.Tensor, directions: torch.Tensor, colors: torch.Tensor, sh: torch.Tensor | None,
          specular: torch.Tensor, shininess: torch.Tensor, *, model: str = "lambert", bands: int = 3,
          backend: str = "auto") -> torch.Tensor:
    """Shade rows: ``albedo, normal [N, 3]`` (normals need not be unit), ``view [N, 3]`` towards the
    camera or None (no specular), ``batch [N]`` int64 image index of each row; per image ``ambient
    [B, 3]``, unit ``directions`` and ``colors [B, L, 3]``, ``sh [B, 9, 3]`` or None, ``specular`` and
    ``shininess [B]``; ``model`` in lambert / blinn_phong / toon with ``bands`` levels -> RGB ``[N, 3]``.
    Every tensor in one float dtype (float32 or float64) on one device; ``batch`` is checked."""
    op = "shade"
    if model not in MODELS:
        raise ValueError(f"{op}: model must be one of {', '.join(MODELS)}, got {model!r}")
    if isinstance(bands, bool) or not isinstance(bands, int) or bands < 1:
        raise ValueError(f"{op}: bands must be a positive int, got {bands!r}")
    check_tensor(op, "albedo", albedo, ndim=2, dtypes=_FLOATS, spec="[N, 3]")
    N, dt = albedo.shape[0], albedo.dtype
    specs = {"albedo": (albedo, [N, 3]), "normal": (normal, [N, 3]), "view": (view, [N, 3]),
             "ambient": (ambient, None), "directions": (directions, None), "colors": (colors, None),
             "sh": (sh, None), "specular": (specular, None), "shininess": (shininess, None)}
    for name, (t, shape) in specs.items():
        if t is None and name in ("view", "sh"):
            continue
        check_tensor(op, name, t, dtypes=(dt,))
        if shape is not None and list(t.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape {shape} (like albedo), got {list(t.shape)}")
    check_tensor(op, "batch", batch, ndim=1, dtypes=(torch.int64,), spec="[N]")
    if batch.shape[0] != N:
        raise ValueError(f"{op}: batch must have shape [{N}] (one image index per row), "
                         f"got {list(batch.shape)}")
    if directions.dim() != 3 or directions.shape[-1] != 3:
        raise ValueError(f"{op}: directions must be [B, L, 3], got {list(directions.shape)}")
    B, nl = directions.shape[:2]
    want = {"ambient": [B, 3], "colors": [B, nl, 3], "sh": [B, 9, 3], "specular": [B], "shininess": [B]}
    for name, shape in want.items():
        t = specs[name][0]
        if t is not None and list(t.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape {shape} for directions {list(directions.shape)}, "
                             f"got {list(t.shape)}")
    device = check_same_device(op, albedo=albedo, normal=normal, view=view, batch=batch, ambient=ambient,
                               directions=directions, colors=colors, sh=sh, specular=specular,
                               shininess=shininess)
    backend = choose_backend(op, backend, device, has_cuda=False)
    if backend == "reference":
        if N and not torch.compiler.is_compiling() and not bool(((batch >= 0) & (batch < B)).all()):
            raise ValueError(f"{op}: batch holds image indices outside [0, B={B})")
        return ref.shade(albedo, normal, view, batch, ambient, directions, colors, sh, specular, shininess,
                         model, bands)
    rows = [None if t is None else _rows(t) for t in (albedo, normal, view)]
    c = [None if t is None else t.contiguous() for t in (batch, ambient, directions, colors, sh, specular,
                                                         shininess)]
    return torch.ops.facecore.shade(*rows, *c, MODELS.index(model), bands)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``[N, 3]`` rows as the kernel reads them: unit column stride, rows at least 3 apart (columns of a
    wider array, such as interpolated attributes, pass without a copy)."""
    return t if t.stride(1) == 1 and (t.shape[0] <= 1 or t.stride(0) >= 3) else t.contiguous()
