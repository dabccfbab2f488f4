"""The inpaint tab: draw the mask in the browser (or upload one), A1111's inpaint options."""

from __future__ import annotations

from typing import Optional

import gradio as gr
import numpy as np
from PIL import Image

from webui.diffusion.types import INPAINT_FILL_MODES, InpaintRequest
from webui.services import Services
from webui.ui import controlnet
from webui.ui.common import GenerationWidgets, bind, generation_widgets, interrupt_handler, stream_image_job
from webui.ui.uploads import UploadImage, UploadImageMask

INPAINT_AREAS = ("Whole picture", "Only masked")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
DEFAULT_FILL = "latent noise"


def editor_to_image_and_mask(value: Optional[dict]) -> tuple[Optional[Image.Image], Optional[Image.Image]]:
    """gr.ImageMask value {background, layers, composite} -> (RGB image, L mask with white = painted)."""
    if not value or value.get("background") is None:
        return None, None
    background = value["background"]
    image = background.convert("RGB") if isinstance(background, Image.Image) else Image.fromarray(
        np.asarray(background)).convert("RGB")
    painted = np.zeros((image.height, image.width), dtype=bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        arr = np.asarray(layer.convert("RGBA") if isinstance(layer, Image.Image) else layer)
        if arr.ndim == 3 and arr.shape[2] == 4 and arr.shape[:2] == painted.shape:
            painted |= arr[:, :, 3] > 0
    if not painted.any():
        return image, None
    return image, Image.fromarray((painted * 255).astype(np.uint8), mode="L")


def build(services: Services, samplers: list[str], native: int) -> GenerationWidgets:
    extra: dict = {}

    def inputs() -> None:
        extra["editor"] = UploadImageMask(label="Image — paint the area to repaint", type="pil", image_mode="RGBA",
                                       height=360, layers=False, elem_id="inpaint_editor",
                                       brush=gr.Brush(default_size=24, colors=["#ffffff"], color_mode="fixed"))
        extra["mask_upload"] = UploadImage(label="Or upload a mask (white = repaint)", type="pil", image_mode="L",
                                        height=160, elem_id="inpaint_mask_upload")
        with gr.Row():
            extra["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="inpaint_mask_blur")
            extra["mask_mode"] = gr.Radio(list(MASK_MODES), value=MASK_MODES[0], label="Mask mode",
                                          elem_id="inpaint_mask_mode")
        # default "latent noise": on the demo model, "original" at strength 0.75 often leaves the painted area
        # as it was (a red star with "a green square on the right" over its right half stayed a star); with
        # latent noise the area is drawn anew (3 of 3 seeds changed it, mean change 40-164 of 255)
        extra["fill"] = gr.Radio(list(INPAINT_FILL_MODES), value=DEFAULT_FILL, label="Masked content",
                                 info="latent noise: repaint from scratch; original: start from the image "
                                      "(keep its layout); fill: start from the surrounding colours",
                                 elem_id="inpaint_fill")
        with gr.Row():
            extra["area"] = gr.Radio(list(INPAINT_AREAS), value=INPAINT_AREAS[0], label="Inpaint area",
                                     elem_id="inpaint_area")
            extra["padding"] = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels",
                                         elem_id="inpaint_padding")
        extra["strength"] = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                      elem_id="inpaint_strength")

    cn: dict = {}
    w = generation_widgets("inpaint", samplers, native,
                           extra=lambda: (inputs(), cn.update(ui=controlnet.build(services, "inpaint"))),
                           services=services)
    w.extra = extra  # type: ignore[attr-defined]  # used by "send to inpaint"

    async def generate(values: dict, progress: gr.Progress, request: gr.Request):
        image, drawn_mask = editor_to_image_and_mask(values["editor"])
        if image is None:
            raise gr.Error("Inpaint needs an image: upload one into the editor first")
        mask = values["mask_upload"] if values["mask_upload"] is not None else drawn_mask
        if mask is None:
            raise gr.Error("Inpaint needs a mask: paint over the area to repaint, or upload a mask")
        job_request = InpaintRequest(
            image=image,
            mask=mask.convert("L"),
            mask_blur=int(values["mask_blur"]),
            invert_mask=values["mask_mode"] == MASK_MODES[1],
            inpainting_fill=values["fill"],
            inpaint_full_res=values["area"] == INPAINT_AREAS[1],
            inpaint_full_res_padding=int(values["padding"]),
            denoising_strength=float(values["strength"]),
            controlnet_units=values["controlnet"] or (),
            **w.request_kwargs(values),
        )
        async for update in stream_image_job(services, "inpaint", job_request, request, progress):
            yield update

    bind(cn["ui"].before(w.generate.click), generate, {**w.fields(), **extra, "controlnet": cn["ui"].state},
         w.outputs(), "inpaint", progress=True, request=True,
         show_progress_on=w.gallery)
    w.interrupt.click(interrupt_handler(services), api_name=False, queue=False)
    return w
