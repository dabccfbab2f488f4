"""The PNG Info tab: read the A1111 ``parameters`` text of any PNG and send it, with its prompt and
parameters, to txt2img, img2img or inpaint."""

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
    """Parsed infotext -> updates of a tab's generation widgets (txt2img, img2img, inpaint; only the keys present)."""
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


def generation_targets(w: GenerationWidgets) -> list:
    """The widgets ``fields_for_txt2img`` may update, in a fixed order (a handler's outputs)."""
    return [w.prompt, w.negative_prompt, w.sampler, w.steps, w.cfg_scale, w.seed, w.width, w.height, w.seeds.extra,
            w.seeds.subseed, w.seeds.subseed_strength, w.seeds.resize_w, w.seeds.resize_h]


def parameter_updates(params: dict | None, w: GenerationWidgets, targets: list) -> list:
    updates = fields_for_txt2img(params or {}, w)
    return [gr.update(value=updates[t]) if t in updates else gr.skip() for t in targets]


@dataclass
class PngInfoWidgets:
    upload: gr.Image
    send_to: dict[str, gr.Button]  # img2img / inpaint, wired by the layout (webui.ui.sendto)
    parsed: gr.JSON  # the parsed parameters of the uploaded PNG


def wire_send_parameters(png: PngInfoWidgets, widgets: dict[str, GenerationWidgets]) -> None:
    """PNG Info -> img2img / inpaint: besides the image (webui.ui.sendto wires that), the prompt, negative
    prompt, seed (and variation seed), steps, sampler, CFG scale and size, as PNG Info -> txt2img does."""
    for tab_id, w in widgets.items():
        button = png.send_to.get(tab_id)
        if button is None:
            continue
        targets = generation_targets(w)
        button.click(lambda params, _w=w, _t=targets: parameter_updates(params, _w, _t), inputs=png.parsed,
                     outputs=targets, api_name=False)


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
    targets = generation_targets(txt2img) + list(hires_widgets.values())

    def send_to_txt2img(params: dict):
        updates = fields_for_txt2img(params or {}, txt2img)
        if hires_widgets:
            updates.update(hires.infotext_updates(params or {}, hires_widgets))
        return [gr.update(value=updates[t]) if t in updates else gr.skip() for t in targets] + [
            gr.Tabs(selected=txt2img_tab_id)]

    send.click(send_to_txt2img, inputs=parsed, outputs=targets + [tabs], api_name=False)
    return PngInfoWidgets(upload, send_to, parsed)
