"""Upscaler model files (ESRGAN, Real-ESRGAN incl. the compact SRVGG, SwinIR, HAT, DAT, ...) loaded with
spandrel, which detects the architecture from the state dict; tiled inference; fp16 on CUDA.

Arrays are ``uint8 [H, W, 3]`` RGB; tensors handed to the network are ``float [1, 3, h, w]`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from webui.upscale.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, tiled_apply

MODEL_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")


@dataclass
class UpscalerModel:
    """A loaded image-to-image model: its spandrel descriptor, native scale, device and dtype."""

    path: Path
    descriptor: object  # spandrel.ImageModelDescriptor
    scale: int
    architecture: str
    device: str
    dtype: object  # torch.dtype
    tile: int = DEFAULT_TILE  # low-resolution tile side (0: whole image at once)
    overlap: int = DEFAULT_OVERLAP  # low-resolution pixels shared by neighbouring tiles

    def upscale_tensor(self, x):
        """``float [1, 3, h, w]`` in [0, 1] (any device/dtype) -> ``float32 [1, 3, h*s, w*s]`` on the CPU."""
        import torch

        def run(tile):
            with torch.inference_mode():
                return self.descriptor(tile.to(self.device, self.dtype)).float().cpu()

        return tiled_apply(run, x.float().cpu(), self.scale, self.tile, self.overlap)

    def upscale_array(self, image: np.ndarray) -> np.ndarray:
        """``uint8 [h, w, 3]`` -> ``uint8 [h*s, w*s, 3]``."""
        import torch

        x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255.0)
        y = self.upscale_tensor(x)
        return (y[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def load_upscaler_file(path: Path, device: str = "cpu", half: bool | None = None) -> UpscalerModel:
    """Load one upscaler file with spandrel. ``half=None``: fp16 on CUDA when the architecture supports it.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that is not a
    model spandrel can read as an image upscaler (unknown architecture, corrupt or truncated file).
    """
    import torch

    from webui.upscale.spandrel_import import import_spandrel

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"upscaler file {path.name} not found in {path.parent}")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ValueError(f"{path}: not an upscaler model file (expected one of {', '.join(MODEL_SUFFIXES)})")
    spandrel = import_spandrel()
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_file(str(path))
    except spandrel.UnsupportedModelError as e:
        raise ValueError(f"{path}: spandrel does not recognise this model's architecture") from e
    except Exception as e:  # a corrupt, truncated or non-model file: pickle/zip/safetensors errors vary
        raise ValueError(f"{path}: cannot read this upscaler file ({type(e).__name__}: {e})") from e
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose == "FaceSR":
        raise ValueError(f"{path}: a {descriptor.architecture.name} model ({descriptor.purpose}) is not an upscaler")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ValueError(f"{path}: expected an RGB model, got {descriptor.input_channels} -> {descriptor.output_channels} channels")
    use_half = (device.startswith("cuda") and descriptor.supports_half) if half is None else half
    dtype = torch.float16 if use_half else torch.float32
    descriptor.to(device).to(dtype).eval()
    return UpscalerModel(path, descriptor, int(descriptor.scale), descriptor.architecture.name, device, dtype)
