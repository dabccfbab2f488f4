"""A1111-compatible REST API (``/sdapi/v1/*``) mounted beside the UI; existing clients (webuiapi) work unchanged.

Builds the same request dataclasses as the UI. Bad input -> HTTP 422 with {"detail": message}; a wrong login
-> 401 with ``WWW-Authenticate: Basic``. Every route here sits behind the same login as the UI.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import time
from typing import Any, Optional

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from PIL import Image
from pydantic import BaseModel, ConfigDict

from webui.services import Services

API_PREFIX = "/sdapi/v1"
INPAINTING_FILL = {0: "fill", 1: "original", 2: "latent noise", 3: "latent noise"}  # 3 = latent nothing ~ noise


class Txt2ImgBody(BaseModel):
    """A1111's StableDiffusionTxt2ImgProcessingAPI fields we honour. Other A1111 fields are refused with a 422
    when set to anything but their neutral default (webui.api_fields); keys A1111 does not know are ignored."""

    model_config = ConfigDict(extra="allow")
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
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


def make_auth_dependency(logins: tuple[tuple[str, str], ...]):
    security = HTTPBasic(auto_error=False)

    def check(credentials: Optional[HTTPBasicCredentials] = Depends(security)) -> None:
        if not logins:
            return
        if credentials is not None:
            for user, password in logins:
                if secrets.compare_digest(credentials.username.encode(), user.encode()) and \
                        secrets.compare_digest(credentials.password.encode(), password.encode()):
                    return
        raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})

    return check


def build_router(services: Services) -> APIRouter:
    config = services.config
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(make_auth_dependency(config.server.auth))])
    limits = config.limits

    def run(kind: str, request) -> dict:
        service = services.image
        try:
            result = getattr(service, kind)(request)
        except (ValueError, FileNotFoundError) as e:
            raise HTTPException(422, str(e)) from e
        return result

    def respond(body: Txt2ImgBody, result, request_fields: dict) -> dict:
        info = {
            "prompt": body.prompt,
            "all_prompts": [body.prompt] * len(result.images),
            "negative_prompt": body.negative_prompt,
            "all_negative_prompts": [body.negative_prompt] * len(result.images),
            "seed": result.seeds[0] if result.seeds else body.seed,
            "all_seeds": result.seeds,
            "width": request_fields["width"],
            "height": request_fields["height"],
            "sampler_name": request_fields["sampler"],
            "cfg_scale": body.cfg_scale,
            "steps": body.steps,
            "batch_size": body.batch_size,
            "sd_model_name": services.image.current_model().name,
            "sd_model_hash": (services.image.current_model().sha256 or "")[:10] or None,
            "denoising_strength": request_fields.get("denoising_strength"),
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
        return dict(prompt=body.prompt, negative_prompt=body.negative_prompt, sampler=sampler_from_body(body),
                    steps=body.steps, cfg_scale=body.cfg_scale, width=body.width, height=body.height,
                    seed=body.seed, batch_count=body.n_iter, batch_size=body.batch_size, save=body.save_images)

    @router.post("/txt2img")
    def txt2img(body: Txt2ImgBody) -> dict:
        from webui.diffusion.types import Txt2ImgRequest

        extra = a1111_fields(body, "txt2img")
        apply_overrides(body)
        fields = {**common_fields(body), **extra}
        return respond(body, run("txt2img", Txt2ImgRequest(**fields)), fields)

    @router.post("/img2img")
    def img2img(body: Img2ImgBody) -> dict:
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
            return respond(body, run("img2img", Img2ImgRequest(**fields)), fields)
        mask = decode_image(body.mask, limits.max_image_pixels, "mask")
        mask = mask.getchannel("A") if mask.mode == "RGBA" else mask.convert("L")
        if body.inpainting_fill not in INPAINTING_FILL:
            raise HTTPException(422, f"inpainting_fill must be 0..3, got {body.inpainting_fill}")
        fields.update(mask=mask, mask_blur=body.mask_blur, inpainting_fill=INPAINTING_FILL[body.inpainting_fill],
                      inpaint_full_res=body.inpaint_full_res,
                      inpaint_full_res_padding=body.inpaint_full_res_padding,
                      invert_mask=bool(body.inpainting_mask_invert))
        return respond(body, run("inpaint", InpaintRequest(**fields)), fields)

    @router.get("/progress")
    def progress(skip_current_image: bool = False) -> dict:
        state = dict(services.image.progress_state())
        image = state.pop("current_image", None)
        state["current_image"] = None if (skip_current_image or image is None) else encode_png(image)
        return state

    @router.post("/interrupt")
    def interrupt() -> dict:
        services.image.interrupt()
        return {}

    @router.post("/skip")
    def skip() -> None:
        services.image.interrupt()
        return None

    @router.get("/sd-models")
    def sd_models() -> list[dict]:
        return [{"title": m.title, "model_name": m.name, "hash": (m.sha256 or "")[:10] or None, "sha256": m.sha256,
                 "filename": str(m.path), "config": None} for m in services.image.list_models()]

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        services.image.list_models()

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
        return {"txt2img": [], "img2img": []}

    @router.post("/png-info")
    def png_info(body: PngInfoBody) -> dict:
        from webui.diffusion.infotext import parse_infotext, read_png_parameters

        image = decode_image(body.image, limits.max_image_pixels, "image")
        text = read_png_parameters(image) or ""
        return {"info": text, "items": {"parameters": text} if text else {},
                "parameters": parse_infotext(text) if text else {}}

    from webui.api_extras import build_extras_router

    router.include_router(build_extras_router(services))  # /extra-*, /upscalers, /face-restorers, ...
    return router


def mount_api(app: FastAPI, services: Services) -> None:
    app.include_router(build_router(services))
