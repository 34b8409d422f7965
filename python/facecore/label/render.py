"""Server-side rendering of params-only candidates (``{"params": [61 floats]}`` in a task upload).

Rendered once, when the task is loaded (so serving a trial never waits for a render), with
:class:`facecore.render.Renderer` on the built-in ``"stylized"`` rig, neutral identity, the default
frontal framing camera and lights, 256x256, sRGB PNG. Callers that want another face or camera
render themselves and upload ``{"png": ...}`` (the prefer loop does that).
"""

from __future__ import annotations

import io
import threading

CHUNK = 32  # candidates per renderer call: bounds memory for large uploads


class ParamsRenderer:
    """Render ``[61]``-float parameter lists to PNG bytes; built on first use, safe across threads."""

    def __init__(self, rig: str = "stylized", resolution: int = 256):
        self.rig_name, self.resolution = rig, resolution
        self._renderer = None
        self._lock = threading.Lock()

    def _get(self):
        if self._renderer is None:
            from ..render import Renderer
            from ..rig import builtin_rig

            self._renderer = Renderer(builtin_rig(self.rig_name), resolution=self.resolution,
                                      cull_backfaces=True)
        return self._renderer

    def __call__(self, params: list[list[float]]) -> list[bytes]:
        import torch
        from PIL import Image

        out: list[bytes] = []
        with self._lock:  # one render at a time: torch already uses every core for one batch
            renderer = self._get()
            for start in range(0, len(params), CHUNK):
                batch = torch.tensor(params[start:start + CHUNK], dtype=torch.float32)
                with torch.no_grad():
                    images = renderer(batch).to_uint8(alpha=False).numpy()
                for img in images:
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, "PNG")
                    out.append(buf.getvalue())
        return out
