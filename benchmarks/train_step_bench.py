"""Speed of one UNet + text-encoder training step of the demo recipe, eager (the baseline) against
run 11's UNet (cross-attention at 16x16 too), channels-last memory and ``torch.compile``, as ratios
measured in the same run.

The demo model's training budget is set by this step: 15,000 steps of 16 images must fit, with the
autoencoder stages, in 60 minutes on 2 CPU cores. Dropping the 16x16 attention made that possible.

    python benchmarks/train_step_bench.py [--threads 2] [--steps 30] [--batch 16] [--no-compile]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant (after 3 warm-up steps)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (its warm-up takes minutes)")
    args = p.parse_args()

    import torch
    import torch.nn.functional as F

    from webui.train import model_config

    torch.set_num_threads(args.threads)
    arch = model_config.DEMO
    side = arch.resolution // 8
    gen = torch.Generator().manual_seed(0)
    noisy = torch.randn(args.batch, arch.latent_channels, side, side, generator=gen)
    target = torch.randn(noisy.shape, generator=gen)
    t = torch.randint(0, 1000, (args.batch,), generator=gen)
    ids = torch.randint(0, 49407, (args.batch, 77), generator=gen)

    def models(arch=arch):
        torch.manual_seed(0)
        return model_config.build_unet(arch).train(), model_config.build_text_encoder(arch).train()

    def seconds_per_step(unet, te, run_unet) -> tuple[float, float]:
        params = list(unet.parameters()) + list(te.parameters())
        opt = torch.optim.AdamW(params, lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(run_unet(noisy, t, te(ids)[0]).sample, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

        start = time.perf_counter()
        for _ in range(3):
            step()
        warm = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        return (time.perf_counter() - start) / args.steps, warm

    rows = []
    unet, te = models()
    base, _ = seconds_per_step(unet, te, unet)
    rows.append(("eager (baseline)", base, 0.0))
    unet, te = models(replace(arch, unet_attention=(True, True, False)))
    rows.append(("run 11's UNet, attention at 16x16 too", *seconds_per_step(unet, te, unet)))
    unet, te = models()
    unet = unet.to(memory_format=torch.channels_last)
    rows.append(("channels_last", *seconds_per_step(unet, te, unet)))
    if not args.no_compile:
        unet, te = models()
        rows.append(("torch.compile (inductor)", *seconds_per_step(unet, te, torch.compile(unet))))

    print(f"demo recipe training step: batch {args.batch}, {side}x{side} latents, threads={args.threads}, {args.steps} steps")
    print("| variant | speed vs eager | s/step | warm-up s |")
    print("|---|---|---|---|")
    for name, sec, warm in rows:
        print(f"| {name} | {base / sec:.2f}x | {sec:.3f} | {warm:.0f} |")


if __name__ == "__main__":
    main()
