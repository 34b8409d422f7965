"""Synthetic datasets on disk and on the fly: :func:`write_dataset` and :class:`Dataset`.

A dataset folder written by :func:`write_dataset` (``facecore synth``) holds::

    manifest.json         what the samples are: seed, n, rig name + SHA-256 of its tensors, the domain
                          preset's contents, resolution, clip settings, facecore version, the fields
                          (dtype and per-sample shape of every label), created (UTC, informative only)
    index.json            every shard: file name, first sample index, sample count, tar member count
                          (``shardlist`` of ``{"url", "nsamples"}`` as webdataset's shard indexes have)
    shard-000000.tar ...  WebDataset-style tar shards, ``samples_per_shard`` consecutive samples each

Inside a shard every sample is a group of files with the same key, the zero-padded sample index
(``000000042``; keys sort in sample order and are unique across the dataset)::

    000000042.png         the image, uint8 sRGB RGB (``.jpg`` with ``image_format="jpg"``: smaller, lossy)
    000000042.params.npy  float32 [61], the exact ARKit parameters (facecore.arkit.NAMES order)
    000000042.json        every other label: identity, camera, lights, landmarks2d [68, 2] (pixels),
                          landmarks_visible [68], rig, domain, index, seed
    000000042.mask.png    the face mask (0/255 for a bool mask)
    000000042.depth.npy   optional (``maps=True``), and 000000042.normal.npy

Clips (``clips=True``) keep the same keys with a leading time axis: ``{key}.frames.npy`` uint8
[F, H, W, 3] instead of the PNG (a .npy decodes to one array in webdataset, HF ``datasets`` and numpy
alike, and keeps the frames lossless and in order), ``{key}.params.npy`` [F, 61], ``{key}.mask.npy``
[F, H, W], per-frame lists in the JSON.

Guarantees:

* Sample ``i`` depends only on ``(seed, i)`` and the manifest, so a rerun writes byte-identical shards
  (tar headers carry no times or owners; PNG/JPEG bytes also depend on the Pillow/zlib build, the
  decoded samples do not), and ``Dataset(manifest)`` renders exactly the samples that were written
  (PNG is lossless; JPEG is not) on the same kind of device (CPU and GPU kernels round differently).
* A shard is written to a hidden temporary file and renamed when complete: a file named
  ``shard-*.tar`` is always whole. A rerun skips the finished shards (name, member count and size
  checked against the index), rewrites missing or damaged ones, and refuses a folder whose manifest
  differs. ``shard=(k, N)``: machine ``k`` of ``N`` writes the shards ``i`` with ``i % N == k``; the
  manifest and index depend only on the dataset, so many machines fill one folder with no coordination.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import errno
import functools
import glob
import hashlib
import io
import json
import math
import os
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_path, interrupts_deferred

__all__ = ["FORMAT", "VERSION", "Dataset", "DatasetSpec", "read_manifest", "rig_digest", "write_dataset"]

FORMAT = "facecore.synth"
VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.json"
SHARD_GLOB = "shard-[0-9]*.tar"
IMAGE_FORMATS = ("png", "jpg")
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 1  # zlib level 1: ~2x faster than the default 6 for ~10% larger files
_FILE_FIELDS = ("image", "params", "mask", "depth", "normal")  # stored as files; the rest goes to the JSON
Progress = Callable[[str, int, int], None]  # (stage, done, total), as elsewhere in facecore


def _shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def _key_digits(n: int) -> int:
    return max(9, len(str(n - 1)))


# ---------------------------------------------------------------------------------------------------
# The sampling / rendering engine (facecore.synth's public functions; imported late: torch-only users
# of a written dataset never load the renderer)
# ---------------------------------------------------------------------------------------------------
def _engine():
    from . import prior, render, scene

    return prior, scene, render


def _jsonable(x: Any) -> Any:
    """Tensors, arrays, dataclasses, tuples and paths -> plain JSON values (for manifests)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


# ---------------------------------------------------------------------------------------------------
# The dataset's description
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is (everything that decides its samples). ``rig`` is a built-in rig name
    (:data:`facecore.rig.BUILTIN_RIGS`, ``"default"``) or a rig file/folder path."""

    n: int
    rig: str = "ict"
    domain: str = "clean"
    resolution: int = 128
    seed: int = 0
    samples_per_shard: int = 1000
    clips: bool = False
    frames: int = 16
    fps: float = 30.0
    maps: bool = False
    mask: bool = True
    image_format: str = "png"

    def __post_init__(self) -> None:
        def whole(name: str, lo: int, hi: int | None = None) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi and v > hi):
                rng = f"in {lo}..{hi}" if hi else f">= {lo}"
                raise ValueError(f"{name} must be an integer {rng}, got {v!r}")
            object.__setattr__(self, name, int(v))

        whole("n", 1)
        whole("resolution", 16, 4096)
        whole("seed", 0, 2**63 - 1)
        whole("samples_per_shard", 1)
        whole("frames", 1, 10_000)
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not 0 < self.fps <= 1000:
            raise ValueError(f"fps must be a number in (0, 1000], got {self.fps!r}")
        object.__setattr__(self, "fps", float(self.fps))
        if not isinstance(self.rig, str) or not self.rig:
            raise ValueError(f"rig must be a built-in rig name or a rig path, got {self.rig!r}")
        if not isinstance(self.domain, str) or not self.domain:
            raise ValueError(f"domain must be a preset name, got {self.domain!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, "
                             f"got {self.image_format!r}")
        for name in ("clips", "maps", "mask"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def num_shards(self) -> int:
        return math.ceil(self.n / self.samples_per_shard)

    def shard_range(self, i: int) -> tuple[int, int]:
        """(first sample, count) of shard ``i``."""
        first = i * self.samples_per_shard
        return first, min(self.samples_per_shard, self.n - first)

    def key(self, index: int) -> str:
        return f"{index:0{_key_digits(self.n)}d}"

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> DatasetSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        spec = {k: manifest[k] for k in names if k in manifest}
        spec["rig"] = manifest["rig"]["source"]
        return cls(**spec)


# ---------------------------------------------------------------------------------------------------
# Rigs: name or path -> FaceRig, and a digest of what the renderer reads
# ---------------------------------------------------------------------------------------------------
def _load_rig(source: str):
    from ..rig import BUILTIN_RIGS, DEFAULT_RIG, builtin_rig

    if source in BUILTIN_RIGS or source == "default":
        name = DEFAULT_RIG if source == "default" else source
        return builtin_rig(name), name
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"rig {source!r} is neither a built-in rig ({', '.join(BUILTIN_RIGS)}, "
                                f"default) nor an existing file or folder")
    from ..rig import load_rig  # FaceRig files, glTF, OBJ and ICT folders

    return load_rig(path), path.stem or path.name


def rig_digest(rig) -> str:
    """SHA-256 (hex) of a FaceRig's tensors, channels, groups and identity names: equal digests mean the
    renderer sees the same rig, whatever file (or built-in asset) it came from."""
    h = hashlib.sha256()

    def add(name: str, t: torch.Tensor | None) -> None:
        if t is None:
            return
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())

    for f in ("neutral", "triangles", "deltas", "eye_centers", "neck_pivot", "jaw_pivot", "uvs",
              "uv_triangles", "colors", "identity_basis", "identity_pivots", "identity"):
        add(f, getattr(rig, f))
    for g in sorted(rig.groups):
        add(f"group/{g}", rig.groups[g])
    h.update(json.dumps([list(rig.channels), list(rig.identity_names),
                         _jsonable(rig.metadata.get("landmarks68"))]).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Rendering samples [start, start + count) as per-sample dicts (what Dataset yields)
# ---------------------------------------------------------------------------------------------------
def _rows(x: Any, B: int, what: str) -> list[Any] | None:
    """Split a render_batch value into B per-sample values (None: the value is shared by the batch)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        if B == 1 and (x.ndim == 0 or x.shape[0] != 1):
            return [x.detach().cpu().clone()]  # a batch of one whose batch axis was dropped (Lights does)
        if x.ndim == 0 or x.shape[0] != B:
            raise ValueError(f"render_batch field {what!r}: expected a leading batch dimension of {B}, "
                             f"got shape {tuple(x.shape)}")
        x = x.detach().cpu()
        return [x[b].clone() for b in range(B)]
    if isinstance(x, Mapping):
        parts = {k: _rows(v, B, f"{what}.{k}") for k, v in x.items()}
        return [{k: (v[b] if v is not None else x[k]) for k, v in parts.items()} for b in range(B)]
    if isinstance(x, (list, tuple)) and len(x) == B:  # one entry per sample (e.g. background kinds)
        return list(x)
    return None


def _split(out: Mapping[str, Any], B: int) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = [{} for _ in range(B)]
    for k, v in out.items():
        rows = _rows(v, B, k)
        for b in range(B):
            samples[b][k] = rows[b] if rows is not None else v
    return samples


class _Renderer:
    """The engine set up for one dataset spec: rig, scene preset, prior."""

    def __init__(self, spec: DatasetSpec, device: torch.device | str = "cpu") -> None:
        prior, scene, render = _engine()
        self.spec = spec
        if spec.domain not in scene.PRESETS:
            raise ValueError(f"unknown domain preset {spec.domain!r}; expected one of "
                             f"{', '.join(scene.PRESETS)}")
        self.scene = scene.load_preset(spec.domain)
        try:
            rig, self.rig_name = _load_rig(spec.rig)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"rig {spec.rig!r} does not load: {msg}") from None
        self.rig_sha256 = rig_digest(rig)
        self.rig = rig.to(device)
        self.prior = getattr(self.scene, "prior", "default")
        self._prior, self._render = prior, render

    def params(self, start: int, count: int) -> torch.Tensor:
        """The parameters of samples start..start+count-1 (each from (seed, index) alone)."""
        return self._prior.sample_params(count, self.spec.seed, prior=self.prior, index0=start)

    def render(self, start: int, count: int) -> list[dict[str, Any]]:
        spec = self.spec
        if spec.clips:
            return self._clips(start, count)
        out = self._render.render_batch(self.params(start, count).to(self.rig.device), self.rig, self.scene,
                                        spec.resolution, spec.seed, index0=start, maps=spec.maps)
        return [self._finish(s, start + c) for c, s in enumerate(_split(out, count))]

    def _finish(self, sample: dict[str, Any], index: int) -> dict[str, Any]:
        if not self.spec.mask:
            sample.pop("mask", None)
        sample.update(index=index, seed=self.spec.seed, domain=self.spec.domain, rig=self.rig_name)
        return _drop_none(sample)

    def _clips(self, start: int, count: int) -> list[dict[str, Any]]:
        """Clips start..start+count-1. Clip i is the smooth trajectory ``sample_trajectory(frames, seed,
        index=i)``, every frame rendered as sample i: one identity, appearance, camera, light, background
        and sensor draw for the whole clip. render_batch keys its draws by (seed, index0 + row) and
        renders each row independently of the batch, so frame f of all the clips is one batch."""
        spec = self.spec
        traj = torch.stack([self._prior.sample_trajectory(spec.frames, spec.seed, index=start + c,
                                                          prior=self.prior, fps=spec.fps)
                            for c in range(count)]).to(self.rig.device)  # [count, F, 61]
        per_frame = [_split(self._render.render_batch(traj[:, f], self.rig, self.scene, spec.resolution,
                                                      spec.seed, index0=start, maps=spec.maps), count)
                     for f in range(spec.frames)]
        return [self._finish(_stack_tree([frame[c] for frame in per_frame]), start + c) for c in range(count)]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """Leave out absent labels (e.g. ``lights.sh`` of a preset without SH light): torch's default collate
    cannot batch None."""
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def _stack_tree(values: list[Any]) -> Any:
    """Per-frame samples -> one sample with a leading time axis on every tensor (other values, the same
    for every frame of a clip, kept once)."""
    if isinstance(values[0], torch.Tensor):
        return torch.stack(values)
    if isinstance(values[0], Mapping):
        return {k: _stack_tree([v[k] for v in values]) for k in values[0]}
    return values[0]


# ---------------------------------------------------------------------------------------------------
# Fields: dtype and per-sample shape of every array label (JSON keeps values, the manifest their types)
# ---------------------------------------------------------------------------------------------------
def _fields(sample: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k, v in sample.items():
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[name] = {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
        elif isinstance(v, Mapping):
            out.update(_fields(v, f"{name}."))
    return out


@functools.cache
def _torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"manifest field dtype {name!r} is not a torch dtype")
    return dt


def _restore(labels: Any, fields: Mapping[str, Mapping[str, Any]], prefix: str = "") -> Any:
    """JSON labels -> tensors with the dtypes and shapes the manifest records."""
    if not isinstance(labels, dict):
        return labels
    out = {}
    for k, v in labels.items():
        name = f"{prefix}{k}"
        f = fields.get(name)
        if f is not None:
            out[k] = torch.tensor(v, dtype=_torch_dtype(f["dtype"])).reshape(f["shape"])
        else:
            out[k] = _restore(v, fields, f"{name}.")
    return out


# ---------------------------------------------------------------------------------------------------
# Encoding one sample <-> tar members
# ---------------------------------------------------------------------------------------------------
def _npy(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(t.numpy()), allow_pickle=False)
    return buf.getvalue()


def _image_bytes(a: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(a)
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _short_floats(a: np.ndarray) -> list | None:
    """float32 values as their shortest decimal forms ('0.3', not 0.30000001192092896: half the JSON),
    or None when one would not read back as the same float32 (then the exact float64 form is used)."""
    flat = [float(str(v)) for v in a.reshape(-1)]
    back = np.array(flat, np.float64).astype(np.float32)
    if not np.array_equal(back, a.reshape(-1), equal_nan=True):
        return None
    return np.array(flat, np.float64).reshape(a.shape).tolist()


def _labels(x: Any) -> Any:
    """A sample's label -> JSON values that read back (through the manifest's dtypes) bit-exactly."""
    if isinstance(x, torch.Tensor):
        a = x.numpy()
        short = _short_floats(a) if a.dtype == np.float32 and a.size else None
        return a.tolist() if short is None else short
    if isinstance(x, Mapping):
        return {str(k): _labels(v) for k, v in x.items()}
    return _jsonable(x)


def _mask_ext(spec: DatasetSpec, dtype: str) -> str:
    return "mask.png" if not spec.clips and dtype in ("bool", "uint8") else "mask.npy"


def _member_exts(spec: DatasetSpec, fields: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The member extensions of every sample, in tar order."""
    exts = ["frames.npy" if spec.clips else spec.image_format, "params.npy", "json"]
    if spec.mask and "mask" in fields:
        exts.append(_mask_ext(spec, fields["mask"]["dtype"]))
    exts += [f"{m}.npy" for m in ("depth", "normal") if m in fields]
    return exts


def _encode(sample: Mapping[str, Any], spec: DatasetSpec) -> list[tuple[str, bytes]]:
    """One sample -> [(extension, bytes)] in :func:`_member_exts` order (deterministic bytes)."""
    image = sample["image"]
    if image.dtype != torch.uint8:
        raise ValueError(f"render_batch image: expected uint8, got {image.dtype}")
    members = [("frames.npy", _npy(image)) if spec.clips else
               (spec.image_format, _image_bytes(image.numpy(), spec.image_format)),
               ("params.npy", _npy(sample["params"]))]
    labels = {k: _labels(v) for k, v in sample.items() if k not in _FILE_FIELDS}
    members.append(("json", json.dumps(labels, sort_keys=True, separators=(",", ":")).encode()))
    mask = sample.get("mask")
    if spec.mask and mask is not None:
        ext = _mask_ext(spec, str(mask.dtype).removeprefix("torch."))
        if ext == "mask.png":
            m = mask.numpy().astype(np.uint8) * 255 if mask.dtype == torch.bool else mask.numpy()
            members.append((ext, _image_bytes(np.ascontiguousarray(m), "png")))
        else:
            members.append((ext, _npy(mask)))
    for m in ("depth", "normal"):
        if sample.get(m) is not None:
            members.append((f"{m}.npy", _npy(sample[m])))
    return members


def _decode(key: str, files: Mapping[str, bytes], fields: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Tar members of one sample -> the sample dict :class:`Dataset` yields."""
    from PIL import Image

    sample: dict[str, Any] = {}
    if "json" in files:
        sample.update(_drop_none(_restore(json.loads(files["json"]), fields)))
    for ext, data in files.items():
        if ext == "json":
            continue
        field = "image" if ext in ("png", "jpg", "frames.npy") else ext.split(".")[0]
        if ext.endswith(".npy"):
            value = torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False).copy())
        elif ext in ("png", "jpg", "mask.png"):
            with Image.open(io.BytesIO(data)) as img:
                rgb = field == "image" and img.mode != "RGB"  # facecore writes RGB: no copy for it
                value = torch.from_numpy(np.array(img.convert("RGB") if rgb else img))
            if field == "mask" and fields.get("mask", {}).get("dtype") == "bool":
                value = value > 127
        else:
            value = data  # a member this version does not know: its bytes
        sample[field] = value
    sample["__key__"] = key
    return sample


# ---------------------------------------------------------------------------------------------------
# Shards: deterministic tar members, atomic completion, verification
# ---------------------------------------------------------------------------------------------------
def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # no time, owner or umask in the bytes
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_space(e: OSError, where: Path) -> OSError:
    """An OSError while writing -> one that says what failed, keeping its errno."""
    what = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    err = OSError(e.errno, f"writing {where} failed: {what}; the partial shard was removed")
    err.filename = str(where)
    return err


class _ShardFile:
    """A shard being written to ``.shard-NNNNNN.tar.partial-*`` beside its final name; :meth:`commit`
    renames it into place (after fsync), anything else removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = self.file = self.tar = None
        self.members = 0
        try:
            with interrupts_deferred():  # no Ctrl-C between mkstemp and ``self.tmp`` naming the file
                fd, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
                self.tmp = Path(name)
                self.file = os.fdopen(fd, "wb")
            self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)
        except BaseException:
            self.abort()
            raise

    def add(self, name: str, data: bytes) -> None:
        self.tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        self.members += 1

    def commit(self) -> None:
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes it private; a shard gets the usual mode
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        for part in (self.tar, self.file):
            try:
                if part is not None:
                    part.close()
            except OSError:
                pass
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def _shard_members(path: Path) -> list[str] | None:
    """Member names of a whole tar, or None when it is truncated or not a tar."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = tar.getmembers()
        if members and path.stat().st_size < members[-1].offset_data + members[-1].size:
            return None
        return [m.name for m in members]
    except (tarfile.TarError, OSError):
        return None


def _expected_members(spec: DatasetSpec, exts: list[str], first: int, count: int) -> list[str]:
    return [f"{spec.key(i)}.{e}" for i in range(first, first + count) for e in exts]


# ---------------------------------------------------------------------------------------------------
# Manifest and index
# ---------------------------------------------------------------------------------------------------
def _version() -> str:
    try:
        from .. import __version__

        return __version__
    except ImportError:  # pragma: no cover - a source tree without the extension
        from importlib.metadata import version

        return version("facecore")


def _manifest(spec: DatasetSpec, engine: _Renderer, fields: dict[str, Any]) -> dict[str, Any]:
    d = dataclasses.asdict(spec)
    d.pop("rig")
    return {
        "format": FORMAT, "version": VERSION, **d,
        "num_shards": spec.num_shards, "key_digits": _key_digits(spec.n),
        "rig": {"name": engine.rig_name, "source": spec.rig, "sha256": engine.rig_sha256},
        "prior": {"name": engine.prior if isinstance(engine.prior, str) else "custom",
                  **_jsonable(engine._prior.get_prior(engine.prior))},
        "preset": _jsonable(engine.scene),
        "members": _member_exts(spec, fields),
        "fields": fields,
        "facecore_version": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _index(spec: DatasetSpec, members_per_sample: int) -> dict[str, Any]:
    shards = []
    for i in range(spec.num_shards):
        first, count = spec.shard_range(i)
        shards.append({"url": _shard_name(i), "nsamples": count, "first": first,
                       "members": count * members_per_sample})
    return {"format": f"{FORMAT}.index", "version": VERSION, "n": spec.n,
            "samples_per_shard": spec.samples_per_shard, "num_shards": spec.num_shards, "shardlist": shards}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a valid {what} (bad JSON: {e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a valid {what} (expected a JSON object)")
    return data


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a dataset folder (or a ``manifest.json`` path), validated."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no dataset manifest at {path} (a folder written by write_dataset / "
                                "`facecore synth` has one)")
    m = _read_json(path, "facecore.synth manifest")
    if m.get("format") != FORMAT:
        raise ValueError(f"{path}: not a facecore.synth manifest (format {m.get('format')!r})")
    if not isinstance(m.get("version"), int) or m["version"] > VERSION:
        raise ValueError(f"{path}: manifest version {m.get('version')!r} is newer than this facecore "
                         f"reads ({VERSION}); upgrade facecore")
    for k in ("n", "samples_per_shard", "rig", "fields", "members", "seed"):
        if k not in m:
            raise ValueError(f"{path}: manifest lacks {k!r}")
    return m


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_path(path, prefix=f".{path.name}.partial-") as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(old) | set(new)) - {"created"})
    return [k for k in keys if old.get(k) != new.get(k)]


def _claim_folder(out: Path, manifest: dict[str, Any], index: dict[str, Any]) -> None:
    """Write manifest + index, or check that the folder already holds this very dataset."""
    path = out / MANIFEST
    if path.exists():
        old = read_manifest(path)
        diff = _differences(old, manifest)
        if diff:
            shown = ", ".join(f"{k}: {_short(old.get(k))} here vs {_short(manifest.get(k))} asked"
                              for k in diff[:4])
            raise ValueError(f"{out} already holds a different dataset ({shown}); write into an empty "
                             "folder or repeat the original settings to resume")
    else:
        strays = sorted(p.name for p in out.glob(SHARD_GLOB))
        if strays:
            raise ValueError(f"{out} holds shards ({strays[0]} ...) but no {MANIFEST}: not a facecore "
                             "dataset folder; write into an empty folder")
        _write_json_atomic(path, manifest)
    if not (out / INDEX).exists() or _read_json(out / INDEX, "index") != index:
        _write_json_atomic(out / INDEX, index)


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_shard(shard: Any) -> tuple[int, int]:
    if isinstance(shard, str):
        k, slash, N = shard.partition("/")
        try:
            shard = (int(k), int(N)) if slash else None
        except ValueError:
            shard = None
        if shard is None:
            raise ValueError(f"shard must be K/N (machine K of N, 0 <= K < N), got {shard!r}")
    if not (isinstance(shard, (tuple, list)) and len(shard) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
            and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (k, N) with 0 <= k < N, got {shard!r}")
    return int(shard[0]), int(shard[1])


# ---------------------------------------------------------------------------------------------------
# write_dataset
# ---------------------------------------------------------------------------------------------------
def write_dataset(
    out_dir: str | os.PathLike,
    n: int,
    *,
    rig: str = "ict",
    domain: str = "clean",
    resolution: int = 128,
    seed: int = 0,
    shard: tuple[int, int] | str = (0, 1),
    samples_per_shard: int = 1000,
    clips: bool = False,
    frames: int = 16,
    fps: float = 30.0,
    batch: int = 64,
    progress: Progress | None = None,
    maps: bool = False,
    mask: bool = True,
    image_format: str = "png",
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Render ``n`` samples (or clips of ``frames`` frames) into WebDataset tar shards in ``out_dir``.

    ``rig``: a built-in rig name (``"ict"``, ``"stylized"``, ``"default"``) or a rig file/folder;
    ``domain``: a scene preset (:data:`facecore.synth.PRESETS`); ``shard=(k, N)`` (or ``"k/N"``):
    write only the shards ``i`` with ``i % N == k``; ``clips``: clips of ``frames`` frames at ``fps``
    (:func:`facecore.synth.sample_trajectory`) instead of images; ``batch``: samples rendered together;
    ``progress(stage, done, total)``: called after each batch; ``maps``: also depth and normal maps;
    ``image_format``: ``"png"`` (lossless, default) or ``"jpg"``; ``device``: where to render.
    Layout, resume and determinism: see this module's docstring.

    Returns ``{"out", "manifest", "written": [shard names], "skipped": [...], "samples": written samples,
    "timings": {stage: seconds}}``.
    """
    if isinstance(rig, os.PathLike):
        rig = os.fspath(rig)
    if not isinstance(rig, str):  # the manifest must say how to load the rig again
        raise TypeError(f"rig must be a built-in rig name or a rig file/folder path, got {type(rig).__name__}"
                        " (save a FaceRig with rig.save(path) and pass the path)")
    spec = DatasetSpec(n=n, rig=rig, domain=domain, resolution=resolution, seed=seed,
                       samples_per_shard=samples_per_shard, clips=clips, frames=frames, fps=fps, maps=maps,
                       mask=mask, image_format=image_format)
    k, N = _parse_shard(shard)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    out = Path(out_dir)
    from ..animate.demo import check_writable

    check_writable(out)  # before any work; the folder itself is made once the inputs are known good
    timings = {"setup": 0.0, "render": 0.0, "encode": 0.0, "write": 0.0}
    t0 = time.perf_counter()
    engine = _Renderer(spec, device)
    probe = engine.render(0, 1)[0]  # the label fields (and a check that this rig + preset render)
    fields = _fields(probe)
    manifest = _manifest(spec, engine, fields)
    exts = manifest["members"]
    out.mkdir(parents=True, exist_ok=True)
    _claim_folder(out, manifest, _index(spec, len(exts)))
    timings["setup"] = time.perf_counter() - t0

    mine = [i for i in range(spec.num_shards) if i % N == k]
    total = sum(spec.shard_range(i)[1] for i in mine)
    done, written, skipped = 0, [], []
    report = progress or (lambda stage, d, t: None)
    report("synth", 0, total)
    for i in mine:
        first, count = spec.shard_range(i)
        path = out / _shard_name(i)
        if _shard_members(path) == _expected_members(spec, exts, first, count):
            skipped.append(path.name)
            done += count
            report("synth", done, total)
            continue
        for stale in glob.glob(glob.escape(str(out / f".{path.name}.partial-")) + "*"):
            Path(stale).unlink(missing_ok=True)  # a killed run's leftover of this shard (ours: i % N == k)
        _write_shard(path, spec, engine, first, count, batch, timings,
                     lambda c, done=done: report("synth", done + c, total))
        done += count
        written.append(path.name)
    return {"out": out, "manifest": manifest, "written": written, "skipped": skipped,
            "samples": sum(spec.shard_range(int(s[6:12]))[1] for s in written), "timings": timings}


def _write_shard(path: Path, spec: DatasetSpec, engine: _Renderer, first: int, count: int, batch: int,
                 timings: dict[str, float], step: Callable[[int], None]) -> None:
    try:
        shard = _ShardFile(path)
    except OSError as e:
        raise _check_space(e, path) from None
    def encode_and_add(samples: list[dict[str, Any]]) -> None:
        t = time.perf_counter()
        encoded = [(spec.key(s["index"]), _encode(s, spec)) for s in samples]
        t1 = time.perf_counter()
        for key, members in encoded:
            for ext, data in members:
                shard.add(f"{key}.{ext}", data)
        timings["encode"] += t1 - t
        timings["write"] += time.perf_counter() - t1

    # Batch k is encoded and written on a second thread while batch k + 1 renders (PNG/zlib and the
    # kernels release the GIL); one batch in flight at a time, so members keep their order.
    pending: concurrent.futures.Future | None = None
    done = 0  # samples of the batch in flight, counted once it is written
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="facecore-encode") as pool:
        try:
            for b0 in range(first, first + count, batch):
                b = min(batch, first + count - b0)
                t = time.perf_counter()
                samples = engine.render(b0, b)
                timings["render"] += time.perf_counter() - t
                if pending is not None:
                    pending.result()
                    step(done)
                pending, done = pool.submit(encode_and_add, samples), b0 + b - first
            if pending is not None:
                pending.result()
                step(done)
            t = time.perf_counter()
            shard.commit()
            timings["write"] += time.perf_counter() - t
        except OSError as e:
            _settle(pending)
            shard.abort()
            raise _check_space(e, path) from None
        except BaseException:  # an error, Ctrl-C, SIGTERM (the CLI makes it SystemExit): no partial shard
            _settle(pending)
            shard.abort()
            raise


def _settle(pending: concurrent.futures.Future | None) -> None:
    """Wait for an in-flight encode before its shard is aborted (its own error, if any, is superseded)."""
    if pending is not None:
        concurrent.futures.wait([pending])


# ---------------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------------
def _slot() -> tuple[int, int]:
    """(this reader's slot, number of slots) over torchrun ranks x DataLoader workers."""
    info = torch.utils.data.get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return rank * workers + worker, world * workers


def _spec_of(source: Mapping[str, Any]) -> tuple[DatasetSpec, dict[str, Any] | None]:
    if source.get("format") == FORMAT:
        return DatasetSpec.from_manifest(source), dict(source)
    names = {f.name for f in dataclasses.fields(DatasetSpec)}
    unknown = sorted(set(source) - names)
    if unknown:
        raise ValueError(f"Dataset spec: unknown keys {unknown}; expected some of {sorted(names)}")
    if "n" not in source:
        raise ValueError("Dataset spec: needs 'n' (the number of samples)")
    return DatasetSpec(**source), None


class Dataset(torch.utils.data.IterableDataset):
    """Samples of a synthetic dataset as dicts of tensors (the fields of
    :func:`facecore.synth.render_batch`, one sample each, plus ``index``, ``seed``, ``domain``, ``rig``).

    ``source``:

    * a folder written by :func:`write_dataset`: reads its tar shards (stdlib ``tarfile``; no
      ``webdataset`` needed) in sample order;
    * a manifest (``manifest.json`` path or its dict) or a spec dict (the keys of :class:`DatasetSpec`:
      ``{"n": 1000, "rig": "ict", "domain": "wild", ...}``): renders the samples on the fly, the same
      ones :func:`write_dataset` writes for it (``batch`` at a time, on ``device``).

    Under DataLoader workers and torchrun ranks each reader takes a disjoint part (whole shards when
    there are at least as many shards as readers, else every k-th sample), so one epoch over all of
    them yields every sample exactly once. ``len()`` is the whole dataset's size.
    """

    def __init__(self, source: str | os.PathLike | Mapping[str, Any], *, batch: int = 64,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        self.batch, self.device = batch, device
        self.folder: Path | None = None
        if isinstance(source, Mapping):
            self.spec, self.manifest = _spec_of(source)
        else:
            path = Path(source)
            if path.is_dir():
                self.manifest = read_manifest(path)
                self.spec = DatasetSpec.from_manifest(self.manifest)
                self.folder = path
                self._check_shards()
            elif path.is_file():
                self.manifest = read_manifest(path)
                self.spec = DatasetSpec.from_manifest(self.manifest)
            else:
                raise FileNotFoundError(f"dataset {path} not found (expected a folder of shards or a "
                                        "manifest.json)")
        self._engine: _Renderer | None = None

    def _check_shards(self) -> None:
        missing = [_shard_name(i) for i in range(self.spec.num_shards)
                   if not (self.folder / _shard_name(i)).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.folder}: {len(missing)} of {self.spec.num_shards} shards missing ({missing[0]} ...); "
                "finish writing it (rerun write_dataset / `facecore synth` with the same settings)")

    def __len__(self) -> int:
        return self.spec.n

    @property
    def fields(self) -> dict[str, Any] | None:
        return None if self.manifest is None else self.manifest["fields"]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        slot, slots = _slot()
        if self.folder is not None:
            yield from self._read(slot, slots)
        else:
            yield from self._render(slot, slots)

    # -- written shards ---------------------------------------------------------------------------
    def _read(self, slot: int, slots: int) -> Iterator[dict[str, Any]]:
        by_shard = self.spec.num_shards >= slots
        fields = self.manifest["fields"]
        for i in range(self.spec.num_shards):
            if by_shard and i % slots != slot:
                continue
            for sample in self._read_shard(self.folder / _shard_name(i), fields):
                if by_shard or sample["index"] % slots == slot:
                    yield sample

    @staticmethod
    def _read_shard(path: Path, fields: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with tarfile.open(path, "r:") as tar:
                key, files = None, {}
                for m in tar:
                    if not m.isfile():
                        continue
                    k, _, ext = Path(m.name).name.partition(".")
                    if k != key and key is not None:
                        yield _decode(key, files, fields)
                        files = {}
                    key = k
                    files[ext] = tar.extractfile(m).read()
                if key is not None:
                    yield _decode(key, files, fields)
        except tarfile.TarError as e:
            raise ValueError(f"{path}: damaged shard ({e}); rerun write_dataset with the same settings to "
                             "rewrite it") from None

    # -- on the fly -------------------------------------------------------------------------------
    def _check_same_engine(self, engine: _Renderer) -> None:
        """The manifest's samples can be rendered here: same rig, preset and prior (else an error), same
        facecore version (else a warning: kernels may round differently)."""
        m = self.manifest
        if engine.rig_sha256 != m["rig"]["sha256"]:
            raise ValueError(f"rig {self.spec.rig!r} is not the rig this manifest was written with "
                             "(SHA-256 differs)")
        now = _manifest(self.spec, engine, m["fields"])
        changed = [k for k in ("preset", "prior") if k in m and now[k] != m[k]]
        if changed:
            raise ValueError(f"the {' and '.join(changed)} of domain {self.spec.domain!r} changed since this "
                             "manifest was written: on-the-fly samples would differ from the written ones")
        if m.get("facecore_version") != now["facecore_version"]:
            warnings.warn(f"manifest written by facecore {m.get('facecore_version')}, this is "
                          f"{now['facecore_version']}: on-the-fly samples may differ", stacklevel=3)

    def _render(self, slot: int, slots: int) -> Iterator[dict[str, Any]]:
        if self._engine is None:
            self._engine = _Renderer(self.spec, self.device)
            if self.manifest is not None:
                self._check_same_engine(self._engine)
        # Blocks of `batch` consecutive samples, dealt round-robin: consecutive indices render together.
        n_blocks = math.ceil(self.spec.n / self.batch)
        for blk in range(slot, n_blocks, slots):
            start = blk * self.batch
            with torch.no_grad():
                samples = self._engine.render(start, min(self.batch, self.spec.n - start))
            for s in samples:
                s["__key__"] = self.spec.key(s["index"])
                yield s
