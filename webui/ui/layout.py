"""The whole web UI: model bar on top, one tab per file in this package."""

from __future__ import annotations

import gradio as gr

from webui.diffusion.samplers import SAMPLER_NAMES
from webui.services import Services
from webui.ui import extras, history, img2img, inpaint, pnginfo, settings, talking_head, txt2img
from webui.ui.common import guard
from webui.ui.i18n import CURRENT_JS, language_switch, translate_blocks
from webui.ui.sendto import wire_send_to

TITLE = "SD Talking Studio"
PLACEHOLDER_NOTE = ("⚠️ **{name} is a placeholder with random weights**: images will be noise. "
                    "Drop a real model into `models/Stable-diffusion/`.")


def model_banner(services: Services) -> str:
    info = services.image.current_model()
    if info.is_placeholder:
        return PLACEHOLDER_NOTE.format(name=info.name)
    return f"Model: **{info.title}**"


def selected_index(evt: gr.SelectData) -> int:
    return evt.index


def build_ui(services: Services) -> gr.Blocks:
    image = services.image
    samplers = list(SAMPLER_NAMES)
    native = image.native_size()
    current = image.current_model()
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        with gr.Row():
            model = gr.Dropdown([m.title for m in image.list_models()], value=current.title,
                                label="Stable Diffusion checkpoint", scale=4, elem_id="model_dropdown")
            refresh = gr.Button("Refresh", scale=0, min_width=80, elem_id="model_refresh")
            switch = language_switch()
        banner = gr.Markdown(model_banner(services), elem_id="model_banner")

        def select_model(title: str) -> str:
            image.load_model(title)
            return model_banner(services)

        def refresh_models():
            return gr.Dropdown(choices=[m.title for m in image.list_models()])

        model.change(guard(select_model), inputs=model, outputs=banner, api_name="select_model")
        refresh.click(refresh_models, outputs=model, api_name=False)

        with gr.Tabs() as tabs:
            with gr.Tab("txt2img", id="txt2img"):
                t2i = txt2img.build(services, samplers, native)
            with gr.Tab("img2img", id="img2img"):
                i2i = img2img.build(services, samplers, native)
            with gr.Tab("Inpaint", id="inpaint"):
                inp = inpaint.build(services, samplers, native)
            with gr.Tab("Extras", id="extras"):
                extras.build(services)
            with gr.Tab("Talking head", id="talking_head"):
                talking_head.build(services)
            with gr.Tab("History", id="history") as history_tab:
                targets = history.SendTargets(tabs=tabs, txt2img=t2i, img2img=i2i, img2img_image=i2i.extra["image"],
                                              inpaint=inp, inpaint_editor=inp.extra["editor"],
                                              talk_image=component_by_elem_id(demo, "talk_image"))
                history.build(services, targets, history_tab)
            with gr.Tab("PNG Info", id="pnginfo"):
                png = pnginfo.build(t2i, tabs, "txt2img")
            with gr.Tab("Settings", id="settings"):
                settings.build(services)

        def cancel_session_jobs(request: gr.Request) -> None:
            """A closed tab (its heartbeat ends): its queued and running jobs are cancelled in the engine."""
            if request is not None and request.session_hash:
                services.jobs.cancel_session(request.session_hash)

        demo.unload(cancel_session_jobs)

        # "Send to" under every result and in PNG Info (webui.ui.sendto.SEND_TARGETS lists the targets)
        prompt_targets = {"img2img": (i2i.prompt, i2i.negative_prompt), "inpaint": (inp.prompt, inp.negative_prompt)}
        for w in (t2i, i2i, inp):
            selected = gr.State(None)
            w.gallery.select(selected_index, inputs=None, outputs=selected, api_name=False, queue=False)
            wire_send_to(demo, tabs, w.send_to, w.gallery, index_state=selected, prompt=w.prompt,
                         negative=w.negative_prompt, prompt_targets=prompt_targets)
        wire_send_to(demo, tabs, png.send_to, png.upload)
        pnginfo.wire_send_parameters(png, {"img2img": i2i, "inpaint": inp})
        # every label / help text / choice in the chosen language (webui.ui.i18n holds the strings)
        translate_blocks(demo)
        demo.load(None, inputs=None, outputs=switch, js=CURRENT_JS, api_name=False, queue=False)
    return demo


def component_by_elem_id(demo: gr.Blocks, elem_id: str):
    """A component built by another tab's file, found by its elem_id (None if that tab has no such widget)."""
    return next((b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id), None)
