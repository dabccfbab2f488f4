"""The txt2img tab: widgets -> Txt2ImgRequest -> a txt2img job."""

from __future__ import annotations

import gradio as gr

from webui.diffusion.types import Txt2ImgRequest
from webui.services import Services
from webui.ui import controlnet, hires
from webui.ui.common import GenerationWidgets, bind, generation_widgets, interrupt_handler, stream_image_job


def build(services: Services, samplers: list[str], native: int) -> GenerationWidgets:
    extra: dict = {}
    cn: dict = {}

    def inputs() -> None:
        extra.update(hires.hires_widgets(services, samplers))
        cn.update(ui=controlnet.build(services, "txt2img"))

    w = generation_widgets("txt2img", samplers, native, extra=inputs, services=services)

    async def generate(values: dict, progress: gr.Progress, request: gr.Request):
        job_request = Txt2ImgRequest(**w.request_kwargs(values), **hires.request_fields(values),
                                     controlnet_units=values["controlnet"] or ())
        async for update in stream_image_job(services, "txt2img", job_request, request, progress):
            yield update

    fields = {**w.fields(), **extra, "controlnet": cn["ui"].state}
    bind(cn["ui"].before(w.generate.click), generate, fields, w.outputs(), "txt2img", progress=True, request=True,
         show_progress_on=w.gallery)
    bind(cn["ui"].before(w.prompt.submit), generate, fields, w.outputs(), False, progress=True, request=True,
         show_progress_on=w.gallery)
    w.hires = extra  # type: ignore[attr-defined]  # used by PNG Info's "send to txt2img"
    w.interrupt.click(interrupt_handler(services), api_name="interrupt", queue=False)
    return w
