"""Import spandrel without torchvision.

spandrel 0.4.x imports ``torchvision.transforms.functional`` at module level in exactly two of its
architectures (LaMa, an inpainter; RestoreFormer, a face restorer), so ``import spandrel`` fails when
torchvision is absent. torchvision has no build for this project's torch (2.13.0), so when it is
missing we import spandrel once with a stand-in module in ``sys.modules`` and remove it right after:
the SR architectures (ESRGAN, Compact, SwinIR, HAT, DAT, ...) never call torchvision; RestoreFormer's
``normalize`` is implemented here in torch; LaMa's ``rotate`` raises a clear error if ever called.
No other library sees the stand-in (it is gone from ``sys.modules`` before this function returns).
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import sys
import types


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _normalize(tensor, mean, std, inplace: bool = False):
    """``(tensor - mean) / std`` per channel; tensor ``[..., C, H, W]``."""
    import torch

    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    if inplace:
        return tensor.sub_(mean_t).div_(std_t)
    return (tensor - mean_t) / std_t


def _rotate(*args, **kwargs):
    raise NotImplementedError("torchvision is not installed: spandrel's LaMa (inpainting) cannot rotate images")


def _stand_in_modules() -> dict[str, types.ModuleType]:
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.normalize = _normalize
    functional.rotate = _rotate
    functional.InterpolationMode = _InterpolationMode
    transforms.functional = functional
    transforms.InterpolationMode = _InterpolationMode
    root.transforms = transforms
    return {m.__name__: m for m in (root, transforms, functional)}


def import_spandrel():
    """Return the ``spandrel`` module, importing it without torchvision when torchvision is absent."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    if importlib.util.find_spec("torchvision") is not None:
        return importlib.import_module("spandrel")
    stand_ins = _stand_in_modules()
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module("spandrel")
    finally:
        for name in stand_ins:
            if sys.modules.get(name) is stand_ins[name]:
                del sys.modules[name]
