"""The "Hires. fix" accordion of the txt2img tab (and its "Restore faces" box): widgets -> HiresFix;
infotext keys -> widget updates for PNG Info's "Send to txt2img"."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.diffusion.hires import SAME_SAMPLER
from webui.diffusion.types import HiresFix
from webui.services import Services
from webui.upscale.registry import LATENT_MODES

DEFAULTS = HiresFix()


def upscaler_choices(services: Services) -> list[str]:
    """Latent modes first (A1111's order), then every image upscaler except None."""
    return list(LATENT_MODES) + [n for n in services.upscalers.names() if n != "None"]


def hires_widgets(services: Services, samplers: list[str]) -> dict[str, gr.components.Component]:
    """Built inside the tab's left column; returns the widgets by request-field name."""
    w: dict[str, gr.components.Component] = {}
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hires_fix"):
        w["enable_hr"] = gr.Checkbox(False, label="Enable hires fix", elem_id="txt2img_enable_hr",
                                     info="first pass at Width x Height, upscale, then an img2img pass")
        with gr.Row():
            w["hr_upscaler"] = gr.Dropdown(upscaler_choices(services), value=DEFAULTS.hr_upscaler, label="Upscaler",
                                           elem_id="txt2img_hr_upscaler")
            w["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps (0 = same)",
                                                  elem_id="txt2img_hires_steps")
            w["denoising_strength"] = gr.Slider(0, 1, value=DEFAULTS.denoising_strength, step=0.01,
                                                label="Denoising strength", elem_id="txt2img_denoising_strength")
        with gr.Row():
            w["hr_scale"] = gr.Slider(1, 4, value=DEFAULTS.hr_scale, step=0.05, label="Upscale by",
                                      elem_id="txt2img_hr_scale")
            w["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label="Resize width to", elem_id="txt2img_hr_resize_x")
            w["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label="Resize height to", elem_id="txt2img_hr_resize_y")
        w["hr_sampler_name"] = gr.Dropdown([SAME_SAMPLER] + samplers, value=SAME_SAMPLER, label="Hires sampling method",
                                           elem_id="txt2img_hr_sampler")
        w["hr_prompt"] = gr.Textbox("", label="Hires prompt (empty = same)", lines=1, elem_id="txt2img_hr_prompt")
        w["hr_negative_prompt"] = gr.Textbox("", label="Hires negative prompt (empty = same)", lines=1,
                                             elem_id="txt2img_hr_negative_prompt")
    ok, message = services.image.face_restorer.status()
    w["restore_faces"] = gr.Checkbox(False, label="Restore faces (GFPGAN)", interactive=ok, info=message,
                                     elem_id="txt2img_restore_faces")
    return w


def request_fields(values: dict) -> dict[str, Any]:
    """Widget values -> the Txt2ImgRequest fields ``hires`` and ``restore_faces``."""
    hires = None
    if values["enable_hr"]:
        sampler = values["hr_sampler_name"]
        hires = HiresFix(
            hr_scale=float(values["hr_scale"]),
            hr_resize_x=int(values["hr_resize_x"]),
            hr_resize_y=int(values["hr_resize_y"]),
            hr_upscaler=values["hr_upscaler"],
            hr_second_pass_steps=int(values["hr_second_pass_steps"]),
            denoising_strength=float(values["denoising_strength"]),
            hr_sampler_name=None if sampler in (None, "", SAME_SAMPLER) else sampler,
            hr_prompt=values["hr_prompt"] or "",
            hr_negative_prompt=values["hr_negative_prompt"] or "",
        )
    return {"hires": hires, "restore_faces": bool(values["restore_faces"])}


# infotext key -> (widget name, type)
INFOTEXT_KEYS = {
    "Hires upscale": ("hr_scale", float),
    "Hires resize-1": ("hr_resize_x", int),
    "Hires resize-2": ("hr_resize_y", int),
    "Hires steps": ("hr_second_pass_steps", int),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires sampler": ("hr_sampler_name", str),
    "Hires prompt": ("hr_prompt", str),
    "Hires negative prompt": ("hr_negative_prompt", str),
    "Denoising strength": ("denoising_strength", float),
}


def infotext_updates(params: dict, widgets: dict) -> dict:
    """Parsed infotext -> {widget: value} for the hires widgets (hires is on when the text has hires keys)."""
    updates: dict = {}
    for key, (name, cast) in INFOTEXT_KEYS.items():
        if key in params:
            try:
                updates[widgets[name]] = cast(params[key])
            except (TypeError, ValueError):
                continue
    updates[widgets["enable_hr"]] = any(k.startswith("Hires ") for k in params)
    updates[widgets["restore_faces"]] = "Face restoration" in params
    return updates
