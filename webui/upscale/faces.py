"""Face restoration for the Extras tab and ``restore_faces`` in txt2img/img2img: GFPGAN v1.4 through
the talking-head tab's loader (``talking_head.enhance``), so both tabs find the same weights and show
the same "put the file here" message when they are missing. Loaded once, on first use.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

GFPGAN = "GFPGAN"
CODEFORMER = "CodeFormer"


class FaceRestorer:
    """GFPGAN, loaded lazily and kept; ``restore`` blends the restored image by ``visibility``."""

    name = GFPGAN

    def __init__(self, paths: Any, device="cpu"):
        self.paths = paths
        self._device = device  # a device name, or a function returning one (resolved on first load)
        self._lock = threading.Lock()
        self._enhancer = None

    def status(self) -> tuple[bool, str]:
        """(available, message): the same text as the talking-head tab's GFPGAN checkbox."""
        from talking_head.enhance import gfpgan_status

        return gfpgan_status(self.paths)

    def check_available(self) -> None:
        """ValueError with the "put the file here" message when GFPGAN cannot run."""
        ok, message = self.status()
        if not ok:
            raise ValueError(message)

    def _get(self):
        with self._lock:
            if self._enhancer is None:
                from talking_head.enhance import GFPGANEnhancer

                device = self._device() if callable(self._device) else self._device
                self._enhancer = GFPGANEnhancer(self.paths, device=device)
            return self._enhancer

    def restore(self, image: Image.Image, visibility: float = 1.0) -> Image.Image:
        """Restore the faces in an RGB image; ``visibility`` 0..1 blends it over the input."""
        if not 0.0 <= visibility <= 1.0:
            raise ValueError(f"GFPGAN visibility must be between 0 and 1, got {visibility}")
        if visibility == 0.0:
            return image
        self.check_available()
        rgb = np.asarray(image.convert("RGB"))
        (restored,) = list(self._get().enhance_frames([rgb]))
        out = Image.fromarray(restored)
        return out if visibility == 1.0 else Image.blend(image.convert("RGB"), out, visibility)
