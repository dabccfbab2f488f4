"""Held-out adherence of the embedded sketch ControlNet (classical checks, no learned judge).

Cases: one shape of a held-out colour+shape pair (``VOCAB.held_out``: never drawn in training), at a
random place and size, sketched as an outline or a filled silhouette (``sketch_data.draw_sketch``),
prompted "a {colour} {shape}, {background} background" (no position words: the sketch says where).
Each image is generated through the app's own path (``ImageService.txt2img`` with a ControlNet unit
naming the model in models/ControlNet/), then checked:
- IoU of the generated shape's mask (pixels far from the background colour read off the border,
  as ``evaluate.analyse`` finds them) with the sketch's filled region;
- colour and background: ``evaluate.analyse``'s nearest named colours;
- shape class (reported, not a target: the sketch already draws it).

CLI: ``python -m webui.train.control_eval [--controlnet demo-shapes-sketch] [--n 48] [--grid docs/controlnet-grid.png]``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SketchCase:
    prompt: str
    colour: str
    shape: str
    background: str
    outline: bool
    sketch: np.ndarray  # uint8 RGB, white on black
    filled: np.ndarray  # bool


def held_out_sketch_cases(n: int = 48, seed: int = 12345, size: int = 128) -> list[SketchCase]:
    from webui.train.data import VOCAB, Scene
    from webui.train.sketch_data import _free_shape, draw_sketch

    rng = random.Random(seed)
    cases = []
    for k in range(n):
        colour, shape = VOCAB.held_out[k % len(VOCAB.held_out)]
        spec = _free_shape(rng, shape, colour, [])
        background = rng.choice([c for c in VOCAB.colours if c != colour])
        outline = k % 2 == 1
        scene = Scene(background=(background,), shapes=(spec,), caption="")
        sketch, filled = draw_sketch(scene, size, outline, rng)
        cases.append(SketchCase(f"a {colour} {shape}, {background} background", colour, shape, background, outline, sketch, filled))
    return cases


def shape_mask(image) -> np.ndarray:
    """Pixels far from the background colour (read from the border), as ``evaluate.analyse`` sees the shape."""
    import cv2

    from webui.train.evaluate import _border

    img = np.asarray(image.convert("RGB"), dtype=np.uint8)
    bw = max(2, img.shape[1] // 32)
    bg = np.median(_border(img, bw).astype(np.float32), axis=0)
    dist = np.sqrt(np.sum((img.astype(np.float32) - bg) ** 2, axis=2))
    mask = (dist > 45).astype(np.uint8)
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def evaluate_controlnet(controlnet: str = "demo-shapes-sketch", model: str = "demo-shapes", models_dir: str = "models",
                        n: int = 48, steps: int = 20, cfg: float = 5.0, seed: int = 0, threads: int = 2,
                        grid: str = "", weight: float = 1.0) -> dict:
    import torch
    from PIL import Image

    from webui.config import AppConfig, PathsConfig
    from webui.controlnet.units import ControlNetUnit
    from webui.diffusion.service import ImageService
    from webui.diffusion.types import Txt2ImgRequest
    from webui.train.evaluate import analyse

    torch.set_num_threads(threads)
    root = Path(models_dir).resolve()
    service = ImageService(AppConfig(paths=PathsConfig(models_dir=root, outputs_dir=root.parent / "outputs")))
    cases = held_out_sketch_cases(n)
    rows, images = [], []
    t0 = time.time()
    for i, case in enumerate(cases):
        unit = ControlNetUnit(module="none", model=controlnet, weight=weight, image=Image.fromarray(case.sketch))
        req = Txt2ImgRequest(prompt=case.prompt, seed=seed + i, steps=steps, cfg_scale=cfg, width=128, height=128,
                             sampler="DPM++ 2M", model=model, save=False, controlnet_units=(unit,))
        img = service.txt2img(req).images[0]
        a = analyse(img)
        rows.append({"prompt": case.prompt, "outline": case.outline, "iou": iou(shape_mask(img), case.filled),
                     "colour": a.colour == case.colour, "background": a.background == case.background,
                     "shape": a.shape == case.shape})
        images.append((case.sketch, np.asarray(img.convert("RGB"))))
    seconds = time.time() - t0

    def mean(key, subset=None):
        vals = [float(r[key]) for r in rows if subset is None or r["outline"] == subset]
        return round(float(np.mean(vals)), 3) if vals else None

    result = {
        "controlnet": controlnet, "n": n, "steps": steps, "cfg": cfg, "weight": weight,
        "iou": mean("iou"), "iou_filled": mean("iou", False), "iou_outline": mean("iou", True),
        "iou_at_least_0.7": round(float(np.mean([r["iou"] >= 0.7 for r in rows])), 3),
        "colour": mean("colour"), "background": mean("background"), "shape": mean("shape"),
        "seconds_per_image": round(seconds / n, 2),
    }
    if grid:
        save_pairs_grid(images[:24], grid)
    return {"summary": result, "rows": rows}


def save_pairs_grid(pairs: list, path: str, cols: int = 6) -> None:
    """sketch | image pairs, ``cols`` pairs per row."""
    from PIL import Image

    h, w = pairs[0][0].shape[:2]
    rows = (len(pairs) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * (2 * w + 8), rows * (h + 8)), (128, 128, 128))
    for k, (sk, im) in enumerate(pairs):
        x, y = (k % cols) * (2 * w + 8), (k // cols) * (h + 8)
        canvas.paste(Image.fromarray(sk), (x, y))
        canvas.paste(Image.fromarray(im), (x + w, y))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="control_eval", description="Held-out adherence of the embedded sketch ControlNet.")
    p.add_argument("--controlnet", default="demo-shapes-sketch", help="ControlNet name in models/ControlNet/")
    p.add_argument("--model", default="demo-shapes")
    p.add_argument("--models-dir", default="models")
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--weight", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grid", default="")
    p.add_argument("--json", default="", help="write the summary and per-case rows here")
    a = p.parse_args(argv)
    out = evaluate_controlnet(a.controlnet, a.model, a.models_dir, a.n, a.steps, a.cfg, threads=a.threads, grid=a.grid, weight=a.weight)
    print(json.dumps(out["summary"], indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
