"""The upscaler registry: A1111's built-ins, the latent modes for hires fix, and every model file in
A1111's folders (``models/ESRGAN/``, ``models/RealESRGAN/``, ``models/SwinIR/``, ``models/DAT/``,
``models/HAT/``), loaded once with spandrel and kept in a small cache keyed by (file, device, dtype).

Images are PIL RGB; ``upscale`` returns exactly the requested size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from webui.upscale.models import MODEL_SUFFIXES, UpscalerModel, load_upscaler_file

MODEL_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT")
BUILTIN_UPSCALERS = ("None", "Lanczos", "Nearest")
# A1111's latent upscale modes: name -> (torch interpolate mode, antialias)
LATENT_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
MAX_MODEL_PASSES = 3  # a x2 model asked for x8 runs three times, then Lanczos to the exact size
CACHE_SIZE = 2  # loaded models kept in memory


@dataclass(frozen=True)
class UpscalerInfo:
    name: str  # what the UI, the API and infotexts call it (a file's stem, as in A1111)
    kind: str  # "builtin" | "model"
    path: Path | None = None  # the model file
    folder: str | None = None  # which of MODEL_FOLDERS it is in
    scale: int | None = None  # the model's native scale, from its file name when it says (x4, 4x)


def _scale_from_name(stem: str) -> int | None:
    import re

    m = re.search(r"(?:^|[^a-z0-9])(?:x(\d)|(\d)x)(?:[^a-z0-9]|$)", stem.lower())
    return int(m.group(1) or m.group(2)) if m else None


def scan_upscaler_files(models_dir: Path) -> list[UpscalerInfo]:
    """Every model file in A1111's upscaler folders, sorted per folder by name."""
    found: list[UpscalerInfo] = []
    taken = set(BUILTIN_UPSCALERS) | set(LATENT_MODES)
    for folder in MODEL_FOLDERS:
        d = Path(models_dir) / folder
        if not d.is_dir():
            continue
        for path in sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES):
            name = path.stem if path.stem not in taken else f"{path.stem} ({folder})"
            taken.add(name)
            found.append(UpscalerInfo(name, "model", path, folder, _scale_from_name(path.stem)))
    return found


class UpscalerRegistry:
    """Lists upscalers and runs them. Thread-safe; models load lazily and are cached."""

    def __init__(self, models_dir: Path, device="cpu"):
        self.models_dir = Path(models_dir)
        self._device = device  # a device name, or a function returning one (resolved on first load)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, UpscalerModel] = OrderedDict()

    def list(self) -> list[UpscalerInfo]:
        """Built-ins first, then the model files (rescanned on every call: users drop files in)."""
        return [UpscalerInfo(n, "builtin") for n in BUILTIN_UPSCALERS] + scan_upscaler_files(self.models_dir)

    def names(self) -> list[str]:
        return [u.name for u in self.list()]

    def find(self, name: str) -> UpscalerInfo:
        for u in self.list():
            if u.name == name:
                return u
        if name in LATENT_MODES:
            raise ValueError(f"upscaler {name!r} is a latent mode: it only works in hires fix")
        raise ValueError(f"unknown upscaler {name!r}; available: {', '.join(self.names())}")

    @property
    def device(self) -> str:
        return self._device() if callable(self._device) else self._device

    def model(self, info: UpscalerInfo) -> UpscalerModel:
        key = (str(info.path), self.device)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            model = load_upscaler_file(info.path, device=self.device)
            self._cache[key] = model
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return model

    def upscale(self, image: Image.Image, name: str, size: tuple[int, int]) -> Image.Image:
        """Upscale ``image`` to exactly ``size`` (w, h) with the upscaler called ``name``.

        "None" returns the image unchanged (A1111's semantics: no resize at all).
        """
        width, height = int(size[0]), int(size[1])
        if width < 1 or height < 1:
            raise ValueError(f"target size {width}x{height} must be positive")
        info = self.find(name)
        image = image.convert("RGB")
        if info.name == "None":
            return image
        if info.name == "Lanczos":
            return image.resize((width, height), Image.LANCZOS)
        if info.name == "Nearest":
            return image.resize((width, height), Image.NEAREST)
        model = self.model(info)
        import numpy as np

        for _ in range(MAX_MODEL_PASSES):
            if image.width >= width and image.height >= height:
                break
            image = Image.fromarray(model.upscale_array(np.asarray(image)))
        if image.size != (width, height):
            image = image.resize((width, height), Image.LANCZOS)
        return image
