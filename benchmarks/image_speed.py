"""Image speed: the app in each Speed mode against a plain diffusers StableDiffusionPipeline, side by side.

One process; every round times one image for each variant in turn (plain, then the app in each mode), so
machine load from other work hits all variants alike; medians over the rounds are reported as
images per minute and as ratios to plain diffusers. Same weights, same scheduler, same seed, same steps.

Parts:
  demo  the demo model (models/Stable-diffusion/demo-shapes) at 128 px, 20 steps; plus the quality side:
        held-out adherence (colour, shape, position, background) of the app in each mode, which must stay
        within 3 points of ``off``.
  sd15  an SD1.5-architecture model (UNet, VAE, text encoder from webui/diffusion/configs/sd15) with random
        weights at 256 px (written once to --sd15-dir).

    python benchmarks/image_speed.py [--parts demo,sd15] [--modes off,cache,compile,cache+compile]
                                     [--rounds 3] [--sd15-steps 8] [--sd15-size 256] [--quality-prompts 30]
                                     [--device auto|cpu|cuda]   (fp16 on CUDA, fp32 on the CPU, both sides)

``compile`` is timed after one warm-up image (its compile time is printed separately).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLER = "DPM++ 2M"
PROMPT = "a large red circle on the left, blue background"


def build_sd15_random(target: Path) -> Path:
    """An SD1.5-architecture diffusers folder with random weights (skipped when it already exists)."""
    if (target / "model_index.json").exists():
        return target
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.schedulers import PNDMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    cfg = REPO / "webui" / "diffusion" / "configs" / "sd15"
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg / "unet")),
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(cfg / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(cfg / "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(cfg / "tokenizer"),
        scheduler=PNDMScheduler.from_pretrained(cfg / "scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    tmp = target.with_name(target.name + ".part")
    pipe.save_pretrained(tmp)
    tmp.rename(target)
    return target


def plain_pipeline(model_dir: Path, device: str = "cpu"):
    import torch
    from diffusers import StableDiffusionPipeline

    from webui.diffusion.samplers import make_scheduler

    dtype = torch.float16 if device.startswith("cuda") else torch.float32  # the app's "auto" precision
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False, torch_dtype=dtype).to(device)
    pipe.scheduler = make_scheduler(SAMPLER, pipe.scheduler.config)  # the app's sampler, as a diffusers scheduler
    pipe.set_progress_bar_config(disable=True)
    return pipe


def app_service(model_dir: Path, work: Path, device: str = "cpu"):
    from webui.config import AppConfig, LimitsConfig, PathsConfig, PerfConfig
    from webui.diffusion.service import ImageService

    models = work / "models"
    (models / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
    link = models / "Stable-diffusion" / model_dir.name
    if not link.exists():
        link.symlink_to(model_dir.resolve(), target_is_directory=True)
    config = AppConfig(paths=PathsConfig(models_dir=models, outputs_dir=work / "outputs"),
                       limits=LimitsConfig(max_side=2048), default_model=model_dir.name,
                       perf=PerfConfig(device=device))
    return ImageService(config)


def app_request(mode: str, size: int, steps: int, seed: int, prompt: str = PROMPT, cfg: float = 7.0, **speed):
    from webui.diffusion.types import Txt2ImgRequest

    overrides = (("speed", mode),) + tuple(speed.items())
    return Txt2ImgRequest(prompt=prompt, sampler=SAMPLER, steps=steps, cfg_scale=cfg, width=size, height=size,
                          seed=seed, save=False, speed_overrides=overrides)


def race(model_dir: Path, work: Path, size: int, steps: int, modes: list[str], rounds: int, speed: dict,
         device: str = "cpu") -> dict:
    """Median seconds per image for plain diffusers and the app in each mode, alternating."""
    import torch

    plain = plain_pipeline(model_dir, device)
    service = app_service(model_dir, work, device)

    def run_plain():
        g = torch.Generator("cpu").manual_seed(1)
        with torch.inference_mode():
            plain(PROMPT, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size, generator=g)

    def run_app(mode):
        service.txt2img(app_request(mode, size, steps, 1, **speed))

    variants = {"plain diffusers": run_plain, **{f"app {m}": (lambda m=m: run_app(m)) for m in modes}}
    warm = {}
    for name, fn in variants.items():  # first calls: loading, compiling
        t = time.perf_counter()
        fn()
        warm[name] = time.perf_counter() - t
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.1f}s" for n, v in times.items()), flush=True)
    result = {name: {"median_s": statistics.median(v), "first_s": warm[name], "all": v} for name, v in times.items()}
    return result, service


def adherence(service, modes: list[str], n: int, speed: dict) -> dict:
    """Held-out adherence (mean of colour/shape/position/background, in points) of the app per mode."""
    from webui.train.evaluate import CHECKS, held_out_cases, score_cases

    cases = held_out_cases()[:n]
    out = {}
    for mode in modes:
        images = [service.txt2img(app_request(mode, 128, 20, i, prompt=c.prompt, cfg=5.0, **speed)).images[0]
                  for i, c in enumerate(cases)]
        scores, _ = score_cases(cases, images)
        out[mode] = {**{k: 100 * scores[k] for k in CHECKS}, "mean": 100 * sum(scores[k] for k in CHECKS) / len(CHECKS)}
        print(f"  adherence {mode}: " + ", ".join(f"{k} {v:.0f}" for k, v in out[mode].items()), flush=True)
    return out


def table(title: str, result: dict) -> str:
    """Medians per variant; "x plain" is the ratio of the medians, "paired" the median of the per-round
    ratios (each against the plain image of the same round: robust when the load drifts)."""
    plain = result["plain diffusers"]["median_s"]
    plain_all = result["plain diffusers"]["all"]
    lines = [f"\n{title}", f"{'variant':<22}{'s/image':>9}{'img/min':>9}{'x plain':>9}{'paired':>8}{'first call s':>14}"]
    for name, r in result.items():
        paired = statistics.median(p / t for p, t in zip(plain_all, r["all"]))
        lines.append(f"{name:<22}{r['median_s']:>9.2f}{60 / r['median_s']:>9.2f}{plain / r['median_s']:>9.2f}"
                     f"{paired:>8.2f}{r['first_s']:>14.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="demo,sd15")
    p.add_argument("--modes", default="off,cache,compile,cache+compile")
    p.add_argument("--sd15-modes", default=None, help="modes for the sd15 part (default: --modes)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--demo-model", type=Path, default=REPO / "models" / "Stable-diffusion" / "demo-shapes")
    p.add_argument("--sd15-dir", type=Path, default=Path(tempfile.gettempdir()) / "sd15-random")
    p.add_argument("--sd15-size", type=int, default=256)
    p.add_argument("--sd15-steps", type=int, default=8)
    p.add_argument("--cache-interval", type=int, default=3)
    p.add_argument("--cache-branch", type=int, default=0)
    p.add_argument("--quality-prompts", type=int, default=30, help="held-out prompts for adherence (0 = skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto (cuda when there is one) | cpu | cuda | cuda:N; "
                   "fp16 on CUDA, fp32 on the CPU, for both sides")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    modes = args.modes.split(",")
    speed = {"cache_interval": args.cache_interval, "cache_branch": args.cache_branch}
    work = Path(tempfile.mkdtemp(prefix="image-speed-"))
    report = []
    try:
        parts = args.parts.split(",")
        if "demo" in parts:
            print("demo model, 128 px, 20 steps", flush=True)
            res, service = race(args.demo_model, work / "demo", 128, 20, modes, args.rounds, speed, device)
            report.append(table(f"demo model, 128 px, 20 steps, {SAMPLER}, medians of {args.rounds} alternating rounds", res))
            if args.quality_prompts:
                q = adherence(service, modes, args.quality_prompts, speed)
                lines = [f"\nheld-out adherence, {args.quality_prompts} prompts (points; must stay within 3 of off)"]
                for mode, s in q.items():
                    lines.append(f"{mode:<16}" + "  ".join(f"{k} {v:5.1f}" for k, v in s.items())
                                 + f"  (vs off {s['mean'] - q[modes[0]]['mean']:+.1f})")
                report.append("\n".join(lines))
        if "sd15" in parts:
            print(f"SD1.5-architecture random weights, {args.sd15_size} px, {args.sd15_steps} steps", flush=True)
            model = build_sd15_random(args.sd15_dir)
            sd_modes = (args.sd15_modes or args.modes).split(",")
            res, _ = race(model, work / "sd15", args.sd15_size, args.sd15_steps, sd_modes, args.rounds, speed, device)
            report.append(table(f"SD1.5-architecture UNet (random weights), {args.sd15_size} px, {args.sd15_steps} "
                                f"steps, {SAMPLER}, medians of {args.rounds} alternating rounds", res))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.startswith("cuda") else ""
    print(f"\ncache: interval {args.cache_interval}, branch {args.cache_branch}; device {device}{gpu}; "
          f"threads {args.threads}; torch {torch.__version__}")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
