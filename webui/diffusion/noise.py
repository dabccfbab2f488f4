"""Initial noise with A1111's "Extra" seed options: variation seed (subseed), its strength, seed resize.

A1111 semantics (modules/processing.py, ``create_random_tensors``), re-implemented here:

- the noise of image i is drawn from its seed; with a variation strength > 0 it is spherically
  interpolated (slerp) towards the noise drawn from its variation seed: strength 0 = the seed's noise,
  strength 1 = the variation seed's noise, in between = a nearby image;
- "resize seed from W x H": the noise is drawn at that (latent) size, so a seed keeps its composition at
  another size; it is pasted centred into noise of the real size drawn from the same seed (cropped when
  the real size is smaller).

Noise is drawn on the CPU with ``torch.Generator("cpu").manual_seed(seed)``, exactly as diffusers'
``randn_tensor`` draws it from the per-image CPU generators the service passes, so strength 0 without a
resize gives the very same image as no variation at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # torch is imported where it runs: building the first page does not need it
    import torch

LATENT_CHANNELS = 4  # SD1.x / SD2.x latent channels
DOT_THRESHOLD = 0.9995  # above this the two noises are (nearly) parallel: interpolate linearly


@dataclass(frozen=True)
class VariationSpec:
    """The "Extra" seed options of one request."""

    subseed_strength: float = 0.0  # 0 = off, 1 = the variation seed's noise
    seed_resize_from_w: int = 0  # pixels; <= 0 = off
    seed_resize_from_h: int = 0

    @property
    def active(self) -> bool:
        return self.subseed_strength > 0 or self.resize_active

    @property
    def resize_active(self) -> bool:
        return self.seed_resize_from_w > 0 and self.seed_resize_from_h > 0


def slerp(t: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors of the same shape (treated as one vector each).

    t = 0 -> ``low``, t = 1 -> ``high``; the norm stays that of Gaussian noise (a plain lerp would shrink it
    and give washed-out images).
    """
    import torch

    a, b = low.flatten().double(), high.flatten().double()
    dot = torch.dot(a / a.norm(), b / b.norm()).clamp(-1.0, 1.0)
    if dot.abs() > DOT_THRESHOLD:
        mixed = (1.0 - t) * a + t * b
    else:
        omega = torch.acos(dot)
        so = torch.sin(omega)
        mixed = torch.sin((1.0 - t) * omega) / so * a + torch.sin(t * omega) / so * b
    return mixed.reshape(low.shape).to(low.dtype)


def _randn(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    import torch

    return torch.randn((1, *shape), generator=torch.Generator("cpu").manual_seed(int(seed)))[0]


def _paste_centred(small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
    """Copies the centre of ``small`` [C, h, w] over the centre of ``big`` [C, H, W] (either may be larger)."""
    out = big.clone()
    _, h, w = small.shape
    _, H, W = big.shape
    dy, dx = (H - h) // 2, (W - w) // 2
    ty, sy = max(dy, 0), max(-dy, 0)
    tx, sx = max(dx, 0), max(-dx, 0)
    hh, ww = min(h, H), min(w, W)
    out[:, ty:ty + hh, tx:tx + ww] = small[:, sy:sy + hh, sx:sx + ww]
    return out


def image_noise(seed: int, subseed: int, spec: VariationSpec, width: int, height: int,
                scale_factor: int = 8, channels: int = LATENT_CHANNELS) -> torch.Tensor:
    """The initial noise [channels, height/scale, width/scale] (float32, CPU) of one image."""
    shape = (channels, height // scale_factor, width // scale_factor)
    draw_shape = shape
    if spec.resize_active:
        draw_shape = (channels, spec.seed_resize_from_h // scale_factor, spec.seed_resize_from_w // scale_factor)
    noise = _randn(seed, draw_shape)
    if spec.subseed_strength > 0:
        noise = slerp(float(spec.subseed_strength), noise, _randn(subseed, draw_shape))
    if draw_shape != shape:
        noise = _paste_centred(noise, _randn(seed, shape))
    return noise


def batch_noise(seeds: list[int], subseeds: list[int], spec: VariationSpec, width: int, height: int,
                scale_factor: int = 8, channels: int = LATENT_CHANNELS) -> torch.Tensor:
    """[B, channels, h, w] noise for a batch, image i from (seeds[i], subseeds[i])."""
    import torch

    return torch.stack([image_noise(s, ss, spec, width, height, scale_factor, channels)
                        for s, ss in zip(seeds, subseeds)])


def inject_noise(scheduler, noise: Optional[torch.Tensor]) -> None:
    """Makes ``scheduler.add_noise(x, eps, t)`` use ``noise`` instead of the pipeline's own ``eps``.

    img2img and inpaint pipelines draw their noise inside ``prepare_latents`` and only ever use it through
    ``add_noise`` (the first noisy latents; inpaint also re-noises the kept region each step with the same
    noise), so replacing it there gives them the variation noise. ``scheduler`` must be the fresh scheduler
    made for this one call (the service makes one per call), so nothing shared is changed.
    """
    if noise is None:
        return
    original = scheduler.add_noise

    def add_noise(original_samples, eps, timesteps):
        if eps.shape == noise.shape:
            eps = noise.to(device=eps.device, dtype=eps.dtype)
        return original(original_samples, eps, timesteps)

    scheduler.add_noise = add_noise
