"""Real-ESRGAN-style degradations: a clean high-resolution patch -> the low-resolution input a user has.

One order of: Gaussian blur, a downscale with a random filter, Gaussian noise (colour or grey) and JPEG,
each applied with a probability; a share of samples gets only the clean bicubic downscale, so the
network also does well on clean inputs. Fully determined by the ``numpy.random.Generator`` passed in.

Patches are ``uint8 [H, W, 3]`` RGB; the output is ``uint8 [H // scale, W // scale, 3]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Degradation:
    p_clean: float = 0.4  # share of samples that get only the clean bicubic downscale
    p_blur: float = 0.6  # Gaussian blur before the downscale
    blur_sigma: tuple[float, float] = (0.2, 1.6)  # in high-resolution pixels
    p_noise: float = 0.4  # Gaussian noise after the downscale
    noise_sigma: tuple[float, float] = (1.0, 8.0)  # in 0..255 units
    p_grey_noise: float = 0.4  # share of the noisy samples whose noise is the same on all channels
    p_jpeg: float = 0.5  # JPEG compression last
    jpeg_quality: tuple[int, int] = (50, 95)


def bicubic_down(image: np.ndarray, scale: int) -> np.ndarray:
    """PIL's (anti-aliased) bicubic downscale by an integer factor; the evaluation's input, too."""
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w // scale, h // scale), Image.BICUBIC))


def _downscale(image: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    size = (w // scale, h // scale)
    kind = rng.integers(3)
    if kind == 0:
        return bicubic_down(image, scale)
    if kind == 1:
        return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def degrade(hr: np.ndarray, scale: int, rng: np.random.Generator, spec: Degradation = Degradation()) -> np.ndarray:
    """A high-resolution patch ``uint8 [H, W, 3]`` -> its degraded low-resolution version."""
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"patch size {hr.shape[:2]} is not a multiple of the scale {scale}")
    if rng.random() < spec.p_clean:
        return bicubic_down(hr, scale)
    image = hr
    if rng.random() < spec.p_blur:
        sigma = rng.uniform(*spec.blur_sigma)
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    image = _downscale(image, scale, rng)
    if rng.random() < spec.p_noise:
        sigma = rng.uniform(*spec.noise_sigma)
        shape = image.shape[:2] + ((1,) if rng.random() < spec.p_grey_noise else (3,))
        noisy = image.astype(np.float32) + rng.normal(0.0, sigma, size=shape).astype(np.float32)
        image = np.clip(noisy, 0, 255).round().astype(np.uint8)
    if rng.random() < spec.p_jpeg:
        quality = int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(image)
