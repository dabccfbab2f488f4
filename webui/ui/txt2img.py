"""The txt2img tab: widgets -> Txt2ImgRequest -> ImageService.txt2img."""

from __future__ import annotations

import gradio as gr

from webui.diffusion.types import Txt2ImgRequest
from webui.services import Services
from webui.ui import hires
from webui.ui.common import GenerationWidgets, bind, generation_widgets, run_with_progress


def build(services: Services, samplers: list[str], native: int) -> GenerationWidgets:
    extra: dict = {}
    w = generation_widgets("txt2img", samplers, native, extra=lambda: extra.update(hires.hires_widgets(services, samplers)))

    def generate(values: dict, progress: gr.Progress):
        request = Txt2ImgRequest(**w.request_kwargs(values), **hires.request_fields(values))
        yield from run_with_progress(lambda cb: services.image.txt2img(request, progress=cb), progress)

    fields = {**w.fields(), **extra}
    bind(w.generate.click, generate, fields, w.outputs(), "txt2img", progress=True)
    bind(w.prompt.submit, generate, fields, w.outputs(), False, progress=True)
    w.hires = extra  # type: ignore[attr-defined]  # used by PNG Info's "send to txt2img"
    w.interrupt.click(lambda: services.image.interrupt(), api_name="interrupt", queue=False)
    return w
