"""The Talking head tab: portrait + speech -> MP4, with the SadTalker options users know."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui.services import Services
from webui.ui.common import bind, submit_job, wait_for_job

PREPROCESS_MODES = ("crop", "extcrop", "resize", "full", "extfull")
ENGINES = ("auto", "default", "sadtalker")


def build(services: Services) -> None:
    from talking_head.enhance import gfpgan_status

    gfpgan_ok, gfpgan_message = gfpgan_status(services.config.paths)
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Source image", type="filepath", height=300, elem_id="talk_image")
            audio = gr.Audio(label="Input audio (upload or record)", sources=["upload", "microphone"],
                             type="filepath", elem_id="talk_audio")
            generate = gr.Button("Generate", variant="primary", elem_id="talk_generate")
            with gr.Accordion("Settings", open=True):
                pose_style = gr.Slider(0, 45, value=0, step=1, label="Pose style", elem_id="talk_pose_style")
                with gr.Row():
                    size = gr.Radio([256, 512], value=256, label="Face model resolution", elem_id="talk_size")
                    preprocess = gr.Radio(list(PREPROCESS_MODES), value="crop", label="Preprocess",
                                          elem_id="talk_preprocess")
                with gr.Row():
                    still = gr.Checkbox(label="Still mode (fewer head motion, works with preprocess full)",
                                        elem_id="talk_still")
                    blink = gr.Checkbox(value=True, label="Eye blink", elem_id="talk_blink")
                expression_scale = gr.Slider(0, 3, value=1.0, step=0.1, label="Expression scale",
                                             elem_id="talk_expression_scale")
                enhancer = gr.Checkbox(label="GFPGAN as face enhancer", info=gfpgan_message,
                                       interactive=gfpgan_ok, elem_id="talk_gfpgan")
                with gr.Row():
                    engine = gr.Radio(list(ENGINES), value="auto", label="Engine", elem_id="talk_engine",
                                      info="auto uses SadTalker when its checkpoints are in checkpoints/")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="talk_seed")
        with gr.Column():
            video = gr.Video(label="Generated video", elem_id="talk_video")
            download = gr.File(label="Download", elem_id="talk_download")
            timings = gr.Markdown(elem_id="talk_timings")

    fields = {"image": image, "audio": audio, "pose_style": pose_style, "size": size, "preprocess": preprocess,
              "still": still, "blink": blink, "expression_scale": expression_scale, "enhancer": enhancer,
              "engine": engine, "seed": seed}

    async def run(named: dict, progress: gr.Progress, request: gr.Request):
        from talking_head.pipeline import TalkingHeadRequest

        if not named["image"]:
            raise gr.Error("Upload a source image (a portrait) first")
        if not named["audio"]:
            raise gr.Error("Upload or record a speech file first")
        job_request = TalkingHeadRequest(
            image=Path(named["image"]),
            audio=Path(named["audio"]),
            output=None,
            size=int(named["size"]),
            preprocess=named["preprocess"],
            still=bool(named["still"]),
            pose_style=int(named["pose_style"]),
            expression_scale=float(named["expression_scale"]),
            blink=bool(named["blink"]),
            enhancer="gfpgan" if named["enhancer"] else None,
            engine=named["engine"],
            seed=int(named["seed"] or 0),
            max_audio_seconds=services.config.limits.max_audio_seconds,
        )
        job = await submit_job(services, "talking_head", job_request, request)
        result = await wait_for_job(services.jobs, job, progress)
        lines = [f"**{result.frames} frames, {result.duration:.2f} s** → `{result.video_path}`", ""]
        lines += [f"- {stage}: {seconds:.2f} s" for stage, seconds in result.timings.items()]
        return str(result.video_path), str(result.video_path), "\n".join(lines)

    bind(generate.click, run, fields, [video, download, timings], "talking_head", progress=True, request=True)
