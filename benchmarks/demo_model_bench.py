"""Speed of the embedded demo model: load time and a 20-step txt2img image at native resolution.

Times are printed as ratios against baselines measured in the same run (one UNet forward of the
CFG batch, and a 1-step pipeline call), plus absolute seconds for information. Machine load from
other work inflates absolute numbers; ratios are comparable between runs.

    python benchmarks/demo_model_bench.py [--model DIR] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/Stable-diffusion/demo-shapes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(args.threads)

    def load():
        return StableDiffusionPipeline.from_pretrained(
            args.model, local_files_only=True, safety_checker=None, requires_safety_checker=False
        )

    load()  # warm the file cache and imports
    load_s = _best(load, args.repeats)
    pipe = load()
    pipe.set_progress_bar_config(disable=True)
    res = pipe.unet.config.sample_size * pipe.vae_scale_factor
    prompt = "a large red circle on the left, blue background"

    # baselines: one UNet forward of the CFG batch (2 latents), and a 1-step pipeline call
    latents = torch.randn(2, pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    cond = torch.randn(2, 77, pipe.text_encoder.config.hidden_size)
    t = torch.tensor([500, 500])

    @torch.no_grad()
    def unet_forward():
        pipe.unet(latents, t, cond)

    def run(steps):
        return lambda: pipe(prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))

    unet_forward()
    unet_s = _best(unet_forward, args.repeats * 3)
    run(1)()
    one_s = _best(run(1), args.repeats)
    gen_s = _best(run(args.steps), args.repeats)

    print(f"demo model {args.model}: {res}x{res}, threads={args.threads}, best of {args.repeats}")
    print(f"| measure | ratio | seconds |\n|---|---|---|")
    print(f"| one UNet forward (CFG batch 2), baseline | 1.0 | {unet_s:.4f} |")
    print(f"| 1-step pipeline call | {one_s / unet_s:.1f}x UNet | {one_s:.3f} |")
    print(f"| {args.steps}-step image | {gen_s / unet_s:.1f}x UNet, {gen_s / one_s:.1f}x 1-step | {gen_s:.3f} |")
    print(f"| model load | {load_s / one_s:.1f}x 1-step | {load_s:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
