"""Preprocessors ("modules") that need no downloaded weights, and the control image's resize modes.

Every module takes an RGB PIL image and returns an RGB PIL control map, white on black for line
maps as the scribble/canny/lineart ControlNets expect. Names are the sd-webui-controlnet
extension's, so API clients can send the same strings. ``threshold_a``/``threshold_b`` of -1 mean
the module's default (``MODULES[name].a`` / ``.b``). Modules that need weight files no package
ships are listed with the file they need and refuse to run with an error naming it; the depth and
normal modules (``webui.controlnet.depth``) load a transformers depth model from
``models/ControlNet/annotators/<folder>/`` and, while it is missing, say so the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Module:
    name: str
    run: Optional[Callable]  # (rgb uint8 [H, W, 3], a, b) -> uint8 [H, W, 3]; None: not available here
    a: Optional[tuple] = None  # (label, default, min, max) of threshold_a, None when unused
    b: Optional[tuple] = None
    uses_resolution: bool = True
    needs: str = ""  # for unavailable modules: which file to put where
    annotator: str = ""  # the folder under models/ControlNet/annotators/ its model is read from


def _gray(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2).astype(np.uint8)


def _border_colour(img: np.ndarray) -> np.ndarray:
    w = max(1, min(img.shape[:2]) // 64)
    border = np.concatenate([img[:w].reshape(-1, 3), img[-w:].reshape(-1, 3), img[:, :w].reshape(-1, 3), img[:, -w:].reshape(-1, 3)])
    return np.median(border.astype(np.float32), axis=0)


def canny(img: np.ndarray, a: float, b: float) -> np.ndarray:
    import cv2

    return _rgb(cv2.Canny(img, int(a), int(b)))


def invert(img: np.ndarray, a: float, b: float) -> np.ndarray:
    return (255 - img).astype(np.uint8)


def threshold(img: np.ndarray, a: float, b: float) -> np.ndarray:
    """White where the grey level is above ``a``."""
    return _rgb(np.where(_gray(img) > a, 255, 0))


def scribble_drawing(img: np.ndarray, a: float, b: float) -> np.ndarray:
    """A drawing (any stroke colour on a plain canvas) -> white strokes on black: pixels that differ
    from the canvas colour (read from the border) by more than ``a``."""
    dist = np.sqrt(np.sum((img.astype(np.float32) - _border_colour(img)) ** 2, axis=2))
    return _rgb(np.where(dist > a, 255, 0))


def _dog(img: np.ndarray, sigma: float = 0.5, k: float = 8.0) -> np.ndarray:
    """Difference of Gaussians of the grey image, dark lines positive (float, 0-255 scale)."""
    import cv2

    g = _gray(img).astype(np.float32)
    fine = cv2.GaussianBlur(g, (0, 0), sigma)
    coarse = cv2.GaussianBlur(g, (0, 0), sigma * k)
    return coarse - fine  # > 0 just inside dark strokes / on the dark side of edges


def scribble_xdog(img: np.ndarray, a: float, b: float) -> np.ndarray:
    """A photo or drawing -> binary white-on-black scribble: thresholded difference of Gaussians (XDoG)."""
    return _rgb(np.where(2.0 * _dog(img) > a, 255, 0))


def lineart_standard(img: np.ndarray, a: float, b: float) -> np.ndarray:
    """Soft line art (white lines on black): the DoG response normalised by its strong values."""
    d = np.clip(_dog(img, 0.8, 6.0), 0, None)
    scale = max(float(np.percentile(d[d > 0], 99)) if (d > 0).any() else 1.0, 1e-3)
    out = np.clip(d / scale, 0, 1)
    out[out < a / 255.0] = 0
    return _rgb(out * 255)


def lineart_canny(img: np.ndarray, a: float, b: float) -> np.ndarray:
    """Line art from canny edges, thickened to pen width and softened."""
    import cv2

    edges = cv2.Canny(img, int(a), int(b))
    edges = cv2.dilate(edges, np.ones((2, 2), np.uint8))
    return _rgb(cv2.GaussianBlur(edges, (3, 3), 0))


def tile_resample(img: np.ndarray, a: float, b: float) -> np.ndarray:
    """Downsample by ``a`` (the tile ControlNet re-adds the detail)."""
    import cv2

    h, w = img.shape[:2]
    factor = max(1.0, float(a))
    return cv2.resize(img, (max(1, int(w / factor)), max(1, int(h / factor))), interpolation=cv2.INTER_AREA)


def blur_gaussian(img: np.ndarray, a: float, b: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), max(0.1, float(a)))


def shuffle(img: np.ndarray, a: float, b: float) -> np.ndarray:
    """Content shuffle: the picture warped by a smooth random flow (seeded, so repeatable)."""
    import cv2

    h, w = img.shape[:2]
    rng = np.random.default_rng(int(a) if a >= 0 else 0)
    flows = []
    for _ in range(2):
        coarse = rng.uniform(0, 1, (max(2, h // 64), max(2, w // 64))).astype(np.float32)
        flows.append(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC))
    x = np.clip(flows[0], 0, 1) * (w - 1)
    y = np.clip(flows[1], 0, 1) * (h - 1)
    return cv2.remap(img, x.astype(np.float32), y.astype(np.float32), interpolation=cv2.INTER_LINEAR)


def _openpose(kind: str) -> Callable:
    def run(img: np.ndarray, a: float, b: float) -> np.ndarray:
        from webui.controlnet.openpose import detect_pose

        return detect_pose(img, body=True, hands=kind in ("hand", "full"), face=kind in ("face", "full"))

    return run


def _depth(kind: str, follow_resolution: bool = True) -> Callable:
    def run(img: np.ndarray, a: float, b: float, annotators, folder: str) -> np.ndarray:
        from webui.controlnet import depth

        raw = depth.estimate_depth(img, annotators, folder, follow_resolution)
        return depth.normal_from_depth(raw, float(a)) if kind == "normal" else depth.depth_image(raw)

    return run


INVERT = "invert (from white bg & black line)"
MODULE_LIST = [
    Module("none", None, uses_resolution=False),
    Module(INVERT, invert, uses_resolution=False),
    Module("canny", canny, ("Canny Low Threshold", 100, 1, 255), ("Canny High Threshold", 200, 1, 255)),
    Module("scribble_drawing", scribble_drawing, ("Colour distance from the canvas", 60, 1, 255)),
    Module("scribble_xdog", scribble_xdog, ("XDoG Threshold", 32, 1, 64)),
    Module("threshold", threshold, ("Binarization Threshold", 127, 0, 255)),
    Module("lineart_standard (from white bg & black line)", lineart_standard, ("Cut-off", 0, 0, 255)),
    Module("lineart_canny", lineart_canny, ("Canny Low Threshold", 100, 1, 255), ("Canny High Threshold", 200, 1, 255)),
    Module("tile_resample", tile_resample, ("Down Sampling Rate", 1.0, 1.0, 8.0)),
    Module("blur_gaussian", blur_gaussian, ("Sigma", 9.0, 0.01, 64.0)),
    Module("shuffle", shuffle, ("Seed", 0, 0, 9999)),
    Module("openpose", _openpose("body")),
    Module("openpose_face", _openpose("face")),
    Module("openpose_hand", _openpose("hand")),
    Module("openpose_full", _openpose("full")),
    Module("depth_midas", _depth("depth"), annotator="depth_midas"),
    Module("normal_midas", _depth("normal"), ("Normal Background Threshold", 0.4, 0.0, 1.0), annotator="depth_midas"),
    Module("depth_anything", _depth("depth", False), uses_resolution=False, annotator="depth_anything"),
    Module("depth_anything_v2", _depth("depth", False), uses_resolution=False, annotator="depth_anything_v2"),
    Module("normal_bae", None, needs="scannet.pt in models/ControlNet/annotator/normal_bae/"),
]
MODULES = {m.name: m for m in MODULE_LIST}
ALIASES = {"invert": INVERT, "lineart_standard": "lineart_standard (from white bg & black line)", "None": "none"}


def get_module(name: str) -> Module:
    """The module called ``name`` (or an alias); ValueError listing the names otherwise."""
    key = ALIASES.get(name, name)
    if key not in MODULES:
        raise ValueError(f"Unknown ControlNet module {name!r}; choose one of {', '.join(MODULES)}")
    return MODULES[key]


def missing_file(m: Module, annotators=None) -> str:
    """What ``m`` still needs before it can run ("" when nothing): a weight file, or its annotator
    model folder (``annotators``: a ``webui.controlnet.depth.Annotators``; None: not looked up)."""
    if m.needs:
        return m.needs
    if m.annotator:
        from webui.controlnet.depth import what_to_put

        return annotators.missing(m.annotator) if annotators is not None else what_to_put(m.annotator)
    return ""


def module_label(m: Module, annotators=None) -> str:
    """The dropdown label: modules that cannot run yet say which file they need."""
    need = missing_file(m, annotators)
    return f"{m.name} (needs {need})" if need else m.name


def _resize_short_side(img: Image.Image, res: int) -> Image.Image:
    w, h = img.size
    k = res / min(w, h)
    if abs(k - 1) < 1e-6:
        return img
    size = (max(1, int(round(w * k))), max(1, int(round(h * k))))
    return img.resize(size, Image.LANCZOS if k < 1 else Image.BICUBIC)


def run_module(name: str, image: Image.Image, res: int = 512, a: float = -1, b: float = -1, annotators=None) -> Image.Image:
    """The control map of ``image`` for module ``name``, computed at ``res`` pixels on the short side
    (``annotators``: a ``webui.controlnet.depth.Annotators``, where the model-based modules find theirs)."""
    m = get_module(name)
    if m.needs:
        raise ValueError(
            f"ControlNet module {m.name!r} needs a weight file that no installed package ships: put {m.needs} "
            "(this build does not run it yet; use a ready-made map with module 'none')"
        )
    need = missing_file(m, annotators)
    if need:
        from webui.controlnet.depth import HOW

        where = f" ({HOW}; looked in {annotators.folder(m.annotator)})" if annotators is not None else ""
        raise ValueError(f"ControlNet module {m.name!r} needs {need}{where}; or use a ready-made map with module 'none'")
    rgb = image.convert("RGB")
    if m.run is None:
        return rgb
    if not isinstance(res, (int, float)) or isinstance(res, bool) or not 64 <= res <= 2048:
        res = 512 if res in (-1, None) else res
        if not 64 <= res <= 2048:
            raise ValueError(f"processor_res must be between 64 and 2048, got {res}")
    if m.uses_resolution:
        rgb = _resize_short_side(rgb, int(res))
    a = m.a[1] if m.a and (a is None or a < 0) else a
    b = m.b[1] if m.b and (b is None or b < 0) else b
    pixels = np.asarray(rgb, dtype=np.uint8)
    out = m.run(pixels, a, b, annotators, m.annotator) if m.annotator else m.run(pixels, a, b)
    return Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8), "RGB")


def resize_control(image: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """Fit a control map to the generation size: "Just Resize" stretches, "Crop and Resize" covers
    and crops the centre, "Resize and Fill" fits inside and pads with the map's border colour."""
    img = image.convert("RGB")
    w, h = img.size
    if mode == "Just Resize":
        return img.resize((width, height), Image.LANCZOS)
    if mode == "Crop and Resize":
        k = max(width / w, height / h)
        nw, nh = max(width, int(round(w * k))), max(height, int(round(h * k)))
        big = img.resize((nw, nh), Image.LANCZOS)
        left, top = (nw - width) // 2, (nh - height) // 2
        return big.crop((left, top, left + width, top + height))
    if mode == "Resize and Fill":
        k = min(width / w, height / h)
        nw, nh = min(width, max(1, int(round(w * k)))), min(height, max(1, int(round(h * k))))
        fill = tuple(int(v) for v in _border_colour(np.asarray(img)))
        canvas = Image.new("RGB", (width, height), fill)
        canvas.paste(img.resize((nw, nh), Image.LANCZOS), ((width - nw) // 2, (height - nh) // 2))
        return canvas
    raise ValueError(f"Unknown resize mode {mode!r}")
