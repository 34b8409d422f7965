"""Clips for the video study: :class:`ClipDataset` -- rendered clips of two domains with exact per-frame
ARKit parameters, or real clips from a folder of videos with one Live Link Face CSV each.

The two rendered domains are a **sim-to-real proxy** (no rendered clip is real; the proxy only lets the
study measure what a domain gap does when the truth is known):

* ``"real_proxy"`` -- the held-out appearance: the ``ict`` rig (derived from ICT-FaceKit) with sampled
  ICT identities (s.d. 1.0), the ``wild`` scene (randomised lenses and crops, coloured lighting,
  noise-texture backgrounds, exposure / white-balance errors, blur, read noise, JPEG), skin albedo
  texture (variation 0.08), per-frame sensor noise, the ``default`` motion prior.
* ``"synthetic"`` -- the rendered training domain: the ``stylized`` rig (facecore's procedural head,
  ``facecore.rig.default_rig``) by default, the ``studio`` (or ``clean``) scene, wider identity
  (s.d. 1.6) and motion ranges (a widened ``expressive`` prior, keyposes closer together).

``gap`` in [0, 1] moves the synthetic domain along the line between the two: every numeric scene
setting (camera, lighting, background, sensor, identity spread, albedo variation, background kind
weights), every numeric prior field, the keypose interval and the per-frame noise are
``real + gap * (synthetic - real)``; settings that are not numbers (lighting model, background
folder) switch at ``gap = 0.5``. The rig is its own knob (``synthetic_rig``): with
``synthetic_rig="ict"`` and ``gap=0`` the synthetic domain is the real-proxy distribution (other
samples); ``gap`` has no effect on the real-proxy domain.

A sample (``dataset[i]``, reproducible from ``(seed, i)`` alone) is a dict:

* ``frames`` uint8 ``[T, H, W, 3]``; ``params`` float32 ``[T, 61]`` (the truth, ``facecore.arkit.NAMES``);
* ``reference`` uint8 ``[H, W, 3]``: the same identity, appearance, camera, lights and background as the
  clip with a different, near-frontal expression (a frame not in the clip) -- for real folders a frame
  of the same video outside the clip (frame 0 of the clip when the video holds no other frame);
* ``motion_maps`` float32 ``[T, H, W, 4]``: the driving parameters rendered on the canonical avatar
  (the ``ict`` rig at identity 0 in the fixed ``clean`` camera and light): world-space unit normals (3,
  in [-1, 1]) and depth (1: ``(far - z) / (far - near)``, nearer is larger, in (0, 1) on the face, 0 on
  the background);
* ``domain`` (``"real_proxy"``, ``"synthetic"`` or ``"real"``), ``identity`` (float32 identity
  coefficients of the rig for rendered clips, the video's index for real ones), ``rig``, ``clip_id``.

Also here: :func:`domain_settings` (the resolved rig, scene, prior, keypose interval and noise of a
domain at a gap), :func:`motion_maps` (parameters -> canonical-avatar maps) and :func:`render_stills`
(single frames of a domain in batches, for per-frame judges).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DOMAINS = ("real_proxy", "synthetic")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
CANONICAL_RIG = "ict"
MOTION_CHANNELS = 4  # normal (3) + depth (1)
_DOMAIN_CODE = {"real_proxy": 1, "synthetic": 2}
_STREAM_CLIP_NOISE = 101  # per-frame noise of a clip, apart from facecore.synth's streams

# The two ends of the gap (module docstring). Scenes are preset names plus overrides.
REAL_PROXY = {"rig": "ict", "scene": "wild", "scene_overrides": {"identity_scale": 1.0, "prior": "default"},
              "prior": "default", "key_interval": (0.5, 1.5), "frame_noise": 2.0}
SYNTHETIC = {"rig": "stylized", "scene_overrides": {"identity_scale": 1.6, "prior": "expressive"},
             "prior": "expressive",
             "prior_overrides": {"head_sd": (0.3, 0.2, 0.12), "head_max": (0.7, 0.45, 0.3), "p_active": 0.18,
                                 "p_rare": 0.25},
             "key_interval": (0.3, 1.0), "frame_noise": 0.0}


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return int(v)


def _lerp_value(a, b, t: float):
    """``a + t (b - a)`` through numbers, tuples/lists and dicts; other values switch at t = 0.5."""
    if isinstance(a, bool) or isinstance(b, bool):
        return b if t >= 0.5 else a
    if isinstance(a, int) and isinstance(b, int):
        return int(round(a + t * (b - a)))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a + t * (b - a))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return type(a)(_lerp_value(x, y, t) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        # background kind weights: a kind one side lacks weighs 0 there
        out = {}
        for k in list(a) + [k for k in b if k not in a]:
            x, y = a.get(k), b.get(k)
            if x is None and isinstance(y, (int, float)):
                x = 0.0
            if y is None and isinstance(x, (int, float)):
                y = 0.0
            out[k] = _lerp_value(x, y, t)
        return {k: v for k, v in out.items() if v is not None}
    return b if t >= 0.5 else a


def domain_settings(domain: str, gap: float = 1.0, synthetic_scene: str = "studio",
                    synthetic_rig: str = "stylized") -> dict:
    """The rig name, :class:`facecore.synth.Scene`, :class:`facecore.synth.Prior`, keypose interval and
    per-frame noise (s.d. in uint8 levels) of ``domain`` at ``gap`` (module docstring)."""
    from ..synth import Scene, load_preset
    from ..synth.prior import get_prior

    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0.0 <= gap <= 1.0:
        raise ValueError(f"gap must be a number in [0, 1], got {gap!r}")
    if synthetic_scene not in ("clean", "studio"):
        raise ValueError(f"synthetic_scene must be 'clean' or 'studio', got {synthetic_scene!r}")
    real_scene = load_preset(REAL_PROXY["scene"]).to_dict() | REAL_PROXY["scene_overrides"]
    real_prior = get_prior(REAL_PROXY["prior"])
    if domain == "real_proxy":
        t, rig = 0.0, REAL_PROXY["rig"]
        scene_d, prior = real_scene, real_prior
    else:
        t, rig = float(gap), synthetic_rig
        syn_scene = load_preset(synthetic_scene).to_dict() | SYNTHETIC["scene_overrides"]
        scene_d = _lerp_value(real_scene, syn_scene, t)
        syn_prior = replace(get_prior(SYNTHETIC["prior"]), **SYNTHETIC["prior_overrides"])
        prior = replace(real_prior, **{
            f.name: _lerp_value(getattr(real_prior, f.name), getattr(syn_prior, f.name), t)
            for f in fields(real_prior)})
    scene_d["name"] = f"{domain}_gap{t:g}" if domain == "synthetic" else "real_proxy"
    scene_d["prior"] = "default"  # the clip prior below is what samples motion
    scene = Scene.from_dict(scene_d, source=f"ClipDataset({domain})")
    key = _lerp_value(REAL_PROXY["key_interval"], SYNTHETIC["key_interval"], t)
    noise = _lerp_value(REAL_PROXY["frame_noise"], SYNTHETIC["frame_noise"], t)
    return {"rig": rig, "scene": scene, "prior": prior, "key_interval": tuple(key),
            "frame_noise": float(noise)}


def motion_maps(params: torch.Tensor, size: int) -> torch.Tensor:
    """``float32 [T, size, size, 4]``: ``params [T, 61]`` rendered on the canonical avatar (normals and
    depth, module docstring). Independent of any identity, scene or domain."""
    from ..synth import render_batch, resolve_rig

    rig = resolve_rig(CANONICAL_RIG)
    params = torch.as_tensor(params, dtype=torch.float32)
    n_id = len(rig.identity_names) if rig.identity_basis is not None else 0
    out = render_batch(params, rig, "clean", size, 0, identity=torch.zeros(n_id), maps=True)
    near, far = out["camera"]["near"].view(-1, 1, 1), out["camera"]["far"].view(-1, 1, 1)
    depth = out["depth"]
    d = torch.where(depth > 0, (far - depth) / (far - near), torch.zeros_like(depth))
    return torch.cat([out["normal"], d.unsqueeze(-1)], -1).float().cpu().contiguous()


class ClipDataset:
    """Clips of a domain (module docstring), ``dataset[i]`` a sample dict, reproducible from
    ``(seed, i)``.

    ``domain``: ``"real_proxy"`` or ``"synthetic"``; ``n`` clips of ``frames`` frames at ``size`` x
    ``size`` (``fps`` for the motion); ``gap`` in [0, 1] (synthetic domain only, module docstring);
    ``synthetic_scene``: ``"studio"`` or ``"clean"``; ``synthetic_rig``: the synthetic domain's rig
    (``"stylized"`` default, ``"ict"``); ``cache_dir``: store rendered samples as ``.npz`` there (keyed
    by every setting) and read them back on the next access.
    """

    def __init__(self, domain: str = "real_proxy", n: int = 16, frames: int = 8, size: int = 32,
                 seed: int = 0, *, gap: float = 1.0, fps: float = 30.0, synthetic_scene: str = "studio",
                 synthetic_rig: str = "stylized", cache_dir: str | Path | None = None):
        self.n = _check_int("n", n, 0)
        self.frames = _check_int("frames", frames, 1)
        self.size = _check_int("size", size, 8)
        self.seed = _check_int("seed", seed, 0)
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.fps = float(fps)
        self.domain = domain
        self.gap = float(gap) if domain == "synthetic" else 0.0
        self.settings = domain_settings(domain, gap, synthetic_scene, synthetic_rig)
        self._seed = self.seed * 4 + _DOMAIN_CODE[domain]  # the two domains never share random numbers
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        key = json.dumps([domain, self.frames, self.size, self.seed, self.gap, self.fps, synthetic_scene,
                          synthetic_rig], sort_keys=True)
        self._key = hashlib.sha1(key.encode()).hexdigest()[:12]

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[dict]:
        for i in range(self.n):
            yield self[i]

    def __repr__(self) -> str:
        return (f"ClipDataset(domain={self.domain!r}, n={self.n}, frames={self.frames}, size={self.size}, "
                f"seed={self.seed}, gap={self.gap:g})")

    def __getitem__(self, index: int) -> dict:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"ClipDataset index must be an int, got {type(index).__name__}")
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"ClipDataset index {index} out of range for {self.n} clips")
        index = int(index)
        if self.cache_dir is not None:
            path = self.cache_dir / f"{self._key}_{index:06d}.npz"
            if path.is_file():
                return _from_npz(path)
            sample = self._render(index)
            _to_npz(path, sample)
            return sample
        return self._render(index)

    def _render(self, index: int) -> dict:
        from ..synth import render_batch, resolve_rig, sample_params, sample_trajectory

        s = self.settings
        rig = resolve_rig(s["rig"])
        params = sample_trajectory(self.frames, self._seed, index=index, prior=s["prior"], fps=self.fps,
                                   key_interval=s["key_interval"])
        ref_params = sample_params(1, self._seed, "frontal", index0=index)
        # Every frame and the reference use the generators of (seed, index): one identity, appearance,
        # camera, light set and background per clip. Rendered one by one for that reason.
        images, identity = [], None
        for p in torch.cat([params, ref_params]):
            out = render_batch(p[None], rig, s["scene"], self.size, self._seed, index0=index,
                               identity=identity)
            identity = out["identity"][0]
            images.append(out["image"][0].cpu())
        video = torch.stack(images).numpy()
        frames, reference = video[:-1], video[-1]
        if s["frame_noise"] > 0:
            # render_batch's read noise is keyed by the clip index, so it is frozen across frames; a real
            # sensor's is not.
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
                [self._seed, index, _STREAM_CLIP_NOISE])))
            noise = rng.normal(0.0, s["frame_noise"], frames.shape)
            frames = np.clip(np.rint(frames + noise), 0, 255).astype(np.uint8)
        return {
            "frames": np.ascontiguousarray(frames),
            "reference": np.ascontiguousarray(reference),
            "params": params.numpy().astype(np.float32),
            "motion_maps": motion_maps(params, self.size).numpy(),
            "domain": self.domain,
            "identity": identity.cpu().numpy().astype(np.float32),
            "rig": s["rig"],
            "clip_id": f"{self.domain}-s{self.seed}-g{self.gap:g}-{index:06d}",
        }

    @classmethod
    def from_folder(cls, path: str | Path, frames: int = 8, size: int = 32, *, stride: int | None = None,
                    timebase: int = 60) -> FolderClips:
        """Real clips: every video in ``path`` (``.mp4 .mov .avi .mkv .webm``) with a Live Link Face CSV of
        the same stem (``take.mp4`` + ``take.csv``), cut into windows of ``frames`` frames every ``stride``
        (default ``frames``); see :class:`FolderClips`."""
        return FolderClips(path, frames, size, stride=stride, timebase=timebase)


def _to_npz(path: Path, sample: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    arrays = {k: v for k, v in sample.items() if isinstance(v, np.ndarray)}
    meta = {k: v for k, v in sample.items() if not isinstance(v, np.ndarray)}
    np.savez(tmp, _meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)  # atomic: a reader never sees half a file


def _from_npz(path: Path) -> dict:
    with np.load(path) as z:
        out = {k: z[k] for k in z.files if k != "_meta"}
        out.update(json.loads(str(z["_meta"])))
    return out


def _square(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop, resized (antialiased when shrinking) to ``size``: uint8 ``[T, size, size, 3]``."""
    T, H, W, _ = frames.shape
    s = min(H, W)
    y0, x0 = (H - s) // 2, (W - s) // 2
    x = torch.from_numpy(np.ascontiguousarray(frames[:, y0:y0 + s, x0:x0 + s])).permute(0, 3, 1, 2).float()
    if s != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=s > size)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class FolderClips:
    """Real clips with ARKit labels (``ClipDataset.from_folder``): the same interface and sample dict as
    :class:`ClipDataset` with ``domain="real"`` and ``identity`` the video's index (sorted by name).

    Frames are centre-cropped to a square and resized to ``size``. The CSV is read by header name
    (:func:`facecore.io.read_csv`, tracking-lost rows held); video frame j (at ``j / fps`` seconds from
    the first frame) takes the CSV row nearest to ``times[0] + j / fps``. ``reference``: the frame of the
    same video half its length away from the clip's first frame (outside the clip whenever the video is
    longer than the clip), else the clip's frame 0. Videos shorter than ``frames`` are skipped with a
    note in :attr:`skipped`.
    """

    domain = "real"

    def __init__(self, path: str | Path, frames: int = 8, size: int = 32, *, stride: int | None = None,
                 timebase: int = 60):
        from ..io.errors import FormatError

        self.path = Path(path)
        self.frames = _check_int("frames", frames, 1)
        self.size = _check_int("size", size, 8)
        self.stride = self.frames if stride is None else _check_int("stride", stride, 1)
        self.timebase = timebase
        if not self.path.is_dir():
            raise FileNotFoundError(f"ClipDataset.from_folder: no such folder: {self.path}")
        videos = sorted(p for p in self.path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise FormatError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in the folder", path=self.path)
        self.videos: list[tuple[Path, Path]] = []
        for v in videos:
            csv = v.with_suffix(".csv")
            if not csv.is_file():
                raise FormatError(f"video {v.name} has no Live Link Face CSV {csv.name} beside it", path=v)
            self.videos.append((v, csv))
        self.skipped: list[str] = []
        self._windows: list[tuple[int, int]] = []  # (video index, first frame)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for vi, (v, _) in enumerate(self.videos):
            count = self._load(vi)[0].shape[0]
            if count < self.frames:
                self.skipped.append(f"{v.name}: {count} frames < {self.frames}")
            self._windows += [(vi, s) for s in range(0, count - self.frames + 1, self.stride)]
        self.n = len(self._windows)

    def _load(self, vi: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 frames ``[N, size, size, 3]`` and float32 params ``[N, 61]`` of video ``vi`` (kept)."""
        from ..io import read_csv
        from ..io.errors import FormatError
        from ..io.video import read_video

        if vi in self._cache:
            return self._cache[vi]
        video, csv = self.videos[vi]
        it, meta = read_video(video)
        raw = list(it)
        if not raw:
            raise FormatError("the video has no frames", path=video)
        fps = float(meta.get("fps") or 0.0)
        if not fps > 0:
            raise FormatError(f"the video reports no frame rate ({meta.get('fps')!r})", path=video)
        track = read_csv(csv, timebase=self.timebase)
        times = track.times - track.times[0]
        want = np.arange(len(raw)) / fps
        rows = np.clip(np.searchsorted(times, want), 0, len(times) - 1)
        prev = np.clip(rows - 1, 0, len(times) - 1)
        rows = np.where(np.abs(times[prev] - want) <= np.abs(times[rows] - want), prev, rows)
        params = np.ascontiguousarray(track.params[rows], np.float32)
        if not np.isfinite(params).all():
            raise FormatError("the CSV has frames without values (NaN)", path=csv)
        out = (_square(np.stack(raw), self.size), params)
        self._cache[vi] = out
        return out

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[dict]:
        for i in range(self.n):
            yield self[i]

    def __getitem__(self, index: int) -> dict:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"ClipDataset index must be an int, got {type(index).__name__}")
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"ClipDataset index {index} out of range for {self.n} clips")
        vi, start = self._windows[int(index)]
        video, params = self._load(vi)
        stop = start + self.frames
        count = video.shape[0]
        ref = (start + count // 2) % count
        if start <= ref < stop:  # the video holds nothing outside the clip
            ref = start
        p = torch.from_numpy(params[start:stop])
        return {
            "frames": np.ascontiguousarray(video[start:stop]),
            "reference": np.ascontiguousarray(video[ref]),
            "params": params[start:stop].copy(),
            "motion_maps": motion_maps(p, self.size).numpy(),
            "domain": "real",
            "identity": int(vi),
            "rig": None,
            "clip_id": f"{self.videos[vi][0].stem}:{start}",
        }


def render_stills(domain: str, n: int, size: int = 32, seed: int = 0, *, gap: float = 1.0,
                  synthetic_scene: str = "studio", synthetic_rig: str = "stylized") -> dict[str, np.ndarray]:
    """``n`` single frames of ``domain`` rendered in one batch (fast: no clip structure): ``frames`` uint8
    ``[n, size, size, 3]``, ``params`` float32 ``[n, 61]`` from the domain's prior, ``identity``. For
    training per-frame judges (the study's motion estimator) on the domain's appearance. Seeds are kept
    apart from :class:`ClipDataset`'s (``seed * 4 + 3``)."""
    from ..synth import render_batch, resolve_rig, sample_params

    n = _check_int("n", n, 1)
    s = domain_settings(domain, gap, synthetic_scene, synthetic_rig)
    sd = _check_int("seed", seed, 0) * 4 + 3
    params = sample_params(n, sd, s["prior"])
    frames, ids = [], []
    for i in range(0, n, 256):  # bounded memory
        out = render_batch(params[i:i + 256], resolve_rig(s["rig"]), s["scene"], size, sd, index0=i)
        frames.append(out["image"].cpu().numpy())
        ids.append(out["identity"].cpu().numpy())
    return {"frames": np.concatenate(frames), "params": params.numpy(), "identity": np.concatenate(ids)}
