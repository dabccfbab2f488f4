"""Decoding untrusted uploads (CLI files, API base64) into PIL images, with clear errors.

The pixel limit is checked from the header before any pixel is decoded, so a decompression bomb
never allocates its full size.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from webui.diffusion.images import check_image


def open_image_bytes(raw: bytes, *, max_pixels: int, what: str = "image") -> Image.Image:
    """bytes -> fully loaded PIL image; ValueError for empty, corrupt, non-image or oversized data."""
    if not raw:
        raise ValueError(f"{what} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            check_image(image, what, max_pixels)  # header size only: nothing decoded yet
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"{what} is not a readable image ({e.__class__.__name__}: {e})") from e
    except OSError as e:  # truncated or corrupt data
        raise ValueError(f"{what} is corrupt or truncated: {e}") from e
    return image


def open_image_file(path: Path, *, max_pixels: int) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    return open_image_bytes(path.read_bytes(), max_pixels=max_pixels, what=f"image {path.name}")
