"""The scripting CLI: ``app.py txt2img|img2img|inpaint|talk``. Same services as the UI; errors exit non-zero."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webui.services import Services

CLI_OWNER = "cli"  # the owner of jobs submitted from the command line (history shows them to admins)


def _open_image(path: Path, max_pixels: int):
    from webui.uploads import open_image_file

    return open_image_file(path, max_pixels=max_pixels)


def _image_request(services: Services, command: str, args: argparse.Namespace):
    from webui.diffusion.types import InpaintRequest, Img2ImgRequest, Txt2ImgRequest

    common = dict(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        sampler=args.sampler,
        steps=args.steps,
        cfg_scale=args.cfg_scale,
        seed=args.seed,
        batch_size=args.batch_size,
        vae=args.vae,
        styles=tuple(args.style),
        subseed=args.subseed,
        subseed_strength=args.subseed_strength,
        clip_skip=args.clip_skip,
        save=False,
    )
    axes = {a: getattr(args, f"xyz_{a}", None) for a in "xyz"}
    if any(axes.values()):  # the X/Y/Z plot: one labelled grid
        from webui.diffusion.xyz import XYZArgs

        fields = {}
        for a, axis in axes.items():
            if axis:
                fields[f"{a}_type"], fields[f"{a}_values"] = axis
            else:
                fields[f"{a}_type"] = "Nothing"
        common["script"] = XYZArgs(**fields, csv_mode=True)
    limits = services.config.limits
    if command == "txt2img":
        native = services.image.native_size()
        return Txt2ImgRequest(width=args.width or native, height=args.height or native, **common)
    image = _open_image(args.image, limits.max_image_pixels)
    common.update(
        image=image,
        width=args.width or image.width,
        height=args.height or image.height,
        denoising_strength=args.strength,
        resize_mode=args.resize_mode,
    )
    if command == "img2img":
        return Img2ImgRequest(**common)
    return InpaintRequest(
        mask=_open_image(args.mask, limits.max_image_pixels).convert("L"),
        mask_blur=args.mask_blur,
        inpaint_full_res=args.only_masked,
        inpaint_full_res_padding=args.padding,
        inpainting_fill=args.fill,
        invert_mask=args.invert_mask,
        **common,
    )


def _output_paths(output: Path, n: int) -> list[Path]:
    if n == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i + 1}{output.suffix}") for i in range(n)]


def run_image_command(services: Services, command: str, args: argparse.Namespace) -> int:
    from webui.diffusion.infotext import save_png

    request = _image_request(services, command, args)
    result = services.jobs.run(command, request, owner=CLI_OWNER).result.value
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for image, infotext, path in zip(result.images, result.infotexts, _output_paths(args.output, len(result.images))):
        save_png(image, path, infotext)
        print(path)
        print(infotext)
    return 0


def run_talk_command(services: Services, args: argparse.Namespace) -> int:
    """One video, or a batch when several images/audios (or folders) are given."""
    from talking_head.batch import expand_inputs, pair_inputs
    from webui.jobs.runners import TalkingHeadBatch
    from talking_head.pipeline import TalkingHeadRequest

    images, audios = list(args.image), list(args.audio or [None])
    single = len(images) == 1 and len(audios) == 1 and not images[0].is_dir() and not (
        audios[0] is not None and audios[0].is_dir())
    if single and args.output.is_dir():
        raise ValueError(f"--output {args.output} is a folder: give the .mp4 file to write")
    if single and args.output.suffix.lower() != ".mp4":
        raise ValueError(f"--output {args.output} must end in .mp4")
    request = TalkingHeadRequest(
        image=images[0],
        audio=audios[0],
        output=args.output,
        size=args.size,
        preprocess=args.preprocess,
        still=args.still,
        pose_style=args.pose_style,
        expression_scale=args.expression_scale,
        blink=not args.no_blink,
        enhancer=args.enhancer,
        seed=args.seed,
        input_yaw=args.input_yaw,
        input_pitch=args.input_pitch,
        input_roll=args.input_roll,
        engine=args.engine,
        max_audio_seconds=services.config.limits.max_audio_seconds,
        ref_eyeblink=args.ref_eyeblink,
        ref_pose=args.ref_pose,
        text=args.text,
        voice=args.voice,
        rate=args.rate,
        pitch=args.pitch,
    )
    if single:
        result = services.jobs.run("talking_head", request, owner=CLI_OWNER).result.value
        print(result.video_path)
        if result.speech_path:
            print(result.speech_path)
        for stage, seconds in result.timings.items():
            print(f"{stage}: {seconds:.2f} s")
        return 0
    if args.output.suffix.lower() == ".mp4":
        raise ValueError(f"--output {args.output} must be a folder for a batch of videos")
    if args.text is not None:  # one typed script, spoken by every portrait
        pairs = [(image, None) for image in expand_inputs(images, "image")]
    else:
        pairs = pair_inputs(expand_inputs(images, "image"), expand_inputs(audios, "audio"), args.pairing)
    job = services.jobs.run("talking_head_batch", TalkingHeadBatch(request, tuple(pairs), args.output), owner=CLI_OWNER)
    batch = job.result.value
    for item in batch.items:
        if item.ok:
            print(f"{item.result.video_path}\t{item.result.frames} frames, {item.result.timings['total']:.1f} s")
        else:
            print(f"FAILED {item.image} + {item.audio or 'text'}: {item.error}")
    print(f"{len(batch.done)} of {len(batch.items)} videos written to {args.output}")
    return 0 if not batch.failed else 1


def run_command(services: Services, command: str, args: argparse.Namespace) -> int:
    try:
        if command == "talk":
            return run_talk_command(services, args)
        if command == "upscale":
            from webui.upscale.cli import run_upscale_command

            return run_upscale_command(services, args)
        return run_image_command(services, command, args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
