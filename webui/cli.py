"""Command-line parsing: one parser, used once by ``app.py``. Builds the frozen ``AppConfig``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from webui.config import AppConfig, ClusterConfig, LimitsConfig, MemoryMode, PathsConfig, PerfConfig, ServerConfig

COMMANDS = ("serve", "txt2img", "img2img", "inpaint", "talk", "train", "upscale", "train-upscaler", "doctor", "train-controlnet")


MIN_SIDE = 64  # the engine's smallest width/height (webui.diffusion.service.MIN_SIDE)
MAX_SIDE = LimitsConfig.max_side


def _xyz_axis(text: str) -> tuple[str, str]:
    """--xyz-x/-y/-z: "TYPE:VALUES", e.g. "Steps:4,8", "Sampler:Euler a,DDIM", "Seed:1-4"."""
    axis, sep, values = text.partition(":")
    if not sep or not axis.strip() or not values.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: use TYPE:VALUES, e.g. \"Steps:4,8\" or \"CFG Scale:3,7\"")
    return axis.strip(), values.strip()


def _dimension(text: str) -> int:
    """--width/--height: an integer, a multiple of 8, between MIN_SIDE and MAX_SIDE."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not MIN_SIDE <= value <= MAX_SIDE or value % 8:
        raise argparse.ArgumentTypeError(f"{value} must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}")
    return value


def _png_output(text: str) -> Path:
    """--output of the image commands: a .png file path (not a folder)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: give the .png file to write, e.g. {path / 'image.png'}")
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text} must end in .png (the image is written as PNG with its infotext)")
    return path


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("paths")
    g.add_argument("--models-dir", type=Path, help="A1111-style models folder (Stable-diffusion/, VAE/, Lora/, GFPGAN/)")
    g.add_argument("--checkpoints-dir", type=Path, help="SadTalker checkpoints folder")
    g.add_argument("--outputs-dir", type=Path, help="where results are saved (outputs/<tab>/<date>/)")
    g.add_argument("--styles-file", type=Path, help="A1111 prompt styles file (default: styles.csv in the repo root)")
    g = p.add_argument_group("performance (the Settings panel shows the same switches)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="auto: fp16 on CUDA, fp32 elsewhere (bf16/fp16 on a CPU are many times slower)")
    g.add_argument("--autocast", action="store_true", help="run the UNet under torch.autocast")
    g.add_argument("--no-tf32", action="store_true", help="disable TF32 matmuls on Ampere+ GPUs")
    g.add_argument("--attention", default="sdpa", choices=["sdpa", "xformers", "sliced"],
                   help="attention kernel: sdpa (PyTorch), xformers (if installed), sliced (least memory)")
    g.add_argument("--vae-slicing", action="store_true", help="decode a batch one image at a time")
    g.add_argument("--vae-tiling", action="store_true", help="decode in tiles: large images within memory")
    g.add_argument("--memory", default=MemoryMode.NORMAL.value, choices=[m.value for m in MemoryMode],
                   help="normal: all on the GPU; model-offload / sequential-offload: less VRAM, slower")
    g.add_argument("--channels-last", action="store_true", help="UNet/VAE in channels_last memory format")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    g.add_argument("--speed", default="off", choices=["off", "cache", "compile", "cache+compile"],
                   help="cache: DeepCache feature reuse; compile: torch.compile (artefacts cached on disk)")
    g.add_argument("--cache-interval", type=int, default=PerfConfig.cache_interval,
                   help="--speed cache: a full UNet every N steps, the shallow branch in between")
    g.add_argument("--cache-branch", type=int, default=PerfConfig.cache_branch,
                   help="--speed cache: skip connections recomputed in between (0 = fastest)")
    g.add_argument("--token-merging", type=float, default=PerfConfig.token_merging_ratio, metavar="RATIO",
                   help="token merging (ToMe) ratio 0..0.75 for large images; 0 = off")
    g.add_argument("--token-merging-min-side", type=int, default=PerfConfig.token_merging_min_side, metavar="PX",
                   help="token merging only for images with a side of at least PX pixels")
    g.add_argument("--model", dest="default_model", help="Stable Diffusion model to use (name or 'name [hash]')")
    g.add_argument("--max-audio-seconds", type=float, default=LimitsConfig.max_audio_seconds,
                   help="talking head: longest accepted speech file, in seconds")


def _add_server(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--listen", action="store_true", help="bind 0.0.0.0 so teammates on the LAN can connect")
    g.add_argument("--host", help="bind address (overrides --listen)")
    g.add_argument("--port", type=int, default=7860)
    g.add_argument("--auth", help="login(s) for the UI and API: user:pass[,user2:pass2]")
    g.add_argument("--auth-file", type=Path, help="file with user:pass entries, one per line or comma separated")
    g.add_argument("--no-api", action="store_true", help="do not mount the A1111-compatible /sdapi/v1 API")
    g.add_argument("--admin", action="append", default=[], metavar="USER",
                   help="a login that sees everyone's history (repeat for several)")
    g = p.add_argument_group("GPU farm (Ray; see docs/farm.md)")
    g.add_argument("--cluster", metavar="auto|HOST:PORT",
                   help="run jobs on the workers of a Ray cluster: auto = the one `ray start` joined this PC to")
    g.add_argument("--cluster-cpu-workers", type=int, default=0, metavar="N",
                   help="with --cluster: N CPU workers on each node without GPUs (every GPU gets one worker)")
    g = p.add_argument_group("server")
    g.add_argument("--max-body-mb", type=float, default=ServerConfig.max_body_bytes / 2**20,
                   help="largest request body in MB (larger ones get 413)")


def _add_generation(p: argparse.ArgumentParser, *, image: bool, mask: bool) -> None:
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--seed", type=int, default=-1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="Euler a")
    p.add_argument("--cfg-scale", type=float, default=7.0)
    p.add_argument("--width", type=_dimension, help="multiple of 8, 64..2048 (default: the model's native size)")
    p.add_argument("--height", type=_dimension, help="multiple of 8, 64..2048 (default: the model's native size)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--vae", help="file name in models/VAE")
    p.add_argument("--style", action="append", default=[], metavar="NAME",
                   help="apply a style from styles.csv to the prompts (repeatable, applied in order)")
    p.add_argument("--subseed", type=int, default=-1, help="variation seed (-1 = random)")
    p.add_argument("--subseed-strength", type=float, default=0.0, help="variation strength 0..1 (0 = off)")
    p.add_argument("--clip-skip", type=int, default=1, help="A1111's Clip skip: 1 = last text-encoder layer (default)")
    for axis in ("x", "y", "z"):
        p.add_argument(f"--xyz-{axis}", type=_xyz_axis, metavar="TYPE:VALUES",
                       help=f"X/Y/Z plot {axis.upper()} axis (A1111's axis names and value syntax), e.g. "
                            + {"x": '"Steps:4,8"', "y": '"CFG Scale:3,7"', "z": '"Sampler:Euler a,DDIM"'}[axis]
                            + "; --output gets the labelled grid")
    p.add_argument("--output", type=_png_output, required=True,
                   help="the .png file to write (batch: _1, _2 ... suffixes)")
    if image:
        p.add_argument("--image", type=Path, required=True)
        p.add_argument("--strength", type=float, default=0.75, help="denoising strength 0..1")
        p.add_argument("--resize-mode", type=int, default=0, choices=[0, 1, 2, 3],
                       help="0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale)")
    if mask:
        p.add_argument("--mask", type=Path, required=True, help="white = repaint")
        p.add_argument("--mask-blur", type=int, default=4)
        p.add_argument("--only-masked", action="store_true", help="inpaint only the masked area at full resolution")
        p.add_argument("--padding", type=int, default=32)
        p.add_argument("--fill", default="original", choices=["original", "fill", "latent noise"])
        p.add_argument("--invert-mask", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: with abbreviations on, "--vae NAME" is an ambiguous prefix of --vae-slicing/--vae-tiling
    parser = argparse.ArgumentParser(prog="app.py", description="Local Stable Diffusion + talking-head studio",
                                     allow_abbrev=False)
    _add_common(parser)
    _add_server(parser)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="start the web app (the default)", allow_abbrev=False)
    _add_common(serve)
    _add_server(serve)
    for name, image, mask in (("txt2img", False, False), ("img2img", True, False), ("inpaint", True, True)):
        sp = sub.add_parser(name, help=f"{name} from the command line (same engine as the UI)", allow_abbrev=False)
        _add_common(sp)
        _add_generation(sp, image=image, mask=mask)
    talk = sub.add_parser("talk", help="portrait + speech -> talking-head MP4", allow_abbrev=False)
    _add_common(talk)
    talk.add_argument("--image", type=Path, nargs="+", required=True, metavar="IMAGE",
                      help="portrait(s) or folder(s) of portraits; several make a batch")
    speech = talk.add_mutually_exclusive_group(required=True)
    speech.add_argument("--audio", type=Path, nargs="+", metavar="AUDIO",
                        help="speech file(s) (wav, mp3, m4a, ogg, flac) or folder(s); several make a batch")
    speech.add_argument("--text", help="a script to speak instead (espeak-ng, offline); kept as <output>.wav")
    talk.add_argument("--voice", default="en", help="text-to-speech voice: en, en-us, cmn (Mandarin), yue, ...")
    talk.add_argument("--rate", type=int, default=175, help="text-to-speech speed, words per minute (80-450)")
    talk.add_argument("--pitch", type=int, default=50, help="text-to-speech pitch, 0-99")
    talk.add_argument("--output", type=Path, required=True,
                      help="the .mp4 to write; for a batch, a folder (one <image>__<audio>.mp4 per pair)")
    talk.add_argument("--pairing", default="product", choices=["product", "zip"],
                      help="batch: every portrait with every audio (product), or the n-th with the n-th (zip)")
    talk.add_argument("--size", type=int, default=256, choices=[256, 512], help="face render size in pixels")
    talk.add_argument("--preprocess", default="crop", choices=["crop", "extcrop", "resize", "full", "extfull"],
                      help="crop: the face box; extcrop: a larger box; resize: the whole image; "
                           "full/extfull: the face pasted back into the whole image")
    talk.add_argument("--still", action="store_true", help="keep the source head pose (lips and blinks still move)")
    talk.add_argument("--pose-style", type=int, default=0, help="head-motion style 0..45")
    talk.add_argument("--expression-scale", type=float, default=1.0,
                      help="scales mouth and brow motion (0..5, 1 = as predicted)")
    talk.add_argument("--no-blink", action="store_true", help="no random eye blinks")
    talk.add_argument("--ref-eyeblink", type=Path, metavar="VIDEO",
                      help="reference video whose eye blinks replace the random ones (looped if shorter)")
    talk.add_argument("--ref-pose", type=Path, metavar="VIDEO",
                      help="reference video whose head motion drives the pose (looped if shorter)")
    talk.add_argument("--enhancer", choices=["gfpgan"], default=None,
                      help="restore the face with GFPGAN (needs GFPGANv1.4.pth in models/GFPGAN/)")
    talk.add_argument("--engine", default="auto", choices=["auto", "default", "sadtalker"],
                      help="auto: SadTalker when its checkpoints are in checkpoints/, else the built-in engine")
    talk.add_argument("--seed", type=int, default=0, help="seeds blinks and head motion")
    talk.add_argument("--input-yaw", type=int, nargs="+", metavar="DEG",
                      help="head yaw in degrees: one value is held, several are visited in turn")
    talk.add_argument("--input-pitch", type=int, nargs="+", metavar="DEG", help="head pitch in degrees, as --input-yaw")
    talk.add_argument("--input-roll", type=int, nargs="+", metavar="DEG", help="head roll in degrees, as --input-yaw")
    doctor = sub.add_parser("doctor", help="check this machine (GPU, torch/CUDA, CPU, RAM, disk, parts, weights) "
                            "and recommend settings", allow_abbrev=False)
    _add_common(doctor)
    sub.add_parser("train", help="train or fine-tune an SD-architecture model (see: app.py train --help)", add_help=False)
    from webui.upscale.cli import add_upscale_parser

    add_upscale_parser(sub, _add_common)
    sub.add_parser("train-upscaler", help="train the embedded x2/x4 upscalers (see: app.py train-upscaler --help)", add_help=False)
    sub.add_parser("train-controlnet", help="train the demo model's sketch ControlNet (see: app.py train-controlnet --help)",
                   add_help=False)
    return parser


def parse_auth(auth: Optional[str], auth_file: Optional[Path]) -> tuple[tuple[str, str], ...]:
    """``user:pass,user2:pass2`` plus the entries of an auth file -> ((user, pass), ...)."""
    entries: list[str] = []
    if auth:
        entries += auth.split(",")
    if auth_file:
        if not auth_file.is_file():
            raise ValueError(f"--auth-file {auth_file} does not exist")
        for line in auth_file.read_text(encoding="utf-8").splitlines():
            entries += [e for e in line.strip().split(",") if e.strip() and not e.strip().startswith("#")]
    pairs = []
    for entry in entries:
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(f"bad login {entry.strip()!r}: expected user:password")
        pairs.append((user, password))
    return tuple(pairs)


@dataclass(frozen=True)
class ParsedArgs:
    config: AppConfig
    command: str  # one of COMMANDS
    args: argparse.Namespace  # the command's own options
    rest: tuple[str, ...] = ()  # passed through to `train`


def parse_args(argv: list[str]) -> ParsedArgs:
    argv = list(argv)
    if argv[:1] in (["train"], ["train-upscaler"], ["train-controlnet"]):  # own parsers; hand them everything after the word
        return ParsedArgs(AppConfig(), argv[0], argparse.Namespace(), tuple(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "serve"
    paths = PathsConfig()
    paths = PathsConfig(
        models_dir=(args.models_dir or paths.models_dir).resolve(),
        checkpoints_dir=(args.checkpoints_dir or paths.checkpoints_dir).resolve(),
        outputs_dir=(args.outputs_dir or paths.outputs_dir).resolve(),
        styles_file=(args.styles_file or paths.styles_file).resolve(),
    )
    perf = PerfConfig(
        device=args.device,
        precision=args.precision,
        autocast=args.autocast,
        tf32=not args.no_tf32,
        attention=args.attention,
        vae_slicing=args.vae_slicing,
        vae_tiling=args.vae_tiling,
        memory=MemoryMode(args.memory),
        channels_last=args.channels_last,
        threads=args.threads,
        speed=args.speed,
        cache_interval=args.cache_interval,
        cache_branch=args.cache_branch,
        token_merging_ratio=args.token_merging,
        token_merging_min_side=args.token_merging_min_side,
    )
    try:
        from webui.diffusion.speed import check_speed

        check_speed(perf)
    except ValueError as e:
        parser.error(str(e))
    server = ServerConfig()
    if command == "serve":
        try:
            auth = parse_auth(args.auth, args.auth_file)
        except ValueError as e:
            parser.error(str(e))
        host = args.host or ("0.0.0.0" if args.listen else "127.0.0.1")
        unknown = [a for a in args.admin if a not in {user for user, _ in auth}]
        if unknown:
            parser.error(f"--admin {unknown[0]} is not one of the logins given by --auth/--auth-file")
        if args.max_body_mb <= 0:
            parser.error(f"--max-body-mb must be positive, got {args.max_body_mb}")
        server = ServerConfig(host=host, port=args.port, auth=auth, api=not args.no_api, admins=tuple(args.admin),
                              max_body_bytes=int(args.max_body_mb * 2**20))
    limits = LimitsConfig(max_audio_seconds=args.max_audio_seconds)
    cluster = ClusterConfig()
    if command == "serve":
        if args.cluster_cpu_workers < 0:
            parser.error(f"--cluster-cpu-workers must be 0 or more, got {args.cluster_cpu_workers}")
        if args.cluster_cpu_workers and not args.cluster:
            parser.error("--cluster-cpu-workers needs --cluster")
        cluster = ClusterConfig(address=args.cluster or None, cpu_workers=args.cluster_cpu_workers)
    config = AppConfig(server=server, paths=paths, perf=perf, limits=limits, cluster=cluster,
                       default_model=args.default_model)
    return ParsedArgs(config, command, args)
