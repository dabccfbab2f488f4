"""The Talking head tab: portrait + speech -> MP4, with the SadTalker options users know."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui.services import Services
from webui.ui.common import bind, submit_job, wait_for_job
from webui.ui.uploads import UploadAudio, UploadImage

PREPROCESS_MODES = ("crop", "extcrop", "resize", "full", "extfull")
ENGINES = ("auto", "default", "sadtalker")
# API clients may leave these out (older scripts keep working)
OPTIONAL_FIELDS = ("text", "voice", "rate", "pitch", "ref_eyeblink", "ref_pose", "batch_images", "batch_audios",
                   "pairing")


def build(services: Services) -> None:
    from talking_head import tts
    from talking_head.enhance import gfpgan_status

    gfpgan_ok, gfpgan_message = gfpgan_status(services.config.paths)
    with gr.Row():
        with gr.Column():
            image = UploadImage(label="Source image", type="filepath", height=300, elem_id="talk_image")
            audio = UploadAudio(label="Input audio (upload or record)", sources=["upload", "microphone"],
                             type="filepath", elem_id="talk_audio")
            with gr.Accordion("Or type the speech (text to speech, offline)", open=False):
                text = gr.Textbox(value="", label="Text to speak (instead of the audio)", lines=3, elem_id="talk_text",
                                  placeholder="Hello! 你好！")
                voice = gr.Dropdown([(f"{name} ({code})", code) for code, name in tts.VOICES.items()],
                                    value=tts.DEFAULT_VOICE, label="Voice", allow_custom_value=True,
                                    elem_id="talk_voice")
                with gr.Row():
                    rate = gr.Slider(*tts.RATE_RANGE, value=tts.DEFAULT_RATE, step=5, label="Speed (words per minute)",
                                     elem_id="talk_rate")
                    pitch = gr.Slider(*tts.PITCH_RANGE, value=tts.DEFAULT_PITCH, step=1, label="Pitch",
                                      elem_id="talk_pitch")
            generate = gr.Button("Generate", variant="primary", elem_id="talk_generate")
            with gr.Accordion("Reference videos (optional)", open=False):
                ref_eyeblink = gr.Video(label="Eye blinks from this video", sources=["upload"],
                                        elem_id="talk_ref_eyeblink")
                ref_pose = gr.Video(label="Head motion from this video", sources=["upload"], elem_id="talk_ref_pose")
                gr.Markdown("A reference shorter than the speech is looped from its start.")
            with gr.Accordion("Batch (several portraits and/or speech files)", open=False):
                batch_images = gr.File(label="Portraits", file_count="multiple", file_types=["image"],
                                       type="filepath", elem_id="talk_batch_images")
                batch_audios = gr.File(label="Speech files", file_count="multiple", file_types=["audio"],
                                       type="filepath", elem_id="talk_batch_audios")
                pairing = gr.Radio(["product", "zip"], value="product", label="Pairing", elem_id="talk_pairing",
                                   info="product: every portrait speaks every file; zip: the n-th with the n-th. "
                                        "The single image/audio above join the lists.")
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
            download = gr.File(label="Download", file_count="multiple", elem_id="talk_download")
            speech = gr.File(label="Speech (WAV, for typed text)", elem_id="talk_speech")
            timings = gr.Markdown(elem_id="talk_timings")

    fields = {"image": image, "audio": audio, "pose_style": pose_style, "size": size, "preprocess": preprocess,
              "still": still, "blink": blink, "expression_scale": expression_scale, "enhancer": enhancer,
              "engine": engine, "seed": seed, "text": text, "voice": voice, "rate": rate, "pitch": pitch,
              "ref_eyeblink": ref_eyeblink, "ref_pose": ref_pose, "batch_images": batch_images,
              "batch_audios": batch_audios, "pairing": pairing}

    async def run(named: dict, progress: gr.Progress, request: gr.Request):
        from webui.jobs.runners import TalkingHeadBatch
        from talking_head.batch import pair_inputs
        from talking_head.pipeline import TalkingHeadRequest

        images = ([named["image"]] if named["image"] else []) + list(named["batch_images"] or [])
        audios = ([named["audio"]] if named["audio"] else []) + list(named["batch_audios"] or [])
        if not images:
            raise gr.Error("Upload a source image (a portrait) first")
        typed = named.get("text") or None
        if not audios and not typed:
            raise gr.Error("Upload or record a speech file, or type a text to speak, first")
        job_request = TalkingHeadRequest(
            image=Path(images[0]),
            audio=Path(audios[0]) if audios and not typed else None,
            text=typed,
            voice=named.get("voice") or tts.DEFAULT_VOICE,
            rate=int(named.get("rate") or tts.DEFAULT_RATE),
            pitch=int(tts.DEFAULT_PITCH if named.get("pitch") is None else named["pitch"]),
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
            ref_eyeblink=Path(named["ref_eyeblink"]) if named["ref_eyeblink"] else None,
            ref_pose=Path(named["ref_pose"]) if named["ref_pose"] else None,
        )
        if typed:  # one typed script, spoken by every portrait
            audios = []
        if len(images) == 1 and len(audios) <= 1:
            job = await submit_job(services, "talking_head", job_request, request)
            result = await wait_for_job(services.jobs, job, progress, request)
            lines = [f"**{result.frames} frames, {result.duration:.2f} s** → `{result.video_path}`", ""]
            lines += [f"- {stage}: {seconds:.2f} s" for stage, seconds in result.timings.items()]
            spoken = str(result.speech_path) if result.speech_path else None
            return str(result.video_path), [str(result.video_path)], "\n".join(lines), spoken
        try:
            if typed:
                pairs = [(Path(p), None) for p in images]
            else:
                pairs = pair_inputs([Path(p) for p in images], [Path(a) for a in audios], named["pairing"] or "product")
        except ValueError as e:
            raise gr.Error(str(e)) from e
        out_dir = services.talking_head.output_path(job_request).with_suffix("")
        job = await submit_job(services, "talking_head_batch", TalkingHeadBatch(job_request, tuple(pairs), out_dir),
                               request)
        batch = await wait_for_job(services.jobs, job, progress, request)
        lines = [f"**{len(batch.done)} of {len(batch.items)} videos** → `{out_dir}`", ""]
        for item in batch.items:
            name = f"{Path(item.image).name} + {Path(item.audio).name if item.audio else 'text'}"
            lines.append(f"- {name}: " + (f"`{item.result.video_path.name}`, {item.result.frames} frames"
                                          if item.ok else f"**failed**: {item.error}"))
        videos = [str(i.result.video_path) for i in batch.done]
        spoken = next((str(i.result.speech_path) for i in batch.done if i.result.speech_path), None)
        return (videos[0] if videos else None), videos, "\n".join(lines), spoken

    bind(generate.click, run, fields, [video, download, timings, speech], "talking_head", progress=True,
         request=True, optional=OPTIONAL_FIELDS)
