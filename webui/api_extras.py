"""A1111's Extras routes (``/extra-single-image``, ``/extra-batch-images``) and the lists that go with
them (``/upscalers``, ``/latent-upscale-modes``, ``/face-restorers``), in A1111's request and response
shapes, so ``webuiapi``'s ``extra_single_image`` / ``extra_batch_images`` work unchanged. Included in
``webui.api``'s router (same prefix, same login).
"""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from webui.api import caller
from webui.services import Services


class ExtrasBaseBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    resize_mode: Literal[0, 1] = 0  # 0: by upscaling_resize; 1: to upscaling_resize_w x upscaling_resize_h
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0, ge=0, le=1)
    codeformer_visibility: float = Field(0, ge=0, le=1)
    codeformer_weight: float = Field(0, ge=0, le=1)
    upscaling_resize: float = Field(2, gt=0)
    upscaling_resize_w: int = Field(512, ge=1)
    upscaling_resize_h: int = Field(512, ge=1)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(0, ge=0, le=1)
    upscale_first: bool = False


class ExtrasSingleBody(ExtrasBaseBody):
    image: str = ""


class FileData(BaseModel):
    data: str
    name: str = ""


class ExtrasBatchBody(ExtrasBaseBody):
    imageList: list[FileData]


def build_extras_router(services: Services) -> APIRouter:
    from webui.api import decode_image, encode_png

    router = APIRouter()
    max_pixels = services.config.limits.max_image_pixels

    def run(body: ExtrasBaseBody, images: list, names: list, owner: str):
        from webui.upscale.extras import ExtrasRequest

        request = ExtrasRequest(
            images=tuple(images),
            names=tuple(names),
            resize_mode=body.resize_mode,
            upscaling_resize=body.upscaling_resize,
            upscaling_resize_w=body.upscaling_resize_w,
            upscaling_resize_h=body.upscaling_resize_h,
            upscaling_crop=body.upscaling_crop,
            upscaler_1=body.upscaler_1,
            upscaler_2=body.upscaler_2,
            extras_upscaler_2_visibility=body.extras_upscaler_2_visibility,
            gfpgan_visibility=body.gfpgan_visibility,
            codeformer_visibility=body.codeformer_visibility,
            upscale_first=body.upscale_first,
            save=False,  # A1111's API does not save extras outputs
        )
        try:
            job = services.jobs.run("extras", request, owner=owner)
        except (ValueError, FileNotFoundError) as e:
            raise HTTPException(422, str(e)) from e
        if job.result is None or job.result.value is None or not job.result.value.images:
            raise HTTPException(409, f"the extras job was {job.status.value} before it finished")
        return job.result.value

    @router.post("/extra-single-image")
    def extra_single_image(body: ExtrasSingleBody, owner: str = Depends(caller)) -> dict:
        image = decode_image(body.image, max_pixels, "image")
        result = run(body, [image], [], owner)
        out = encode_png(result.images[0], result.infotexts[0]) if body.show_extras_results else None
        return {"html_info": result.html_info, "image": out}

    @router.post("/extra-batch-images")
    def extra_batch_images(body: ExtrasBatchBody, owner: str = Depends(caller)) -> dict:
        if not body.imageList:
            raise HTTPException(422, "imageList: at least one image is required")
        images = [decode_image(f.data, max_pixels, f"imageList[{i}]") for i, f in enumerate(body.imageList)]
        result = run(body, images, [f.name for f in body.imageList], owner)
        out = [encode_png(im, info) for im, info in zip(result.images, result.infotexts)] if body.show_extras_results else []
        return {"html_info": result.html_info, "images": out}

    @router.get("/upscalers")
    def upscalers() -> list[dict]:
        return [
            {"name": u.name, "model_name": u.path.stem if u.path else None, "model_path": str(u.path) if u.path else None,
             "model_url": None, "scale": u.scale}
            for u in services.upscalers.list()
        ]

    @router.get("/latent-upscale-modes")
    def latent_upscale_modes() -> list[dict]:
        from webui.upscale.registry import LATENT_MODES

        return [{"name": name} for name in LATENT_MODES]

    @router.get("/face-restorers")
    def face_restorers() -> list[dict]:
        from talking_head.enhance import find_weights

        try:
            folder: Optional[str] = str(find_weights(services.config.paths))
        except FileNotFoundError:
            folder = None
        return [{"name": services.extras.faces.name, "cmd_dir": folder}]

    return router
