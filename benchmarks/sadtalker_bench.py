"""SadTalker engine speed: seconds of compute per second of audio (25 fps) for renderer batch
sizes 1, 2 and 8, on whatever device is present, with ratios against batch size 1 from the
same run. Random weights (timing does not depend on values).

    python benchmarks/sadtalker_bench.py                 # tiny widths (+ full-width 256 frame on CPU)
    python benchmarks/sadtalker_bench.py --full          # official widths (meant for a GPU)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from talking_head.sadtalker import SadTalkerConfig, SadTalkerEngine, build_networks
from talking_head.sadtalker.config import FPS


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(cfg, size, device, batch_sizes, frames, warmup=True):
    nets = build_networks(cfg, size, "crop", device=device)
    rng = np.random.default_rng(0)
    face = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    mels = rng.standard_normal((frames, 80, 16)).astype(np.float32)
    results = {}
    for bs in batch_sizes:
        engine = SadTalkerEngine(nets, batch_size=bs)
        src = engine.source_coeffs(face)
        coeffs = engine.coefficients(mels, src)
        drv = engine.driving_coeffs(coeffs, src)
        if warmup:
            for _ in engine.render(face, src, drv[:bs]):
                pass
        sync(device)
        t = time.perf_counter()
        n = sum(1 for _ in engine.render(face, src, drv))
        sync(device)
        results[bs] = (time.perf_counter() - t) / (n / FPS)
    return results


def report(title, res):
    base = res[min(res)]
    print(title)
    for bs, s in res.items():
        print(f"  batch {bs}: {s:9.3f} s per audio-second  ({s / base:5.2f} x batch 1)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--full", action="store_true", help="official widths for the batch sweep")
    ap.add_argument("--skip-full-frame", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    cfg = SadTalkerConfig() if args.full else SadTalkerConfig.tiny()
    res = bench(cfg, args.size, device, (1, 2, 8), args.frames)
    report(f"render {args.size}px, {'official' if args.full else 'tiny'} widths, {args.frames} frames", res)
    if device.type == "cpu" and not args.full and not args.skip_full_frame:
        nets = build_networks(SadTalkerConfig(), 256, "crop")
        engine = SadTalkerEngine(nets, batch_size=1)
        face = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
        src = engine.source_coeffs(face)
        drv = np.tile(src.semantics(70), (1, 1))
        t = time.perf_counter()
        next(iter(engine.render(face, src, drv)))  # includes kp detector + source encoding
        total = time.perf_counter() - t
        with torch.inference_mode():
            vol, comp = nets.generator.encode_source(torch.rand(1, 3, 256, 256))
            kp = torch.rand(1, 15, 3) - 0.5
            t = time.perf_counter()
            nets.generator.render(vol, comp, kp, kp)
            per = time.perf_counter() - t
        print(f"official widths, one 256 frame on CPU: first frame {total:.1f} s (with source encoding), "
              f"per-frame render {per:.1f} s = {per * FPS:.0f} s per audio-second")


if __name__ == "__main__":
    main()
