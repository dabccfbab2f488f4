"""``train-controlnet``: a sketch ControlNet for the embedded demo model (no gradio).

Recipe (docs in README "Embedded ControlNet"): the ControlNet is diffusers' ``ControlNetModel``
built ``from_unet`` (a copy of the demo UNet's encoder and mid block, zero-initialised output
convolutions), with a small conditioning embedding (three stride-2 convolutions, 128 px sketch ->
16x16). The demo model's VAE, text encoder and UNet stay frozen. Training pairs are drawn by
``webui.train.sketch_data`` (sketch, scene, caption); the scenes' latents and the captions' text
embeddings are cached once. Loss: plain epsilon MSE over timesteps drawn toward high noise
(``timestep_sampling`` "cubic", the T2I-Adapter schedule), since the layout is decided there; runs 1-2
drew them uniformly and raised the x0-error weight of the noisy ones instead (``high_noise_weight``).

A checkpoint every ``checkpoint_every`` steps (weights, EMA, optimizer, RNG) resumes automatically;
the batch of step ``s`` is a pure function of (seed, s). The result is a diffusers ControlNet folder
(fp16 weights) that loads like any user's file from ``models/ControlNet/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_BASE = "models/Stable-diffusion/demo-shapes"
DEFAULT_OUTPUT = "models/ControlNet/demo-shapes-sketch"


@dataclass(frozen=True)
class ControlTrainConfig:
    base_model: str = DEFAULT_BASE
    output: str = DEFAULT_OUTPUT
    work_dir: str = ""  # default outputs/train/<output name>
    steps: int = 2000  # first phase: warm-up, cosine decay to 10 % over these steps
    batch_size: int = 8
    lr: float = 5e-4
    extra_steps: int = 1200  # second phase: a fresh cosine from extra_lr (the optimizer state carries on)
    extra_lr: float = 2.5e-4
    warmup: int = 100
    ema_decay: float = 0.998
    pool_size: int = 6000
    cond_dropout: float = 0.1  # empty-caption probability (so classifier-free guidance works with it)
    high_noise_weight: float = 0.0  # x0-error weight floor of the noisy timesteps (0: plain epsilon MSE; runs 1-2: 0.25)
    timestep_sampling: str = "cubic"  # or "uniform" (runs 1-2): t = (1 - u**3) T, 79 % in the noisiest half
    embedding_channels: tuple = (8, 16, 32, 64)  # conditioning embedding: 3 stride-2 steps (8x), cheap at 128 px
    checkpoint_every: int = 250
    seed: int = 0
    threads: int = 2
    resume: bool = True


def _components(cfg: ControlTrainConfig):
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    base = Path(cfg.base_model)
    if not (base / "model_index.json").is_file():
        raise ValueError(f"base model {str(base)!r} is not a diffusers folder (no model_index.json)")
    kw = dict(local_files_only=True, torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **kw).eval()
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", **kw).eval()
    te = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", **kw).eval()
    tok = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", local_files_only=True)
    sched = DDPMScheduler.from_pretrained(base, subfolder="scheduler", local_files_only=True)
    for m in (vae, unet, te):
        m.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(cfg.embedding_channels))
    return vae, unet, te, tok, sched, controlnet


def _encode_text(te, tok, captions: list):
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(captions), 256):
            ids = tok(captions[i : i + 256], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
            out.append(te(ids)[0].half())
    return torch.cat(out)


def build_pool(cfg: ControlTrainConfig, vae, te, tok, resolution: int, work: Path) -> dict:
    """Latents (mean/std), sketches (uint8, one channel) and text embeddings of ``pool_size`` items."""
    import numpy as np
    import torch

    from webui.train.data import to_tensor
    from webui.train.sketch_data import SketchData

    path = work / "pool.pt"
    key = {"n": cfg.pool_size, "seed": cfg.seed, "res": resolution, "base": str(cfg.base_model)}
    if cfg.resume and path.is_file():
        pool = torch.load(path, weights_only=False)
        if pool.get("key") == key:
            print(f"[controlnet] pool: reusing {path}", flush=True)
            return pool
    data = SketchData(seed=cfg.seed, size=resolution)
    means, stds, sketches, captions = [], [], [], []
    t0 = time.time()
    with torch.no_grad():
        for start in range(0, cfg.pool_size, 64):
            items = [data.item(i) for i in range(start, min(cfg.pool_size, start + 64))]
            x = torch.stack([to_tensor(it.image) for it in items])
            dist = vae.encode(x).latent_dist
            means.append(dist.mean.half())
            stds.append(dist.std.half())
            sketches.append(torch.from_numpy(np.stack([it.sketch[..., 0] for it in items])))
            captions += [it.caption for it in items]
    pool = {
        "key": key,
        "mean": torch.cat(means),
        "std": torch.cat(stds),
        "sketch": torch.cat(sketches),
        "text": _encode_text(te, tok, captions),
        "empty": _encode_text(te, tok, [""])[0],
    }
    tmp = path.with_suffix(".tmp")
    torch.save(pool, tmp)
    os.replace(tmp, path)
    print(f"[controlnet] pool of {cfg.pool_size} built in {time.time() - t0:.0f}s", flush=True)
    return pool


TIMESTEP_SAMPLINGS = ("uniform", "cubic")


def sample_control_timesteps(mode: str, num: int, n: int, gen):
    """``n`` training timesteps in ``[0, num)``.

    "uniform": every timestep alike (runs 1 and 2). "cubic": ``t = floor((1 - u**3) * num)`` with
    ``u`` uniform, the T2I-Adapter paper's schedule (Mou et al. 2023): P(t >= s) = (1 - s/num) ** (1/3),
    so 79 % of the samples fall in the noisiest half and 46 % in the noisiest tenth, while every timestep
    keeps a non-zero share. A control signal matters where the noisy latent does not yet show the layout
    (the first sampling steps decide where a shape goes and how big it is); at low noise the frozen UNet
    reads the shape off the latent itself, so uniform sampling spends most steps where the ControlNet
    gets almost no gradient.
    """
    import torch

    if mode not in TIMESTEP_SAMPLINGS:
        raise ValueError(f"timestep_sampling {mode!r} is not one of {TIMESTEP_SAMPLINGS}")
    if mode == "uniform":
        return torch.randint(0, num, (n,), generator=gen)
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return ((1.0 - u**3) * num).long().clamp_(0, num - 1)


def lr_at(cfg: ControlTrainConfig, step: int) -> float:
    """Warm-up + cosine over the first ``steps``; then a second cosine from ``extra_lr`` over ``extra_steps``."""
    from webui.train.trainer import _cosine

    if step < cfg.steps:
        return _cosine(cfg.lr, step, cfg.steps, cfg.warmup)
    return _cosine(cfg.extra_lr, step - cfg.steps, cfg.extra_steps, cfg.warmup)


def _with_ema(controlnet, ema):
    """A copy of ``controlnet`` holding the EMA weights (the training copy is left as it is)."""
    import copy

    import torch

    snap = copy.deepcopy(controlnet)
    with torch.no_grad():
        for p, s in zip(snap.parameters(), ema.shadow):
            p.copy_(s)
    return snap


def save_controlnet(controlnet, out: Path) -> None:
    import copy

    import torch

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    copy.deepcopy(controlnet).to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def train_controlnet(cfg: ControlTrainConfig) -> Path:
    import random

    import numpy as np
    import torch
    import torch.nn.functional as F

    from webui.train.trainer import EMA, _atomic_save, loss_weight

    sample_control_timesteps(cfg.timestep_sampling, 1, 1, torch.Generator())  # a bad mode fails before any work
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    out = Path(cfg.output)
    work = Path(cfg.work_dir or Path("outputs") / "train" / out.name)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")
    vae, unet, te, tok, sched, controlnet = _components(cfg)
    resolution = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    t_pool = time.time()
    pool = build_pool(cfg, vae, te, tok, resolution, work)
    t_pool = time.time() - t_pool
    scale = vae.config.scaling_factor
    params = [p for p in controlnet.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    ema = EMA(params, cfg.ema_decay)
    alphas = sched.alphas_cumprod.float()
    snr = alphas / (1 - alphas)
    ckpt = work / "checkpoint.pt"
    start, elapsed = 0, 0.0
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False, map_location="cpu")
        with torch.no_grad():
            for p, t in zip(params, state["params"]):
                p.copy_(t)
        opt.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        start, elapsed = state["step"], state.get("elapsed", 0.0)
        print(f"[controlnet] resumed from {ckpt} at step {start}", flush=True)
    n = pool["mean"].shape[0]
    controlnet.train()
    t0 = time.time() - elapsed
    losses = []
    total = cfg.steps + cfg.extra_steps
    for step in range(start, total):
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        mean, std = pool["mean"][idx].float(), pool["std"][idx].float()
        latents = (mean + std * torch.randn(mean.shape, generator=gen)) * scale
        cond = pool["sketch"][idx].float().div(255.0)[:, None].expand(-1, 3, -1, -1).contiguous()
        text = pool["text"][idx].float()
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.cond_dropout
        text[drop] = pool["empty"].float()
        noise = torch.randn(latents.shape, generator=gen)
        t = sample_control_timesteps(cfg.timestep_sampling, sched.config.num_train_timesteps, cfg.batch_size, gen)
        noisy = sched.add_noise(latents, noise, t)
        down, mid = controlnet(noisy, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
        pred = unet(noisy, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        weight = loss_weight(snr[t], 0.0, False, cfg.high_noise_weight)
        loss = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        losses.append(loss.item())
        done = step + 1
        if done % 25 == 0:
            print(f"[controlnet] step {done}/{total} loss {np.mean(losses[-25:]):.4f} {time.time() - t0:.0f}s", flush=True)
        if done % cfg.checkpoint_every == 0 or done == total:
            _atomic_save(
                {"step": done, "params": [p.detach().clone() for p in params], "optimizer": opt.state_dict(),
                 "ema": ema.state_dict(), "elapsed": time.time() - t0, "config": asdict(cfg)},
                ckpt,
            )
            save_controlnet(_with_ema(controlnet, ema), work / "ema-latest")
    ema.copy_to_params()
    controlnet.eval()
    save_controlnet(controlnet, out)
    timings = {"pool_s": round(t_pool), "train_s": round(time.time() - t0), "steps": total, "batch": cfg.batch_size}
    (work / "timings.json").write_text(json.dumps(timings, indent=2), encoding="utf-8")
    print(f"[controlnet] wrote {out}; {timings}", flush=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    d = ControlTrainConfig()
    p = argparse.ArgumentParser(prog="train-controlnet", description="Train the embedded sketch ControlNet of the demo model.")
    p.add_argument("--base-model", default=d.base_model, help="diffusers SD folder the ControlNet is made for")
    p.add_argument("--output", default=d.output, help="diffusers ControlNet folder to write")
    p.add_argument("--work-dir", default="", help="checkpoints and caches (default outputs/train/<output name>)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--extra-steps", type=int, default=d.extra_steps, help="second phase: a fresh cosine schedule over these steps")
    p.add_argument("--extra-lr", type=float, default=d.extra_lr)
    p.add_argument("--pool-size", type=int, default=d.pool_size, help="training items whose latents are cached")
    p.add_argument("--high-noise-weight", type=float, default=d.high_noise_weight)
    p.add_argument("--timestep-sampling", choices=TIMESTEP_SAMPLINGS, default=d.timestep_sampling,
                   help="training timesteps: uniform, or cubic (biased toward high noise, where the layout is decided)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--no-resume", action="store_true")
    return p


def config_from_args(argv: list[str] | None = None) -> ControlTrainConfig:
    a = build_parser().parse_args(argv)
    return ControlTrainConfig(
        base_model=a.base_model, output=a.output, work_dir=a.work_dir, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
        extra_steps=a.extra_steps, extra_lr=a.extra_lr,
        pool_size=a.pool_size, high_noise_weight=a.high_noise_weight, timestep_sampling=a.timestep_sampling,
        checkpoint_every=a.checkpoint_every, seed=a.seed, threads=a.threads, resume=not a.no_resume,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train_controlnet(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
