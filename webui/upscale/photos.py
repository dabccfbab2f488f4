"""The photos the embedded upscaler learns from and is judged on: real photos shipped inside installed
packages (scikit-image's ``skimage.data`` and scikit-learn's sample images), nothing downloaded.

Photos are ``uint8 [H, W, 3]`` RGB arrays; grey photos are repeated to three channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# skimage.data loaders for training (colour and grey photos with real texture and edges)
TRAIN_SKIMAGE = (
    "astronaut",
    "rocket",
    "stereo_motorcycle",  # (left, right, disparity): the left view
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "camera",
    "brick",
    "gravel",
    "grass",
    "coins",
    "moon",
    "text",
    "page",
    "clock",
)
TRAIN_SKLEARN = ("china.jpg",)
# held out: never seen in training, used by the evaluation and its test
HELD_OUT_SKIMAGE = ("chelsea", "coffee")
HELD_OUT_SKLEARN = ("flower.jpg",)


@dataclass(frozen=True)
class Photo:
    name: str  # e.g. "skimage:chelsea"
    pixels: np.ndarray  # uint8 [H, W, 3]


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8) if image.max() <= 1.0 else image.astype(np.uint8)
    return np.ascontiguousarray(image[:, :, :3])


def load_photo(name: str) -> Photo:
    """``"skimage:<loader>"`` or ``"sklearn:<file>"`` -> the photo."""
    source, _, key = name.partition(":")
    if source == "skimage":
        import skimage.data

        image = getattr(skimage.data, key)()
        if isinstance(image, tuple):
            image = image[0]
        return Photo(name, _rgb(image))
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        return Photo(name, _rgb(load_sample_image(key)))
    raise ValueError(f"unknown photo source {name!r} (expected 'skimage:...' or 'sklearn:...')")


def training_photos() -> list[Photo]:
    names = [f"skimage:{n}" for n in TRAIN_SKIMAGE] + [f"sklearn:{n}" for n in TRAIN_SKLEARN]
    return [load_photo(n) for n in names]


def held_out_photos() -> list[Photo]:
    names = [f"skimage:{n}" for n in HELD_OUT_SKIMAGE] + [f"sklearn:{n}" for n in HELD_OUT_SKLEARN]
    return [load_photo(n) for n in names]
