"""Requests and results of the image services. The UI, the REST API and the CLI all build these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from PIL import Image

# A1111 img2img resize modes (API integer = index)
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
LATENT_UPSCALE = 3  # resize mode: encode the input at its size, then resize the latents bilinearly
# A1111 masked-content modes, in the UI order; API `inpainting_fill`: 0 fill, 1 original, 2 latent noise
INPAINT_FILL_MODES = ("fill", "original", "latent noise")


@dataclass(frozen=True)
class HiresFix:
    """A1111's "Hires. fix" (txt2img): first pass at width x height, upscale, then an img2img pass."""

    hr_scale: float = 2.0  # upscale by this factor (when hr_resize_x/y are both 0)
    hr_resize_x: int = 0  # target width (0: from hr_scale, or from hr_resize_y keeping the aspect)
    hr_resize_y: int = 0  # target height; both set: cover that size and centre-crop to it
    hr_upscaler: str = "Latent"  # a latent mode or an upscaler name (webui.upscale.registry)
    hr_second_pass_steps: int = 0  # 0: the first pass's steps
    denoising_strength: float = 0.7  # of the second pass
    hr_sampler_name: Optional[str] = None  # None: the first pass's sampler
    hr_prompt: str = ""  # "": the first pass's prompt
    hr_negative_prompt: str = ""  # "": the first pass's negative prompt


@dataclass(frozen=True)
class Txt2ImgRequest:
    prompt: str = ""
    negative_prompt: str = ""
    sampler: str = "Euler a"  # an A1111 sampler name, see webui.diffusion.samplers
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = -1  # -1 = random
    # A1111's "Extra" seed options (see webui.diffusion.noise)
    subseed: int = -1  # variation seed, -1 = random
    subseed_strength: float = 0.0  # 0 = no variation, 1 = the variation seed's noise
    seed_resize_from_w: int = 0  # draw the seed's noise at this size (pixels); 0 = off
    seed_resize_from_h: int = 0
    styles: tuple[str, ...] = ()  # names from styles.csv, applied to the prompts by the service
    script: Optional[Any] = None  # webui.diffusion.xyz.XYZArgs: run the X/Y/Z plot over this request
    batch_count: int = 1  # A1111 n_iter
    batch_size: int = 1
    model: Optional[str] = None  # name from the registry; None = the current/default model
    vae: Optional[str] = None  # file name in models/VAE, None = the model's own
    save: bool = True  # write PNGs with infotext under outputs/
    hires: Optional[HiresFix] = None  # txt2img only: A1111's enable_hr (None = off)
    restore_faces: bool = False  # GFPGAN on every output (webui.upscale.faces)
    clip_skip: int = 1  # A1111's "Clip skip": 1 = the text encoder's last layer, 2 = the one before, ...
    controlnet_units: tuple = ()  # webui.controlnet.units.ControlNetUnit, up to 3 enabled
    # Speed settings for this request only (PerfConfig field -> value, see webui.diffusion.speed.SPEED_FIELDS);
    # A1111's override_settings. Empty = the Settings tab's values.
    speed_overrides: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Img2ImgRequest(Txt2ImgRequest):
    image: Optional[Image.Image] = None  # RGB input image
    resize_mode: int = 0  # index into RESIZE_MODES
    denoising_strength: float = 0.75  # 0 = returns the input, 1 = ignores it


@dataclass(frozen=True)
class InpaintRequest(Img2ImgRequest):
    mask: Optional[Image.Image] = None  # L mask, white = repaint; same size as image
    mask_blur: int = 4
    inpaint_full_res: bool = False  # "Only masked": crop around the mask, inpaint at full res, paste back
    inpaint_full_res_padding: int = 32
    inpainting_fill: str = "original"  # one of INPAINT_FILL_MODES
    invert_mask: bool = False


@dataclass
class ImageResult:
    images: list[Image.Image]
    seeds: list[int]
    infotexts: list[str]
    paths: list[Path] = field(default_factory=list)  # saved PNGs (empty when save=False)
    interrupted: bool = False
    subseeds: list[int] = field(default_factory=list)  # variation seed of each image
    extra_params: dict = field(default_factory=dict)  # A1111 extra_generation_params of the first image


@dataclass(frozen=True)
class ModelInfo:
    name: str  # display name (file stem or folder name)
    path: Path
    kind: str  # "diffusers" | "single-file"
    title: str  # A1111 title "name [hash]"
    sha256: Optional[str] = None  # full hash once computed (lazy for big files)
    is_placeholder: bool = False  # random-weight stand-in, to be shown plainly in the UI
