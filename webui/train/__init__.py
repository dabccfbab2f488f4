"""The ``train`` command: trains the embedded demo model, or fine-tunes / LoRA-trains any SD model.

``main(argv)`` is the CLI entry (wired to ``python app.py train ...``; also ``python -m webui.train``).
Importing this package does nothing (torch and diffusers are imported when training starts).
"""

from __future__ import annotations

import argparse

DEMO_OUTPUT = "models/Stable-diffusion/demo-shapes"


def build_parser() -> argparse.ArgumentParser:
    from webui.train.model_config import PRESETS  # dataclasses only: torch stays unimported

    p = argparse.ArgumentParser(
        prog="train",
        description="Train the embedded demo model from scratch, or fine-tune / LoRA-train a diffusers SD model.",
    )
    p.add_argument("--output", default=DEMO_OUTPUT, help="final diffusers folder (LoRA: folder for the .safetensors)")
    p.add_argument("--work-dir", default="", help="checkpoints and caches (default outputs/train/<output name>)")
    p.add_argument("--data", default="shapes", help='"shapes" (drawn captioned scenes) or a folder of image + .txt pairs')
    p.add_argument("--base-model", default="", help="diffusers folder to fine-tune (omit: tiny model from scratch)")
    p.add_argument("--preset", default="demo", choices=list(PRESETS),
                   help="from-scratch recipe: demo (the shipped model), position (follows position words, blobby shapes), test")
    p.add_argument("--resolution", type=int, default=0, help="image side (0: native)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps of the UNet stage (0: the preset's, 4000 fine-tuning)")
    p.add_argument("--batch-size", type=int, default=0, help="images per optimizer step (0: the preset's, 32 fine-tuning)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--lora-rank", type=int, default=0, help="> 0: LoRA adapters on the UNet attention")
    p.add_argument("--no-text-encoder", action="store_true", help="keep the text encoder frozen")
    p.add_argument("--unet-only", default="",
                   help='train only the UNet parameters whose names contain one of these comma-separated parts, e.g. "attn2" (cross-attention)')
    p.add_argument("--cond-dropout", type=float, default=0.1, help="empty-caption probability (for CFG)")
    p.add_argument("--min-snr-gamma", type=float, default=5.0, help="min-SNR loss weighting (0: off)")
    p.add_argument("--high-noise-weight", type=float, default=-1.0,
                   help="lowest x0-error weight of a timestep, e.g. 1: makes epsilon models learn position words "
                        "(0: off; default: the preset's, 0 when fine-tuning)")
    p.add_argument("--high-noise-from", type=int, default=-1,
                   help="UNet step from which --high-noise-share and --high-noise-weight apply (default: the preset's, 0 when fine-tuning)")
    p.add_argument("--high-noise-share", type=float, default=-1.0,
                   help="share of timesteps drawn from the noisiest 10%% (default: the preset's, 0 when fine-tuning)")
    p.add_argument("--high-noise-lr", type=float, default=-1.0,
                   help="> 0: the phase from --high-noise-from is a fine-tune of its own: it starts from the EMA weights with a "
                        "fresh optimizer and this learning rate, and the first phase's schedule ends where it starts "
                        "(0: one schedule; default: the preset's, 0 when fine-tuning)")
    p.add_argument("--high-noise-batch", type=int, default=-1,
                   help="images per optimizer step from --high-noise-from (0: --batch-size; default: the preset's)")
    p.add_argument("--high-noise-frozen-text", type=int, default=-1, choices=[-1, 0, 1],
                   help="1: the text encoder stays frozen from --high-noise-from (default: the preset's, 0 when fine-tuning)")
    p.add_argument("--pyramid-noise", type=float, default=-1.0,
                   help="multi-resolution training noise discount, e.g. 0.8 (0: plain Gaussian; default: the preset's)")
    p.add_argument("--pool-size", type=int, default=20000, help="training images whose latents are cached")
    p.add_argument("--vae-steps", type=int, default=1000, help="from scratch: VAE pre-training steps")
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--decoder-steps", type=int, default=600, help="from scratch: decoder fine-tuning, encoder frozen")
    p.add_argument("--no-holdout", action="store_true", help="also draw the held-out colour+shape pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="device of the UNet stage: auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:1")
    p.add_argument("--fp32", action="store_true", help="save fp32 weights (default fp16)")
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints in the work dir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from webui.train.trainer import TrainConfig, train

    cfg = TrainConfig(
        output=args.output,
        work_dir=args.work_dir,
        data=args.data,
        base_model=args.base_model,
        preset=args.preset,
        resolution=args.resolution,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup=args.warmup,
        ema_decay=args.ema_decay,
        checkpoint_every=args.checkpoint_every,
        lora_rank=args.lora_rank,
        train_text_encoder=not args.no_text_encoder,
        unet_only=args.unet_only,
        cond_dropout=args.cond_dropout,
        min_snr_gamma=args.min_snr_gamma,
        high_noise_weight=args.high_noise_weight,
        high_noise_from=args.high_noise_from,
        high_noise_share=args.high_noise_share,
        high_noise_lr=args.high_noise_lr,
        high_noise_batch=args.high_noise_batch,
        high_noise_frozen_text=args.high_noise_frozen_text,
        pyramid_noise=args.pyramid_noise,
        pool_size=args.pool_size,
        vae_steps=args.vae_steps,
        vae_batch=args.vae_batch,
        decoder_steps=args.decoder_steps,
        holdout=not args.no_holdout,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        save_fp16=not args.fp32,
        resume=not args.no_resume,
    )
    train(cfg)
    return 0
