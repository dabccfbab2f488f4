"""Live previews: the denoising latents of a whole batch as one cheap RGB grid.

Two ways, by VAE size:
- a tiny VAE (the embedded demo model's, under ``PREVIEW_VAE_MAX_PARAMS``): the real decoder on the latents
  downscaled 2x (a quarter of a full decode; the preview is shown small anyway);
- any other VAE: A1111's "Approx cheap" idea, a fixed linear latent -> RGB map (SD1.x latent space), a few
  microseconds per image.
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported where it runs: building the first page does not need it
    import torch

PREVIEW_VAE_MAX_PARAMS = 5_000_000  # decode previews with the real VAE only when it is this small
PREVIEW_LATENT_SCALE = 0.5  # a tiny VAE decodes the latents downscaled by this factor
# Linear latent -> RGB approximation for SD1.x VAEs (rows: latent channels, cols: R, G, B)
SD15_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))


def is_tiny_vae(vae) -> bool:
    """Whether ``vae`` is small enough to decode previews with."""
    return sum(p.numel() for p in vae.parameters()) <= PREVIEW_VAE_MAX_PARAMS


def latents_to_rgb(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents [B, 4, h, w] -> approximate images [B, 3, H, W] in 0..1 (float32, CPU)."""
    import torch

    lat = latents.detach()
    with torch.no_grad():
        if is_tiny_vae(vae):
            if min(lat.shape[-2:]) >= 4:
                lat = torch.nn.functional.interpolate(lat.float(), scale_factor=PREVIEW_LATENT_SCALE, mode="area")
            x = vae.decode(lat.to(vae.dtype) / vae.config.scaling_factor).sample
            return ((x.float().clamp(-1, 1) + 1) / 2).cpu()
        rgb = torch.einsum("bchw,cr->brhw", lat.float().cpu(), torch.tensor(SD15_LATENT_RGB))
        return ((rgb + 1) / 2).clamp(0, 1)


def grid_of(rgb: torch.Tensor) -> Image.Image:
    """Images [B, 3, H, W] in 0..1 -> one PIL grid, ceil(sqrt(B)) columns (A1111's batch grid shape)."""
    import torch

    b, _, h, w = rgb.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    canvas = torch.zeros(3, rows * h, cols * w)
    for i in range(b):
        r, c = divmod(i, cols)
        canvas[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = rgb[i]
    arr = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def latent_preview(vae, latents: torch.Tensor) -> Image.Image:
    """The live preview of a batch: every latent of ``latents`` [B, 4, h, w], as one grid image."""
    return grid_of(latents_to_rgb(vae, latents))


def image_grid(images: list[Image.Image]) -> Image.Image:
    """Finished images of a batch (same size) as the same grid the live preview showed."""
    import torch

    if len(images) == 1:
        return images[0]
    rgb = torch.stack([torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1) for im in images])
    return grid_of(rgb.float() / 255)
