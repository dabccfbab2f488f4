"""Image helpers for img2img/inpaint: validation, A1111 resize modes, masks, fill, crop regions.

Images are PIL; masks are mode "L" with white (255) = repaint.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

RESAMPLE = Image.Resampling.LANCZOS


def check_image(image: Image.Image | None, what: str, max_pixels: int) -> None:
    """ValueError when ``image`` is missing or above ``max_pixels`` (decompression bombs)."""
    if image is None:
        raise ValueError(f"{what} is required")
    if not isinstance(image, Image.Image):
        raise ValueError(f"{what} must be a PIL image, got {type(image).__name__}")
    w, h = image.size
    if w < 1 or h < 1:
        raise ValueError(f"{what} is empty ({w}x{h})")
    if w * h > max_pixels:
        raise ValueError(f"{what} is {w}x{h} = {w * h} pixels, above the limit of {max_pixels}")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy; transparent pixels become white-free black-free: alpha is composited on grey."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return image.convert("RGB")


def to_mask(mask: Image.Image) -> Image.Image:
    """Mode-L mask; an image with alpha uses its alpha channel (A1111 API rule)."""
    if mask.mode in ("RGBA", "LA"):
        return mask.getchannel("A")
    return mask.convert("L")


def latent_upscale_size(image: Image.Image, scale_factor: int = 8) -> tuple[int, int]:
    """Resize mode 3 encodes the input at its own size, rounded down to whole latent pixels (>= 1)."""
    w, h = image.size
    return max(scale_factor, w - w % scale_factor), max(scale_factor, h - h % scale_factor)


def resize_image(image: Image.Image, width: int, height: int, resize_mode: int = 0) -> Image.Image:
    """A1111 resize modes: 0 just resize, 1 crop and resize (cover + centre crop),
    2 resize and fill (fit + fill the gaps by stretching the edge pixels), 3 just resize (latent upscale):
    in pixels the same as 0; img2img itself resizes the latents instead (see ``latent_upscale_size``)."""
    if resize_mode not in (0, 1, 2, 3):
        raise ValueError(f"resize_mode must be 0 (Just resize), 1 (Crop and resize), 2 (Resize and fill) or "
                         f"3 (Just resize (latent upscale)), got {resize_mode!r}")
    if image.size == (width, height):
        return image.copy()
    if resize_mode in (0, 3):
        return image.resize((width, height), RESAMPLE)
    src_w, src_h = image.size
    ratio, src_ratio = width / height, src_w / src_h
    if resize_mode == 1:
        scale = width / src_w if ratio > src_ratio else height / src_h
        new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        resized = image.resize((new_w, new_h), RESAMPLE)
        left, top = (new_w - width) // 2, (new_h - height) // 2
        return resized.crop((left, top, left + width, top + height))
    # mode 2: fit inside, fill the rest with the stretched border rows/columns
    scale = width / src_w if ratio < src_ratio else height / src_h
    new_w, new_h = max(1, min(width, round(src_w * scale))), max(1, min(height, round(src_h * scale)))
    resized = image.resize((new_w, new_h), RESAMPLE)
    out = Image.new(image.mode, (width, height))
    left, top = (width - new_w) // 2, (height - new_h) // 2
    out.paste(resized, (left, top))
    if new_w < width:
        if left > 0:
            out.paste(resized.crop((0, 0, 1, new_h)).resize((left, new_h)), (0, top))
        right = width - left - new_w
        if right > 0:
            out.paste(resized.crop((new_w - 1, 0, new_w, new_h)).resize((right, new_h)), (left + new_w, top))
    if new_h < height:
        if top > 0:
            out.paste(resized.crop((0, 0, new_w, 1)).resize((new_w, top)), (left, 0))
        bottom = height - top - new_h
        if bottom > 0:
            out.paste(resized.crop((0, new_h - 1, new_w, new_h)).resize((new_w, bottom)), (left, top + new_h))
    return out


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    """Gaussian-blurred mask (radius in pixels; 0 = unchanged)."""
    if radius <= 0:
        return mask.copy()
    return mask.filter(ImageFilter.GaussianBlur(radius))


def mask_bbox(mask: Image.Image, threshold: int = 0) -> tuple[int, int, int, int] | None:
    """Bounding box (x1, y1, x2, y2), exclusive end, of pixels above ``threshold``; None if empty."""
    arr = np.asarray(mask.convert("L")) > threshold
    if not arr.any():
        return None
    ys, xs = np.nonzero(arr)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def expand_crop_region(
    box: tuple[int, int, int, int], padding: int, target_w: int, target_h: int, image_w: int, image_h: int
) -> tuple[int, int, int, int]:
    """Pad ``box`` and grow it to the aspect ratio target_w:target_h, staying inside the image."""
    x1, y1, x2, y2 = box
    x1, y1, x2, y2 = max(0, x1 - padding), max(0, y1 - padding), min(image_w, x2 + padding), min(image_h, y2 + padding)
    ratio = target_w / target_h
    w, h = x2 - x1, y2 - y1
    if w / h < ratio:  # too narrow: widen
        want = min(image_w, round(h * ratio))
        extra = want - w
        x1 = max(0, x1 - extra // 2)
        x2 = min(image_w, x1 + want)
        x1 = max(0, x2 - want)
    else:  # too flat: heighten
        want = min(image_h, round(w / ratio))
        extra = want - h
        y1 = max(0, y1 - extra // 2)
        y2 = min(image_h, y1 + want)
        y1 = max(0, y2 - want)
    return x1, y1, x2, y2


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111 "fill": replace the masked area by blurred colours of its surroundings.

    Normalised convolution at decreasing radii: the widest blur fills everything, finer ones
    refine near the mask edge. Unmasked pixels are unchanged.
    """
    from scipy.ndimage import gaussian_filter

    img = np.asarray(image.convert("RGB"), dtype=np.float32)
    keep = (np.asarray(mask.convert("L"), dtype=np.float32) < 128).astype(np.float32)
    if keep.sum() == 0:  # everything masked: fill with mid grey
        return Image.new("RGB", image.size, (127, 127, 127))
    out = np.where(keep[..., None] > 0, img, img.mean(axis=(0, 1), where=keep[..., None] > 0))
    size = max(image.size)
    for sigma in (size / 2, size / 8, size / 32, 4, 1):
        weight = gaussian_filter(keep, sigma)
        colour = np.stack([gaussian_filter(img[..., c] * keep, sigma) for c in range(3)], axis=-1)
        valid = weight > 1e-3
        est = np.where(valid[..., None], colour / np.maximum(weight, 1e-6)[..., None], out)
        out = np.where(keep[..., None] > 0, img, est)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def composite(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """Generated pixels where the mask is white, original where black, blended in between."""
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), mask.convert("L"))
