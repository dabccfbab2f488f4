"""A ControlNet unit with the sd-webui-controlnet extension's fields, parsed from its API JSON
(what ``webuiapi.ControlNetUnit.to_dict()`` sends) and written to infotext as the extension does:
``ControlNet 0: "Module: canny, Model: name [hash], Weight: 1.0, Resize Mode: Crop and Resize, ..."``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Optional

from PIL import Image

MAX_UNITS = 3
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
RESIZE_ALIASES = {  # the extension's older names
    "Inner Fit (Scale to Fit)": "Crop and Resize",
    "Outer Fit (Shrink to Fit)": "Resize and Fill",
    "Scale to Fit (Inner Fit)": "Crop and Resize",
    "Envelope (Outer Fit)": "Resize and Fill",
    "Just Resize (Latent upscale)": "Just Resize",
}
INFOTEXT_FIELDS = (
    "module", "model", "weight", "resize_mode", "processor_res", "threshold_a", "threshold_b",
    "guidance_start", "guidance_end", "pixel_perfect", "control_mode",
)


@dataclass(frozen=True)
class ControlNetUnit:
    enabled: bool = True
    module: str = "none"  # preprocessor name (webui.controlnet.preprocess.MODULES)
    model: str = "None"  # ControlNet name or "name [hash]" from models/ControlNet
    weight: float = 1.0
    image: Optional[Image.Image] = None  # the input (a photo, a drawing, or a ready control map)
    mask: Optional[Image.Image] = None  # accepted as the API sends it; not used by these preprocessors
    resize_mode: str = "Crop and Resize"
    low_vram: bool = False
    processor_res: int = 512
    threshold_a: float = -1.0  # -1: the module's default
    threshold_b: float = -1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"

    @property
    def active(self) -> bool:
        return self.enabled and self.model not in ("", "None", None)

    def __str__(self) -> str:  # what job history records (no image data)
        return self.infotext()

    def infotext(self) -> str:
        """The extension's ``serialize()``: "Module: canny, Model: ..., Weight: 1.0, ..."."""
        parts = []
        for name in INFOTEXT_FIELDS:
            label = " ".join(w.capitalize() for w in name.split("_"))
            parts.append(f"{label}: {getattr(self, name)}")
        return ", ".join(parts)


def control_mode_of(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError(f"control_mode must be 0-2 or one of {CONTROL_MODES}, got {value!r}")
    if isinstance(value, int) and 0 <= value < len(CONTROL_MODES):
        return CONTROL_MODES[value]
    if value in CONTROL_MODES:
        return value
    raise ValueError(f"control_mode must be 0-2 or one of {', '.join(CONTROL_MODES)}, got {value!r}")


def resize_mode_of(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value == 3:  # "Just Resize (Latent upscale)"
            return RESIZE_MODES[0]
        if 0 <= value < len(RESIZE_MODES):
            return RESIZE_MODES[value]
    elif isinstance(value, str):
        value = RESIZE_ALIASES.get(value, value)
        for mode in RESIZE_MODES:
            if value.lower() == mode.lower():
                return mode
    raise ValueError(f"resize_mode must be 0-2 or one of {', '.join(RESIZE_MODES)}, got {value!r}")


def decode_image(value: Any, name: str) -> Optional[Image.Image]:
    """A base64 image (optionally a data URL), ``{"image": b64, "mask": b64}`` (the extension's
    dict form), a PIL image, or nothing."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        return decode_image(value.get("image"), name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a base64-encoded image, got {type(value).__name__}")
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()
    except Exception as exc:  # noqa: BLE001 - any decode failure is a bad input
        raise ValueError(f"{name} is not a readable base64 image: {exc}") from exc
    return img


def _number(d: dict, key: str, default: float, lo: float | None = None, hi: float | None = None) -> float:
    value = d.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"ControlNet {key} must be a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"ControlNet {key} must be between {lo} and {hi}, got {value}")
    return float(value)


def unit_from_api(d: Any, index: int = 0) -> ControlNetUnit:
    """One unit from the extension's JSON (``webuiapi.ControlNetUnit.to_dict()``); ValueError names the bad field."""
    if isinstance(d, ControlNetUnit):
        return d
    if not isinstance(d, dict):
        raise ValueError(f"ControlNet unit {index} must be an object, got {type(d).__name__}")
    image = decode_image(d.get("image", d.get("input_image")), f"ControlNet unit {index} image")
    mask = decode_image(d.get("mask"), f"ControlNet unit {index} mask")
    start = _number(d, "guidance_start", 0.0, 0.0, 1.0)
    end = _number(d, "guidance_end", 1.0, 0.0, 1.0)
    if start > end:
        raise ValueError(f"ControlNet unit {index}: guidance_start {start} is after guidance_end {end}")
    res = d.get("processor_res", 512)
    if isinstance(res, bool) or not isinstance(res, (int, float)):
        raise ValueError(f"ControlNet processor_res must be an integer, got {res!r}")
    return ControlNetUnit(
        enabled=bool(d.get("enabled", True)),
        module=str(d.get("module") or "none"),
        model=str(d.get("model") or "None"),
        weight=_number(d, "weight", 1.0, 0.0, 2.0),
        image=image,
        mask=mask,
        resize_mode=resize_mode_of(d.get("resize_mode", "Crop and Resize")),
        low_vram=bool(d.get("low_vram", False)),
        processor_res=int(res),
        threshold_a=_number(d, "threshold_a", -1.0),
        threshold_b=_number(d, "threshold_b", -1.0),
        guidance_start=start,
        guidance_end=end,
        pixel_perfect=bool(d.get("pixel_perfect", False)),
        control_mode=control_mode_of(d.get("control_mode", 0)),
    )


def units_from_alwayson(scripts: Any) -> tuple:
    """``alwayson_scripts`` of an A1111 request -> the ControlNet units (enabled or not), at most ``MAX_UNITS``."""
    if not scripts:
        return ()
    entry = None
    for key, value in dict(scripts).items():
        if key.lower() == "controlnet":
            entry = value
    if entry is None:
        return ()
    args = entry.get("args", []) if isinstance(entry, dict) else entry
    if not isinstance(args, list):
        raise ValueError("alwayson_scripts.controlnet.args must be a list of units")
    units = tuple(unit_from_api(u, i) for i, u in enumerate(args))
    if sum(u.enabled for u in units) > MAX_UNITS:
        raise ValueError(f"at most {MAX_UNITS} ControlNet units can be enabled, got {sum(u.enabled for u in units)}")
    return units


def pixel_perfect_resolution(image_size: tuple, target_w: int, target_h: int, resize_mode: str) -> int:
    """The extension's pixel-perfect preprocessor resolution for an input of ``image_size`` (w, h)."""
    raw_w, raw_h = image_size
    k0, k1 = target_h / raw_h, target_w / raw_w
    k = min(k0, k1) if resize_mode == "Resize and Fill" else max(k0, k1)
    return int(round(k * min(raw_w, raw_h)))
