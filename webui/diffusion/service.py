"""ImageService: txt2img / img2img / inpaint over a cached diffusers pipeline set.

One batch at a time on the device. The service keeps no progress of its own: each call gets the
:class:`~webui.jobs.JobControl` of the job it runs, reports every denoising step to it, checks its
cancel flag every step (a cancelled job stops within one step, keeping the images made so far), yields
the engine to other owners' jobs between batches, and announces each PNG before writing it atomically.
Every public entry validates its request first (``check_inputs``) and raises ValueError naming the bad
value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import random
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PIL import Image, ImageOps

from webui.config import AppConfig, MemoryMode, PerfConfig
from webui.diffusion import images as imgs
from webui.diffusion import registry
from webui.diffusion.infotext import build_infotext, save_png
from webui.diffusion.loading import ModelManager, PipelineSet
from webui.diffusion.lora import apply_loras, lora_hashes_text, parse_lora_tags
from webui.diffusion.noise import VariationSpec, batch_noise, inject_noise
from webui.diffusion.preview import image_grid, latent_preview
from webui.diffusion.perf import apply_perf, autocast_context, check_perf, resolve_device, resolve_dtype
from webui.diffusion import speed
from webui.diffusion.samplers import make_scheduler, schedule_type_of, split_sampler_name
from webui.diffusion.hires import check_hires, generate_hires, infotext_params
from webui.styles import StyleStore
from webui.diffusion.hires import target_size as hires_target_size
from webui.diffusion.types import (
    INPAINT_FILL_MODES,
    LATENT_UPSCALE,
    RESIZE_MODES,
    Img2ImgRequest,
    ImageResult,
    InpaintRequest,
    ModelInfo,
    Txt2ImgRequest,
)
from webui.jobs.job import JobControl
from webui.upscale import postprocess_services

if TYPE_CHECKING:  # torch is imported where it runs: building the first page does not need it
    import torch

log = logging.getLogger(__name__)

TAB_DIRS = {"txt2img": "txt2img-images", "img2img": "img2img-images", "inpaint": "inpaint-images"}
CFG_RANGE = (1.0, 30.0)
MIN_SIDE = 64
MAX_SEED = 2**32 - 1
MAX_CLIP_SKIP = 12  # CLIP ViT-L has 12 layers
MAX_MASK_BLUR = 64
MAX_PADDING = 256
PLACEHOLDER_DIR_NAME = "placeholder-tiny"


class ImageService:
    """The image engine behind the UI, the REST API and the CLI."""

    def __init__(self, config: AppConfig, manager: ModelManager | None = None):
        self.config = config
        self._perf = config.perf
        self._manager = manager or ModelManager()
        self._queue_lock = threading.Lock()  # one batch (or model load) at a time on the device
        self._current: ModelInfo | None = None
        self._models: list[ModelInfo] | None = None
        self.upscalers, self.face_restorer = postprocess_services(config)  # hires fix, restore_faces, Extras
        self.styles = StyleStore(config.paths.styles_file)  # A1111 styles.csv
        self._controlnet = None  # webui.controlnet.engine.ControlNetEngine, made on first use

    # ------------------------------------------------------------------ registry
    def list_models(self, refresh: bool = True) -> list[ModelInfo]:
        if refresh or self._models is None:
            self._models = registry.scan_models(self.config.paths)
        return list(self._models)

    def list_vaes(self) -> list[str]:
        return [p.name for p in registry.scan_vaes(self.config.paths)]

    def list_loras(self) -> list[str]:
        return [p.stem for p in registry.scan_loras(self.config.paths)]

    def ensure_default_model(self) -> list[ModelInfo]:
        """When models/Stable-diffusion/ holds nothing, write a tiny PLACEHOLDER model there."""
        models = self.list_models()
        if not models:
            from webui.diffusion.tiny import create_placeholder_model

            target = Path(self.config.paths.sd_dir) / PLACEHOLDER_DIR_NAME
            log.warning("No models in %s: writing a random-weight placeholder at %s", self.config.paths.sd_dir, target)
            create_placeholder_model(target)
            models = self.list_models()
        return models

    def find_model(self, name_or_title: str) -> ModelInfo:
        models = self.list_models(refresh=False) if self._models else self.list_models()
        try:
            return registry.find_model(models, name_or_title)
        except ValueError:
            return registry.find_model(self.list_models(), name_or_title)  # maybe added since the last scan

    def current_model(self) -> ModelInfo:
        """The selected model (chosen lazily: config.default_model, else the first registry entry)."""
        if self._current is None:
            models = self.ensure_default_model()
            if self.config.default_model:
                self._current = registry.find_model(models, self.config.default_model)
            else:
                self._current = models[0]
        return self._current

    def load_model(self, name_or_title: str) -> ModelInfo:
        """Select and load a model by "name" or "name [hash]" (ValueError if unknown)."""
        model = self.find_model(name_or_title)
        with self._queue_lock:
            self._pipes(model, None)
            self._current = model
        return model

    def native_size(self) -> int:
        """The current model's native resolution in pixels (UNet sample size x VAE scale factor).

        A diffusers folder answers from its config files, without loading the model (the first page
        needs this number, not the weights); a single file is loaded.
        """
        model = self.current_model()
        size = registry.native_size_from_config(model)
        if size is not None:
            return size
        with self._queue_lock:
            pipe = self._pipes(model, None).txt2img
        return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)

    @property
    def controlnet(self):
        """The ControlNet engine (models/ControlNet, preprocessors), created on first use."""
        if self._controlnet is None:
            from webui.controlnet.engine import ControlNetEngine

            self._controlnet = ControlNetEngine(self.config.paths.models_dir)
        return self._controlnet

    # ------------------------------------------------------------------ perf
    @property
    def perf(self) -> PerfConfig:
        return self._perf

    def set_perf(self, perf: PerfConfig) -> None:
        """Switch perf settings; re-applies them to the loaded pipelines (device/dtype/memory change reloads)."""
        check_perf(perf)
        device = resolve_device(perf)
        dtype = resolve_dtype(perf, device)
        with self._queue_lock:
            old = self._perf
            self._perf = perf
            reload = (resolve_device(old), resolve_dtype(old, resolve_device(old)), MemoryMode(old.memory)) != (
                device,
                dtype,
                MemoryMode(perf.memory),
            )
            if reload:
                loaded = self._manager.loaded()
                self._manager.clear()
                for pipes in loaded:  # reload what was loaded, now with the new placement
                    vae = Path(self.config.paths.vae_dir) / pipes.vae_name if pipes.vae_name else None
                    self._manager.get(pipes.model, perf, device, dtype, vae_path=vae)
            else:
                for pipes in self._manager.loaded():
                    apply_perf(pipes.txt2img, perf, device)

    def speed_for(self, req: Txt2ImgRequest) -> PerfConfig:
        """The perf settings for ``req``: the Settings' values with its speed overrides applied."""
        overrides = dict(req.speed_overrides)
        unknown = sorted(set(overrides) - set(speed.SPEED_FIELDS))
        if unknown:
            raise ValueError(f"speed override {unknown[0]!r} is not a speed setting; use {', '.join(speed.SPEED_FIELDS)}")
        perf = dataclasses.replace(self._perf, **overrides) if overrides else self._perf
        speed.check_speed(perf)
        return perf

    # ------------------------------------------------------------------ validation
    def check_inputs(self, req: Txt2ImgRequest) -> None:
        """Raise ValueError naming the first bad value of ``req``."""
        lim = self.config.limits

        def _int_in(name: str, value: Any, lo: int, hi: int) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")

        if not isinstance(req.prompt, str) or not isinstance(req.negative_prompt, str):
            raise ValueError("prompt and negative_prompt must be strings")
        for name in ("width", "height"):
            value = getattr(req, name)
            _int_in(name, value, MIN_SIDE, lim.max_side)
            if value % 8:
                raise ValueError(f"{name} must be a multiple of 8, got {value}")
        _int_in("steps", req.steps, 1, lim.max_steps)
        if not isinstance(req.cfg_scale, (int, float)) or not CFG_RANGE[0] <= req.cfg_scale <= CFG_RANGE[1]:
            raise ValueError(f"cfg_scale must be between {CFG_RANGE[0]:g} and {CFG_RANGE[1]:g}, got {req.cfg_scale!r}")
        _int_in("batch_size", req.batch_size, 1, lim.max_batch)
        _int_in("batch_count", req.batch_count, 1, lim.max_batch)
        _int_in("seed", req.seed, -1, MAX_SEED)
        _int_in("subseed", req.subseed, -1, MAX_SEED)
        _int_in("clip_skip", req.clip_skip, 1, MAX_CLIP_SKIP)
        if isinstance(req.subseed_strength, bool) or not isinstance(req.subseed_strength, (int, float)) \
                or not 0.0 <= req.subseed_strength <= 1.0:
            raise ValueError(f"subseed_strength must be between 0 and 1, got {req.subseed_strength!r}")
        for name in ("seed_resize_from_w", "seed_resize_from_h"):
            value = getattr(req, name)
            _int_in(name, value, -1, lim.max_side)  # 0 or -1 = off (A1111 sends -1)
            if value > 0 and value % 8:
                raise ValueError(f"{name} must be 0 (off) or a multiple of 8, got {value}")
        split_sampler_name(req.sampler)  # ValueError lists the valid names
        parse_lora_tags(req.prompt)  # ValueError on a bad weight
        if req.model:
            self.find_model(req.model)
        if req.vae and req.vae not in self.list_vaes():
            raise ValueError(f"Unknown VAE {req.vae!r}: put it in models/VAE; available: {', '.join(self.list_vaes()) or 'none'}")

        if isinstance(req, Img2ImgRequest):
            imgs.check_image(req.image, "image", lim.max_image_pixels)
            if not isinstance(req.denoising_strength, (int, float)) or not 0.0 <= req.denoising_strength <= 1.0:
                raise ValueError(f"denoising_strength must be between 0 and 1, got {req.denoising_strength!r}")
            if req.resize_mode not in range(len(RESIZE_MODES)):
                raise ValueError(f"resize_mode must be 0..{len(RESIZE_MODES) - 1} ({', '.join(RESIZE_MODES)}), got {req.resize_mode!r}")
        if isinstance(req, InpaintRequest):
            imgs.check_image(req.mask, "mask", lim.max_image_pixels)
            if req.mask.size != req.image.size:
                raise ValueError(
                    f"mask size {req.mask.size[0]}x{req.mask.size[1]} differs from image size "
                    f"{req.image.size[0]}x{req.image.size[1]}"
                )
            _int_in("mask_blur", req.mask_blur, 0, MAX_MASK_BLUR)
            _int_in("inpaint_full_res_padding", req.inpaint_full_res_padding, 0, MAX_PADDING)
            self._fill_mode(req.inpainting_fill)
        if req.hires is not None:
            if isinstance(req, Img2ImgRequest):
                raise ValueError("hires fix (enable_hr) is a txt2img option")
            check_hires(req, self.upscalers, lim.max_side)
        if req.restore_faces:
            self.face_restorer.check_available()
        if req.controlnet_units:
            self.controlnet.check(req.controlnet_units, has_init_image=isinstance(req, Img2ImgRequest))
        self.speed_for(req)  # ValueError names a bad speed override

    @staticmethod
    def _fill_mode(value: Any) -> str:
        """Masked-content mode by name, or by A1111 API integer (0 fill, 1 original, 2 latent noise)."""
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(INPAINT_FILL_MODES):
            return INPAINT_FILL_MODES[int(value)]
        if value in INPAINT_FILL_MODES:
            return value
        raise ValueError(f"inpainting_fill must be one of {', '.join(INPAINT_FILL_MODES)} (or 0-2), got {value!r}")

    # ------------------------------------------------------------------ public jobs
    def with_styles(self, req: Txt2ImgRequest) -> Txt2ImgRequest:
        """The request with its ``styles`` (names in styles.csv) applied to the prompts; ValueError if unknown."""
        if not req.styles:
            return req
        if isinstance(req.styles, str) or not all(isinstance(n, str) for n in req.styles):
            raise ValueError(f"styles must be a list of style names, got {req.styles!r}")
        prompt, negative = self.styles.apply(req.styles, req.prompt, req.negative_prompt)
        return dataclasses.replace(req, prompt=prompt, negative_prompt=negative)

    def run_script(self, kind: str, req: Txt2ImgRequest, control: JobControl) -> ImageResult:
        """The X/Y/Z plot: every cell is a request of ``kind`` (its styles applied per cell), then the grid."""
        from webui.diffusion.xyz import XYZArgs, run_xyz

        if not isinstance(req.script, XYZArgs):
            raise ValueError(f"script must be the X/Y/Z plot's arguments, got {type(req.script).__name__}")
        run_cell = {"txt2img": self.txt2img, "img2img": self.img2img, "inpaint": self.inpaint}[kind]
        tab = "txt2img" if kind == "txt2img" else "img2img"
        return run_xyz(tab, dataclasses.replace(req, script=None), req.script, lambda r: run_cell(r, control),
                       save_grid=lambda image, info: self.save_grid(kind, image, info)).result

    def check(self, kind: str, req: Txt2ImgRequest) -> None:
        """Validate a request of ``kind`` (txt2img | img2img | inpaint); ValueError names the bad value."""
        if kind == "img2img" and not isinstance(req, Img2ImgRequest):
            raise ValueError("img2img needs an Img2ImgRequest with an image")
        if kind == "inpaint" and not isinstance(req, InpaintRequest):
            raise ValueError("inpaint needs an InpaintRequest with an image and a mask")
        if req.script is not None:  # the X/Y/Z plot: its cells are checked as they run; the base request now
            from webui.diffusion.xyz import XYZArgs

            if not isinstance(req.script, XYZArgs):
                raise ValueError(f"script must be the X/Y/Z plot's arguments, got {type(req.script).__name__}")
            req = dataclasses.replace(req, script=None)
        req = self.with_styles(req)
        self.check_inputs(req)
        if kind == "inpaint" and req.mask is not None and imgs.mask_bbox(self._prepared_mask(req)) is None:
            raise ValueError("mask is empty (no white pixels): nothing to inpaint")

    def _submit(self, kind: str, req: Txt2ImgRequest, control: JobControl | None) -> ImageResult:
        self.check(kind, req)
        control = control or JobControl()
        if req.script is not None:
            return self.run_script(kind, req, control)
        return self._run(kind, self.with_styles(req), control)

    def txt2img(self, req: Txt2ImgRequest, control: JobControl | None = None) -> ImageResult:
        return self._submit("txt2img", req, control)

    def img2img(self, req: Img2ImgRequest, control: JobControl | None = None) -> ImageResult:
        return self._submit("img2img", req, control)

    def inpaint(self, req: InpaintRequest, control: JobControl | None = None) -> ImageResult:
        return self._submit("inpaint", req, control)

    # ------------------------------------------------------------------ internals
    def _pipes(self, model: ModelInfo, vae: str | None) -> PipelineSet:
        device = resolve_device(self._perf)
        dtype = resolve_dtype(self._perf, device)
        vae_path = Path(self.config.paths.vae_dir) / vae if vae else None
        return self._manager.get(model, self._perf, device, dtype, vae_path=vae_path)

    @staticmethod
    def _seeds(req: Txt2ImgRequest, seed: int | None = None) -> list[int]:
        """A1111: seed -1 -> random; image i of batch b gets seed + b * batch_size + i."""
        seed = req.seed if seed is None else seed
        seed = random.randrange(MAX_SEED + 1) if seed == -1 else int(seed)
        return [(seed + n) % (MAX_SEED + 1) for n in range(req.batch_count * req.batch_size)]

    @staticmethod
    def _variation(req: Txt2ImgRequest) -> VariationSpec:
        return VariationSpec(float(req.subseed_strength), max(int(req.seed_resize_from_w), 0),
                             max(int(req.seed_resize_from_h), 0))

    @staticmethod
    def _prepared_mask(req: InpaintRequest) -> Image.Image:
        mask = imgs.to_mask(req.mask)
        return ImageOps.invert(mask) if req.invert_mask else mask

    @staticmethod
    def _preview(pipes: PipelineSet, latents: torch.Tensor) -> Image.Image:
        """Cheap preview of the whole batch (latents [B, 4, h, w]) as one grid (webui.diffusion.preview)."""
        return latent_preview(pipes.txt2img.vae, latents)

    def _make_callback(self, pipes, batch_no: int, batch_count: int, control: JobControl) -> Callable:
        def on_step_end(pipe, i, t, kwargs):
            total = getattr(pipe, "num_timesteps", None) or 0
            preview = self._preview(pipes, kwargs["latents"]) if control.preview_due() else None
            control.report(i + 1, total, batch=batch_no, batches=batch_count, preview=preview)
            if control.cancelled() or control.take_skip():
                pipe._interrupt = True  # diffusers skips the remaining steps, then decodes
            return kwargs

        return on_step_end

    def _run(self, kind: str, req: Txt2ImgRequest, control: JobControl) -> ImageResult:
        # 1. Model, LoRA tags, seeds, the input image/mask (img2img / inpaint), prepared once
        model = self.find_model(req.model) if req.model else self.current_model()
        prompt, loras = parse_lora_tags(req.prompt)
        seeds = self._seeds(req)
        subseeds = self._seeds(req, req.subseed)  # A1111 draws them even when the strength is 0
        prepared = self._prepare_inputs(kind, req)
        control.report(0, req.steps, batch=0, batches=req.batch_count,
                       text=f"{kind}: {len(seeds)} image(s), model {model.name}")

        # 2. Batches; between two, another owner's job may use the engine (so the model and LoRAs are
        #    set again for each batch); each finished image is saved at once
        images: list[Image.Image] = []
        out_seeds: list[int] = []
        out_subseeds: list[int] = []
        infotexts: list[str] = []
        paths: list[Path] = []
        interrupted = False
        for b in range(req.batch_count):
            if b:
                control.batch_boundary()
            if control.cancelled():
                interrupted = True
                break
            batch_seeds = seeds[b * req.batch_size : (b + 1) * req.batch_size]
            batch_subseeds = subseeds[b * req.batch_size : (b + 1) * req.batch_size]
            with self._queue_lock:
                pipes = self._pipes(model, req.vae)
                self._current = model
                lora_hashes = apply_loras(pipes.txt2img, pipes.loras, Path(self.config.paths.lora_dir), loras)
                callback = self._make_callback(pipes, b, req.batch_count, control)
                cn = self.controlnet.prepare(
                    kind, pipes, self._units_for(req, prepared), req.width, req.height, req.cfg_scale,
                    fallback_image=prepared.get("image", prepared.get("work_image")),
                ) if req.controlnet_units else None
                cn_hr = self.controlnet.prepare_second_pass(cn, pipes, *hires_target_size(req)[1]) \
                    if kind == "txt2img" and req.hires is not None else None
                batch_images = self._generate(kind, pipes, req, prompt, batch_seeds, prepared, callback,
                                              batch_subseeds, cn=cn, cn_hr=cn_hr)
                if req.restore_faces:
                    batch_images = [self.face_restorer.restore(im) for im in batch_images]
            stopped = control.cancelled()
            for image, seed, subseed in zip(batch_images, batch_seeds, batch_subseeds):
                info = self._infotext(kind, req, model, pipes, seed, lora_hashes, subseed, cn=cn)
                if req.save:
                    path = self._next_path(kind, seed)
                    control.add_output(path, info)
                    paths.append(save_png(image, path, info))
                images.append(image)
                out_seeds.append(seed)
                out_subseeds.append(subseed)
                infotexts.append(info)
            control.report(0, req.steps, batch=b + 1, batches=req.batch_count,
                           preview=image_grid(batch_images) if batch_images else None)
            if stopped:
                interrupted = True
                break
        return ImageResult(images=images, seeds=out_seeds, infotexts=infotexts, paths=paths, interrupted=interrupted,
                           subseeds=out_subseeds)

    @staticmethod
    def _units_for(req: Txt2ImgRequest, prepared: dict[str, Any]) -> tuple:
        """The ControlNet units of ``req``; with "Only masked" inpainting their images cut like the picture."""
        if prepared.get("crop") is None:
            return tuple(req.controlnet_units)
        from webui.controlnet.run import crop_unit_images

        return tuple(crop_unit_images(req.controlnet_units, prepared["crop"], prepared["original"].size,
                                      req.width, req.height))

    def _prepare_inputs(self, kind: str, req: Txt2ImgRequest) -> dict[str, Any]:
        w, h = req.width, req.height
        if kind == "txt2img":
            return {}
        image = imgs.to_rgb(req.image)
        if kind == "img2img":
            if req.resize_mode == LATENT_UPSCALE:  # encoded at its own size; the latents are resized in _generate
                return {"image": image.resize(imgs.latent_upscale_size(image), imgs.RESAMPLE), "latent_upscale": True}
            return {"image": imgs.resize_image(image, w, h, req.resize_mode)}
        # inpaint: white = repaint; blur; either crop around the mask ("Only masked") or the whole picture
        mask = self._prepared_mask(req)
        blurred = imgs.blur_mask(mask, req.mask_blur)
        fill = self._fill_mode(req.inpainting_fill)
        if req.inpaint_full_res:
            box = imgs.mask_bbox(mask)
            crop = imgs.expand_crop_region(box, req.inpaint_full_res_padding, w, h, *image.size)
            work_image = image.crop(crop).resize((w, h), imgs.RESAMPLE)
            work_mask = blurred.crop(crop).resize((w, h), imgs.RESAMPLE)
        else:
            crop = None
            work_image = imgs.resize_image(image, w, h, req.resize_mode)
            work_mask = imgs.resize_image(blurred, w, h, req.resize_mode)
        pipe_image = imgs.fill_masked(work_image, work_mask) if fill == "fill" else work_image
        return {
            "original": image,
            "full_mask": blurred,
            "crop": crop,
            "work_image": work_image,
            "work_mask": work_mask,
            "pipe_image": pipe_image,
            # latent noise: the masked region starts from pure noise, i.e. strength 1.0 there; the
            # unmasked region is pinned to the original latents each step (4-ch) / by the composite.
            "strength": 1.0 if fill == "latent noise" else float(req.denoising_strength),
        }

    @staticmethod
    def _steps_for(steps: int, strength: float) -> int:
        """diffusers runs int(steps * strength) steps; make sure that is at least one."""
        return steps if steps * strength >= 1 else int(np.ceil(1.0 / strength))

    def _generate(self, kind, pipes: PipelineSet, req, prompt, seeds, prepared, callback, subseeds=None, cn=None,
                  cn_hr=None) -> list[Image.Image]:
        import torch

        variation = self._variation(req)
        noise = noise_at = None
        if variation.active:  # A1111 "Extra" seed options: the service draws the initial noise itself
            def noise_at(width: int, height: int) -> torch.Tensor:
                return batch_noise(seeds, subseeds or seeds, variation, width, height,
                                   int(pipes.txt2img.vae_scale_factor)).to(pipes.device, pipes.dtype)

            noise = noise_at(req.width, req.height)
        n = len(seeds)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        common = dict(
            prompt=[prompt] * n,
            negative_prompt=[req.negative_prompt] * n,
            height=req.height,
            width=req.width,
            guidance_scale=float(req.cfg_scale),
            generator=generators,
            callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=["latents"],
            output_type="pil",
            # A1111 counts the last layer as 1, diffusers counts the layers skipped
            **({"clip_skip": int(req.clip_skip) - 1} if req.clip_skip > 1 else {}),
            **(cn.kwargs if cn is not None else {}),  # control images, weights, guidance ranges
        )
        if req.clip_skip > 1:
            _clip_skip_compat(pipes.txt2img.text_encoder)
        white = Image.new("L", (req.width, req.height), 255)
        fast = self.speed_for(req)
        size = self._largest_size(req)
        speed.apply_speed(pipes.txt2img.unet, fast, pipes.device, *size)
        speed.reset(pipes.txt2img.unet)
        adapters = cn.hooked(pipes.txt2img.unet) if cn is not None else contextlib.nullcontext()  # T2I-Adapter units
        with torch.inference_mode(), autocast_context(self._perf, pipes.device, pipes.dtype), adapters:
            if kind == "txt2img":
                if req.hires is not None:
                    set_sampler = lambda p, name, eps=None: self._with_sampler(p, pipes, name, eps)  # noqa: E731
                    return generate_hires(pipes, req, prompt, common, self.upscalers, set_sampler, self._steps_for,
                                          controlnet=(cn, cn_hr), noise_at=noise_at)
                if pipes.is_inpaint_model:  # 9-channel UNet: inpaint everything from a blank canvas
                    pipe = self._with_sampler(cn.pipe if cn else pipes.inpaint, pipes, req.sampler, noise)
                    blank = Image.new("RGB", (req.width, req.height), (127, 127, 127))
                    return pipe(image=blank, mask_image=white, strength=1.0, num_inference_steps=req.steps, latents=noise,
                                **common).images
                pipe = self._with_sampler(cn.pipe if cn else pipes.txt2img, pipes, req.sampler, noise)
                return pipe(num_inference_steps=req.steps, latents=noise, **common).images

            if kind == "img2img":
                image = prepared["image"]
                strength = float(req.denoising_strength)
                if strength == 0.0:  # nothing to denoise: the (resized) input is the answer
                    return [image.resize((req.width, req.height), imgs.RESAMPLE) for _ in seeds]
                if pipes.is_inpaint_model and prepared.get("latent_upscale"):  # 9-ch UNet: resize in pixels
                    image = image.resize((req.width, req.height), imgs.RESAMPLE)
                steps = self._steps_for(req.steps, strength)
                if pipes.is_inpaint_model:
                    pipe = self._with_sampler(cn.pipe if cn else pipes.inpaint, pipes, req.sampler, noise)
                    return pipe(image=image, mask_image=white, strength=strength, num_inference_steps=steps, **common).images
                pipe = self._with_sampler(cn.pipe if cn else pipes.img2img, pipes, req.sampler, noise)
                if prepared.get("latent_upscale"):
                    image = self._upscaled_latents(pipe, image, req.width, req.height, generators)
                return pipe(image=image, strength=strength, num_inference_steps=steps, **common).images

            # inpaint
            strength = prepared["strength"]
            if strength == 0.0:
                generated = [prepared["work_image"].copy() for _ in seeds]
            else:
                pipe = self._with_sampler(cn.pipe if cn else pipes.inpaint, pipes, req.sampler, noise)
                generated = pipe(
                    image=prepared["pipe_image"],
                    mask_image=prepared["work_mask"],
                    strength=strength,
                    num_inference_steps=self._steps_for(req.steps, strength),
                    # at strength 1 the inpaint pipeline takes `latents` as its noise; below, inject_noise does
                    latents=noise if strength >= 1.0 else None,
                    **common,
                ).images
        return [self._paste_back(g, prepared) for g in generated]

    @staticmethod
    def _upscaled_latents(pipe, image: Image.Image, width: int, height: int, generators) -> torch.Tensor:
        """Resize mode 3: the input's latents [B, 4, h, w] at its own size, resized bilinearly to width x height.

        The img2img pipeline takes 4-channel latents as its ``image`` and does not encode them again.
        """
        import torch

        vae = pipe.vae
        pixels = pipe.image_processor.preprocess(image).to(device=vae.device, dtype=vae.dtype)
        latents = torch.cat([vae.encode(pixels).latent_dist.sample(g) for g in generators])
        latents = latents * vae.config.scaling_factor
        size = (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        return torch.nn.functional.interpolate(latents, size=size, mode="bilinear", align_corners=False)

    @staticmethod
    def _largest_size(req: Txt2ImgRequest) -> tuple[int, int]:
        """The largest image the UNet will denoise for ``req`` (hires: the second pass)."""
        if req.hires is not None and not isinstance(req, Img2ImgRequest):
            return hires_target_size(req)[1]
        return req.width, req.height

    @staticmethod
    def _paste_back(generated: Image.Image, prepared: dict[str, Any]) -> Image.Image:
        """Keep unmasked pixels equal to the original (A1111 does this too)."""
        crop = prepared["crop"]
        if crop is None:
            return imgs.composite(generated, prepared["work_image"], prepared["work_mask"])
        x1, y1, x2, y2 = crop
        original = prepared["original"]
        pasted = original.copy()
        pasted.paste(generated.resize((x2 - x1, y2 - y1), imgs.RESAMPLE), (x1, y1))
        return imgs.composite(pasted, original, prepared["full_mask"])

    @staticmethod
    def _with_sampler(pipe, pipes: PipelineSet, sampler: str, noise: torch.Tensor | None = None):
        """A fresh scheduler for this call; with ``noise`` it re-noises with that noise (img2img/inpaint)."""
        pipe.scheduler = make_scheduler(sampler, pipes.base_scheduler_config)
        inject_noise(pipe.scheduler, noise)
        return pipe

    def _infotext(self, kind, req, model: ModelInfo, pipes: PipelineSet, seed: int, lora_hashes: dict,
                  subseed: int | None = None, cn=None) -> str:
        base, _ = split_sampler_name(req.sampler)
        params: dict[str, Any] = {
            "Steps": req.steps,
            "Sampler": base,
            "Schedule type": schedule_type_of(req.sampler),
            "CFG scale": req.cfg_scale,
            "Seed": seed,
            "Size": f"{req.width}x{req.height}",
            "Model hash": (model.sha256 or "")[:10] or None,
            "Model": model.name,
            "Clip skip": req.clip_skip if req.clip_skip > 1 else None,
        }
        variation = self._variation(req)
        if variation.subseed_strength > 0:
            params["Variation seed"] = subseed
            params["Variation seed strength"] = variation.subseed_strength
        if variation.resize_active:
            params["Seed resize from"] = f"{variation.seed_resize_from_w}x{variation.seed_resize_from_h}"
        if pipes.vae_name:
            vae_path = Path(self.config.paths.vae_dir) / pipes.vae_name
            params["VAE hash"] = registry.sha256_of(vae_path)[:10]
            params["VAE"] = pipes.vae_name
        if kind in ("img2img", "inpaint"):
            params["Denoising strength"] = req.denoising_strength
        if kind == "inpaint":
            params["Mask blur"] = req.mask_blur if req.mask_blur > 0 else None
            if req.inpaint_full_res:
                params["Inpaint area"] = "Only masked"
                params["Masked area padding"] = req.inpaint_full_res_padding
            fill = self._fill_mode(req.inpainting_fill)
            params["Masked content"] = fill if fill != "original" else None
            if req.invert_mask:
                params["Mask mode"] = "Inpaint not masked"
        params.update(speed.speed_infotext(self.speed_for(req), *self._largest_size(req)))
        params.update(infotext_params(req))
        params["Face restoration"] = self.face_restorer.name if req.restore_faces else None
        params["Lora hashes"] = lora_hashes_text(lora_hashes)
        if cn is not None:
            from webui.controlnet.run import infotext_params as controlnet_infotext

            params.update(controlnet_infotext(cn))
        return build_infotext(req.prompt, req.negative_prompt, params)

    def save_grid(self, kind: str, image: Image.Image, infotext: str) -> Path:
        """A grid (X/Y/Z plot) goes to outputs/<kind>-grids/<date>/NNNNN-grid.png, as A1111 keeps them apart."""
        folder = Path(self.config.paths.outputs_dir) / f"{kind}-grids" / _dt.date.today().isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
        return save_png(image, folder / f"{max(numbers, default=-1) + 1:05d}-grid.png", infotext)

    def _next_path(self, kind: str, seed: int) -> Path:
        folder = Path(self.config.paths.outputs_dir) / TAB_DIRS[kind] / _dt.date.today().isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
        return folder / f"{max(numbers, default=-1) + 1:05d}-{seed}.png"


def _clip_skip_compat(text_encoder) -> None:
    """diffusers' ``clip_skip`` reads ``text_encoder.text_model.final_layer_norm``; transformers 5 flattened
    CLIPTextModel (its layers and ``final_layer_norm`` sit on the model itself). Point ``text_model`` at the
    model, outside nn.Module's registry (no submodule cycle). Older transformers already have it."""
    if not hasattr(text_encoder, "text_model") and hasattr(text_encoder, "final_layer_norm"):
        object.__setattr__(text_encoder, "text_model", text_encoder)
