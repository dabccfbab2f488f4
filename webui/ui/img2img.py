"""The img2img tab: input image, resize mode and denoising strength on top of the shared widgets."""

from __future__ import annotations

import gradio as gr

from webui.diffusion.types import RESIZE_MODES, Img2ImgRequest
from webui.services import Services
from webui.ui import controlnet
from webui.ui.common import GenerationWidgets, bind, generation_widgets, interrupt_handler, stream_image_job
from webui.ui.uploads import UploadImage


def build(services: Services, samplers: list[str], native: int) -> GenerationWidgets:
    extra: dict = {}

    def inputs() -> None:
        extra["image"] = UploadImage(label="Input image", type="pil", image_mode="RGB", height=300,
                                  elem_id="img2img_image")
        extra["resize_mode"] = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], type="index",
                                        label="Resize mode", elem_id="img2img_resize_mode")
        extra["strength"] = gr.Slider(0, 1, value=0.75, step=0.01, label="Denoising strength",
                                      info="0 returns the input, 1 ignores it", elem_id="img2img_strength")

    cn: dict = {}
    w = generation_widgets("img2img", samplers, native,
                           extra=lambda: (inputs(), cn.update(ui=controlnet.build(services, "img2img"))),
                           services=services)

    async def generate(values: dict, progress: gr.Progress, request: gr.Request):
        if values["image"] is None:
            raise gr.Error("img2img needs an input image: upload one first")
        job_request = Img2ImgRequest(
            image=values["image"],
            resize_mode=int(values["resize_mode"] or 0),
            denoising_strength=float(values["strength"]),
            controlnet_units=values["controlnet"] or (),
            **w.request_kwargs(values),
        )
        async for update in stream_image_job(services, "img2img", job_request, request, progress):
            yield update

    bind(cn["ui"].before(w.generate.click), generate, {**w.fields(), **extra, "controlnet": cn["ui"].state},
         w.outputs(), "img2img", progress=True, request=True,
         show_progress_on=w.gallery)
    w.interrupt.click(interrupt_handler(services), api_name=False, queue=False)
    w.extra = extra  # type: ignore[attr-defined]  # used by "send to img2img"
    return w
