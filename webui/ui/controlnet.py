"""The ControlNet accordion (a reusable component for txt2img, img2img and inpaint).

Each unit has an image input the user can draw on directly or upload into (``gr.ImageEditor``, black
brush on a white canvas), the annotator preview beside it, and the sd-webui-controlnet fields.
The units reach a tab's generate handler through a ``gr.State``: ``ControlNetUI.before(event)``
first copies the widgets into the State (no API endpoint), then runs the tab's handler, so the tab's
API endpoint keeps its own parameters. Tabs read ``values["controlnet"]`` (a tuple of ControlNetUnit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import gradio as gr
import numpy as np
from PIL import Image

from webui.services import Services

N_UNITS = 3
DEFAULT_CONTROLNET = "demo-shapes-sketch"
FIELDS = ("enabled", "image", "module", "model", "weight", "guidance_start", "guidance_end", "control_mode",
          "resize_mode", "pixel_perfect", "processor_res", "threshold_a", "threshold_b")


def editor_image(value: Any) -> Optional[Image.Image]:
    """An ImageEditor value (background + drawn layers) -> one RGB image over white; None when empty."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        img = value
    elif isinstance(value, dict):
        img = value.get("composite")
        if img is None:
            img = value.get("background")
        if img is None:
            return None
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.asarray(img))
    else:
        img = Image.fromarray(np.asarray(value))
    rgba = img.convert("RGBA")
    if rgba.getchannel("A").getextrema()[1] == 0:
        return None  # nothing drawn, nothing uploaded
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


@dataclass
class ControlNetUI:
    units: list = field(default_factory=list)  # one {field name: component} per unit
    previews: list = field(default_factory=list)
    state: Any = None

    def components(self) -> list:
        return [u[name] for u in self.units for name in FIELDS]

    def collect(self, *values) -> tuple:
        from webui.controlnet.units import ControlNetUnit, control_mode_of, resize_mode_of

        units = []
        for i in range(len(self.units)):
            v = dict(zip(FIELDS, values[i * len(FIELDS) : (i + 1) * len(FIELDS)]))
            if not v["enabled"]:
                continue
            image = editor_image(v["image"])
            if image is None:
                raise gr.Error(f"ControlNet unit {i}: draw a sketch or upload an image first")
            units.append(ControlNetUnit(
                enabled=True, module=v["module"], model=v["model"] or "None", weight=float(v["weight"]), image=image,
                resize_mode=resize_mode_of(v["resize_mode"]), processor_res=int(v["processor_res"]),
                threshold_a=float(v["threshold_a"]), threshold_b=float(v["threshold_b"]),
                guidance_start=float(v["guidance_start"]), guidance_end=float(v["guidance_end"]),
                pixel_perfect=bool(v["pixel_perfect"]), control_mode=control_mode_of(v["control_mode"]),
            ))
        return tuple(units)

    def before(self, event):
        """``event`` (e.g. ``button.click``) that first stores the units, returning the ``.then`` to bind the handler to."""
        return event(self.collect, inputs=self.components(), outputs=self.state, api_name=False, queue=False).then


def build(services: Services, tab: str, n_units: int = N_UNITS) -> ControlNetUI:
    """The accordion with ``n_units`` unit tabs; call inside a tab's input column."""
    from webui.controlnet.preprocess import get_module
    from webui.controlnet.units import CONTROL_MODES, RESIZE_MODES

    engine = services.image.controlnet
    titles = engine.model_titles()
    default_model = next((t for t in titles if t.startswith(DEFAULT_CONTROLNET + " [")), titles[0] if titles else None)
    ui = ControlNetUI(state=gr.State(()))
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}_controlnet"):
        for i in range(n_units):
            with gr.Tab(f"ControlNet Unit {i}", elem_id=f"{tab}_controlnet_unit{i}"):
                u: dict = {}
                with gr.Row():
                    u["image"] = gr.ImageEditor(
                        label="Sketch (draw here) or upload an image", type="pil", image_mode="RGBA",
                        sources=("upload", "clipboard"), canvas_size=(512, 512), height=360, layers=False,
                        brush=gr.Brush(default_size=12, colors=["#000000", "#ffffff"], default_color="#000000"),
                        value={"background": Image.new("RGBA", (512, 512), (255, 255, 255, 255)), "layers": [], "composite": None},
                        elem_id=f"{tab}_controlnet_image{i}",
                    )
                    preview = gr.Image(label="Preprocessor preview", type="pil", interactive=False, height=360,
                                       elem_id=f"{tab}_controlnet_preview{i}")
                with gr.Row():
                    u["enabled"] = gr.Checkbox(value=False, label="Enable", elem_id=f"{tab}_controlnet_enable{i}")
                    u["pixel_perfect"] = gr.Checkbox(value=False, label="Pixel Perfect", elem_id=f"{tab}_controlnet_pixel_perfect{i}")
                with gr.Row():
                    u["module"] = gr.Dropdown(engine.module_choices(), value="scribble_drawing", label="Preprocessor",
                                              elem_id=f"{tab}_controlnet_module{i}")
                    u["model"] = gr.Dropdown(titles, value=default_model, label="Model", allow_custom_value=True,
                                             elem_id=f"{tab}_controlnet_model{i}")
                    refresh = gr.Button("🔄", scale=0, min_width=40, elem_id=f"{tab}_controlnet_refresh{i}")
                    run_preview = gr.Button("Preview annotator", scale=0, min_width=120, elem_id=f"{tab}_controlnet_annotate{i}")
                with gr.Row():
                    u["weight"] = gr.Slider(0, 2, value=1.0, step=0.05, label="Control Weight", elem_id=f"{tab}_controlnet_weight{i}")
                    u["guidance_start"] = gr.Slider(0, 1, value=0.0, step=0.01, label="Starting Control Step",
                                                    elem_id=f"{tab}_controlnet_start{i}")
                    u["guidance_end"] = gr.Slider(0, 1, value=1.0, step=0.01, label="Ending Control Step",
                                                  elem_id=f"{tab}_controlnet_end{i}")
                with gr.Row():
                    u["processor_res"] = gr.Slider(64, 2048, value=512, step=8, label="Preprocessor Resolution",
                                                   elem_id=f"{tab}_controlnet_res{i}")
                    u["threshold_a"] = gr.Slider(-1, 255, value=-1, step=0.5, label="Threshold A (-1: the module's default)",
                                                 elem_id=f"{tab}_controlnet_a{i}")
                    u["threshold_b"] = gr.Slider(-1, 255, value=-1, step=0.5, label="Threshold B (-1: the module's default)",
                                                 elem_id=f"{tab}_controlnet_b{i}")
                u["control_mode"] = gr.Radio(list(CONTROL_MODES), value=CONTROL_MODES[0], label="Control Mode",
                                             elem_id=f"{tab}_controlnet_mode{i}")
                u["resize_mode"] = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[1], label="Resize Mode",
                                            elem_id=f"{tab}_controlnet_resize{i}")

                def annotate(image, module, res, a, b):
                    img = editor_image(image)
                    if img is None:
                        raise gr.Error("Draw a sketch or upload an image first")
                    try:
                        return engine.detect(module, [img], int(res), float(a), float(b))[0]
                    except ValueError as e:
                        raise gr.Error(str(e)) from e

                def module_info(module):
                    m = get_module(module)
                    fine = [t is not None and t[3] <= 1 for t in (m.a, m.b)]  # a 0-1 threshold moves in hundredths
                    return (gr.Slider(label=f"{m.a[0]} (-1: {m.a[1]})" if m.a else "Threshold A (unused)",
                                      step=0.01 if fine[0] else 0.5),
                            gr.Slider(label=f"{m.b[0]} (-1: {m.b[1]})" if m.b else "Threshold B (unused)",
                                      step=0.01 if fine[1] else 0.5))

                run_preview.click(annotate, inputs=[u["image"], u["module"], u["processor_res"], u["threshold_a"], u["threshold_b"]],
                                  outputs=preview, api_name=False)
                u["module"].change(module_info, inputs=u["module"], outputs=[u["threshold_a"], u["threshold_b"]],
                                   api_name=False, queue=False)
                refresh.click(lambda: (gr.Dropdown(choices=engine.model_titles()), gr.Dropdown(choices=engine.module_choices())),
                              outputs=[u["model"], u["module"]], api_name=False)
                ui.units.append(u)
                ui.previews.append(preview)
    return ui
