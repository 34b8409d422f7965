"""Separable Gaussian blur with one sigma per image ``img [B, H, W, C], sigma [B] -> [B, H, W, C]``,
forward and backward. Custom ops ``facecore::gaussian_blur`` / ``facecore::gaussian_blur_backward``;
specification in :mod:`facecore.reference.blur` (taps, radius, border rule). The CPU kernel runs both
passes on contiguous rows with each image's own radius; the backward is the transposed kernel. Gradients
flow to ``img``; ``sigma`` is a constant (no gradient). On CUDA the (batched) reference runs.
"""

from __future__ import annotations

import torch

from .. import _C
from .. import reference as ref
from ..reference.blur import MAX_SIGMA
from ._common import check_same_device, check_tensor, choose_backend, threads

_FLOATS = (torch.float32, torch.float64)


@torch.library.custom_op("facecore::gaussian_blur", mutates_args=())
def _gaussian_blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(img)
    if img.numel():
        _C.gaussian_blur_forward(img, sigma, out, threads())
    return out


@_gaussian_blur.register_fake
def _(img, sigma):
    return torch.empty_like(img)


@torch.library.custom_op("facecore::gaussian_blur_backward", mutates_args=())
def _gaussian_blur_backward(grad_out: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    grad_img = torch.empty_like(grad_out)
    if grad_out.numel():
        _C.gaussian_blur_backward(grad_out, sigma, grad_img, threads())
    return grad_img


@_gaussian_blur_backward.register_fake
def _(grad_out, sigma):
    return torch.empty_like(grad_out)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _backward(ctx, grad_out):
    (sigma,) = ctx.saved_tensors
    return torch.ops.facecore.gaussian_blur_backward(grad_out.contiguous(), sigma), None


torch.library.register_autograd("facecore::gaussian_blur", _backward, setup_context=_setup)


def gaussian_blur(img: torch.Tensor, sigma, *, backend: str = "auto") -> torch.Tensor:
    """Blur ``img [B, H, W, C]`` (float32 or float64, channels last) with ``sigma`` pixels per image
    (``[B]`` tensor, or a number for every image; each in [0, 1024], 0 = unchanged). The radius is
    ``max(1, ceil(3 sigma))``; borders reflect (replicate on sides not longer than the radius)."""
    op = "gaussian_blur"
    check_tensor(op, "img", img, ndim=4, dtypes=_FLOATS, spec="[B, H, W, C]")
    B = img.shape[0]
    if not isinstance(sigma, torch.Tensor):
        try:
            sigma = torch.full((B,), float(sigma), dtype=img.dtype, device=img.device)
        except (TypeError, ValueError):
            raise TypeError(
                f"{op}: sigma must be a number or a [B] tensor, got {type(sigma).__name__}"
            ) from None
    check_tensor(op, "sigma", sigma, ndim=1, spec="[B]")
    if not sigma.is_floating_point():
        raise ValueError(f"{op}: sigma must be a floating-point tensor, got {sigma.dtype}")
    if sigma.shape[0] != B:
        raise ValueError(f"{op}: sigma must have shape [{B}] (one value per image), got {list(sigma.shape)}")
    device = check_same_device(op, img=img, sigma=sigma)
    sigma = sigma.to(img.dtype)
    backend = choose_backend(op, backend, device, has_cuda=False)
    if B and not torch.compiler.is_compiling():
        bad = ~((sigma >= 0) & (sigma <= MAX_SIGMA))
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(f"{op}: sigma[{i}] = {float(sigma[i])}, expected a finite value in "
                             f"[0, {MAX_SIGMA:g}] pixels")
    if backend == "reference":
        return ref.gaussian_blur(img, sigma)
    return torch.ops.facecore.gaussian_blur(img.contiguous(), sigma.contiguous())
