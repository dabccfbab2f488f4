"""Compare from-scratch training recipes of the demo model side by side on one CUDA GPU.

A full run of one recipe takes about an hour on this project's 2-core machines, so recipes are
compared on a GPU: each trains in its own process with the trainer's own loop
(``train_denoiser``) on the same latent pool, with the step count that fits about 50 minutes of
its UNet on 2 CPU cores (measured per architecture and batch size, see ``CPU_SECONDS_PER_STEP``).
At fixed steps its EMA weights are scored on the held-out prompts by the evaluation's checker
(``webui.train.evaluate.score_cases``), each held-out prompt with 2 seeds (60 images).

Results: ``OUT/results.jsonl`` (one line per evaluation), ``OUT/grids.tar`` (the last images of each
recipe), ``OUT/logs.tar``. The GPU only ranks recipes; the model that ships is trained on the CPU
with the ``train`` command and scored with ``python -m webui.train.evaluate``.

Measured on one H200 (2026-11-26): the pool takes 24 s; with 8 recipes at once each trains at about
8.7 steps/s (eager PyTorch: these UNets are too small to fill the GPU, so the step rate is bound by
kernel launches), so a 10,000-step recipe needs about 20 minutes. Run fewer recipes at once, or
raise ``--deadline``, to finish them, or train every recipe a shorter proxy with ``--steps``
(its learning-rate schedule then ends at that step). With 6 recipes and ``--steps 4000`` each ran at
10-12 steps/s (evaluations included) and finished in 6-7 minutes (second sweep, docs/demo-model.md).

    python benchmarks/demo_recipes.py --out DIR [--recipes a,b] [--deadline 420] [--steps 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# run 11 (the shipped model until run 16): the demo preset's UNet with attention at 16x16 too, one phase
R11 = dict(unet_attention=(True, True, False), high_noise_share=0.0, high_noise_weight=0.0, high_noise_from=0, high_noise_lr=0.0)
R7 = dict(R11, unet_channels=(64, 128, 128, 96), unet_attention=(True, True, True, True), unet_head_dim=24)
LTSNR = dict(schedule="low-terminal-snr")
# Seconds per optimizer step of the UNet + text encoder on this project's 2 CPU cores (torch 2.13, 2 threads).
CPU_SECONDS_PER_STEP = {("demo", 32): 0.54, ("demo", 16): 0.28, ("run16", 16): 0.19, ("position", 32): 0.35, ("position", 16): 0.20,
                        ("r7", 32): 0.58, ("r7", 16): 0.29}
BUDGET_S = 2900  # the UNet stage's share of the 60-minute budget (the VAE stages take about 7 minutes)

# name: (base preset, arch overrides, cpu-timing key, batch, train overrides)
RECIPES = {
    "run16-b16": ("demo", {}, "run16", 16, {}),  # the shipped recipe's settings (second phase from step 11,000), at the budget's step count
    "demo-b32": ("demo", R11, "demo", 32, {}),
    "demo-b16": ("demo", R11, "demo", 16, {}),
    "demo-pyr-b16": ("demo", R11, "demo", 16, dict(pyramid_noise=0.8, high_noise_share=0.25)),
    "pos-pyr-b16": ("demo", dict(R11, unet_channels=(64, 96, 128, 128), unet_attention=(False, True, True, True)),
                    "position", 16, dict(pyramid_noise=0.8, high_noise_share=0.25)),
    "r7-ltsnr-b16": ("demo", {**R7, **LTSNR}, "r7", 16, dict(high_noise_share=0.25)),
    "r7-ltsnr-b32": ("demo", {**R7, **LTSNR}, "r7", 32, dict(high_noise_share=0.25)),
    "r7-pyr-b16": ("demo", R7, "r7", 16, dict(pyramid_noise=0.8, high_noise_share=0.25)),
    "r7-sd-b16": ("demo", R7, "r7", 16, dict(high_noise_share=0.25)),
    "r7-pyr-b32": ("demo", R7, "r7", 32, dict(pyramid_noise=0.8, high_noise_share=0.25)),  # run 10 (CPU)
    "r7-pyr9-b16": ("demo", R7, "r7", 16, dict(pyramid_noise=0.9, high_noise_share=0.25)),
    "demo-ltsnr-b16": ("demo", {**R11, **LTSNR}, "demo", 16, dict(high_noise_share=0.25)),
    "demo-ltsnr50-b16": ("demo", {**R11, **LTSNR}, "demo", 16, dict(high_noise_share=0.5)),
    "demo-attn3-ltsnr-b16": ("demo", {**R11, "unet_attention": (True, True, True), **LTSNR}, "demo", 16, dict(high_noise_share=0.25)),
    "pos-b16": ("position", {}, "position", 16, {}),
}
DEFAULT = "demo-b16,demo-pyr-b16,pos-pyr-b16,r7-ltsnr-b16,r7-ltsnr-b32,r7-pyr-b16,r7-sd-b16,r7-pyr9-b16"


def build_pool(model: str, n: int, workers: int, work: Path, device: str) -> Path:
    """The trainer's latent pool (``trainer.build_pool``: same scenes, ``ShapesData(seed=0)``), its
    scenes drawn in parallel first, encoded with the VAE on ``device``. Returns its file in ``work``."""
    from multiprocessing import Pool

    import numpy as np
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTokenizer

    from webui.train.trainer import Components, TrainConfig, build_pool as trainer_pool

    chunks = [(s, min(n, s + 500)) for s in range(0, n, 500)]
    with Pool(workers) as pool:
        parts = pool.map(_draw, chunks)
    scenes = _Drawn(np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]])
    comp = Components(
        vae=AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=torch.float32).to(device).eval(),
        text_encoder=None, tokenizer=CLIPTokenizer.from_pretrained(model, subfolder="tokenizer"),
        unet=None, noise_scheduler=None, resolution=128,
    )
    cfg = TrainConfig(output="", pool_size=n, seed=0, resume=False)
    trainer_pool(cfg, comp, scenes, work, set_scale=False)
    return work / "latents.pt"


class _Drawn:
    """Scenes drawn ahead of time, served as the trainer's data source (``item(i)`` -> (image, caption))."""

    def __init__(self, images, captions):
        self.images, self.captions = images, captions

    def item(self, i):
        return self.images[i], self.captions[i]


def _draw(bounds):
    import numpy as np

    from webui.train.data import ShapesData

    data = ShapesData(seed=0, size=128, holdout=True)
    items = [data.item(i) for i in range(*bounds)]
    return np.stack([np.ascontiguousarray(img) for img, _ in items]), [c for _, c in items]


class _Stop(Exception):
    pass


def run_one(name: str, model: str, pool_path: Path, out: Path, deadline: float, smoke: bool, fixed_steps: int = 0) -> None:
    import copy
    from dataclasses import replace

    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from webui.train import model_config as mc
    from webui.train.evaluate import CHECKS, held_out_cases, score_cases
    from webui.train.trainer import PRESET_RECIPE, Components, TrainConfig, train_denoiser

    base, arch_over, key, batch, train_over = RECIPES[name]
    arch = replace(mc.preset(base), **arch_over)
    steps = fixed_steps or int(BUDGET_S / CPU_SECONDS_PER_STEP[(key, batch)]) // 100 * 100
    every = max(500, steps // 5 // 100 * 100)
    device = "cpu" if smoke else "cuda"
    if smoke:
        steps, every = 4, 2
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pool = torch.load(pool_path, weights_only=False)
    comp = Components(
        vae=AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=torch.float32).to(device).eval(),
        text_encoder=mc.build_text_encoder(arch),
        tokenizer=CLIPTokenizer.from_pretrained(model, subfolder="tokenizer"),
        unet=mc.build_unet(arch),
        noise_scheduler=mc.build_scheduler(arch),
        resolution=128,
    )
    plain_unet = comp.unet
    cfg = TrainConfig(output=str(out / name), work_dir=str(out / "work" / name), steps=steps, batch_size=batch,
                      checkpoint_every=every, device=device, resume=False, threads=1,
                      **{k: train_over.get(k, getattr(arch, k)) for k in PRESET_RECIPE})
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    cases = held_out_cases()
    t0 = time.time()
    grid_path = out / f"{name}.png"

    def evaluate(step: int, ema) -> None:
        unet, te = copy.deepcopy(plain_unet).eval(), copy.deepcopy(comp.text_encoder).eval()
        with torch.no_grad():
            for p, s in zip(list(unet.parameters()) + list(te.parameters()), ema.shadow):
                p.copy_(s)
        pipe = StableDiffusionPipeline(vae=comp.vae, text_encoder=te, tokenizer=comp.tokenizer, unet=unet,
                                       scheduler=DPMSolverMultistepScheduler.from_config(mc.scheduler_config(arch.schedule)),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        prompts = [c.prompt for c in cases] * (1 if smoke else 2)
        gens = [torch.Generator(device).manual_seed(i) for i in range(len(prompts))]
        with torch.no_grad():
            images = pipe(prompts, num_inference_steps=20, guidance_scale=5.0, generator=gens, height=128, width=128).images
        scores, _ = score_cases([cases[i % len(cases)] for i in range(len(images))], images)
        row = dict(recipe=name, step=step, steps=steps, batch=batch, seconds=round(time.time() - t0),
                   **{k: round(scores[k], 3) for k in CHECKS}, shape_hits=scores["shape_hits"])
        print(json.dumps(row), flush=True)
        with open(out / f"{name}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        from PIL import Image

        sheet = Image.new("RGB", (10 * 128, 3 * 128))
        for i, img in enumerate(images[:30]):
            sheet.paste(img, ((i % 10) * 128, (i // 10) * 128))
        sheet.save(grid_path)
        if time.time() > deadline:
            raise _Stop

    try:
        train_denoiser(cfg, comp, pool, Path(cfg.work_dir), on_checkpoint=evaluate)
    except _Stop:
        print(f"[{name}] stopped at the deadline", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="models/Stable-diffusion/demo-shapes", help="its VAE and tokenizer are used")
    p.add_argument("--recipes", default=DEFAULT)
    p.add_argument("--deadline", type=float, default=420, help="seconds after start: recipes stop at their next evaluation")
    p.add_argument("--pool-size", type=int, default=20000)
    p.add_argument("--smoke", action="store_true", help="CPU check of this script: 4 steps, a small pool")
    p.add_argument("--steps", type=int, default=0, help="train every recipe this many steps (a shorter proxy; 0: the CPU budget's)")
    p.add_argument("--one", default="", help=argparse.SUPPRESS)
    p.add_argument("--pool", default="", help=argparse.SUPPRESS)
    p.add_argument("--deadline-at", type=float, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    if args.one:
        run_one(args.one, args.model, Path(args.pool), out, args.deadline_at, args.smoke, args.steps)
        return 0

    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "demo-recipes"
    work.mkdir(parents=True, exist_ok=True)
    pool_path = build_pool(args.model, 64 if args.smoke else args.pool_size, max(1, (os.cpu_count() or 2) - 2), work,
               "cpu" if args.smoke else "cuda")
    print(f"pool built in {time.time() - start:.0f}s", flush=True)
    procs = {}
    for name in args.recipes.split(","):
        cmd = [sys.executable, __file__, "--out", str(work), "--model", args.model, "--one", name, "--pool", str(pool_path),
               "--deadline-at", str(start + args.deadline), "--steps", str(args.steps)] + (["--smoke"] if args.smoke else [])
        (work / f"{name}.jsonl").unlink(missing_ok=True)  # results of an earlier sweep in the same folder
        log = open(work / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    hard = start + args.deadline + 90
    while any(p.poll() is None for p, _ in procs.values()) and time.time() < hard:
        time.sleep(2)
    for name, (proc, log) in procs.items():
        if proc.poll() is None:
            proc.kill()
        log.close()
    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for name in procs:
            part = work / f"{name}.jsonl"
            if part.is_file():
                f.write(part.read_text(encoding="utf-8"))
    with tarfile.open(out / "grids.tar", "w") as tar:
        for name in procs:
            if (work / f"{name}.png").is_file():
                tar.add(work / f"{name}.png", arcname=f"{name}.png")
    with tarfile.open(out / "logs.tar", "w") as tar:
        for name in procs:
            tar.add(work / f"{name}.log", arcname=f"{name}.log")
    print((out / "results.jsonl").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
