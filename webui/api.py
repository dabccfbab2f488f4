"""A1111-compatible REST API (``/sdapi/v1/*``) mounted beside the UI; existing clients (webuiapi) work unchanged.

Builds the same request dataclasses as the UI and submits them as jobs of the caller (the login user) to the
shared queue; ``/progress``, ``/interrupt`` and ``/skip`` act on the caller's own job only. ``/history`` (our
extension) lists the caller's past jobs. Bad input -> HTTP 422 with {"detail": message}. The login itself
(401 with ``WWW-Authenticate: Basic``, rate limits) is checked in front of every route by ``webui.auth.Gate``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import io
import json
import time
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from PIL import Image
from pydantic import BaseModel, ConfigDict

from webui.auth import USER_KEY
from webui.services import Services
from webui.version import version

API_PREFIX = "/sdapi/v1"
# infotext keys that A1111 keeps in its own info fields; the rest is "extra_generation_params"
BASE_INFOTEXT_KEYS = {"Prompt", "Negative prompt", "Steps", "Sampler", "CFG scale", "Seed", "Size-1", "Size-2",
                      "Model hash", "Model", "VAE hash", "VAE", "Variation seed", "Variation seed strength",
                      "Seed resize from-1", "Seed resize from-2", "Denoising strength", "Clip skip", "Version"}
INPAINTING_FILL = {0: "fill", 1: "original", 2: "latent noise", 3: "latent noise"}  # 3 = latent nothing ~ noise


class Txt2ImgBody(BaseModel):
    """A1111's StableDiffusionTxt2ImgProcessingAPI fields we honour. Other A1111 fields are refused with a 422
    when set to anything but their neutral default (webui.api_fields); keys A1111 does not know are ignored."""

    model_config = ConfigDict(extra="allow")
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    styles: list[str] = []
    script_name: Optional[str] = None  # "x/y/z plot" (A1111's script title, any case)
    script_args: list[Any] = []
    sampler_name: Optional[str] = None
    sampler_index: Optional[str] = None
    scheduler: Optional[str] = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    send_images: bool = True
    save_images: bool = False
    override_settings: Optional[dict[str, Any]] = None
    alwayson_scripts: Optional[dict[str, Any]] = None  # {"controlnet": {"args": [unit, ...]}} (sd-webui-controlnet)


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] = []
    mask: Optional[str] = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    mask_blur: int = 4
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0


class OptionsBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    sd_model_checkpoint: Optional[str] = None


class PngInfoBody(BaseModel):
    image: str


def decode_image(data: str, max_pixels: int, what: str) -> Image.Image:
    """base64 (optionally a data: URI) -> PIL image; a bad payload is a 422 naming the field."""
    if not isinstance(data, str) or not data:
        raise HTTPException(422, f"{what}: expected a base64-encoded image")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as e:
        raise HTTPException(422, f"{what}: not valid base64 ({e})") from e
    from webui.uploads import open_image_bytes

    try:
        return open_image_bytes(raw, max_pixels=max_pixels)
    except ValueError as e:
        raise HTTPException(422, f"{what}: {e}") from e


def encode_png(image: Image.Image, infotext: str = "") -> str:
    from PIL.PngImagePlugin import PngInfo

    buf = io.BytesIO()
    meta = PngInfo()
    if infotext:
        meta.add_text("parameters", infotext)
    image.save(buf, format="PNG", pnginfo=meta)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def sampler_from_body(body: Txt2ImgBody) -> str:
    """A1111 sends sampler_name (+ scheduler); legacy clients send names like 'DPM++ 2M Karras'."""
    return join_sampler(body.sampler_name or body.sampler_index or "Euler a", body.scheduler)


def join_sampler(name: str, scheduler: Optional[str]) -> str:
    scheduler = (scheduler or "automatic").strip()
    if scheduler.lower() not in ("", "automatic", "uniform") and not name.lower().endswith(scheduler.lower()):
        name = f"{name} {scheduler.capitalize()}"
    return name


def vae_from_body(body: Txt2ImgBody) -> Optional[str]:
    """A1111 picks the VAE with override_settings.sd_vae ("Automatic"/"None" = the model's own)."""
    name = (body.override_settings or {}).get("sd_vae")
    return None if not name or name in ("Automatic", "None") else str(name)


def script_args(body: Txt2ImgBody):
    """A1111 ``script_name`` + ``script_args`` -> the request's script (only the X/Y/Z plot is built in)."""
    from webui.diffusion.xyz import SCRIPT_NAME, XYZArgs

    if body.script_name.strip().lower() != SCRIPT_NAME:
        raise ValueError(f"unknown script_name {body.script_name!r}: the scripts here are: {SCRIPT_NAME}")
    return XYZArgs.from_script_args(body.script_args)


def caller(request: Request) -> str:
    """The login of the request (set by ``webui.auth.Gate``); 401 when a login is configured but missing."""
    user = request.scope.get(USER_KEY)
    if user is None:
        raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})
    return user


def parse_day(value: Optional[str], name: str) -> Optional[float]:
    """'YYYY-MM-DD' (local midnight) or a unix time -> unix time; 422 naming the parameter otherwise."""
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError as e:
        raise HTTPException(422, f"{name}: expected YYYY-MM-DD or a unix time, got {value!r}") from e


def is_admin(services: Services, user: str) -> bool:
    server = services.config.server
    return not server.auth or user in server.admins


def history_rows(services: Services, user: str, *, kind=None, since=None, until=None, owner=None,
                 limit: int = 100) -> list[dict]:
    """The caller's history (everyone's, or ``owner``'s, for admins and when no login is configured)."""
    admin = is_admin(services, user)
    rows = services.history.list(owner if admin else user, kind=kind, since=since, until=until, limit=limit)
    out = []
    for entry in rows:
        row = entry.as_dict()
        row["urls"] = [f"{API_PREFIX}/history/{entry.id}/files/{i}" for i in range(len(entry.paths))]
        out.append(row)
    return out


def build_router(services: Services) -> APIRouter:
    config = services.config
    router = APIRouter(prefix=API_PREFIX)
    limits = config.limits

    def run(kind: str, request, owner: str, body: Txt2ImgBody | None = None):
        from webui.diffusion.types import ImageResult

        try:
            if body is not None and body.script_name:
                request = dataclasses.replace(request, script=script_args(body))
            job = services.jobs.run(kind, request, owner=owner)
        except (ValueError, FileNotFoundError) as e:
            raise HTTPException(422, str(e)) from e
        result = job.result.value if job.result is not None else None
        return result or ImageResult(images=[], seeds=[], infotexts=[], interrupted=True)  # cancelled while queued

    def respond(body: Txt2ImgBody, result, request_fields: dict) -> dict:
        from webui.diffusion.infotext import parse_infotext

        vae = request_fields.get("vae")
        first = parse_infotext(result.infotexts[0]) if result.infotexts else {}
        info = {
            "prompt": body.prompt,
            # as A1111: "prompt" is what was sent, "all_prompts" the prompts after the styles were applied
            "all_prompts": [first.get("Prompt", body.prompt)] * len(result.images),
            "negative_prompt": body.negative_prompt,
            "all_negative_prompts": [first.get("Negative prompt", body.negative_prompt)] * len(result.images),
            "seed": result.seeds[0] if result.seeds else body.seed,
            "all_seeds": result.seeds,
            "subseed": result.subseeds[0] if result.subseeds else body.subseed,
            "all_subseeds": result.subseeds,
            "subseed_strength": body.subseed_strength,
            "seed_resize_from_w": body.seed_resize_from_w,
            "seed_resize_from_h": body.seed_resize_from_h,
            "width": request_fields["width"],
            "height": request_fields["height"],
            "sampler_name": request_fields["sampler"],
            "cfg_scale": body.cfg_scale,
            "steps": body.steps,
            "batch_size": body.batch_size,
            "sd_model_name": services.image.current_model().name,
            "sd_model_hash": (services.image.current_model().sha256 or "")[:10] or None,
            "denoising_strength": request_fields.get("denoising_strength"),
            "restore_faces": bool(request_fields.get("restore_faces", False)),
            "sd_vae_name": vae,
            "sd_vae_hash": first.get("VAE hash"),
            "clip_skip": int(request_fields.get("clip_skip", 1)),
            "styles": list(body.styles),
            "extra_generation_params": {k: v for k, v in first.items() if k not in BASE_INFOTEXT_KEYS},
            "version": version(),
            "infotexts": result.infotexts,
            "index_of_first_image": 0,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
            "interrupted": result.interrupted,
        }
        images = [encode_png(im, txt) for im, txt in zip(result.images, result.infotexts)] if body.send_images else []
        return {"images": images, "parameters": body.model_dump(), "info": json.dumps(info)}

    def apply_overrides(body: Txt2ImgBody) -> None:
        checkpoint = (body.override_settings or {}).get("sd_model_checkpoint")
        if checkpoint:
            try:
                services.image.load_model(checkpoint)
            except ValueError as e:
                raise HTTPException(422, str(e)) from e

    def a1111_fields(body: Txt2ImgBody, kind: str) -> dict:
        """hires fix / restore_faces; a 422 naming any A1111 field that is set but not implemented."""
        from webui.api_fields import check_unsupported, postprocess_fields

        raw = body.model_dump()
        try:
            check_unsupported(raw)
            return postprocess_fields(raw, kind, join_sampler)
        except ValueError as e:
            raise HTTPException(422, str(e)) from e

    def common_fields(body: Txt2ImgBody) -> dict:
        from webui.controlnet.units import units_from_alwayson

        try:
            units = units_from_alwayson(body.alwayson_scripts)
        except ValueError as e:
            raise HTTPException(422, str(e)) from e
        return dict(prompt=body.prompt, negative_prompt=body.negative_prompt, sampler=sampler_from_body(body),
                    steps=body.steps, cfg_scale=body.cfg_scale, width=body.width, height=body.height,
                    seed=body.seed, batch_count=body.n_iter, batch_size=body.batch_size, save=body.save_images,
                    subseed=body.subseed, subseed_strength=body.subseed_strength,
                    seed_resize_from_w=body.seed_resize_from_w, seed_resize_from_h=body.seed_resize_from_h,
                    styles=tuple(body.styles), vae=vae_from_body(body),
                    controlnet_units=units)

    @router.post("/txt2img")
    def txt2img(body: Txt2ImgBody, owner: str = Depends(caller)) -> dict:
        from webui.diffusion.types import Txt2ImgRequest

        extra = a1111_fields(body, "txt2img")
        apply_overrides(body)
        fields = {**common_fields(body), **extra}
        return respond(body, run("txt2img", Txt2ImgRequest(**fields), owner, body), fields)

    @router.post("/img2img")
    def img2img(body: Img2ImgBody, owner: str = Depends(caller)) -> dict:
        from webui.diffusion.types import Img2ImgRequest, InpaintRequest

        if not body.init_images:
            raise HTTPException(422, "init_images: at least one base64 image is required")
        extra = a1111_fields(body, "img2img")
        apply_overrides(body)
        fields = {**common_fields(body), **extra}
        image = decode_image(body.init_images[0], limits.max_image_pixels, "init_images[0]")
        fields.update(image=image.convert("RGB"), resize_mode=body.resize_mode,
                      denoising_strength=body.denoising_strength)
        if body.mask is None:
            return respond(body, run("img2img", Img2ImgRequest(**fields), owner, body), fields)
        mask = decode_image(body.mask, limits.max_image_pixels, "mask")
        mask = mask.getchannel("A") if mask.mode == "RGBA" else mask.convert("L")
        if body.inpainting_fill not in INPAINTING_FILL:
            raise HTTPException(422, f"inpainting_fill must be 0..3, got {body.inpainting_fill}")
        fields.update(mask=mask, mask_blur=body.mask_blur, inpainting_fill=INPAINTING_FILL[body.inpainting_fill],
                      inpaint_full_res=body.inpaint_full_res,
                      inpaint_full_res_padding=body.inpaint_full_res_padding,
                      invert_mask=bool(body.inpainting_mask_invert))
        return respond(body, run("inpaint", InpaintRequest(**fields), owner, body), fields)

    @router.get("/progress")
    def progress(skip_current_image: bool = False, owner: str = Depends(caller)) -> dict:
        """A1111 /progress for the caller's own job; idle: progress 0, no image, no text."""
        job = services.jobs.current(owner)
        if job is None:
            return {"progress": 0.0, "eta_relative": 0.0, "current_image": None, "textinfo": None,
                    "state": {"skipped": False, "interrupted": False, "job": "", "job_count": 0, "job_timestamp": "0",
                              "job_no": 0, "sampling_step": 0, "sampling_steps": 0, "queue_position": 0}}
        p = job.progress()
        ahead = services.jobs.position(job)
        image = p["preview"]
        return {
            "progress": p["fraction"],
            "eta_relative": p["eta"],
            "current_image": None if (skip_current_image or image is None) else encode_png(image),
            "textinfo": f"Queued: {ahead} job(s) ahead of you" if job.status.value == "queued" else p["text"],
            "state": {"skipped": False, "interrupted": job.cancel_event.is_set(), "job": job.kind,
                      "job_count": p["batches"], "job_timestamp": time.strftime("%Y%m%d%H%M%S",
                                                                                time.localtime(job.created)),
                      "job_no": p["batch"], "sampling_step": p["step"], "sampling_steps": p["steps"],
                      "queue_position": ahead, "job_id": job.id, "status": job.status.value},
        }

    @router.post("/interrupt")
    def interrupt(owner: str = Depends(caller)) -> dict:
        services.jobs.interrupt(owner)
        return {}

    @router.post("/skip")
    def skip(owner: str = Depends(caller)) -> None:
        services.jobs.skip(owner)
        return None

    @router.get("/history")
    def history(kind: Optional[str] = None, since: Optional[str] = None, until: Optional[str] = None,
                owner: Optional[str] = None, limit: int = 100, user: str = Depends(caller)) -> dict:
        """Our extension: the caller's jobs, newest first (admins: everyone's, or ``owner``'s)."""
        if not 1 <= limit <= 1000:
            raise HTTPException(422, f"limit must be between 1 and 1000, got {limit}")
        return {"jobs": history_rows(services, user, kind=kind or None, since=parse_day(since, "since"),
                                     until=parse_day(until, "until"), owner=owner or None, limit=limit)}

    @router.get("/workers")
    def workers() -> dict:
        """Our extension: the GPU farm's workers (node, device, VRAM/RAM, loaded model, current job, jobs
        done, state); ``{"cluster": false, "workers": []}`` without ``--cluster``."""
        from webui.farm import workers_report

        return workers_report(services)

    @router.get("/sd-models")
    def sd_models() -> list[dict]:
        return [{"title": m.title, "model_name": m.name, "hash": (m.sha256 or "")[:10] or None, "sha256": m.sha256,
                 "filename": str(m.path), "config": None} for m in services.image.list_models()]

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        services.image.list_models()

    @router.get("/prompt-styles")
    def prompt_styles() -> list[dict]:
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in services.image.styles.all()]

    @router.get("/sd-vae")
    def sd_vae() -> list[dict]:
        return [{"model_name": name, "filename": str(config.paths.vae_dir / name)} for name in services.image.list_vaes()]

    @router.get("/loras")
    def loras() -> list[dict]:
        return [{"name": name, "alias": name, "path": str(config.paths.lora_dir / name)}
                for name in services.image.list_loras()]

    @router.get("/samplers")
    def samplers() -> list[dict]:
        from webui.diffusion.samplers import SAMPLER_NAMES

        return [{"name": n, "aliases": [], "options": {}} for n in SAMPLER_NAMES]

    @router.get("/schedulers")
    def schedulers() -> list[dict]:
        return [{"name": n.lower(), "label": n, "aliases": None, "default_rho": -1, "need_inner_model": False}
                for n in ("Automatic", "Karras", "Exponential")]

    @router.get("/options")
    def get_options() -> dict:
        current = services.image.current_model()
        return {"sd_model_checkpoint": current.title, "sd_checkpoint_hash": current.sha256}

    @router.post("/options")
    def set_options(body: OptionsBody) -> None:
        if body.sd_model_checkpoint:
            try:
                services.image.load_model(body.sd_model_checkpoint)
            except ValueError as e:
                raise HTTPException(422, str(e)) from e

    @router.get("/cmd-flags")
    def cmd_flags() -> dict:
        return {"listen": config.server.host == "0.0.0.0", "port": config.server.port, "api": config.server.api}

    @router.get("/scripts")
    def scripts() -> dict:
        return {"txt2img": ["x/y/z plot"], "img2img": ["x/y/z plot"]}

    @router.post("/png-info")
    def png_info(body: PngInfoBody) -> dict:
        from webui.diffusion.infotext import parse_infotext, read_png_parameters

        image = decode_image(body.image, limits.max_image_pixels, "image")
        text = read_png_parameters(image) or ""
        return {"info": text, "items": {"parameters": text} if text else {},
                "parameters": parse_infotext(text) if text else {}}

    @router.get("/history/{job_id}/files/{index}")
    def history_file(job_id: str, index: int, user: str = Depends(caller)):
        """One output file of one of the caller's jobs (any job for admins)."""
        from fastapi.responses import FileResponse

        entry = services.history.get(job_id)
        if entry is None or (entry.owner != user and not is_admin(services, user)):
            raise HTTPException(404, f"no job {job_id} in your history")
        if not 0 <= index < len(entry.paths) or not Path(entry.paths[index]).is_file():
            raise HTTPException(404, f"job {job_id} has no file {index}")
        return FileResponse(entry.paths[index])

    from webui.api_extras import build_extras_router

    router.include_router(build_extras_router(services))  # /extra-*, /upscalers, /face-restorers, ...
    return router


def mount_api(app: FastAPI, services: Services) -> None:
    from webui.api_controlnet import build_controlnet_router

    app.include_router(build_router(services))
    app.include_router(build_controlnet_router(services))  # behind the same login gate (webui.auth.Gate)
