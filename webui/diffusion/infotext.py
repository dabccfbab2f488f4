"""A1111 "parameters" infotext: build, parse, and read/write it in image files.

Layout (A1111 1.10): the prompt (may span lines), then ``Negative prompt: ...`` (only when
non-empty), then one line of ``Key: value`` pairs joined by ``", "``. Values containing ``,``, ``:``
or a newline are written as JSON strings. Keys with value None are dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from webui.atomic import atomic_file

# A1111's key order for the parameters line; anything else follows (in insertion order), Version/User last.
KEY_ORDER = [
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
]
LAST_KEYS = ["Version", "User"]
# Keys written by extra_generation_params, in A1111's order for the inpaint tab
INPAINT_KEYS = ["Mask blur", "Inpaint area", "Masked area padding", "Masked content"]

# A1111 parser regexes (same patterns as its reader, so texts round-trip with it)
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")

# Values A1111 assumes when an infotext lacks the key
PARSE_DEFAULTS = {
    "Clip skip": "1",
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": "32",
}


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def build_infotext(prompt: str, negative_prompt: str, params: Mapping[str, Any]) -> str:
    """The A1111 infotext for one image.

    ``params`` maps A1111 keys (``"Steps"``, ``"Sampler"``, ``"CFG scale"``, ``"Seed"``, ``"Size"``
    as ``"WxH"`` or a (w, h) tuple, ``"Model hash"``, ``"Model"``, ...) to values; None values are
    dropped; keys are written in A1111's order.
    """
    items = {k: v for k, v in params.items() if v is not None}
    if isinstance(items.get("Size"), (tuple, list)):
        w, h = items["Size"]
        items["Size"] = f"{w}x{h}"
    ordered = [k for k in KEY_ORDER if k in items]
    ordered += [k for k in items if k not in KEY_ORDER and k not in LAST_KEYS]
    ordered += [k for k in LAST_KEYS if k in items]
    line = ", ".join(f"{k}: {_format_value(items[k])}" for k in ordered)
    text = prompt or ""
    if negative_prompt:
        text += f"\nNegative prompt: {negative_prompt}"
    return f"{text}\n{line}" if line else text


def _unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_infotext(text: str, apply_defaults: bool = False) -> dict[str, str]:
    """Parse an A1111 infotext into ``{"Prompt", "Negative prompt", key: value-as-string, ...}``.

    Follows A1111's reader: the last line counts as parameters only when the key/value pattern
    matches at least 3 times; ``Size: 512x768`` becomes ``Size-1: "512"``, ``Size-2: "768"``
    (width, height). With ``apply_defaults`` the A1111 defaults for missing keys are filled in.
    """
    res: dict[str, str] = {}
    lines = (text or "").strip().split("\n")
    *lines, lastline = lines if lines else [""]
    if len(_RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""

    prompt, negative, done_with_prompt = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[len("Negative prompt:") :].strip()
        if done_with_prompt:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"] = prompt
    res["Negative prompt"] = negative

    for key, value in _RE_PARAM.findall(lastline):
        value = value.strip()
        if value[:1] == '"' and value[-1:] == '"':
            value = _unquote(value)
        match = _RE_IMAGESIZE.match(value)
        if match:
            res[f"{key}-1"] = match.group(1)
            res[f"{key}-2"] = match.group(2)
        else:
            res[key] = value

    if apply_defaults:
        for key, value in PARSE_DEFAULTS.items():
            res.setdefault(key, value)
    return res


def read_png_parameters(image: Image.Image) -> str | None:
    """The infotext stored in an image: PNG ``parameters`` text chunk, or EXIF UserComment (JPEG/WebP)."""
    info = getattr(image, "info", {}) or {}
    text = info.get("parameters")
    if isinstance(text, str):
        return text
    try:
        exif = image.getexif()
        user_comment = exif.get_ifd(0x8769).get(0x9286)  # ExifIFD -> UserComment
    except Exception:  # malformed EXIF blocks are common; treat as "no infotext"
        return None
    if user_comment is None:
        return None
    if isinstance(user_comment, str):
        return user_comment
    raw = bytes(user_comment)
    if raw.startswith(b"UNICODE\x00"):
        body = raw[8:]
        for enc in ("utf-16-be", "utf-16-le"):
            try:
                return body.decode(enc)
            except UnicodeDecodeError:
                continue
    if raw.startswith(b"ASCII\x00\x00\x00"):
        return raw[8:].decode("ascii", errors="replace")
    return raw.decode("utf-8", errors="replace")


def save_png(image: Image.Image, path: Path | str, infotext: str | None) -> Path:
    """Write ``image`` as PNG with the infotext in the ``parameters`` chunk (iTXt when not Latin-1).

    Atomic: the PNG (pixels and infotext in one go) goes to ``.<name>.part`` in the same folder, is
    flushed to disk, then renamed over ``path``; a crash never leaves a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pnginfo = PngInfo()
    if infotext:
        pnginfo.add_text("parameters", infotext)
    with atomic_file(path, path.with_name(f".{path.name}.part")) as f:
        image.save(f, format="PNG", pnginfo=pnginfo)
    return path
