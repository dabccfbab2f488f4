"""Depth and normal preprocessors (``depth_midas``, ``normal_midas``, ``depth_anything``,
``depth_anything_v2``, the sd-webui-controlnet extension's names) over a transformers depth model.

No package ships depth weights, so each module reads a Hugging Face model folder that the user puts
under ``models/ControlNet/annotators/<folder>/`` (``config.json``, ``model.safetensors`` or
``pytorch_model.bin``, and optionally ``preprocessor_config.json`` for its mean/std and input size).
Any ``AutoModelForDepthEstimation`` architecture loads (DPT / DPT-hybrid MiDaS such as
``Intel/dpt-hybrid-midas``, Depth Anything v1/v2 such as ``depth-anything/Depth-Anything-V2-Small-hf``),
offline (``local_files_only``). A missing folder is a ValueError naming it and what goes in it.

The maps follow the extension: depth is the model's relative inverse depth scaled to 0-255 (near is
white), grey in all three channels. ``normal_midas`` is the extension's rule on the raw depth: Sobel
gradients (3x3) ``x``, ``y``, a constant ``z = 2 pi``; ``x``/``y`` set to 0 where the 0-1 depth is
below the background threshold; the vector normalised, mapped to ``v * 127.5 + 127.5`` and stored in
the channel order (z, y, x), as the extension hands it to the ControlNet.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np

ANNOTATORS = Path("ControlNet") / "annotators"  # under models/
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
EXAMPLES = {  # folder -> a model whose Hugging Face folder fits there
    "depth_midas": "Intel/dpt-hybrid-midas",
    "depth_anything": "LiheYoung/depth-anything-large-hf",
    "depth_anything_v2": "depth-anything/Depth-Anything-V2-Large-hf",
}
NORMAL_Z = 2.0 * math.pi  # the extension's ``a``
MIDAS_MULTIPLE = 32  # input sides of the resolution-following (MiDaS) modules


def what_to_put(folder: str) -> str:
    """The short "needs" text (the dropdown's label, module_detail)."""
    example = EXAMPLES.get(folder, "Intel/dpt-hybrid-midas")
    return f"a transformers depth model, e.g. {example}, in models/{ANNOTATORS.as_posix()}/{folder}/"


HOW = "its Hugging Face folder: config.json and model.safetensors (or pytorch_model.bin), preprocessor_config.json"


class Annotators:
    """The annotator models under ``models_dir``/ControlNet/annotators/: what is missing, and the
    loaded ones by folder (and its config's time stamp), at most ``max_loaded`` kept."""

    def __init__(self, models_dir, max_loaded: int = 2):
        self.models_dir = Path(models_dir)
        self.max_loaded = max_loaded
        self._cache: dict = {}
        self._lock = threading.Lock()

    def folder(self, name: str) -> Path:
        return self.models_dir / ANNOTATORS / name

    def missing(self, name: str) -> str:
        """What the module still needs ("" when the folder holds a model)."""
        path = self.folder(name)
        if (path / "config.json").is_file() and any((path / n).is_file() for n in WEIGHT_NAMES):
            return ""
        return what_to_put(name)

    def load(self, name: str):
        """(the model in eval mode, its preprocessing numbers); ValueError naming the folder when missing."""
        import torch
        from transformers import AutoModelForDepthEstimation

        need = self.missing(name)
        if need:
            raise ValueError(f"this module needs {need} ({HOW}; looked in {self.folder(name)})")
        path = self.folder(name)
        key = (str(path.resolve()), (path / "config.json").stat().st_mtime_ns)
        with self._lock:
            if key not in self._cache:
                device = "cuda" if torch.cuda.is_available() else "cpu"
                model = AutoModelForDepthEstimation.from_pretrained(str(path), local_files_only=True)
                while len(self._cache) >= self.max_loaded:
                    del self._cache[next(iter(self._cache))]
                self._cache[key] = (model.to(device).eval(), _preprocess_config(path))
            return self._cache[key]


def _preprocess_config(path: Path) -> dict:
    conf = path / "preprocessor_config.json"
    data = json.loads(conf.read_text(encoding="utf-8")) if conf.is_file() else {}
    size = data.get("size") or {}
    return {
        "mean": list(data.get("image_mean", [0.5, 0.5, 0.5])),
        "std": list(data.get("image_std", [0.5, 0.5, 0.5])),
        "short": int(min(size.get("height", 384), size.get("width", 384))) if isinstance(size, dict) else 384,
        "multiple": int(data.get("ensure_multiple_of", 1) or 1),
    }


def _input_size(h: int, w: int, short: int, multiple: int) -> tuple[int, int]:
    k = short / min(h, w)
    return tuple(max(multiple, int(round(v * k / multiple)) * multiple) for v in (h, w))


def _model_size(config, size: tuple) -> tuple:
    """The input size transformers' DPTs accept: a ViT DPT reads its patch grid as a square (the short
    side here), a ViT-hybrid DPT (MiDaS DPT-hybrid) takes only its ``image_size``; others any size."""
    if config.model_type != "dpt":
        return size
    if config.is_hybrid:
        side = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
        return (int(side), int(side))
    if getattr(config, "backbone_config", None) is None:
        return (min(size), min(size))
    return size


def estimate_depth(img: np.ndarray, annotators: Annotators, folder: str, follow_resolution: bool) -> np.ndarray:
    """Raw relative inverse depth [H, W] (float32) of ``img`` (uint8 RGB), at the image's size.

    ``follow_resolution``: the model sees the image at its own (preprocessor-resolution) size, as the
    extension runs MiDaS; otherwise at the model's configured size (Depth Anything's 518 short side).
    Sides are multiples of 32 (or the folder's ``ensure_multiple_of``); ViT DPTs get a square of the
    short side, ViT-hybrid DPTs their own ``image_size`` (384 for DPT-hybrid MiDaS): what transformers accepts.
    """
    import torch
    import torch.nn.functional as F

    model, conf = annotators.load(folder)
    h, w = img.shape[:2]
    if follow_resolution:
        size = _input_size(h, w, min(h, w), max(conf["multiple"], MIDAS_MULTIPLE))
    else:
        size = _input_size(h, w, conf["short"], conf["multiple"])
    size = _model_size(model.config, size)  # the map is resized back to the image's size below
    device = next(model.parameters()).device
    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float().div(255.0)
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor(conf["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(conf["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        depth = model(pixel_values=((x - mean) / std).to(device)).predicted_depth
        depth = F.interpolate(depth[:, None].float(), size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    return depth.cpu().numpy().astype(np.float32)


def _unit_range(depth: np.ndarray) -> np.ndarray:
    d = depth - depth.min()
    top = d.max()
    return d / top if top > 0 else d


def depth_image(depth: np.ndarray) -> np.ndarray:
    """Grey uint8 [H, W, 3]: the depth scaled to 0-255 (near white)."""
    grey = (_unit_range(depth) * 255.0).clip(0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def normal_from_depth(depth: np.ndarray, bg_threshold: float = 0.4, z: float = NORMAL_Z) -> np.ndarray:
    """The extension's normal map of a raw depth: uint8 [H, W, 3] in the channel order (z, y, x)."""
    import cv2

    d = depth.astype(np.float32)
    x = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=3)
    y = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=3)
    background = _unit_range(d) < bg_threshold
    x[background] = 0
    y[background] = 0
    normal = np.stack([x, y, np.full_like(x, z)], axis=2)
    normal /= np.sqrt(np.sum(normal**2, axis=2, keepdims=True))
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1].copy()
