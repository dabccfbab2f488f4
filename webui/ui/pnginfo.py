"""The PNG Info tab: read the A1111 ``parameters`` text of any PNG and send it to txt2img."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from PIL import Image

from webui.diffusion.infotext import parse_infotext, read_png_parameters
from webui.ui import hires
from webui.ui.common import GenerationWidgets, guard
from webui.ui.sendto import send_to_buttons
from webui.ui.uploads import UploadImage


def read_info(path: str | None) -> tuple[str, dict]:
    if not path:
        return "", {}
    try:
        with Image.open(path) as image:
            text = read_png_parameters(image)
    except OSError as e:
        raise ValueError(f"not a readable image: {e}") from e
    if not text:
        return "This image has no generation parameters.", {}
    return text, parse_infotext(text)


def fields_for_txt2img(params: dict, w: GenerationWidgets) -> dict:
    """Parsed infotext -> updates of the txt2img widgets (only the keys present)."""
    updates: dict = {}
    mapping = {
        "Prompt": (w.prompt, str),
        "Negative prompt": (w.negative_prompt, str),
        "Sampler": (w.sampler, str),
        "Steps": (w.steps, int),
        "CFG scale": (w.cfg_scale, float),
        "Seed": (w.seed, int),
        "Size-1": (w.width, int),
        "Size-2": (w.height, int),
        "Variation seed": (w.seeds.subseed, int),
        "Variation seed strength": (w.seeds.subseed_strength, float),
        "Seed resize from-1": (w.seeds.resize_w, int),
        "Seed resize from-2": (w.seeds.resize_h, int),
    }
    for key, (widget, cast) in mapping.items():
        if key in params:
            try:
                updates[widget] = cast(params[key])
            except (TypeError, ValueError):
                continue
    if any(k in params for k in ("Variation seed", "Seed resize from-1")):
        updates[w.seeds.extra] = True  # show the "Extra" seed options that the image used
    if "Sampler" in params and params.get("Schedule type") not in (None, "Automatic", "Uniform"):
        updates[w.sampler] = f"{params['Sampler']} {params['Schedule type']}"
    return updates


@dataclass
class PngInfoWidgets:
    upload: gr.Image
    send_to: dict[str, gr.Button]  # img2img / inpaint, wired by the layout (webui.ui.sendto)


def build(txt2img: GenerationWidgets, tabs: gr.Tabs, txt2img_tab_id: str) -> PngInfoWidgets:
    with gr.Row():
        with gr.Column():
            upload = UploadImage(label="Source PNG", type="filepath", height=360, elem_id="pnginfo_image")
        with gr.Column():
            text = gr.Textbox(label="Parameters", lines=8, interactive=False, elem_id="pnginfo_text")
            parsed = gr.JSON(label="Parsed", elem_id="pnginfo_json")
            with gr.Row():
                send = gr.Button("Send to txt2img", elem_id="pnginfo_send_txt2img")
                send_to = send_to_buttons("pnginfo", only=("img2img", "inpaint"))
    upload.change(guard(read_info), inputs=upload, outputs=[text, parsed], api_name="png_info")

    hires_widgets = getattr(txt2img, "hires", {})
    targets = [txt2img.prompt, txt2img.negative_prompt, txt2img.sampler, txt2img.steps, txt2img.cfg_scale,
               txt2img.seed, txt2img.width, txt2img.height, txt2img.seeds.extra, txt2img.seeds.subseed,
               txt2img.seeds.subseed_strength, txt2img.seeds.resize_w, txt2img.seeds.resize_h] + list(hires_widgets.values())

    def send_to_txt2img(params: dict):
        updates = fields_for_txt2img(params or {}, txt2img)
        if hires_widgets:
            updates.update(hires.infotext_updates(params or {}, hires_widgets))
        return [gr.update(value=updates[t]) if t in updates else gr.skip() for t in targets] + [
            gr.Tabs(selected=txt2img_tab_id)]

    send.click(send_to_txt2img, inputs=parsed, outputs=targets + [tabs], api_name=False)
    return PngInfoWidgets(upload, send_to)
