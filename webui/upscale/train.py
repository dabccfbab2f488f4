"""``python app.py train-upscaler``: train the embedded Real-ESRGAN-compact (SRVGG) upscalers, x2 and x4.

Data: the photos shipped in installed packages (``webui.upscale.photos``; some held out for the
evaluation) and the demo model's drawn scenes (``webui.train.data``), cut into random patches,
flipped/rotated, and degraded Real-ESRGAN-style (``webui.upscale.degrade``). The network is spandrel's
``SRVGGNetCompact``, so the saved state dict has the official key layout (``body.N.weight``) and loads
through the same path as a user's Real-ESRGAN file. L1 loss, Adam, cosine learning rate; everything
is seeded, so a run is reproducible from ``--seed`` (on the same machine and torch build).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from webui.upscale.degrade import Degradation, degrade

EMBEDDED_DIR = Path("models/RealESRGAN")


def embedded_file(scale: int) -> str:
    """File name of the embedded upscaler for a scale (its name in the upscaler list is the stem)."""
    return f"StudioCompact-x{scale}.safetensors"


@dataclass(frozen=True)
class UpscalerTrainConfig:
    scale: int = 4  # 2 or 4
    seed: int = 0
    steps: int = 1500  # optimizer steps
    batch_size: int = 16
    lr_patch: int = 32  # low-resolution patch side; the target is lr_patch * scale
    num_feat: int = 48  # SRVGG width
    num_conv: int = 8  # SRVGG body convolutions
    lr: float = 1e-3  # peak learning rate (cosine to lr_min after warmup)
    lr_min: float = 1e-5
    warmup: int = 50
    p_scene: float = 0.15  # share of patches cut from drawn scenes instead of photos
    scenes: int = 48  # drawn scenes in the pool
    threads: int = 2  # torch CPU threads
    eval_every: int = 0  # log the held-out PSNR vs Lanczos every N steps (0: never; for recipe work only)
    degradation: Degradation = Degradation()
    out_dir: Path = EMBEDDED_DIR


class PatchSampler:
    """Seeded random (HR patch, degraded LR patch) pairs from photos (at 3 zoom levels) and scenes."""

    def __init__(self, config: UpscalerTrainConfig):
        from PIL import Image

        from webui.train.data import render_scene, scene_for_seed
        from webui.upscale.photos import training_photos

        self.config = config
        self.rng = np.random.default_rng(config.seed)
        hr = config.lr_patch * config.scale
        self.sources = []
        for photo in training_photos():
            h, w = photo.pixels.shape[:2]
            for zoom in (1.0, 0.75, 0.5):
                size = (round(w * zoom), round(h * zoom))
                if min(size) >= hr:
                    img = photo.pixels if zoom == 1.0 else np.asarray(Image.fromarray(photo.pixels).resize(size, Image.LANCZOS))
                    self.sources.append(img)
        self.scenes = [render_scene(scene_for_seed(10_000 + i), size=max(256, hr)) for i in range(config.scenes)]

    def _patch(self) -> np.ndarray:
        hr = self.config.lr_patch * self.config.scale
        pool = self.scenes if self.rng.random() < self.config.p_scene else self.sources
        img = pool[self.rng.integers(len(pool))]
        y = self.rng.integers(img.shape[0] - hr + 1)
        x = self.rng.integers(img.shape[1] - hr + 1)
        patch = img[y : y + hr, x : x + hr]
        patch = np.rot90(patch, self.rng.integers(4))
        if self.rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.ascontiguousarray(patch)

    def batch(self):
        """-> (lr float32 [B, 3, p, p], hr float32 [B, 3, p*s, p*s]) in [0, 1]."""
        import torch

        his, los = [], []
        for _ in range(self.config.batch_size):
            hr = self._patch()
            his.append(hr)
            los.append(degrade(hr, self.config.scale, self.rng, self.config.degradation))

        def stack(arrs):
            return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float().div(255.0)

        return stack(los), stack(his)


def build_network(config: UpscalerTrainConfig):
    """A freshly initialised SRVGGNetCompact; its last conv starts small, so it starts as nearest upscaling."""
    import torch

    from webui.upscale.spandrel_import import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(config.seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=config.num_feat, num_conv=config.num_conv, upscale=config.scale)
    with torch.no_grad():
        net.body[-1].weight.mul_(0.1)
        net.body[-1].bias.zero_()
    return net


def _lr_at(step: int, config: UpscalerTrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * t))


def _log_held_out(net, scale: int, log) -> None:
    from webui.upscale.evaluate import evaluate, network_upscale

    net.eval()
    scores = evaluate(network_upscale(net), scale)
    net.train()
    mean = {m: np.mean([s.psnr for s in scores if s.method == m]) for m in ("Lanczos", "model")}
    log(f"x{scale} held-out PSNR-Y: model {mean['model']:.2f} dB, Lanczos {mean['Lanczos']:.2f} dB")


def train(config: UpscalerTrainConfig, log=print) -> Path:
    """Train one scale and save ``<out_dir>/StudioCompact-x<scale>.safetensors``; returns its path."""
    import torch
    from safetensors.torch import save_file

    if config.scale not in (2, 4):
        raise ValueError(f"scale must be 2 or 4, not {config.scale}")
    torch.set_num_threads(config.threads)
    sampler = PatchSampler(config)
    net = build_network(config)
    params = sum(p.numel() for p in net.parameters())
    log(f"x{config.scale}: SRVGG {config.num_feat}nf {config.num_conv}nc, {params:,} parameters, {config.steps} steps")
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.99))
    start, running = time.perf_counter(), None
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config)
        lr_img, hr_img = sampler.batch()
        loss = torch.nn.functional.l1_loss(net(lr_img), hr_img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == config.steps - 1:
            log(f"x{config.scale} step {step:5d}  l1 {running:.4f}  {time.perf_counter() - start:7.1f} s")
        if config.eval_every and step and step % config.eval_every == 0:
            _log_held_out(net, config.scale, log)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    path = config.out_dir / embedded_file(config.scale)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata={"architecture": "SRVGGNetCompact", "scale": str(config.scale), "seed": str(config.seed), "steps": str(config.steps)})
    log(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - start:.0f} s")
    return path


def parse_args(argv: list[str]) -> tuple[list[UpscalerTrainConfig], bool]:
    p = argparse.ArgumentParser(prog="app.py train-upscaler", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=int, nargs="+", default=[2, 4], choices=[2, 4])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per scale (default: the recipe's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=EMBEDDED_DIR)
    p.add_argument("--eval-every", type=int, default=0, help="log the held-out PSNR every N steps")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation after training")
    a = p.parse_args(argv)
    configs = []
    for scale in a.scale:
        c = RECIPES[scale]
        c = replace(c, seed=a.seed, threads=a.threads, out_dir=a.out_dir, eval_every=a.eval_every)
        if a.steps is not None:
            c = replace(c, steps=a.steps)
        configs.append(c)
    return configs, not a.no_eval


# The shipped recipes (what `app.py train-upscaler` runs by default)
RECIPES = {
    2: UpscalerTrainConfig(scale=2, lr_patch=24, batch_size=12, steps=800),
    4: UpscalerTrainConfig(scale=4, lr_patch=32, batch_size=12, steps=1600),
}


def main(argv: list[str]) -> int:
    configs, evaluate = parse_args(argv)
    for config in configs:
        path = train(config)
        if evaluate:
            from webui.upscale.evaluate import evaluate_file, format_table

            print(format_table(evaluate_file(path, config.scale)))
    return 0
