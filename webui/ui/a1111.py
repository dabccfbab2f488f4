"""The A1111 pieces of an image tab: seed row (🎲 random, ♻ reuse, "Extra" variation seed), styles, Script.

Each builder makes its widgets and returns them by name; ``request_fields`` turns their values into
request keyword arguments. gradio only; the engine does the work (webui.diffusion.noise / xyz, webui.styles).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import gradio as gr

RANDOM_SYMBOL = "🎲"
REUSE_SYMBOL = "♻"
SCRIPTS = ("None", "X/Y/Z plot")
MAX_SEED = 2**32 - 1


@dataclass
class SeedWidgets:
    seed: gr.Number
    random: gr.Button
    reuse: gr.Button
    extra: gr.Checkbox
    subseed: gr.Number
    subseed_strength: gr.Slider
    resize_w: gr.Slider
    resize_h: gr.Slider

    def fields(self) -> dict:
        return {"seed": self.seed, "extra_seed": self.extra, "subseed": self.subseed,
                "subseed_strength": self.subseed_strength, "seed_resize_from_w": self.resize_w,
                "seed_resize_from_h": self.resize_h}


def seed_row(tab: str) -> SeedWidgets:
    """Seed + 🎲 (back to -1, random) + ♻ (the last image's seed) + "Extra": A1111's variation options."""
    with gr.Row(equal_height=True):
        seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id=f"{tab}_seed", scale=4)
        rnd = gr.Button(RANDOM_SYMBOL, elem_id=f"{tab}_random_seed", scale=0, min_width=40)
        reuse = gr.Button(REUSE_SYMBOL, elem_id=f"{tab}_reuse_seed", scale=0, min_width=40)
        extra = gr.Checkbox(label="Extra", value=False, elem_id=f"{tab}_subseed_show", scale=1)
    with gr.Group(visible=False) as extra_box:
        with gr.Row():
            subseed = gr.Number(value=-1, precision=0, label="Variation seed", elem_id=f"{tab}_subseed")
            strength = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                 elem_id=f"{tab}_subseed_strength")
        with gr.Row():
            resize_w = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                 elem_id=f"{tab}_seed_resize_from_w")
            resize_h = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height",
                                 elem_id=f"{tab}_seed_resize_from_h")
    extra.change(lambda on: gr.Group(visible=bool(on)), inputs=extra, outputs=extra_box, api_name=False,
                 queue=False, show_progress="hidden")
    rnd.click(lambda: -1, outputs=seed, api_name=False, queue=False, show_progress="hidden")
    return SeedWidgets(seed, rnd, reuse, extra, subseed, strength, resize_w, resize_h)


def wire_reuse_seed(widgets: SeedWidgets, info: gr.Textbox) -> None:
    """♻ reads the seed (and variation seed) of the last result from its generation info."""
    def reuse(text: str):
        # the info box holds the first image's infotext plus lines such as "Saved: ..."
        seed = re.search(r"(?:^|, )Seed: (\d+)", text or "", re.M)
        if seed is None:
            raise gr.Error("No image yet: generate one first, then ♻ reuses its seed")
        sub = re.search(r"Variation seed: (\d+)", text or "")
        return int(seed.group(1)), (int(sub.group(1)) if sub else gr.skip())

    widgets.reuse.click(reuse, inputs=info, outputs=[widgets.seed, widgets.subseed], api_name=False, queue=False,
                        show_progress="hidden")


def seed_request_fields(values: dict) -> dict[str, Any]:
    """Widget values -> the request's variation fields (all off unless "Extra" is ticked)."""
    if not values.get("extra_seed"):
        return {}
    sub = values.get("subseed")
    return dict(subseed=-1 if sub is None else int(sub), subseed_strength=float(values.get("subseed_strength") or 0),
                seed_resize_from_w=int(values.get("seed_resize_from_w") or 0),
                seed_resize_from_h=int(values.get("seed_resize_from_h") or 0))


def random_seed() -> int:
    return random.randrange(MAX_SEED + 1)


# ------------------------------------------------------------------------------------------------ styles
def styles_row(tab: str, services, prompt: gr.Textbox, negative: gr.Textbox) -> gr.Dropdown:
    """Styles from styles.csv (applied at generation), ✎ write them into the prompts, 💾 save the prompts."""
    store = services.image.styles
    with gr.Row():
        styles = gr.Dropdown(store.names(), value=[], multiselect=True, label="Styles", scale=4,
                             elem_id=f"{tab}_styles", info=f"from {store.path.name}; applied when generating")
        with gr.Column(scale=0, min_width=120):
            apply = gr.Button("Apply to prompt", size="sm", elem_id=f"{tab}_style_apply")
            refresh = gr.Button("Reload styles", size="sm", elem_id=f"{tab}_style_refresh")
    with gr.Accordion("Save the prompts as a style", open=False):
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Style name", elem_id=f"{tab}_style_name", scale=4)
            save = gr.Button("💾 Save style", elem_id=f"{tab}_style_save", scale=1)

    def apply_styles(names, p, n):
        try:
            p, n = store.apply(names or [], p or "", n or "")
        except ValueError as e:
            raise gr.Error(str(e)) from e
        return p, n, []

    def save_style(style_name, p, n):
        from webui.styles import PromptStyle

        try:
            store.save(PromptStyle((style_name or "").strip(), p or "", n or ""))
        except ValueError as e:
            raise gr.Error(str(e)) from e
        gr.Info(f"Saved style {style_name.strip()!r} to {store.path}")
        return gr.Dropdown(choices=store.names())

    apply.click(apply_styles, inputs=[styles, prompt, negative], outputs=[prompt, negative, styles], api_name=False)
    refresh.click(lambda: gr.Dropdown(choices=store.names()), outputs=styles, api_name=False)
    save.click(save_style, inputs=[name, prompt, negative], outputs=styles, api_name=False)
    return styles


# ------------------------------------------------------------------------------------------------ scripts
@dataclass
class ScriptWidgets:
    script: gr.Dropdown
    x_type: gr.Dropdown
    x_values: gr.Textbox
    y_type: gr.Dropdown
    y_values: gr.Textbox
    z_type: gr.Dropdown
    z_values: gr.Textbox
    draw_legend: gr.Checkbox
    include_lone_images: gr.Checkbox
    no_fixed_seeds: gr.Checkbox
    x_values_dropdown: gr.Dropdown | None = None  # the values of axes with fixed choices (sampler, checkpoint...)
    y_values_dropdown: gr.Dropdown | None = None
    z_values_dropdown: gr.Dropdown | None = None

    def fields(self) -> dict:
        fields = {"script": self.script, "xyz_x_type": self.x_type, "xyz_x_values": self.x_values,
                  "xyz_y_type": self.y_type, "xyz_y_values": self.y_values, "xyz_z_type": self.z_type,
                  "xyz_z_values": self.z_values, "xyz_draw_legend": self.draw_legend,
                  "xyz_include_lone_images": self.include_lone_images, "xyz_no_fixed_seeds": self.no_fixed_seeds}
        for axis in "xyz":
            drop = getattr(self, f"{axis}_values_dropdown")
            if drop is not None:
                fields[f"xyz_{axis}_values_dropdown"] = drop
        return fields


def axis_choices(services, label: str) -> list[str] | None:
    """The fixed values of an X/Y/Z axis (A1111 shows a dropdown for these), None for free-text axes."""
    from webui.diffusion.samplers import SAMPLER_NAMES
    from webui.diffusion.xyz import BOOL_CHOICES

    if services is None:
        return None
    if label in ("Sampler", "Hires sampler"):
        return list(SAMPLER_NAMES)
    if label == "Checkpoint name":
        return [m.title for m in services.image.list_models()]
    if label == "VAE":
        return ["None"] + services.image.list_vaes()
    if label == "Styles":
        return services.image.styles.names()
    if label == "Hires upscaler":
        from webui.ui.hires import upscaler_choices

        return upscaler_choices(services)
    if label == "Face restore":
        return list(BOOL_CHOICES)
    return None


def script_panel(tab: str, services=None) -> ScriptWidgets:
    """A1111's "Script" dropdown with the X/Y/Z plot (values: "1-5", "7, 9", "1-9 (+2)", "1-10 [4]"; axes with
    fixed choices, e.g. sampler, checkpoint, styles, pick their values from a dropdown)."""
    from webui.diffusion.xyz import supported_labels

    labels = supported_labels("txt2img" if tab == "txt2img" else "img2img")
    script = gr.Dropdown(list(SCRIPTS), value=SCRIPTS[0], label="Script", elem_id=f"{tab}_script")
    with gr.Group(visible=False) as box:
        rows, drops = [], []
        for axis, default in (("X", "Seed"), ("Y", "Nothing"), ("Z", "Nothing")):
            with gr.Row():
                kind = gr.Dropdown(labels, value=default, label=f"{axis} type", elem_id=f"{tab}_xyz_{axis.lower()}_type")
                values = gr.Textbox(value="", label=f"{axis} values", elem_id=f"{tab}_xyz_{axis.lower()}_values",
                                    placeholder="e.g. 1-5, or 7, 9, or Euler a, DDIM")
                drop = gr.Dropdown([], value=[], multiselect=True, label=f"{axis} values", visible=False,
                                   elem_id=f"{tab}_xyz_{axis.lower()}_values_dropdown")

            def switch(label: str):
                choices = axis_choices(services, label)
                if choices is None:
                    return gr.Textbox(visible=True), gr.Dropdown(choices=[], value=[], visible=False)
                return gr.Textbox(visible=False), gr.Dropdown(choices=choices, value=[], visible=True)

            kind.change(switch, inputs=kind, outputs=[values, drop], api_name=False, queue=False,
                        show_progress="hidden")
            rows += [kind, values]
            drops.append(drop)
        with gr.Row():
            legend = gr.Checkbox(value=True, label="Draw legend", elem_id=f"{tab}_xyz_draw_legend")
            lone = gr.Checkbox(value=False, label="Include sub images", elem_id=f"{tab}_xyz_include_lone_images")
            keep = gr.Checkbox(value=False, label="Keep -1 for seeds", elem_id=f"{tab}_xyz_no_fixed_seeds")
    script.change(lambda s: gr.Group(visible=s == SCRIPTS[1]), inputs=script, outputs=box, api_name=False,
                  queue=False, show_progress="hidden")
    return ScriptWidgets(script, *rows, legend, lone, keep, *drops)


def script_request_fields(values: dict) -> dict[str, Any]:
    """The Script widgets -> ``script=XYZArgs(...)`` (or nothing when the script is None)."""
    if values.get("script") != SCRIPTS[1]:
        return {}
    from webui.diffusion.xyz import XYZArgs

    drops = {f"{a}_values_dropdown": tuple(values.get(f"xyz_{a}_values_dropdown") or ()) for a in "xyz"}
    return {"script": XYZArgs(
        x_type=values["xyz_x_type"], x_values=values["xyz_x_values"] or "",
        y_type=values["xyz_y_type"], y_values=values["xyz_y_values"] or "",
        z_type=values["xyz_z_type"], z_values=values["xyz_z_values"] or "",
        draw_legend=bool(values["xyz_draw_legend"]), include_lone_images=bool(values["xyz_include_lone_images"]),
        no_fixed_seeds=bool(values["xyz_no_fixed_seeds"]), **drops)}
