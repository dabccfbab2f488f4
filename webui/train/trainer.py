"""Training loop for any SD-architecture model (no gradio).

Two uses:
- from scratch with a ``TinySDConfig`` preset: 1. train the VAE as an autoencoder on the data,
  2. cache latents of a pool of training images, 3. train UNet + text encoder jointly (VAE frozen);
- fine-tuning an existing diffusers folder (``base_model``): full UNet (optionally text encoder),
  or LoRA adapters on the UNet attention projections (peft), saved loadable by
  ``pipe.load_lora_weights``.

The loop is the standard one: random timestep (the ``position`` preset draws a quarter of them
from the noisiest tenth: ``sample_timesteps``), noise (optionally multi-resolution:
``pyramid_noise``) added as the DDPM scheduler does, the UNet predicts the noise (or v, as the
scheduler config says), MSE (optionally min-SNR weighted); EMA of the trained weights, gradient
accumulation, a checkpoint every N steps in ``work_dir/checkpoint`` (weights, EMA, optimizer, step,
RNG state) and automatic resume from it. The batch of step ``s`` is a pure function of (seed, s),
drawn on the CPU, so a resumed run continues exactly where it stopped, on any device.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from webui.config import PerfConfig
from webui.diffusion.perf import resolve_device
from webui.train import model_config
from webui.train.data import FolderData, ShapesData, to_tensor


@dataclass(frozen=True)
class TrainConfig:
    output: str  # where the final diffusers folder (or LoRA file) is written
    work_dir: str = ""  # checkpoints + caches; default outputs/train/<output name>
    data: str = "shapes"  # "shapes" (the drawn-scene generator) or a folder of image + .txt pairs
    base_model: str = ""  # diffusers folder to fine-tune; empty -> a tiny model from scratch
    preset: str = "demo"  # TinySDConfig preset for from-scratch training ("demo", "position", "test")
    resolution: int = 0  # 0 -> the preset's / base model's native resolution
    steps: int = 0  # optimizer steps of the UNet stage; 0 -> the preset's (4000 when fine-tuning)
    batch_size: int = 0  # images per optimizer step; 0 -> the preset's (32 when fine-tuning)
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3
    warmup: int = 100  # linear warm-up steps, then cosine decay to 10%
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    lora_rank: int = 0  # > 0: train LoRA adapters on the UNet attention instead of full weights
    train_text_encoder: bool = True  # ignored with LoRA
    unet_only: str = ""  # comma-separated parts of UNet parameter names, e.g. "attn2": train only those (full rank)
    cond_dropout: float = 0.1  # empty caption probability (classifier-free guidance)
    min_snr_gamma: float = 5.0  # 0 -> plain MSE
    high_noise_weight: float = -1.0  # floor of the x0-error weight (see loss_weight); 0 -> off; < 0 -> the preset's (0 fine-tuning)
    high_noise_from: int = -1  # optimizer step from which the share and weight above apply; < 0 -> the preset's (0 fine-tuning)
    high_noise_share: float = -1.0  # share of timesteps from the noisiest 10 %; < 0 -> the preset's (0 fine-tuning)
    # a second phase from step high_noise_from (> 0): < 0 -> the preset's (0 fine-tuning)
    high_noise_lr: float = -1.0  # > 0: the phase starts afresh from the EMA weights with a new optimizer and this
    #                              learning rate (warm-up, cosine to 10 %); the first phase's cosine then ends at its
    #                              last step. 0: one schedule over all the steps
    high_noise_batch: int = -1  # images per optimizer step in the phase (0: batch_size)
    high_noise_frozen_text: int = -1  # 1: the text encoder is frozen in the phase, as the first phase left it
    pyramid_noise: float = -1.0  # multi-resolution noise discount (0: plain Gaussian); < 0 -> the preset's (0 fine-tuning)
    pool_size: int = 20000  # training images whose latents are cached
    vae_steps: int = 1000  # from scratch only: autoencoder pre-training steps
    vae_batch: int = 16
    vae_crop: int = 64  # the VAE is fully convolutional: pre-train it on random crops
    vae_lr: float = 1e-3
    decoder_steps: int = 600  # from scratch only: decoder fine-tuning with the encoder (latents) frozen
    holdout: bool = True  # keep the held-out colour+shape pairs out of generated data
    seed: int = 0
    threads: int = 2
    device: str = "auto"  # the denoiser stage's device: "auto" (CUDA, then MPS, else CPU), "cpu", "cuda", "cuda:1"
    save_fp16: bool = True
    resume: bool = True


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


class EMA:
    """Exponential moving average of a list of parameters (with the usual warm-up of the decay)."""

    def __init__(self, params: list, decay: float):
        self.params = params
        self.decay = decay
        self.shadow = [p.detach().clone().float() for p in params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - d)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for s, p in zip(self.shadow, self.params):
            p.copy_(s.to(p.dtype))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.shadow = [t.to(p.device, torch.float32) for t, p in zip(state["shadow"], self.params)]


def _cosine(lr: float, step: int, steps: int, warmup: int) -> float:
    warm = min(1.0, (step + 1) / max(1, warmup))
    progress = min(1.0, step / max(1, steps))
    return lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def restarts(cfg: TrainConfig) -> bool:
    """Whether the high-noise phase is a second run of its own (fresh optimizer from the EMA weights)."""
    return cfg.high_noise_lr > 0 and 0 < cfg.high_noise_from < cfg.steps


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Warm-up then cosine decay to 10 %; with a restarting high-noise phase, one such schedule per phase."""
    if not restarts(cfg):
        return _cosine(cfg.lr, step, cfg.steps, cfg.warmup)
    if step < cfg.high_noise_from:
        return _cosine(cfg.lr, step, cfg.high_noise_from, cfg.warmup)
    first = cfg.high_noise_from
    return _cosine(cfg.high_noise_lr, step - first, cfg.steps - first, cfg.warmup)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _progress(total: int, initial: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, mininterval=5.0)


# ----------------------------------------------------------------------------------------------
# Components
# ----------------------------------------------------------------------------------------------


@dataclass
class Components:
    vae: object
    text_encoder: object
    tokenizer: object
    unet: object
    noise_scheduler: object
    resolution: int


def load_components(cfg: TrainConfig) -> Components:
    if cfg.base_model:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        base = Path(cfg.base_model)
        if not (base / "model_index.json").is_file():
            raise ValueError(f"base model {str(base)!r} is not a diffusers folder (no model_index.json)")
        kw = dict(local_files_only=True, torch_dtype=torch.float32)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **kw)
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", **kw)
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", **kw)
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", local_files_only=True)
        sched = DDPMScheduler.from_pretrained(base, subfolder="scheduler", local_files_only=True)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        resolution = cfg.resolution or unet.config.sample_size * factor
        return Components(vae, text_encoder, tokenizer, unet, sched, resolution)

    from webui.diffusion.tokenizer import load_clip_tokenizer

    arch = model_config.preset(cfg.preset)
    torch.manual_seed(cfg.seed)
    return Components(
        vae=model_config.build_vae(arch),
        text_encoder=model_config.build_text_encoder(arch),
        tokenizer=load_clip_tokenizer(),
        unet=model_config.build_unet(arch),
        noise_scheduler=model_config.build_scheduler(arch),
        resolution=cfg.resolution or arch.resolution,
    )


def make_data(cfg: TrainConfig, resolution: int):
    if cfg.data == "shapes":
        return ShapesData(seed=cfg.seed, size=resolution, holdout=cfg.holdout)
    return FolderData(cfg.data, size=resolution)


# ----------------------------------------------------------------------------------------------
# Stage 1: the VAE (from scratch only)
# ----------------------------------------------------------------------------------------------


def _crop_batch(data, rng, n: int, resolution: int, crop: int, align: int) -> torch.Tensor:
    """``n`` random ``crop``-pixel crops (offsets multiples of ``align``) of generated images, [-1, 1]."""
    batch = []
    for _ in range(n):
        img, _ = data.item(int(rng.integers(1 << 30)))
        y, x = rng.integers(0, (resolution - crop) // align + 1, size=2) * align
        batch.append(to_tensor(np.ascontiguousarray(img[y : y + crop, x : x + crop])))
    return torch.stack(batch)


def train_vae(cfg: TrainConfig, comp: Components, data, work: Path) -> None:
    from diffusers import AutoencoderKL

    done = work / "vae"
    if cfg.resume and (done / "config.json").is_file():
        comp.vae = AutoencoderKL.from_pretrained(done, local_files_only=True, torch_dtype=torch.float32)
        print(f"[train] VAE: reusing {done}")
        return
    vae = comp.vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    crop = min(cfg.vae_crop, comp.resolution)
    bar = _progress(cfg.vae_steps, 0, "vae")
    for step in range(cfg.vae_steps):
        x0 = _crop_batch(data, np.random.default_rng([cfg.seed, 7, step]), cfg.vae_batch, comp.resolution, crop, 1)
        post = vae.encode(x0).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean() / (crop * crop * 3)
        loss = F.mse_loss(rec, x0) + 0.5 * F.l1_loss(rec, x0) + 1e-3 * kl
        for g in opt.param_groups:
            g["lr"] = cfg.vae_lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.update(1)
    bar.close()
    vae.eval()
    vae.save_pretrained(done)


def finetune_decoder(cfg: TrainConfig, comp: Components, data, work: Path) -> None:
    """Sharpen the decoder with the encoder frozen: the latent space (and so the UNet) is unchanged."""
    from diffusers import AutoencoderKL

    done = work / "vae-decoder"
    if cfg.resume and (done / "config.json").is_file():
        scale = comp.vae.config.scaling_factor
        comp.vae = AutoencoderKL.from_pretrained(done, local_files_only=True, torch_dtype=torch.float32)
        comp.vae.register_to_config(scaling_factor=scale)
        print(f"[train] VAE decoder: reusing {done}")
        return
    vae = comp.vae
    vae.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.vae_lr * 0.5, weight_decay=0.0)
    crop = min(cfg.vae_crop, comp.resolution)
    bar = _progress(cfg.decoder_steps, 0, "decoder")
    for step in range(cfg.decoder_steps):
        # crops on the latent grid (8 px), as the decoder sees whole images later
        x0 = _crop_batch(data, np.random.default_rng([cfg.seed, 11, step]), cfg.vae_batch, comp.resolution, crop, 8)
        with torch.no_grad():
            z = vae.encode(x0).latent_dist.mean
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x0) + 0.5 * F.l1_loss(rec, x0)
        for g in opt.param_groups:
            g["lr"] = cfg.vae_lr * 0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.decoder_steps)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.update(1)
    bar.close()
    vae.requires_grad_(False)
    vae.eval()
    vae.save_pretrained(done)


# ----------------------------------------------------------------------------------------------
# Stage 2: cached latents
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def build_pool(cfg: TrainConfig, comp: Components, data, work: Path, set_scale: bool) -> dict:
    path = work / "latents.pt"
    n = cfg.pool_size if cfg.data == "shapes" else min(cfg.pool_size, len(data))
    key = {"n": n, "seed": cfg.seed, "data": cfg.data, "res": comp.resolution}
    if cfg.resume and path.is_file():
        pool = torch.load(path, weights_only=False)
        if pool.get("key") == key:
            if set_scale:
                comp.vae.register_to_config(scaling_factor=pool["scaling_factor"])
            print(f"[train] latents: reusing {path} ({n})")
            return pool
    vae = comp.vae.eval()
    means, stds, captions = [], [], []
    bar = _progress(n, 0, "encode")
    for start in range(0, n, 64):
        items = [data.item(i) for i in range(start, min(n, start + 64))]
        x = torch.stack([to_tensor(np.ascontiguousarray(img)) for img, _ in items]).to(vae.device)
        dist = vae.encode(x).latent_dist
        means.append(dist.mean.half().cpu())
        stds.append(dist.std.half().cpu())
        captions += [c for _, c in items]
        bar.update(len(items))
    bar.close()
    mean, std = torch.cat(means).float(), torch.cat(stds).float()
    if set_scale:
        scale = float(1.0 / mean.std())
        comp.vae.register_to_config(scaling_factor=scale)
    scale = comp.vae.config.scaling_factor
    ids = comp.tokenizer(
        captions, padding="max_length", max_length=comp.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    pool = {"key": key, "mean": mean.half(), "std": std.half(), "ids": ids, "scaling_factor": scale}
    _atomic_save(pool, path)
    return pool


# ----------------------------------------------------------------------------------------------
# Stage 3: the denoiser
# ----------------------------------------------------------------------------------------------


def loss_weight(snr: torch.Tensor, gamma: float, v_pred: bool, floor: float = 0.0) -> torch.Tensor:
    """Per-sample weight of the MSE, from the signal-to-noise ratio of each sample's timestep.

    Written as the weight the loss puts on the x0 error: epsilon MSE = SNR * x0 MSE and
    v MSE = (SNR + 1) * x0 MSE. epsilon (fine-tuning SD 1.x): min-SNR, x0 weight min(SNR, gamma).
    v (SD 2.x-style models): x0 weight min(SNR, gamma) + 1, so the high-noise steps, where the layout
    is decided, keep full weight while the low-noise ones are capped. gamma 0: plain MSE.

    ``floor`` > 0 raises the x0 weight of the noisy steps to at least ``floor``. With epsilon and
    min-SNR the x0 error of SD's noisiest step (SNR 0.005) weighs 0.005: the loss barely asks where
    the shape goes, so position words are never learned. With a floor of 0.5 it weighs 0.5 (an
    epsilon weight of about 100 there), while the low-noise steps keep their min-SNR weight.
    """
    if gamma <= 0 and floor <= 0:
        return torch.ones_like(snr)
    capped = torch.clamp(snr, max=gamma) if gamma > 0 else snr
    if floor > 0:
        capped = torch.clamp(capped, min=floor)
    return (capped + 1) / (snr + 1) if v_pred else capped / snr


def sample_timesteps(num: int, n: int, high_share: float, gen: torch.Generator) -> torch.Tensor:
    """Uniform timesteps, except that a ``high_share`` of them come from the noisiest tenth.

    Where a shape goes is decided in the first sampling steps, where almost no signal is left; those
    are the only training steps where position words are needed (elsewhere the noisy latent shows
    the layout), so a model that must learn position from text needs more of them.
    """
    t = torch.randint(0, num, (n,), generator=gen)
    if high_share <= 0:
        return t
    high = torch.randint(num - num // 10, num, (n,), generator=gen)
    pick = torch.rand(n, generator=gen) < high_share
    return torch.where(pick, high, t)


def pyramid_noise(shape: tuple, discount: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise with extra low-frequency parts: white noise plus ``discount ** i`` times noise
    drawn at 1/2**i of the resolution (bilinearly upsampled), down to 1x1, each sample scaled back to
    unit standard deviation ("multi-resolution" or "pyramid" noise).

    A plain Gaussian hides fine detail long before it hides the coarse layout: at SD 1.x's noisiest
    step the mean over half a 16x16 latent still shows where a large shape is, so the denoiser
    reads the layout from the noise and ignores position words. The extra coarse noise hides the
    layout at the high-noise steps (where text must decide it) and barely changes the low-noise
    ones. ``discount`` 0 gives plain Gaussian noise.
    """
    noise = torch.randn(shape, generator=gen)
    if discount <= 0:
        return noise
    b, c, h, w = shape
    i = 1
    while min(h, w) >> (i - 1) > 1:
        coarse = torch.randn((b, c, max(1, h >> i), max(1, w >> i)), generator=gen)
        noise = noise + discount**i * F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        i += 1
    return noise / noise.std(dim=(1, 2, 3), keepdim=True)


def _add_lora(unet, rank: int) -> list:
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    return [p for p in unet.parameters() if p.requires_grad]


def train_denoiser(cfg: TrainConfig, comp: Components, pool: dict, work: Path, on_checkpoint=None) -> list:
    """Train the UNet (and text encoder) on the cached latents; afterwards the EMA weights are in the
    models, back on the CPU. ``on_checkpoint(step, ema)`` is called after each checkpoint is saved.

    Batches, noise and timesteps are drawn on the CPU from (seed, step), whatever the device, so a
    run resumed on another device sees the same data."""
    unet, te = comp.unet, comp.text_encoder
    comp.vae.requires_grad_(False)
    device = resolve_device(PerfConfig(device=cfg.device))  # the app's rule: auto = CUDA > MPS > CPU
    unet.to(device)
    te.to(device)
    if cfg.lora_rank > 0:
        te.requires_grad_(False)
        params = _add_lora(unet, cfg.lora_rank)
        train_te = False
    else:
        parts = [x.strip() for x in cfg.unet_only.split(",") if x.strip()]
        for name, p in unet.named_parameters():
            p.requires_grad_(not parts or any(x in name for x in parts))
        train_te = cfg.train_text_encoder
        te.requires_grad_(train_te)
        params = [p for p in unet.parameters() if p.requires_grad] + ([p for p in te.parameters()] if train_te else [])
        if not params:
            raise ValueError(f"--unet-only {cfg.unet_only!r} matches no UNet parameter and the text encoder is frozen")
    unet.train()
    te.train(train_te)

    def optimizer():
        # parameters left without a gradient (a frozen text encoder) are skipped by AdamW, decay included
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2 if cfg.lora_rank == 0 else 0.0)

    second = restarts(cfg)
    opt = optimizer()
    ema = EMA(params, cfg.ema_decay)
    sched = comp.noise_scheduler
    alphas = sched.alphas_cumprod.float()
    snr = alphas / (1 - alphas)
    empty_ids = comp.tokenizer(
        [""], padding="max_length", max_length=comp.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids[0]

    v_pred = sched.config.prediction_type == "v_prediction"
    if sched.config.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type {sched.config.prediction_type!r} is not supported for training")

    ckpt = work / "checkpoint.pt"
    start = 0
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False, map_location="cpu")
        with torch.no_grad():
            for p, t in zip(params, state["params"]):
                p.copy_(t)
        opt.load_state_dict(state["optimizer"])  # moves the moments onto the parameters' device
        ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        start = state["step"]
        print(f"[train] resumed from {ckpt} at step {start}")

    n = pool["mean"].shape[0]
    scale = pool["scaling_factor"]
    bar = _progress(cfg.steps, start, "unet")
    t0 = time.time()
    for step in range(start, cfg.steps):
        late = step >= cfg.high_noise_from  # the high-noise phase (from the start unless a preset says)
        if second and step == cfg.high_noise_from:
            # as fine-tuning the finished first phase: its EMA weights, a fresh optimizer and schedule
            ema.copy_to_params()
            opt = optimizer()
            print(f"\n[train] step {step}: high-noise phase from the EMA weights", flush=True)
        frozen_text = late and cfg.high_noise_frozen_text > 0  # zero_grad below leaves its gradients at None
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        share, floor = (cfg.high_noise_share, cfg.high_noise_weight) if late else (0.0, 0.0)
        batch = cfg.high_noise_batch if late and cfg.high_noise_batch > 0 else cfg.batch_size
        micro = max(1, batch // cfg.grad_accum)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for m in range(cfg.grad_accum):
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + m)
            idx = torch.randint(0, n, (micro,), generator=gen)
            mean, std = pool["mean"][idx].float(), pool["std"][idx].float()
            latents = (mean + std * torch.randn(mean.shape, generator=gen)) * scale
            ids = pool["ids"][idx].clone()
            drop = torch.rand(micro, generator=gen) < cfg.cond_dropout
            ids[drop] = empty_ids
            noise = pyramid_noise(tuple(latents.shape), cfg.pyramid_noise, gen)
            t = sample_timesteps(sched.config.num_train_timesteps, micro, share, gen)
            noisy = sched.add_noise(latents, noise, t)  # on the CPU, then moved with the rest of the batch
            target = sched.get_velocity(latents, noise, t) if v_pred else noise
            weight = loss_weight(snr[t], cfg.min_snr_gamma, v_pred, floor)
            noisy, target, weight, t, ids = (x.to(device) for x in (noisy, target, weight, t, ids))
            with torch.set_grad_enabled(train_te and not frozen_text):
                cond = te(ids)[0]
            pred = unet(noisy, t, cond).sample
            per = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
            per = per * weight
            loss = per.mean() / cfg.grad_accum
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        bar.set_postfix(loss=f"{total:.4f}", lr=f"{lr_at(cfg, step):.1e}", refresh=False)
        bar.update(1)
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            _atomic_save(
                {
                    "step": done,
                    "params": [p.detach().clone() for p in params],
                    "optimizer": opt.state_dict(),
                    "ema": ema.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                    "python_rng": random.getstate(),
                    "config": asdict(cfg),
                },
                ckpt,
            )
            print(f"\n[train] step {done}/{cfg.steps} loss {total:.4f} checkpoint saved ({time.time() - t0:.0f}s)", flush=True)
            if on_checkpoint is not None:
                on_checkpoint(done, ema)
    bar.close()
    ema.copy_to_params()
    unet.to("cpu").eval()
    te.to("cpu").eval()
    return params


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------


def save_pipeline(cfg: TrainConfig, comp: Components, out: Path) -> None:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    scheduler = DPMSolverMultistepScheduler.from_config(comp.noise_scheduler.config)
    pipe = StableDiffusionPipeline(
        vae=comp.vae,
        text_encoder=comp.text_encoder,
        tokenizer=comp.tokenizer,
        unet=comp.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if cfg.save_fp16:
        pipe.to(torch.float16)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    if cfg.save_fp16:
        # Weights are stored in half precision to stay small, but the compute dtype is float32:
        # diffusers upcasts by default, transformers' "auto" dtype follows this config field.
        te_config = tmp / "text_encoder" / "config.json"
        conf = json.loads(te_config.read_text(encoding="utf-8"))
        for key in ("dtype", "torch_dtype"):
            if key in conf:
                conf[key] = "float32"
        te_config.write_text(json.dumps(conf, indent=2), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def save_lora(comp: Components, out: Path) -> Path:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(comp.unet))
    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=layers, safe_serialization=True)
    return out / "pytorch_lora_weights.safetensors"


PRESET_RECIPE = (  # TrainConfig and TinySDConfig fields
    "high_noise_share", "high_noise_weight", "high_noise_from", "high_noise_lr", "high_noise_batch",
    "high_noise_frozen_text", "pyramid_noise",
)


def resolve_defaults(cfg: TrainConfig) -> TrainConfig:
    """Fill the settings left to the preset: UNet steps, batch size, the high-noise phase (timestep
    share, x0 weight floor, first step, learning rate, batch, frozen text encoder), pyramid noise."""
    from dataclasses import replace

    arch = None if cfg.base_model else model_config.preset(cfg.preset)
    steps = cfg.steps or (arch.steps if arch else 4000)
    batch = cfg.batch_size or (arch.batch_size if arch else 32)
    # < 0 means "the preset's"; fine-tuning has no preset, and all of these are off (0) there
    left = {name: getattr(arch, name) if arch else 0 for name in PRESET_RECIPE if getattr(cfg, name) < 0}
    return replace(cfg, steps=steps, batch_size=batch, **left)


def train(cfg: TrainConfig) -> Path:
    """Run every stage; returns the path of what was written (model folder or LoRA file)."""
    cfg = resolve_defaults(cfg)
    resolve_device(PerfConfig(device=cfg.device))  # a bad --device fails now, not after the VAE stages
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output)
    work = Path(cfg.work_dir or Path("outputs") / "train" / out.name)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")
    timings = {}

    # 1. components
    comp = load_components(cfg)
    data = make_data(cfg, comp.resolution)
    scratch = not cfg.base_model

    # 2. the autoencoder (from scratch only)
    t = time.time()
    if scratch and cfg.vae_steps > 0:
        train_vae(cfg, comp, data, work)
    timings["vae_s"] = time.time() - t

    # 3. cached latents
    t = time.time()
    pool = build_pool(cfg, comp, data, work, set_scale=scratch)
    timings["latents_s"] = time.time() - t

    # 3b. sharper decoder (encoder frozen, so the cached latents stay valid)
    t = time.time()
    if scratch and cfg.decoder_steps > 0:
        finetune_decoder(cfg, comp, data, work)
    timings["decoder_s"] = time.time() - t

    # 4. UNet (+ text encoder) / LoRA (the VAE stays frozen)
    t = time.time()
    train_denoiser(cfg, comp, pool, work)
    timings["unet_s"] = time.time() - t

    # 5. save
    if cfg.lora_rank > 0:
        result = save_lora(comp, out)
    else:
        save_pipeline(cfg, comp, out)
        result = out
    (work / "timings.json").write_text(json.dumps(timings, indent=2), encoding="utf-8")
    print(f"[train] wrote {result}; timings {json.dumps({k: round(v) for k, v in timings.items()})}")
    return result
