"""The Extras tab: one image, a batch of uploads or a folder -> upscaler 1 (+ upscaler 2 blended by its
visibility), scale by a factor or to a size, GFPGAN with its visibility -> ExtrasService.run."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui.services import Services
from webui.ui.common import bind, submit_job, wait_for_job
from webui.upscale.extras import RESIZE_BY, RESIZE_TO, ExtrasRequest, load_folder

SOURCES = ("Single image", "Batch process", "Batch from directory")
RESIZE_TABS = ("Scale by", "Scale to")


def _inputs(values: dict, max_pixels: int) -> tuple[list, list]:
    from webui.uploads import open_image_file

    source = values["source"]
    if source == SOURCES[0]:
        if values["image"] is None:
            raise ValueError("upload an image first")
        return [values["image"]], []
    if source == SOURCES[1]:
        files = values["files"] or []
        if not files:
            raise ValueError("upload one or more images first")
        paths = [Path(getattr(f, "name", f)) for f in files]
        return [open_image_file(p, max_pixels=max_pixels) for p in paths], [p.name for p in paths]
    if not (values["folder"] or "").strip():
        raise ValueError("type the input folder's path first")
    return load_folder(Path(values["folder"].strip()), max_pixels)


def build(services: Services) -> None:
    names = services.upscalers.names()
    default = next((n for n in names if n.startswith("StudioCompact-x4")), "Lanczos")
    faces_ok, faces_message = services.extras.faces.status()
    w: dict = {}
    with gr.Row():
        with gr.Column(scale=1):
            w["source"] = gr.Radio(list(SOURCES), value=SOURCES[0], label="Input", elem_id="extras_source")
            w["image"] = gr.Image(label="Source", type="pil", image_mode="RGB", height=300, elem_id="extras_image")
            w["files"] = gr.File(label="Batch process", file_count="multiple", file_types=["image"], visible=False,
                                 elem_id="extras_files")
            w["folder"] = gr.Textbox(label="Input directory", placeholder="/path/to/images", visible=False,
                                     elem_id="extras_folder")
            run = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            w["resize_mode"] = gr.Radio(list(RESIZE_TABS), value=RESIZE_TABS[0], type="index", label="Resize",
                                        elem_id="extras_resize_mode")
            with gr.Row():
                w["upscaling_resize"] = gr.Slider(1, 8, value=4, step=0.05, label="Scale by", elem_id="extras_scale_by")
                w["upscaling_resize_w"] = gr.Number(512, precision=0, label="Width", visible=False, elem_id="extras_width")
                w["upscaling_resize_h"] = gr.Number(512, precision=0, label="Height", visible=False, elem_id="extras_height")
                w["upscaling_crop"] = gr.Checkbox(True, label="Crop to fit", visible=False, elem_id="extras_crop")
            with gr.Row():
                w["upscaler_1"] = gr.Dropdown(names, value=default, label="Upscaler 1", elem_id="extras_upscaler_1")
                w["upscaler_2"] = gr.Dropdown(names, value="None", label="Upscaler 2", elem_id="extras_upscaler_2")
            w["upscaler_2_visibility"] = gr.Slider(0, 1, value=0, step=0.01, label="Upscaler 2 visibility",
                                                   elem_id="extras_upscaler_2_visibility")
            w["gfpgan_visibility"] = gr.Slider(0, 1, value=0, step=0.01, label="GFPGAN visibility",
                                               info=faces_message, interactive=faces_ok,
                                               elem_id="extras_gfpgan_visibility")
            w["upscale_first"] = gr.Checkbox(False, label="Upscale before restoring faces", elem_id="extras_upscale_first")
        with gr.Column(scale=1):
            gallery = gr.Gallery(label="Result", columns=2, height=420, format="png", elem_id="extras_gallery")
            info = gr.Textbox(label="Info", lines=3, interactive=False, elem_id="extras_info")

    def show_source(source: str):
        return [gr.update(visible=source == s) for s in SOURCES]

    def show_resize(mode: int):
        by = mode == RESIZE_BY
        return [gr.update(visible=by)] + [gr.update(visible=not by)] * 3

    w["source"].change(show_source, inputs=w["source"], outputs=[w["image"], w["files"], w["folder"]], api_name=False)
    w["resize_mode"].change(show_resize, inputs=w["resize_mode"],
                            outputs=[w["upscaling_resize"], w["upscaling_resize_w"], w["upscaling_resize_h"],
                                     w["upscaling_crop"]], api_name=False)

    async def process(values: dict, progress: gr.Progress, request: gr.Request):
        try:
            images, image_names = _inputs(values, services.config.limits.max_image_pixels)
            extras_request = ExtrasRequest(
                images=tuple(images),
                names=tuple(image_names),
                resize_mode=RESIZE_TO if values["resize_mode"] == RESIZE_TO else RESIZE_BY,
                upscaling_resize=float(values["upscaling_resize"]),
                upscaling_resize_w=int(values["upscaling_resize_w"] or 0),
                upscaling_resize_h=int(values["upscaling_resize_h"] or 0),
                upscaling_crop=bool(values["upscaling_crop"]),
                upscaler_1=values["upscaler_1"],
                upscaler_2=values["upscaler_2"],
                extras_upscaler_2_visibility=float(values["upscaler_2_visibility"]),
                gfpgan_visibility=float(values["gfpgan_visibility"]),
                upscale_first=bool(values["upscale_first"]),
            )
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from e
        job = await submit_job(services, "extras", extras_request, request)
        result = await wait_for_job(services.jobs, job, progress, request)
        size = f"{result.images[0].width}x{result.images[0].height}"
        text = f"{len(result.images)} image(s), {size}\n{result.html_info}"
        if result.paths:
            text += f"\nSaved: {result.paths[0].parent}"
        return result.images, text

    bind(run.click, process, w, [gallery, info], "extras", progress=True, request=True)
