"""Identities and appearance: identity coefficients per sample, per-vertex albedo (skin tone and smooth
variation), and the deformation of a batch whose samples each carry their own identity.

* :func:`sample_identity`: ``[n, I]`` coefficients in ``rig.identity_names`` order, each
  ``clip(scale * N(0, 1), -2.5 scale, 2.5 scale)`` -- ICT-FaceKit's 20 modes and the stylised rig's
  controls are both scaled so that 1.0 is about one standard deviation; samples blend all modes at
  once (a random point of the identity space, not one of the scanned faces).
* :func:`sample_appearance` + :func:`vertex_albedo`: the skin vertices (group ``skin``) get a skin tone
  along :data:`SKIN_TONES` (light to deep, sRGB-measured and stored linear) times a smooth
  multiplicative field (a few fixed random cosine waves over the rest positions, per-sample RGB
  amplitudes of about ``variation`` s.d., mostly shared by R, G and B: blotches, redness), relative
  to the rig's own skin colour so that lips, brows and lid margins keep their contrast. Eyes, teeth,
  tongue and mouth keep the rig colours.
* :func:`deform_batch`: :func:`facecore.ops.deform` semantics (blendshapes, eyeballs about the eye
  centres, then the head about the neck pivot, :mod:`facecore.pose`) with per-sample identity offsets
  and pivots. All per-sample arithmetic is elementwise, so a sample's vertices do not depend on the
  batch it is in.
"""

from __future__ import annotations

import numpy as np
import torch

from .prior import STREAM_APPEARANCE, STREAM_IDENTITY, normal_from_uniform, sample_uniforms

# Linear-light skin albedos from light to deep (sRGB values 236/200/180 ... 80/52/38 decoded).
SKIN_TONES_SRGB = (
    (236, 200, 180),
    (224, 178, 150),
    (198, 146, 112),
    (160, 110, 78),
    (120, 80, 56),
    (80, 52, 38),
)
N_WAVES = 8  # smooth albedo variation: cosine waves per rig


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


SKIN_TONES = _srgb_to_linear(SKIN_TONES_SRGB)


def num_identity(rig) -> int:
    return 0 if rig.identity_basis is None else len(rig.identity_names)


def sample_identity(rig, n: int, seed: int, *, scale: float = 1.0, index0: int = 0) -> torch.Tensor:
    """``float32 [n, I]`` identity coefficients (module docstring); ``[n, 0]`` for a rig without a basis."""
    if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    k = num_identity(rig)
    u = sample_uniforms(seed, range(index0, index0 + n), STREAM_IDENTITY, max(k, 1))[:, :k]
    z = np.clip(normal_from_uniform(u), -2.5, 2.5) * scale
    return torch.from_numpy(z.astype(np.float32)).to(rig.device)


def sample_appearance(
    n: int, seed: int, *, tone: tuple[float, float] = (0.0, 1.0), variation: float = 0.05, index0: int = 0
) -> dict[str, torch.Tensor]:
    """Per-sample appearance: ``skin_tone [n, 3]`` linear RGB (``tone`` the span of :data:`SKIN_TONES`
    used, 0 = lightest, 1 = deepest, with a small hue jitter) and ``waves [n, N_WAVES, 3]`` amplitudes."""
    u = sample_uniforms(seed, range(index0, index0 + n), STREAM_APPEARANCE, 4 + 3 * N_WAVES)
    t = (tone[0] + (tone[1] - tone[0]) * u[:, 0]) * (len(SKIN_TONES) - 1)
    lo = np.clip(np.floor(t).astype(int), 0, len(SKIN_TONES) - 2)
    f = (t - lo)[:, None]
    skin = SKIN_TONES[lo] * (1 - f) + SKIN_TONES[lo + 1] * f
    skin = skin * (1 + 0.06 * (u[:, 1:4] - 0.5))  # hue jitter (+-3 % per channel)
    z = normal_from_uniform(u[:, 4:]).reshape(n, N_WAVES, 3)
    # mostly a shared (brightness) part, a quarter of it per channel (redness, sallowness)
    waves = variation * (z[:, :, :1] + 0.25 * z) / 1.03
    return {
        "skin_tone": torch.from_numpy(skin.astype(np.float32)),
        "waves": torch.from_numpy(waves.astype(np.float32)),
    }


def _wave_basis(rig) -> torch.Tensor:
    """``[N_WAVES, V]`` fixed cosine waves over the rest positions (wavelengths 4-12 rig units)."""
    g = np.random.Generator(np.random.PCG64(12345))
    dirs = g.normal(size=(N_WAVES, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    k = dirs * (2 * np.pi / g.uniform(4.0, 12.0, (N_WAVES, 1)))
    phase = g.uniform(0, 2 * np.pi, (N_WAVES, 1))
    pos = rig.neutral.detach().double().cpu().numpy()
    return torch.from_numpy(np.cos(k @ pos.T + phase).astype(np.float32)).to(rig.device)


def vertex_albedo(rig, appearance: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """``[B, V, 3]`` linear albedo (or ``[1, V, 3]`` rig colours when ``appearance`` is None)."""
    V = rig.num_vertices
    base = (
        rig.colors if rig.colors is not None else torch.full((V, 3), 0.75, dtype=rig.dtype, device=rig.device)
    )
    base = base.to(rig.device)
    if appearance is None:
        return base.unsqueeze(0)
    tone = appearance["skin_tone"].to(base)
    waves = appearance["waves"].to(base)
    B = tone.shape[0]
    skin = rig.groups.get("skin")
    if skin is None:
        skin = torch.arange(V, device=rig.device)
    base_skin = base[skin]
    ref = base_skin.median(0).values.clamp_min(1e-3)  # the rig's own skin colour
    basis = _wave_basis(rig)[:, skin].T.contiguous()  # [V_skin, W]
    # One [V_skin, W] x [W, 3] product per sample (not one batched product whose blocking may depend on
    # B): a sample's albedo, and so its bytes, are the same in any batch.
    factor = 1 + torch.stack([basis @ waves[b] for b in range(B)])  # [B, V_skin, 3]
    out = base.unsqueeze(0).expand(B, -1, -1).clone()
    out[:, skin] = (base_skin.unsqueeze(0) * (tone / ref).unsqueeze(1) * factor).clamp(0, 1)
    return out


def _rotate(p: torch.Tensor, R: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``R (p - c) + c`` for points ``[B, N, 3]``, rotations ``[B, 3, 3]``, centres ``[B, 3]``; written
    out elementwise (no batched matmul whose blocking could depend on B)."""
    q = p - c[:, None]
    x, y, z = q[..., 0:1], q[..., 1:2], q[..., 2:3]
    r = R[:, None]  # [B, 1, 3, 3]
    rows = [r[..., i, 0, None] * x + r[..., i, 1, None] * y + r[..., i, 2, None] * z for i in range(3)]
    return torch.cat(rows, -1) + c[:, None]


def deform_batch(params: torch.Tensor, rig, identity: torch.Tensor | None = None) -> torch.Tensor:
    """Posed vertices ``[B, V, 3]`` of ``rig`` for ``params [B, 61]`` and absolute identity coefficients
    ``identity [B, I]`` (None: the rig's own identity, through :func:`facecore.ops.deform`)."""
    from .. import ops
    from ..pose import pose_rotations

    if identity is None or identity.shape[1] == 0:
        return ops.deform(params, rig)
    step = identity.to(params) - rig.identity.to(params)  # [B, I]
    B = params.shape[0]
    verts = ops.blendshape(params[:, :52].contiguous(), rig.neutral, rig.sparse_deltas())  # [B, V, 3]
    flat = rig.identity_basis.to(params).reshape(step.shape[1], -1)  # [I, V * 3]
    # One vector-matrix product per sample (not one [B, I] x [I, 3V] GEMM, whose blocking may depend on
    # B): a sample's offsets, and so its bytes, are the same in any batch; faster than adding the
    # modes one by one.
    offsets = torch.stack([step[b] @ flat for b in range(B)]).view_as(verts)
    verts = verts + offsets
    piv = rig.identity_pivots.to(params)  # [I, 4, 3]: neck, left eye, right eye, jaw
    pivots = torch.stack([rig.neck_pivot, rig.eye_centers[0], rig.eye_centers[1]]).to(params)
    pivots = pivots.unsqueeze(0).expand(B, -1, -1)
    for i in range(piv.shape[0]):
        pivots = pivots + step[:, i, None, None] * piv[i, :3]
    R = pose_rotations(params[:, 52:])  # [B, 3, 3, 3]: head, left eye, right eye
    for k, group in ((1, "left_eye"), (2, "right_eye")):
        idx = rig.groups[group].to(params.device)
        verts[:, idx] = _rotate(verts[:, idx], R[:, k], pivots[:, k])
    return _rotate(verts, R[:, 0], pivots[:, 0])
