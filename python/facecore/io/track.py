"""``Track``: a sequence of 61-channel parameter frames with their times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._names import NAMES


@dataclass
class Track:
    """Per-frame ARKit parameters.

    ``times``: float64 ``[N]`` seconds (non-decreasing); ``params``: float32 ``[N, 61]`` in
    :data:`facecore.arkit.NAMES` order; ``fps``: the nominal frame rate (> 0); ``tracked``: bool
    ``[N]``, False where the capture lost the face (a Live Link Face ``BlendShapeCount`` 0 row: its
    params were filled in by a policy, or are NaN), None meaning all True. Inputs are converted to
    those dtypes on construction; bad shapes raise ``ValueError``.
    """

    times: np.ndarray
    params: np.ndarray
    fps: float = 60.0
    tracked: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.times = np.ascontiguousarray(self.times, dtype=np.float64)
        self.params = np.ascontiguousarray(self.params, dtype=np.float32)
        self.fps = float(self.fps)
        if self.times.ndim != 1:
            raise ValueError(f"times must have shape [N], got {list(self.times.shape)}")
        n = self.times.shape[0]
        if self.params.shape != (n, len(NAMES)):
            raise ValueError(f"params must have shape [N={n}, {len(NAMES)}], got {list(self.params.shape)}")
        if self.tracked is None:
            self.tracked = np.ones(n, dtype=bool)
        else:
            mask = np.asarray(self.tracked)
            if mask.dtype != np.bool_:
                raise ValueError(f"tracked must be a bool array [N], got dtype {mask.dtype}")
            if mask.shape != (n,):
                raise ValueError(f"tracked must have shape [N={n}], got {list(mask.shape)}")
            self.tracked = np.ascontiguousarray(mask)
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if not np.isfinite(self.times).all():
            raise ValueError("times must be finite")
        if n > 1 and (np.diff(self.times) < 0).any():
            i = int(np.flatnonzero(np.diff(self.times) < 0)[0])
            raise ValueError(f"times must be non-decreasing; times[{i + 1}]={self.times[i + 1]} "
                             f"< times[{i}]={self.times[i]}")

    @classmethod
    def from_params(cls, params: np.ndarray, fps: float = 60.0, start: float = 0.0,
                    tracked: np.ndarray | None = None) -> Track:
        """A track sampled uniformly at ``fps`` from ``start`` seconds."""
        params = np.asarray(params, dtype=np.float32)
        if params.ndim != 2:
            raise ValueError(f"params must have shape [N, {len(NAMES)}], got {list(params.shape)}")
        return cls(times=start + np.arange(params.shape[0], dtype=np.float64) / float(fps),
                   params=params, fps=fps, tracked=tracked)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame (0 for fewer than two frames)."""
        return float(self.times[-1] - self.times[0]) if len(self) > 1 else 0.0

    @property
    def num_lost(self) -> int:
        """How many frames are not tracked."""
        return int(np.count_nonzero(~self.tracked))

    def select(self, index: Any) -> Track:
        """The frames at ``index`` (an int, a slice, or an int/bool array; times stay
        non-decreasing only for increasing indices) as a new track with the same fps."""
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"frame {index} is out of range for a track of {n} frames")
            index = slice(int(index) % n, int(index) % n + 1)
        return Track(times=self.times[index].copy(), params=self.params[index].copy(), fps=self.fps,
                     tracked=self.tracked[index].copy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Track):
            return NotImplemented
        # equal_nan: a track whose lost frames are NaN (read_csv(lost="nan")) equals its own copy.
        return (self.fps == other.fps and np.array_equal(self.times, other.times)
                and np.array_equal(self.params, other.params, equal_nan=True)
                and np.array_equal(self.tracked, other.tracked))
