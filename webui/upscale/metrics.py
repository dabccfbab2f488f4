"""Super-resolution quality measures on the luma (Y) channel, as SR papers report them.

Images are ``uint8 [H, W, 3]`` RGB of the same size; ``border`` pixels are cropped on each side
(the scale factor, by convention) before measuring.
"""

from __future__ import annotations

import numpy as np


def luma(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 Y of an RGB ``uint8`` image, float64 in [16, 235]."""
    rgb = image.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    return y[border:-border, border:-border] if border else y


def psnr_y(reference: np.ndarray, test: np.ndarray, border: int = 0) -> float:
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    a, b = _crop(luma(reference), border), _crop(luma(test), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim_y(reference: np.ndarray, test: np.ndarray, border: int = 0) -> float:
    from skimage.metrics import structural_similarity

    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    a, b = _crop(luma(reference), border), _crop(luma(test), border)
    return float(structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
