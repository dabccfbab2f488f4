"""``app.py upscale``: the Extras tab from the command line (same ExtrasService as the UI and the API)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_upscale_parser(sub, add_common) -> None:
    p = sub.add_parser("upscale", help="upscale / restore faces in an image (the Extras tab)")
    add_common(p)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True, help="PNG path (written with its parameters)")
    p.add_argument("--upscaler", default="StudioCompact-x4", help="upscaler 1 (see the Extras tab or /sdapi/v1/upscalers)")
    p.add_argument("--scale", type=float, default=None, help="scale by this factor (default 4 unless --width/--height)")
    p.add_argument("--width", type=int, default=None, help="scale to this size instead of by a factor")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--no-crop", action="store_true", help="with --width/--height: stretch instead of crop to fit")
    p.add_argument("--upscaler-2", default="None")
    p.add_argument("--upscaler-2-visibility", type=float, default=0.0)
    p.add_argument("--gfpgan-visibility", type=float, default=0.0)


def run_upscale_command(services, args: argparse.Namespace) -> int:
    from webui.diffusion.infotext import save_png
    from webui.upscale.extras import RESIZE_BY, RESIZE_TO, ExtrasRequest
    from webui.uploads import open_image_file

    image = open_image_file(args.image, max_pixels=services.config.limits.max_image_pixels)
    to_size = args.width is not None or args.height is not None
    if to_size and args.scale is not None:
        raise ValueError("give either --scale or --width/--height, not both")
    request = ExtrasRequest(
        images=(image,),
        resize_mode=RESIZE_TO if to_size else RESIZE_BY,
        upscaling_resize=args.scale if args.scale is not None else 4.0,
        upscaling_resize_w=args.width or round(image.width * (args.height / image.height)) if to_size else 512,
        upscaling_resize_h=args.height or round(image.height * (args.width / image.width)) if to_size else 512,
        upscaling_crop=not args.no_crop,
        upscaler_1=args.upscaler,
        upscaler_2=args.upscaler_2,
        extras_upscaler_2_visibility=args.upscaler_2_visibility,
        gfpgan_visibility=args.gfpgan_visibility,
        save=False,
    )
    result = services.jobs.run("extras", request, owner="cli").result.value
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_png(result.images[0], args.output, result.infotexts[0])
    print(args.output)
    print(result.html_info)
    return 0
