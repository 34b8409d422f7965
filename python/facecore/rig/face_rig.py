"""FaceRig: a face mesh with the 52 ARKit blendshapes, eye/neck pivots, groups and identity basis.

In memory the blendshape deltas are dense ``[52, V, 3]`` in :data:`facecore.arkit.BLENDSHAPES` order
(zeros for channels the rig lacks; :attr:`FaceRig.channels` lists those it has), and
:meth:`FaceRig.sparse_deltas` converts them once (cached) to the exact block-sparse
:class:`facecore.ops.SparseDeltas` that the deformation kernels prefer.

File format (``rig.save(path)`` / ``FaceRig.load(path)``), version 1
----------------------------------------------------------------------
One `safetensors <https://huggingface.co/docs/safetensors>`_ file. Its string metadata holds one key,
``"facecore_rig"``, whose value is a JSON object::

    {"format": "facecore.rig", "version": 1,
     "channels": [Live Link Face names the rig has],
     "groups": [group names], "identity_names": [...], "metadata": {free-form JSON object}}

Tensors (little-endian, C order; V vertices, F triangles, T uv coordinates, I identity modes):

===================  ===========  ========  =====================================================
name                 shape        dtype     meaning
===================  ===========  ========  =====================================================
neutral              [V, 3]       float32   rest vertices (units and axes in metadata)
triangles            [F, 3]       int32     vertex indices, counter-clockwise seen from outside
eye_centers          [2, 3]       float32   left eye (subject's, +x) then right eye
neck_pivot           [3]          float32   head rotation pivot
jaw_pivot            [3]          float32   optional
uvs, uv_triangles    [T,2],[F,3]  f32, i32  optional; texture coordinates with their own index buffer
colors               [V, 3]       float32   optional; per-vertex base colour (albedo), linear [0, 1]
group/<name>         [n]          int64     vertex indices of a group (left_eye, right_eye, skin ...)
deltas               [52, V, 3]   float32   the blendshape deltas, dense; or, when most are zero, sparse:
delta_ptr            [53]         int64     channel k owns entries delta_ptr[k]:delta_ptr[k+1] ...
delta_index          [N]          int32     ... of these vertex indices (ascending within a channel) ...
delta_values         [N, 3]       float32   ... with these deltas (all other deltas are exactly zero)
identity             [I]          float32   optional: the identity coefficients already applied to neutral
identity_basis       [I, V, 3]    float32   optional: the identity basis, dense; or sparse as
identity_ptr/_index/_values                 identity_ptr/_index/_values (like the deltas)
identity_pivots      [I, 4, 3]    float32   optional: pivot motion per identity mode (neck, eyes, jaw)
===================  ===========  ========  =====================================================

Channels are in Live Link Face order (:data:`facecore.arkit.BLENDSHAPES`). The writer stores a
tensor sparse when fewer than half of its vertex rows are non-zero. Readers must reject a different
``format`` or a higher ``version``. Loading reads the tensors directly (no parsing), which is what
makes a saved rig load far faster than its source OBJs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from .._names import BLENDSHAPES

FORMAT = "facecore.rig"
FORMAT_VERSION = 1
NUM_SHAPES = len(BLENDSHAPES)
_CHANNEL = {n: i for i, n in enumerate(BLENDSHAPES)}
MAX_DENSE_ROWS = 1 << 28  # [K, V, 3] float32 rows a sparse tensor may expand to (3 GiB)


# ----------------------------------------------------------------------------------------------
# Name conversion (any facecore.arkit convention -> channel)
# ----------------------------------------------------------------------------------------------
def channel_of(name: str) -> int | None:
    """Blendshape channel (0..51) of ``name`` in any naming convention facecore.arkit knows.

    Returns ``None`` for names a convention knows that have no ARKit channel (ICT's
    ``cheekRaiser_L``, MediaPipe's ``_neutral``); raises ``ValueError`` for unknown names and pose
    channels.
    """
    from .. import arkit

    try:
        i = arkit.index(name)
    except ValueError:
        extras = {n.lower() for c in arkit.CONVENTIONS for n in arkit.names(c)} - {
            n.lower() for n in arkit.NAMES
        }
        if name.lower() in extras or any(
            name.lower() == n.lower() for n in arkit.names("mediapipe") if n.startswith("_")
        ):
            return None
        raise
    if i >= NUM_SHAPES:
        raise ValueError(f"{name!r} is a pose channel, not a blendshape")
    return i


# ----------------------------------------------------------------------------------------------
# Sparse storage helpers (file format)
# ----------------------------------------------------------------------------------------------
def _pack(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[K, V, 3]`` -> (ptr [K+1] int64, index [N] int32, values [N, 3]) keeping every non-zero row."""
    moved = (dense != 0).any(-1)  # [K, V]
    k, v = moved.nonzero(as_tuple=True)  # row-major: by shape, then vertex
    ptr = torch.zeros(dense.shape[0] + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.bincount(k, minlength=dense.shape[0]), 0)
    return ptr, v.to(torch.int32), dense[k, v].contiguous()


def _store(t: dict[str, torch.Tensor], dense_name: str, prefix: str, dense: torch.Tensor) -> None:
    """Dense when most vertex rows move (ICT), sparse otherwise (procedural rigs)."""
    rows = int((dense != 0).any(-1).sum())
    if rows * 2 > dense.shape[0] * dense.shape[1]:
        t[dense_name] = dense
    else:
        t[f"{prefix}_ptr"], t[f"{prefix}_index"], t[f"{prefix}_values"] = _pack(dense)


def _read(t: dict[str, torch.Tensor], dense_name: str, prefix: str, K: int, V: int) -> torch.Tensor | None:
    if dense_name in t:
        return t[dense_name]
    if f"{prefix}_ptr" not in t:
        return None
    for k in ("index", "values"):
        if f"{prefix}_{k}" not in t:
            raise ValueError(f"missing tensor '{prefix}_{k}'")
    return _unpack(t[f"{prefix}_ptr"], t[f"{prefix}_index"], t[f"{prefix}_values"], K, V, dense_name)


def _unpack(
    ptr: torch.Tensor, index: torch.Tensor, values: torch.Tensor, K: int, V: int, what: str
) -> torch.Tensor:
    if (
        ptr.shape != (K + 1,)
        or index.ndim != 1
        or int(ptr[0]) != 0
        or int(ptr[-1]) != index.shape[0]
        or bool((ptr[1:] < ptr[:-1]).any())
        or values.shape != (index.shape[0], 3)
    ):
        raise ValueError(
            f"{what}: inconsistent sparse storage (ptr {list(ptr.shape)}, index "
            f"{list(index.shape)}, values {list(values.shape)})"
        )
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= V):
        raise ValueError(f"{what}: vertex index out of range [0, {V})")
    if K * V > MAX_DENSE_ROWS:  # a sparse file must not expand into an absurd dense tensor
        raise ValueError(f"{what}: {K} x {V} rows would exceed facecore's limit of {MAX_DENSE_ROWS} rows")
    k = torch.repeat_interleave(torch.arange(K), ptr[1:] - ptr[:-1])
    dense = torch.zeros(K, V, 3, dtype=values.dtype)
    dense[k, index.long()] = values
    return dense


# ----------------------------------------------------------------------------------------------
# FaceRig
# ----------------------------------------------------------------------------------------------
def _float(name: str, t: Any, shape: tuple[int | None, ...], dtype: torch.dtype | None = None
           ) -> torch.Tensor:
    """``t`` checked for shape and cast to ``dtype``; NaN/inf are looked for after the cast (1e39 is finite
    in float64 but inf in float32)."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float32)
    if not t.is_floating_point():
        raise TypeError(f"FaceRig: {name} must be a floating-point tensor, got {t.dtype}")
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        spec = ", ".join("?" if s is None else str(s) for s in shape)
        raise ValueError(f"FaceRig: {name} must have shape [{spec}], got {list(t.shape)}")
    if dtype is not None:
        t = t.to(dtype)
    # One reduction instead of a boolean tensor: a NaN/inf anywhere makes the sum non-finite (the exact
    # test runs only then, so float64 values near 1e308 whose sum overflows are not refused).
    if t.numel() and not math.isfinite(float(t.sum(dtype=torch.float64))) and not bool(t.isfinite().all()):
        raise ValueError(f"FaceRig: {name} contains NaN or infinite values")
    return t


def _index(name: str, t: Any, shape: tuple[int | None, ...], bound: int, dtype: torch.dtype) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=dtype)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"FaceRig: {name} must be an integer tensor, got {t.dtype}")
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        spec = ", ".join("?" if s is None else str(s) for s in shape)
        raise ValueError(f"FaceRig: {name} must have shape [{spec}], got {list(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= bound):
        raise ValueError(f"FaceRig: {name} has indices outside [0, {bound})")
    return t.to(dtype)


@dataclass(eq=False)
class FaceRig:
    """A blendshape face rig (see the module docstring for the file format).

    neutral ``[V, 3]``; triangles ``[F, 3]`` int32 (counter-clockwise from outside); deltas
    ``[52, V, 3]`` in :data:`facecore.arkit.BLENDSHAPES` order; channels: the Live Link Face names
    the rig really has (the others are zero); groups: name -> int64 vertex indices (``left_eye``
    and ``right_eye`` are required: the eyeballs that the eye pose channels rotate); eye_centers
    ``[2, 3]`` (left = subject's left, then right); neck_pivot ``[3]``; optional jaw_pivot ``[3]``,
    uvs ``[T, 2]`` + uv_triangles ``[F, 3]``, colors ``[V, 3]``; optional identity basis ``[I, V, 3]``
    with identity_names, identity_pivots ``[I, 4, 3]`` (motion of neck, left eye, right eye, jaw
    pivots per unit coefficient) and identity ``[I]`` (coefficients already applied to neutral);
    metadata: JSON-able dict (units, up, forward, source, license, ...).
    """

    neutral: torch.Tensor
    triangles: torch.Tensor
    deltas: torch.Tensor
    channels: tuple[str, ...]
    groups: dict[str, torch.Tensor]
    eye_centers: torch.Tensor
    neck_pivot: torch.Tensor
    jaw_pivot: torch.Tensor | None = None
    uvs: torch.Tensor | None = None
    uv_triangles: torch.Tensor | None = None
    colors: torch.Tensor | None = None
    identity_basis: torch.Tensor | None = None
    identity_names: tuple[str, ...] = ()
    identity_pivots: torch.Tensor | None = None
    identity: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    _sparse: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.neutral = _float("neutral", self.neutral, (None, 3))
        V = self.neutral.shape[0]
        if V == 0:
            raise ValueError("FaceRig: neutral has no vertices")
        dt, dev = self.neutral.dtype, self.neutral.device
        self.triangles = _index("triangles", self.triangles, (None, 3), V, torch.int32)
        if self.triangles.shape[0] == 0:
            raise ValueError("FaceRig: triangles is empty (a rig needs faces)")
        self.deltas = _float("deltas", self.deltas, (NUM_SHAPES, V, 3), dt)
        unknown = [c for c in self.channels if c not in _CHANNEL]
        if unknown:
            raise ValueError(f"FaceRig: channels must be Live Link Face blendshape names, got {unknown}")
        self.channels = tuple(n for n in BLENDSHAPES if n in set(self.channels))
        self.groups = {
            str(k): _index(f"groups[{k!r}]", v, (None,), V, torch.int64) for k, v in dict(self.groups).items()
        }
        for need in ("left_eye", "right_eye"):
            if need not in self.groups:
                raise ValueError(
                    f"FaceRig: groups must contain {need!r} (the eyeball vertices), got {sorted(self.groups)}"
                )
        self.eye_centers = _float("eye_centers", self.eye_centers, (2, 3), dt)
        self.neck_pivot = _float("neck_pivot", self.neck_pivot, (3,), dt)
        if self.jaw_pivot is not None:
            self.jaw_pivot = _float("jaw_pivot", self.jaw_pivot, (3,), dt)
        if (self.uvs is None) != (self.uv_triangles is None):
            raise ValueError("FaceRig: uvs and uv_triangles must be given together")
        if self.uvs is not None:
            self.uvs = _float("uvs", self.uvs, (None, 2), dt)
            self.uv_triangles = _index(
                "uv_triangles",
                self.uv_triangles,
                (self.triangles.shape[0], 3),
                self.uvs.shape[0],
                torch.int32,
            )
        if self.colors is not None:
            self.colors = _float("colors", self.colors, (V, 3), dt)
        if self.identity_basis is not None:
            self.identity_basis = _float("identity_basis", self.identity_basis, (None, V, 3), dt)
            n_id = self.identity_basis.shape[0]
            names = tuple(self.identity_names) or tuple(f"identity{i:03d}" for i in range(n_id))
            if len(names) != n_id:
                raise ValueError(f"FaceRig: {n_id} identity modes but {len(names)} identity_names")
            self.identity_names = names
            piv = self.identity_pivots if self.identity_pivots is not None else torch.zeros(n_id, 4, 3)
            self.identity_pivots = _float("identity_pivots", piv, (n_id, 4, 3), dt)
            ident = self.identity if self.identity is not None else torch.zeros(n_id)
            self.identity = _float("identity", ident, (n_id,), dt)
        elif self.identity_names or self.identity_pivots is not None or self.identity is not None:
            raise ValueError("FaceRig: identity_names/identity_pivots/identity need an identity_basis")
        self.metadata = dict(self.metadata)
        for name in (
            "deltas",
            "eye_centers",
            "neck_pivot",
            "jaw_pivot",
            "uvs",
            "colors",
            "identity_basis",
            "identity_pivots",
            "identity",
            "triangles",
            "uv_triangles",
        ):
            t = getattr(self, name)
            if t is not None and t.device != dev:
                setattr(self, name, t.to(dev))
        self.groups = {k: v.to(dev) for k, v in self.groups.items()}

    # -- basic properties ---------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return self.neutral.shape[0]

    @property
    def num_triangles(self) -> int:
        return self.triangles.shape[0]

    @property
    def device(self) -> torch.device:
        return self.neutral.device

    @property
    def dtype(self) -> torch.dtype:
        return self.neutral.dtype

    @property
    def missing_channels(self) -> tuple[str, ...]:
        """Live Link Face names of the blendshapes this rig does not have (their deltas are zero)."""
        return tuple(n for n in BLENDSHAPES if n not in self.channels)

    def dense_deltas(self) -> torch.Tensor:
        """``[52, V, 3]`` in :data:`facecore.arkit.BLENDSHAPES` order, zeros for missing channels."""
        return self.deltas

    def sparse_deltas(self):
        """The deltas as exact block-sparse :class:`facecore.ops.SparseDeltas` (computed once, cached)."""
        if self._sparse is None:
            from ..ops import sparse_deltas

            self._sparse = sparse_deltas(self.deltas)
        return self._sparse

    def __repr__(self) -> str:
        return (
            f"FaceRig(V={self.num_vertices}, F={self.num_triangles}, channels={len(self.channels)}/52, "
            f"groups={sorted(self.groups)}, identity_modes={len(self.identity_names)}, "
            f"dtype={self.dtype}, device={self.device}, source={self.metadata.get('source', '?')!r})"
        )

    # -- conversions --------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> FaceRig:
        """A copy with floating tensors cast to ``dtype`` and every tensor moved to ``device``."""
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"FaceRig.to: dtype must be floating point, got {dtype}")
        kw: dict[str, Any] = {}
        for f in fields(self):
            if not f.init:
                continue
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device=device, dtype=dtype if v.is_floating_point() else None)
            elif f.name == "groups":
                v = {k: g.to(device) for k, g in v.items()}
            kw[f.name] = v
        out = FaceRig(**kw)
        if self._sparse is not None:
            out._sparse = self._sparse.to(device=out.device, dtype=out.dtype)
        return out

    def deform(self, params: torch.Tensor, **kwargs) -> torch.Tensor:
        """``facecore.ops.deform(params[B, 61], self, **kwargs)`` -> posed vertices ``[B, V, 3]``."""
        from ..ops import deform

        return deform(params, self, **kwargs)

    def weights(self, values: Mapping[str, float]) -> torch.Tensor:
        """``{name: weight}`` in any naming convention -> ``[52]`` weight vector on the rig's device."""
        w = torch.zeros(NUM_SHAPES, dtype=self.dtype, device=self.device)
        for name, value in values.items():
            k = channel_of(name)
            if k is None:
                raise ValueError(f"{name!r} has no ARKit blendshape channel")
            w[k] = float(value)
        return w

    # -- identity -----------------------------------------------------------------------------
    def with_identity(self, coeffs: Sequence[float] | torch.Tensor | Mapping[str, float]) -> FaceRig:
        """A copy whose neutral (and pivots) carry the identity ``coeffs`` (absolute, not added).

        ``coeffs``: ``[I]`` values in :attr:`identity_names` order, or a dict name -> value (others 0).
        The expression deltas are kept (identity and expression add, as in ICT-FaceKit).
        """
        if self.identity_basis is None:
            raise ValueError("with_identity: this rig has no identity basis")
        n = len(self.identity_names)
        if isinstance(coeffs, Mapping):
            c = torch.zeros(n, dtype=self.dtype)
            for k, v in coeffs.items():
                if k not in self.identity_names:
                    raise ValueError(
                        f"with_identity: unknown identity control {k!r}; expected one of "
                        f"{', '.join(self.identity_names)}"
                    )
                c[self.identity_names.index(k)] = float(v)
        else:
            c = torch.as_tensor(coeffs, dtype=self.dtype).detach().cpu()
            if c.shape != (n,):
                raise ValueError(
                    f"with_identity: coeffs must have shape [{n}] ({', '.join(self.identity_names)})"
                    f", got {list(c.shape)}"
                )
        if not bool(torch.isfinite(c).all()):
            raise ValueError("with_identity: coeffs contain NaN or infinite values")
        c = c.to(self.device)
        step = c - self.identity
        neutral = self.neutral + torch.einsum("i,ivc->vc", step, self.identity_basis)
        piv = torch.einsum("i,ijc->jc", step, self.identity_pivots)
        out = replace(
            self,
            neutral=neutral,
            identity=c,
            neck_pivot=self.neck_pivot + piv[0],
            eye_centers=self.eye_centers + piv[1:3],
            jaw_pivot=None if self.jaw_pivot is None else self.jaw_pivot + piv[3],
        )
        out._sparse = self._sparse  # deltas unchanged
        return out

    # -- file format --------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the rig to ``path`` (single safetensors file, format documented in this module)."""
        from safetensors.torch import save_file

        r = self.to("cpu", torch.float32)
        t: dict[str, torch.Tensor] = {
            "neutral": r.neutral,
            "triangles": r.triangles,
            "eye_centers": r.eye_centers,
            "neck_pivot": r.neck_pivot,
        }
        _store(t, "deltas", "delta", r.deltas)
        for name in ("jaw_pivot", "uvs", "uv_triangles", "colors", "identity_pivots", "identity"):
            if getattr(r, name) is not None:
                t[name] = getattr(r, name)
        if r.identity_basis is not None:
            _store(t, "identity_basis", "identity", r.identity_basis)
        for k, v in r.groups.items():
            t[f"group/{k}"] = v
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "channels": list(r.channels),
            "groups": list(r.groups),
            "identity_names": list(r.identity_names),
            "metadata": r.metadata,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in t.items()},
            str(path),
            metadata={"facecore_rig": json.dumps(header)},
        )

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> FaceRig:
        """Read a rig written by :meth:`save`. Errors are :class:`facecore.io.FormatError` naming the
        file and what is wrong (FileNotFoundError for a missing file)."""
        from safetensors import safe_open

        from ..io.errors import FormatError, excerpt

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"FaceRig.load: no such file: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
        except Exception as e:  # noqa: BLE001 - safetensors raises several types
            raise FormatError(f"not a safetensors file ({excerpt(str(e), 120)})", path=path) from None
        if "facecore_rig" not in meta:
            raise FormatError("has no 'facecore_rig' header (not a facecore rig)", path=path)
        try:
            header = _header(meta["facecore_rig"])
            for name, x in t.items():
                want = _DTYPES.get("group/" if name.startswith("group/") else name)
                if want is not None and x.dtype != want:
                    raise ValueError(f"tensor {name!r} has dtype {x.dtype}, the format stores {want}")
            for need in ("neutral", "triangles", "eye_centers", "neck_pivot"):
                if need not in t:
                    raise ValueError(f"missing tensor {need!r}")
            if t["neutral"].ndim != 2:
                raise ValueError(f"tensor 'neutral' has shape {list(t['neutral'].shape)}, expected [V, 3]")
            V = t["neutral"].shape[0]
            deltas = _read(t, "deltas", "delta", NUM_SHAPES, V)
            if deltas is None:
                raise ValueError("missing tensor 'deltas' (or 'delta_ptr'/'delta_index'/'delta_values')")
            basis = _read(t, "identity_basis", "identity", len(header["identity_names"]), V)
            missing = [g for g in header["groups"] if f"group/{g}" not in t]
            if missing:
                raise ValueError(f"header lists groups without tensors: {excerpt(missing)}")
            rig = cls(
                neutral=t["neutral"],
                triangles=t["triangles"],
                deltas=deltas,
                channels=tuple(header["channels"]),
                groups={g: t[f"group/{g}"] for g in header["groups"]},
                eye_centers=t["eye_centers"],
                neck_pivot=t["neck_pivot"],
                jaw_pivot=t.get("jaw_pivot"),
                uvs=t.get("uvs"),
                uv_triangles=t.get("uv_triangles"),
                colors=t.get("colors"),
                identity_basis=basis,
                identity_names=tuple(header["identity_names"]),
                identity_pivots=t.get("identity_pivots"),
                identity=t.get("identity"),
                metadata=header["metadata"],
            )
        except FormatError as e:  # from json_loads: the header is not a line of the file
            raise FormatError(e.reason, path=path) from None
        except (ValueError, TypeError) as e:
            raise FormatError(str(e), path=path) from None
        return rig if str(device) == "cpu" else rig.to(device)


# Storage dtype of every tensor the format defines (group/<name> share one entry).
_DTYPES = {
    **dict.fromkeys(("neutral", "eye_centers", "neck_pivot", "jaw_pivot", "uvs", "colors", "deltas",
                     "delta_values", "identity", "identity_basis", "identity_values", "identity_pivots"),
                    torch.float32),
    **dict.fromkeys(("triangles", "uv_triangles", "delta_index", "identity_index"), torch.int32),
    **dict.fromkeys(("delta_ptr", "identity_ptr", "group/"), torch.int64),
}


def _header(text: str) -> dict[str, Any]:
    """The ``facecore_rig`` JSON header, every field checked for type (ValueError otherwise)."""
    from ..io.errors import excerpt, json_loads

    header = json_loads(text, what="'facecore_rig' header is not JSON")
    if not isinstance(header, dict):
        raise ValueError(f"'facecore_rig' header is {excerpt(header)}, expected a JSON object")
    if header.get("format") != FORMAT:
        raise ValueError(f"format is {excerpt(header.get('format'))}, expected {FORMAT!r}")
    version = header.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(
            f"format version {excerpt(version)} is not supported "
            f"(this facecore reads versions 1..{FORMAT_VERSION})"
        )
    for key in ("channels", "groups", "identity_names"):
        v = header.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"header field {key!r} is {excerpt(v)}, expected a list of strings")
        header[key] = v
    if not isinstance(header.setdefault("metadata", {}), dict):
        raise ValueError(f"header field 'metadata' is {excerpt(header['metadata'])}, expected an object")
    return header


def merge_channels(
    named: Mapping[str, torch.Tensor], what: str
) -> tuple[torch.Tensor, tuple[str, ...], list[str]]:
    """``{shape name (any convention): delta [V, 3]}`` -> (deltas [52, V, 3], channels, ignored names).

    ICT-style halves (``browInnerUp_L`` + ``browInnerUp_R``) add up into their single channel. Names
    known to a convention but without a channel are returned as ignored; unknown names raise
    ``ValueError`` naming ``what`` (the file or folder) and the shape.
    """
    first = next(iter(named.values()))
    out = torch.zeros(NUM_SHAPES, *first.shape, dtype=first.dtype)
    have: set[int] = set()
    ignored: list[str] = []
    seen: dict[int, list[str]] = {}
    for name, d in named.items():
        try:
            k = channel_of(name)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{what}: shape {name!r}: {e}") from None
        if k is None:
            ignored.append(name)
            continue
        seen.setdefault(k, []).append(name)
        out[k] += d
        have.add(k)
    for k, names in seen.items():
        if len(names) > 1 and not all(n.lower().endswith(("_l", "_r")) for n in names):
            raise ValueError(f"{what}: shapes {names} all name channel {BLENDSHAPES[k]}")
    return out, tuple(BLENDSHAPES[k] for k in sorted(have)), ignored


def sphere_center(points: torch.Tensor) -> torch.Tensor:
    """Least-squares sphere centre of ``points [N, 3]``: solves ``|p|^2 = 2 c.p + d`` through its 4x4
    normal equations in float64 (the mean of the points if they are degenerate)."""
    import numpy as np

    p = points.detach().cpu().double().numpy()
    A = np.concatenate([2 * p, np.ones((len(p), 1))], 1)
    b = (p * p).sum(1)
    try:
        sol = np.linalg.solve(A.T @ A, A.T @ b)
        c = sol[:3]
    except np.linalg.LinAlgError:
        c = p.mean(0)
    if not np.isfinite(c).all():
        c = p.mean(0)
    return torch.as_tensor(c, dtype=points.dtype)


def vertex_normals_np(v, f):
    """Unit area-weighted vertex normals of ``v [V, 3]``, ``f [F, 3]`` in numpy (v's dtype): the same
    formula as :func:`facecore.reference.vertex_normals`, for exporters and the numpy contact-sheet
    renderer; a vertex without (non-degenerate) faces gets a zero normal."""
    import numpy as np

    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(length > 0, length, 1)
