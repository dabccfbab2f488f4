"""Hires fix (A1111's ``enable_hr``): a first txt2img pass at the requested size, an upscale of its
latents (a latent mode) or of its pixels (any upscaler of ``webui.upscale``), then an img2img pass at
the upscaled size with ``denoising_strength``. The infotext keeps A1111's keys (``Hires upscale``,
``Hires resize``, ``Hires steps``, ``Hires upscaler``, ``Hires sampler``, ``Hires prompt``, ...).

Latents are ``[B, 4, H/8, W/8]`` in the VAE's scaled space (what diffusers returns for
``output_type="latent"`` and accepts as an img2img ``image``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from PIL import Image

from webui.diffusion.types import HiresFix, Txt2ImgRequest
from webui.upscale.registry import LATENT_MODES, UpscalerRegistry

LATENT_FACTOR = 8  # pixels per latent cell
MAX_HR_SCALE = 4.0
SAME_SAMPLER = "Use same sampler"  # A1111's choice for hr_sampler_name


def target_size(req: Txt2ImgRequest) -> tuple[tuple[int, int], tuple[int, int]]:
    """-> ((cover_w, cover_h), (final_w, final_h)), multiples of 8, A1111's arithmetic.

    With both hr_resize_x and hr_resize_y set and another aspect ratio, the upscale covers the target
    and is centre-cropped to it.
    """
    hr = req.hires
    w, h = req.width, req.height
    x, y = hr.hr_resize_x, hr.hr_resize_y
    if x == 0 and y == 0:
        final = (int(w * hr.hr_scale), int(h * hr.hr_scale))
    elif y == 0:
        final = (x, x * h // w)
    elif x == 0:
        final = (y * w // h, y)
    else:
        final = (x, y)
    final = tuple(max(LATENT_FACTOR, v // LATENT_FACTOR * LATENT_FACTOR) for v in final)
    factor = max(final[0] / w, final[1] / h)
    cover = tuple(max(f, math.ceil(s * factor / LATENT_FACTOR - 1e-6) * LATENT_FACTOR) for f, s in zip(final, (w, h)))
    return cover, final


def check_hires(req: Txt2ImgRequest, upscalers: UpscalerRegistry, max_side: int) -> None:
    """ValueError naming the bad hires field."""
    from webui.diffusion.samplers import split_sampler_name

    hr = req.hires
    if not isinstance(hr, HiresFix):
        raise ValueError(f"hires must be a HiresFix, got {type(hr).__name__}")
    if not isinstance(hr.hr_scale, (int, float)) or not 1.0 <= hr.hr_scale <= MAX_HR_SCALE:
        raise ValueError(f"hr_scale must be between 1 and {MAX_HR_SCALE:g}, got {hr.hr_scale!r}")
    for name in ("hr_resize_x", "hr_resize_y"):
        v = getattr(hr, name)
        if isinstance(v, bool) or not isinstance(v, int) or not (v == 0 or 64 <= v <= max_side):
            raise ValueError(f"{name} must be 0 or between 64 and {max_side}, got {v!r}")
    if isinstance(hr.hr_second_pass_steps, bool) or not isinstance(hr.hr_second_pass_steps, int) or not 0 <= hr.hr_second_pass_steps <= 150:
        raise ValueError(f"hr_second_pass_steps must be between 0 and 150, got {hr.hr_second_pass_steps!r}")
    if not isinstance(hr.denoising_strength, (int, float)) or not 0.0 <= hr.denoising_strength <= 1.0:
        raise ValueError(f"denoising_strength must be between 0 and 1, got {hr.denoising_strength!r}")
    if hr.hr_upscaler not in LATENT_MODES:
        try:
            upscalers.find(hr.hr_upscaler)
        except ValueError as e:
            raise ValueError(f"hr_upscaler: {e}; latent modes: {', '.join(LATENT_MODES)}") from None
    if hr.hr_sampler_name not in (None, "", SAME_SAMPLER):
        split_sampler_name(hr.hr_sampler_name)
    _, (fw, fh) = target_size(req)
    if max(fw, fh) > max_side:
        raise ValueError(f"hires size {fw}x{fh} exceeds the largest side {max_side}")


def infotext_params(req: Txt2ImgRequest) -> dict[str, Any]:
    """A1111's hires keys for the infotext (empty when hires is off)."""
    hr = req.hires
    if hr is None:
        return {}
    _, (fw, fh) = target_size(req)
    params: dict[str, Any] = {"Denoising strength": hr.denoising_strength}
    if hr.hr_prompt and hr.hr_prompt != req.prompt:
        params["Hires prompt"] = hr.hr_prompt
    if hr.hr_negative_prompt and hr.hr_negative_prompt != req.negative_prompt:
        params["Hires negative prompt"] = hr.hr_negative_prompt
    if hr.hr_resize_x == 0 and hr.hr_resize_y == 0:
        params["Hires upscale"] = hr.hr_scale
    else:
        params["Hires resize"] = f"{fw}x{fh}"
    params["Hires steps"] = hr.hr_second_pass_steps or None
    params["Hires upscaler"] = hr.hr_upscaler
    if hr.hr_sampler_name not in (None, "", SAME_SAMPLER):
        params["Hires sampler"] = hr.hr_sampler_name
    return params


def _crop_center(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    left, top = (image.width - size[0]) // 2, (image.height - size[1]) // 2
    return image.crop((left, top, left + size[0], top + size[1]))


def upscale_latents(latents, mode_name: str, cover: tuple[int, int], final: tuple[int, int]):
    """``[B, 4, h, w]`` -> ``[B, 4, final_h/8, final_w/8]`` with a latent mode (cover, then centre-crop)."""
    import torch.nn.functional as F

    mode, antialias = LATENT_MODES[mode_name]
    kw = {"antialias": True} if antialias else {}
    if mode in ("bilinear", "bicubic"):
        kw["align_corners"] = False
    out = F.interpolate(latents.float(), size=(cover[1] // LATENT_FACTOR, cover[0] // LATENT_FACTOR), mode=mode, **kw)
    fh, fw = final[1] // LATENT_FACTOR, final[0] // LATENT_FACTOR
    top, left = (out.shape[2] - fh) // 2, (out.shape[3] - fw) // 2
    return out[:, :, top : top + fh, left : left + fw].to(latents.dtype)


def generate_hires(
    pipes,
    req: Txt2ImgRequest,
    prompt: str,
    common: dict[str, Any],
    upscalers: UpscalerRegistry,
    with_sampler: Callable,
    steps_for: Callable[[int, float], int],
    controlnet: tuple = (None, None),
    noise_at: Callable[[int, int], Any] | None = None,
) -> list[Image.Image]:
    """Both passes for one batch. ``common``: the txt2img call's keyword arguments (prompts, size,
    guidance, generators, callback, and the first pass's ControlNet arguments); ``with_sampler(pipe,
    name, noise=None)`` sets a sampler on a pipeline (with ``noise``, the img2img pass re-noises with it).
    ``controlnet``: the ControlNet calls of the two passes (``webui.controlnet.run.ControlNetCall``, the
    second one's maps at the hires size) or Nones. ``noise_at(width, height)``: the variation seed's
    noise [B, 4, h/8, w/8] at a size (None: the pipelines draw their own from the seeds). As in A1111 both
    passes use it: the first at width x height, the second at the hires size."""
    import torch

    from webui.diffusion.lora import parse_lora_tags

    hr = req.hires
    if pipes.is_inpaint_model:
        raise ValueError("hires fix needs a txt2img model; this is an inpainting model")
    cover, final = target_size(req)
    latent = hr.hr_upscaler in LATENT_MODES
    n = len(common["generator"])

    # 1. First pass at width x height
    cn, cn_hr = controlnet
    first = with_sampler(cn.pipe if cn is not None else pipes.txt2img, req.sampler)
    out = first(num_inference_steps=req.steps, latents=noise_at(req.width, req.height) if noise_at else None,
                **{**common, "output_type": "latent" if latent else "pil"}).images

    # 2. Upscale: the latents, or the decoded pixels with an upscaler
    if latent:
        image_input = upscale_latents(out, hr.hr_upscaler, cover, final)
    else:
        image_input = [_crop_center(upscalers.upscale(im, hr.hr_upscaler, cover), final) for im in out]

    # 3. Second pass: img2img at the final size
    strength = float(hr.denoising_strength)
    if strength == 0.0:
        if not latent:
            return image_input
        vae = pipes.txt2img.vae
        decoded = vae.decode(image_input.to(vae.dtype) / vae.config.scaling_factor).sample
        return pipes.txt2img.image_processor.postprocess(decoded, output_type="pil")
    sampler = req.sampler if hr.hr_sampler_name in (None, "", SAME_SAMPLER) else hr.hr_sampler_name
    second = with_sampler(cn_hr.pipe if cn_hr is not None else pipes.img2img, sampler,
                          noise_at(*final) if noise_at else None)
    hr_prompt = parse_lora_tags(hr.hr_prompt)[0] if hr.hr_prompt else prompt
    seeds = [g.initial_seed() for g in common["generator"]]
    kwargs = {
        **common,
        "prompt": [hr_prompt] * n,
        "negative_prompt": [hr.hr_negative_prompt or req.negative_prompt] * n,
        "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
        "output_type": "pil",
    }
    kwargs.pop("height", None)
    kwargs.pop("width", None)
    for key in cn.kwargs if cn is not None else ():
        kwargs.pop(key, None)
    if cn_hr is not None:  # the control maps at the hires size, the units' weights and guidance ranges
        kwargs.update(cn_hr.kwargs, width=final[0], height=final[1])
    steps = steps_for(hr.hr_second_pass_steps or req.steps, strength)
    return second(image=image_input, strength=strength, num_inference_steps=steps, **kwargs).images
