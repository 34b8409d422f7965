"""The estimator's input path: images of any size -> square, resized face crops; face boxes from
synthetic labels (training) or from a detector (real photographs).

A face box is ``(x0, y0, x1, y1)`` in pixels (pixel centres at ``i + 0.5``, so a box ``(0, 0, W, H)``
is the whole image). The crop is the square of side ``crop_scale * max(box width, box height)``
centred on the box, padded with black where it leaves the image, and resized to ``size x size`` with
an antialiased bilinear filter (a large photo shrinks without aliasing). Training and
:meth:`Estimator.predict` use the same code, so the network sees the same framing in both.

The detector (:class:`FaceDetector`) is the LBP frontal-face cascade that ships inside scikit-image
(``skimage.data.lbp_frontal_face_cascade_filename()``, run by ``skimage.feature.Cascade``): offline,
a few ms per image, frontal faces only. Its boxes are scaled by :data:`DETECTOR_BOX_SCALE` to match
the landmark boxes the network is trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# The LBP cascade's box spans roughly brows to lower lip; the 68-landmark box of the training data
# spans brows to chin and ear to ear, about 1.2 times larger (measured on the default rig's renders).
DETECTOR_BOX_SCALE = 1.2
_EXTRA_HINT = "pip install scikit-image (or 'facecore[estimator]')"


class NoFaceError(ValueError):
    """No face was found in an image (``index`` says which, ``name`` the file when known)."""

    def __init__(self, message: str, index: int | None = None, name: str | None = None):
        super().__init__(message)
        self.index, self.name = index, name


def to_image_list(images: Any) -> list[torch.Tensor]:
    """``[B, H, W, 3]`` / ``[H, W, 3]`` uint8 (numpy or torch) or a sequence of ``[H, W, 3]`` images
    of any sizes -> a list of uint8 ``[H, W, 3]`` CPU tensors. RGBA drops its alpha, grey ``[H, W]``
    becomes RGB. Anything else raises a ValueError/TypeError saying what was expected."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim == 4:
            seq: Sequence[Any] = list(images)
        elif images.ndim in (2, 3):
            seq = [images]
        else:
            raise ValueError(f"images must be [B, H, W, 3], [H, W, 3] or a list of images, got shape "
                             f"{list(images.shape)}")
    elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        seq = images
    else:
        raise TypeError(f"images must be a uint8 array/tensor or a list of them, got {type(images).__name__}")
    out = []
    for i, im in enumerate(seq):
        if not isinstance(im, torch.Tensor):
            im = np.asarray(im)
            if not im.flags.writeable:  # e.g. frames decoded into read-only buffers
                im = im.copy()
        t = torch.as_tensor(im).cpu()
        if t.dtype != torch.uint8:
            raise TypeError(f"image {i} must be uint8 (sRGB), got {t.dtype}")
        if t.ndim == 2:
            t = t.unsqueeze(-1).expand(-1, -1, 3)
        if t.ndim != 3 or t.shape[2] not in (1, 3, 4) or t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"image {i} must be [H, W, 3] (or grey / RGBA), got shape {list(t.shape)}")
        if t.shape[2] == 1:
            t = t.expand(-1, -1, 3)
        out.append(t[..., :3])
    return out


def _check_boxes(boxes: Any, n: int) -> np.ndarray:
    b = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    if b.shape != (n, 4):
        raise ValueError(f"boxes must have shape [B={n}, 4] (x0, y0, x1, y1 in pixels), got {list(b.shape)}")
    if not np.isfinite(b).all():
        raise ValueError("boxes contain NaN or infinite values")
    if ((b[:, 2] - b[:, 0]) <= 0).any() or ((b[:, 3] - b[:, 1]) <= 0).any():
        raise ValueError("boxes must have x1 > x0 and y1 > y0")
    return b


def square_crop(box: np.ndarray, crop_scale: float) -> tuple[float, float, float]:
    """Centre ``(cx, cy)`` and side of the square crop around a face box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return 0.5 * (x0 + x1), 0.5 * (y0 + y1), crop_scale * max(x1 - x0, y1 - y0)


def crop_faces(images: Sequence[torch.Tensor] | torch.Tensor, boxes: Any, size: int,
               crop_scale: float = 1.25) -> torch.Tensor:
    """Face crops ``[B, size, size, 3]`` float32 in [0, 1] (sRGB values, not yet normalised).

    ``images``: uint8 ``[H, W, 3]`` tensors (a list, or a ``[B, H, W, 3]`` tensor). ``boxes``: ``[B, 4]``
    pixel boxes, or None for the whole image (padded to a square, not stretched, no ``crop_scale``).
    """
    imgs = list(images)
    out = torch.empty(len(imgs), size, size, 3)
    if not imgs:
        return out
    b = None if boxes is None else _check_boxes(boxes, len(imgs))
    for i, im in enumerate(imgs):
        H, W = im.shape[0], im.shape[1]
        if b is None:
            cx, cy, side = 0.5 * W, 0.5 * H, float(max(H, W))
        else:
            cx, cy, side = square_crop(b[i], crop_scale)
        x0, y0 = int(np.floor(cx - 0.5 * side)), int(np.floor(cy - 0.5 * side))
        n = max(1, int(round(side)))
        x = im.permute(2, 0, 1)  # [3, H, W]
        # The part of the square inside the image, then black padding for the rest.
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, W), min(y0 + n, H)
        if sx1 <= sx0 or sy1 <= sy0:
            out[i] = 0.0
            continue
        part = x[:, sy0:sy1, sx0:sx1].to(torch.float32)
        part = F.pad(part, (sx0 - x0, x0 + n - sx1, sy0 - y0, y0 + n - sy1))
        if n != size:
            part = F.interpolate(part[None], size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=n > size)[0]
        out[i] = part.permute(1, 2, 0) / 255.0
    return out.clamp_(0.0, 1.0)


def boxes_from_landmarks(landmarks: torch.Tensor, visible: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Face boxes ``[B, 4]`` from synthetic labels: the bounding box of the 68 landmarks
    (``[B, 68, 2]`` pixels; all of them, visible or not, so a profile view keeps the whole face), or
    of the face mask ``[B, H, W]`` where the landmarks are NaN (a rig without them), or the whole
    image where both are missing."""
    lm = torch.as_tensor(landmarks, dtype=torch.float32)
    B = lm.shape[0]
    boxes = torch.empty(B, 4)
    finite = torch.isfinite(lm).all(-1)  # [B, 68]
    for i in range(B):
        if finite[i].any():
            p = lm[i][finite[i]]
            boxes[i] = torch.cat([p.min(0).values, p.max(0).values])
        elif mask is not None and bool(mask[i].any()):
            ys, xs = torch.nonzero(torch.as_tensor(mask[i]), as_tuple=True)
            boxes[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        elif mask is not None:
            H, W = mask.shape[-2:]
            boxes[i] = torch.tensor([0.0, 0.0, float(W), float(H)])
        else:
            raise ValueError(f"sample {i}: no finite landmarks and no mask to take a face box from")
    # A degenerate box (all landmarks on one line) still gets a crop of a few pixels.
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1.0)
    return boxes


class FaceDetector:
    """Frontal faces in photographs with scikit-image's LBP cascade (offline, no download).

    ``detect(image) -> np.ndarray [N, 4]`` boxes (largest first) scaled by :data:`DETECTOR_BOX_SCALE`;
    ``__call__(image)`` the largest box or None. Raises ImportError naming the package when
    scikit-image is not installed.
    """

    def __init__(self, scale_factor: float = 1.2, step_ratio: float = 1.0, min_size: int = 24,
                 min_neighbors: int = 4, box_scale: float = DETECTOR_BOX_SCALE):
        try:
            from skimage import data
            from skimage.feature import Cascade
        except ImportError as e:
            raise ImportError(f"face detection needs scikit-image: {_EXTRA_HINT}; or pass boxes= or "
                              "assume_cropped=True (facecore estimate --cropped) for face crops") from e
        self.cascade = Cascade(data.lbp_frontal_face_cascade_filename())
        self.scale_factor, self.step_ratio = scale_factor, step_ratio
        self.min_size, self.min_neighbors, self.box_scale = min_size, min_neighbors, box_scale

    def detect(self, image: Any) -> np.ndarray:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] < 3:
            raise ValueError(f"FaceDetector: image must be [H, W, 3], got shape {list(img.shape)}")
        rgb = img[..., :3].astype(np.float32) / 255.0
        grey = np.ascontiguousarray(rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32))
        H, W = grey.shape
        side = min(H, W)
        if side < self.min_size:
            return np.zeros((0, 4))
        found = self.cascade.detect_multi_scale(
            img=grey, scale_factor=self.scale_factor, step_ratio=self.step_ratio,
            min_size=(self.min_size, self.min_size), max_size=(side, side),
            min_neighbor_number=self.min_neighbors)
        boxes = []
        for d in found:
            cx, cy = d["c"] + 0.5 * d["width"], d["r"] + 0.5 * d["height"]
            half_w, half_h = 0.5 * self.box_scale * d["width"], 0.5 * self.box_scale * d["height"]
            boxes.append((cx - half_w, cy - half_h, cx + half_w, cy + half_h))
        b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        return b[np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")]

    def __call__(self, image: Any) -> np.ndarray | None:
        b = self.detect(image)
        return b[0] if len(b) else None


def face_boxes(images: Sequence[torch.Tensor], detector: Any = None,
               names: Sequence[str] | None = None) -> np.ndarray:
    """One face box per image from ``detector`` (default :class:`FaceDetector`); NoFaceError naming
    the image (its index, or ``names[i]``) when it finds none."""
    det = detector if detector is not None else FaceDetector()
    out = np.zeros((len(images), 4))
    for i, im in enumerate(images):
        box = det(im.numpy() if isinstance(im, torch.Tensor) else im)
        if box is None:
            what = names[i] if names is not None else f"image {i}"
            raise NoFaceError(f"no face found in {what} (the detector finds frontal faces; pass a face box "
                              "or use assume_cropped=True / --cropped for face crops)", index=i,
                              name=None if names is None else names[i])
        out[i] = box
    return out
