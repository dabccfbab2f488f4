"""The sd-webui-controlnet extension's routes (``/controlnet/*``), so its clients (webuiapi) work unchanged.

- GET ``/controlnet/version`` -> ``{"version": 3}`` (the extension's API version);
- GET ``/controlnet/model_list`` -> ``{"model_list": ["name [hash8]", ...]}`` from models/ControlNet/;
- GET ``/controlnet/module_list`` -> ``{"module_list": [...], "module_detail": {...}}``;
- POST ``/controlnet/detect`` with ``controlnet_module``, ``controlnet_input_images`` (webuiapi sends
  ``controlnet_images``), ``controlnet_processor_res``, ``controlnet_threshold_a/b`` ->
  ``{"images": [base64 PNG], "info": "Success"}``.
Bad input is a 422 naming it. Units themselves arrive in txt2img/img2img ``alwayson_scripts``.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict

from webui.services import Services

API_VERSION = 3


class DetectBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    controlnet_module: str = "none"
    controlnet_input_images: list[str] = []
    controlnet_images: list[str] = []  # webuiapi's name for the same field
    controlnet_processor_res: int = -1
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    controlnet_masks: Optional[list[Any]] = None
    low_vram: bool = False


def module_detail(annotators=None) -> dict:
    """The extension's ``module_detail``; ``needs`` says what a module still needs (``annotators``: where
    the depth/normal modules' models are looked up)."""
    from webui.controlnet.preprocess import MODULE_LIST, missing_file

    detail = {}
    for m in MODULE_LIST:
        need = missing_file(m, annotators)
        sliders = []
        if m.uses_resolution and m.run is not None:
            sliders.append({"name": "Preprocessor Resolution", "value": 512, "min": 64, "max": 2048})
        for t in (m.a, m.b):
            if t:
                sliders.append({"name": t[0], "value": t[1], "min": t[2], "max": t[3]})
        free = not (m.needs or m.annotator)
        detail[m.name] = {"model_free": free, "sliders": sliders, **({"needs": need} if need else {})}
    return detail


def build_controlnet_router(services: Services) -> APIRouter:
    from webui.api import decode_image, encode_png

    router = APIRouter(prefix="/controlnet")
    limits = services.config.limits

    @router.get("/version")
    def version() -> dict:
        return {"version": API_VERSION}

    @router.get("/model_list")
    def model_list(update: bool = True) -> dict:
        return {"model_list": services.image.controlnet.model_titles()}

    @router.get("/module_list")
    def module_list(alias_names: bool = False) -> dict:
        from webui.controlnet.preprocess import MODULE_LIST

        return {"module_list": [m.name for m in MODULE_LIST], "module_detail": module_detail(services.image.controlnet.annotators)}

    @router.post("/detect")
    def detect(body: DetectBody) -> dict:
        from webui.controlnet.preprocess import get_module

        encoded = body.controlnet_input_images or body.controlnet_images
        try:
            get_module(body.controlnet_module)
        except ValueError as e:
            raise HTTPException(422, str(e)) from e
        if not encoded:
            raise HTTPException(422, "No image selected: controlnet_input_images is empty")
        images = [decode_image(data, limits.max_image_pixels, f"controlnet_input_images[{i}]") for i, data in enumerate(encoded)]
        res = body.controlnet_processor_res if body.controlnet_processor_res > 0 else 512
        try:
            maps = services.image.controlnet.detect(
                body.controlnet_module, images, res, body.controlnet_threshold_a, body.controlnet_threshold_b
            )
        except ValueError as e:
            raise HTTPException(422, str(e)) from e
        return {"images": [encode_png(m) for m in maps], "info": "Success"}

    return router
