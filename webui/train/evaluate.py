"""Prompt-adherence evaluation of the demo model with classical computer vision (no learned judge).

``analyse(image)`` reads a picture the way the generator draws them: background colour from the
border, the shape as the pixels far from the background, its dominant colour (nearest named colour
of the median), its class from contour geometry (holes, solidity, extent, corners), its position
from the centroid. It is validated on generator images (tests), then applied to generated images
of prompts whose colour+shape pair was held out of training (``VOCAB.held_out``).

CLI: ``python -m webui.train.evaluate [--model DIR] [--steps 20] [--grid docs/demo-grid.png]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from webui.train.data import VOCAB


@dataclass(frozen=True)
class Analysis:
    """What the checker sees in one image (names from ``VOCAB``; ``shape`` "none" if nothing found)."""

    background: str
    colour: str
    shape: str
    position: str
    area: float  # fraction of the image covered by the shape


def nearest_colour(rgb, names=None) -> str:
    names = names or list(VOCAB.colours)
    rgb = np.asarray(rgb, dtype=np.float32)
    return min(names, key=lambda n: float(np.sum((np.asarray(VOCAB.colours[n], np.float32) - rgb) ** 2)))


def _border(img: np.ndarray, width: int) -> np.ndarray:
    return np.concatenate(
        [img[:width].reshape(-1, 3), img[-width:].reshape(-1, 3), img[:, :width].reshape(-1, 3), img[:, -width:].reshape(-1, 3)]
    )


def classify_contour(contour: np.ndarray, hole_area: float) -> str:
    """Shape class of an outer contour (pixels) from its geometry; ``hole_area`` = area of inner holes."""
    area = cv2.contourArea(contour)
    if area <= 0:
        return "none"
    if hole_area / area > 0.08:
        return "ring"
    hull = cv2.convexHull(contour)
    solidity = area / max(cv2.contourArea(hull), 1e-6)
    # star solidity: 0.51-0.53 sharp, 0.71-0.75 blurred (sigma 2.5), 0.81-0.85 (sigma 4); every
    # other shape >= 0.90 (a sharp heart's notch), so the cut sits between 0.85 and 0.90
    if solidity < 0.87:
        return "star"
    (_, _), (w, h), _ = cv2.minAreaRect(contour)
    extent = area / max(w * h, 1e-6)  # fill of the smallest enclosing rectangle
    tri_area, _ = cv2.minEnclosingTriangle(contour)
    tri_fill = area / max(float(tri_area), 1e-6)  # fill of the smallest enclosing triangle
    # measured on drawn shapes, sharp and Gaussian-blurred (sigma 2.5, softer than the VAE):
    # triangle tri_fill 0.81-0.96; heart 0.71-0.75; circle 0.60; square 0.49-0.56 with extent >= 0.93
    if tri_fill >= 0.78:
        return "triangle"
    if extent > 0.86:
        return "square"
    if tri_fill >= 0.66:
        return "heart"
    return "circle"


def analyse(image, min_area: float = 0.004) -> Analysis:
    """Analyse a uint8 [H, W, 3] array (or PIL image) holding one shape on a plain background."""
    img = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
    h, w = img.shape[:2]
    bw = max(2, w // 32)
    bg_rgb = np.median(_border(img, bw).astype(np.float32), axis=0)
    background = nearest_colour(bg_rgb)
    dist = np.sqrt(np.sum((img.astype(np.float32) - bg_rgb) ** 2, axis=2))
    mask = (dist > 45).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return Analysis(background, "none", "none", "none", 0.0)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[k, cv2.CC_STAT_AREA] < min_area * h * w:
        return Analysis(background, "none", "none", "none", 0.0)
    comp = (labels == k).astype(np.uint8)
    inner = cv2.erode(comp, np.ones((3, 3), np.uint8))
    pix = img[(inner if inner.sum() > 10 else comp).astype(bool)].astype(np.float32)
    colour = nearest_colour(np.median(pix, axis=0), [c for c in VOCAB.colours if c != background])
    contours, hierarchy = cv2.findContours(comp, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    outer_i = max((i for i in range(len(contours)) if hierarchy[0][i][3] < 0), key=lambda i: cv2.contourArea(contours[i]))
    holes = sum(cv2.contourArea(contours[i]) for i in range(len(contours)) if hierarchy[0][i][3] == outer_i)
    shape = classify_contour(contours[outer_i], holes)
    ys, xs = np.nonzero(comp)
    cx, cy = xs.mean() / w, ys.mean() / h
    position = min(VOCAB.positions, key=lambda p: (VOCAB.positions[p][0][0] - cx) ** 2 + (VOCAB.positions[p][0][1] - cy) ** 2)
    return Analysis(background, colour, shape, position, float(comp.sum()) / (h * w))


# ----------------------------------------------------------------------------------------------
# Held-out prompts
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    prompt: str
    colour: str
    shape: str
    position: str
    background: str


def held_out_cases() -> list[Case]:
    """Prompts whose colour+shape pair never appears in training, over every position."""
    backgrounds = ["white", "black", "blue", "yellow", "green", "purple", "red", "orange"]
    cases, k = [], 0
    for colour, shape in VOCAB.held_out:
        for position in VOCAB.positions:
            bg = next(b for b in backgrounds[k % len(backgrounds) :] + backgrounds if b != colour)
            k += 1
            where = VOCAB.positions[position][1][0]
            cases.append(Case(f"a large {colour} {shape} {where}, {bg} background", colour, shape, position, bg))
    return cases


def load_pipeline(model: str):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        model, local_files_only=True, safety_checker=None, requires_safety_checker=False, torch_dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


CHECKS = ("colour", "shape", "position", "background")


def score_cases(cases: list, images: list) -> tuple[dict, list]:
    """Check each image against its case: the share right per check (``CHECKS``), right shapes per
    asked shape (``shape_hits``), and each image's ``Analysis``."""
    got = [analyse(img) for img in images]
    scores = {k: sum(getattr(a, k) == getattr(c, k) for c, a in zip(cases, got)) / len(cases) for k in CHECKS}
    per_shape: dict = {}
    for c, a in zip(cases, got):
        per_shape[c.shape] = per_shape.get(c.shape, 0) + int(a.shape == c.shape)
    return {**scores, "shape_hits": per_shape}, got


def evaluate(model: str, steps: int = 20, guidance: float = 5.0, seed: int = 0, threads: int = 2, grid: str = "") -> dict:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline
    from PIL import Image

    torch.set_num_threads(threads)
    pipe = load_pipeline(model)
    res = pipe.unet.config.sample_size * pipe.vae_scale_factor
    t0 = time.time()
    cases = held_out_cases()
    outs = []
    for i, case in enumerate(cases):
        g = torch.Generator().manual_seed(seed + i)
        outs.append(pipe(case.prompt, num_inference_steps=steps, guidance_scale=guidance, generator=g, height=res, width=res).images[0])
    scores, got = score_cases(cases, outs)
    rows = [{"prompt": c.prompt, **{f"got_{k}": v for k, v in asdict(a).items()}} for c, a in zip(cases, got)]
    images = [(c.prompt, img) for c, img in zip(cases, outs)]
    n = len(cases)
    result = {k: scores[k] for k in CHECKS}
    result["n"] = n
    result["seconds_per_image"] = (time.time() - t0) / n

    # img2img: strength 0.3 keeps the layout; strength 0.8 follows a new colour word
    i2i = StableDiffusionImg2ImgPipeline(**pipe.components)
    keep = follow = 0
    pairs = [("red", "circle", "left", "white", "blue"), ("blue", "square", "right", "yellow", "red"),
             ("green", "triangle", "top", "black", "yellow"), ("yellow", "heart", "bottom", "blue", "green"),
             ("white", "ring", "center", "purple", "orange"), ("purple", "star", "center", "white", "green")]
    from webui.train.data import Scene, render_scene, _jittered
    import random

    for j, (col, shp, pos, bg, new) in enumerate(pairs):
        spec = _jittered(random.Random(j), shp, col, "large", pos)
        src = Image.fromarray(render_scene(Scene((bg,), (spec,), ""), res))
        g = torch.Generator().manual_seed(seed + 100 + j)
        low = i2i(f"a large {new} {shp} {VOCAB.positions[pos][1][0]}, {bg} background", image=src, strength=0.3,
                  num_inference_steps=steps, guidance_scale=guidance, generator=g).images[0]
        a = analyse(low)
        keep += int(a.position == pos and a.shape == shp and a.background == bg)
        g = torch.Generator().manual_seed(seed + 200 + j)
        high = i2i(f"a large {new} {shp} {VOCAB.positions[pos][1][0]}, {bg} background", image=src, strength=0.8,
                   num_inference_steps=steps, guidance_scale=guidance, generator=g).images[0]
        b = analyse(high)
        follow += int(b.colour == new and b.position == pos)
        if j < 2:
            images += [(f"img2img src: {col} {shp}", src), (f"0.3 -> {new}", low), (f"0.8 -> {new}", high)]
    result["img2img_keep_layout_0.3"] = keep / len(pairs)
    result["img2img_follow_colour_0.8"] = follow / len(pairs)

    # inpainting (4-channel UNet: latent blending): a green square in the masked region
    inp = StableDiffusionInpaintPipeline(**pipe.components)
    ok_inside = ok_outside = 0
    inpaint_cases = []
    for j, (bg, other, pos) in enumerate([("white", "red", "left"), ("blue", "yellow", "right"), ("black", "purple", "top"),
                                          ("yellow", "blue", "left"), ("purple", "white", "bottom")]):
        target = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[pos]
        spec = _jittered(random.Random(50 + j), "circle", other, "large", pos)
        src = Image.fromarray(render_scene(Scene((bg,), (spec,), ""), res))
        mask = np.zeros((res, res), np.uint8)
        (mx, my), _ = VOCAB.positions[target]
        half = int(res * 0.22)
        x0, y0 = int(mx * res) - half, int(my * res) - half
        mask[y0 : y0 + 2 * half, x0 : x0 + 2 * half] = 255
        inpaint_cases.append((src, mask, (y0, x0, 2 * half), bg))
        g = torch.Generator().manual_seed(seed + 300 + j)
        out = inp(f"a large green square {VOCAB.positions[target][1][0]}, {bg} background", image=src,
                  mask_image=Image.fromarray(mask), strength=1.0, num_inference_steps=steps, guidance_scale=guidance,
                  generator=g, height=res, width=res).images[0]
        green, kept = _inpaint_scores(out, src, mask, (y0, x0, 2 * half))
        ok_inside += green
        ok_outside += kept
        if j < 2:
            images += [(f"inpaint src", src), ("-> a green square", out)]
    result["inpaint_green_in_mask"] = ok_inside / 5
    result["inpaint_rest_kept"] = ok_outside / 5

    # the same through the app's engine with A1111's "inpaint only masked": the crop around the
    # mask is generated at full resolution, so the square lands in the masked region
    import tempfile
    from pathlib import Path

    from webui.config import AppConfig, PathsConfig
    from webui.diffusion.service import ImageService
    from webui.diffusion.types import InpaintRequest

    folder = Path(model).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"  # a models/ folder holding just this model
        (models / "Stable-diffusion").mkdir(parents=True)
        (models / "Stable-diffusion" / folder.name).symlink_to(folder, target_is_directory=True)
        service = ImageService(AppConfig(paths=PathsConfig(models_dir=models, outputs_dir=Path(tmp) / "outputs")))
        ok_inside = ok_outside = 0
        for j, (src, mask, box, bg) in enumerate(inpaint_cases):
            req = InpaintRequest(prompt=f"a large green square, {bg} background", image=src, mask=Image.fromarray(mask),
                                 mask_blur=2, inpaint_full_res=True, inpaint_full_res_padding=8, denoising_strength=1.0,
                                 steps=steps, cfg_scale=guidance, seed=seed + 400 + j, sampler="DPM++ 2M",
                                 width=res, height=res, model=folder.name, save=False)
            out = service.inpaint(req).images[0].convert("RGB")
            green, kept = _inpaint_scores(out, src, mask, box)
            ok_inside += green
            ok_outside += kept
            if j < 2:
                images += [("only masked: src", src), ("-> a green square", out)]
    result["inpaint_only_masked_green_in_mask"] = ok_inside / len(inpaint_cases)
    result["inpaint_only_masked_rest_kept"] = ok_outside / len(inpaint_cases)
    result["rows"] = rows
    if grid:
        save_grid(images, grid)
    return result


def _inpaint_scores(out, src, mask: np.ndarray, box: tuple) -> tuple[int, int]:
    """(green shape inside the masked square ``box`` = (y0, x0, side), rest of the image kept)."""
    arr = np.asarray(out)
    y0, x0, side = box
    region = arr[y0 : y0 + side, x0 : x0 + side]
    green = analyse(np.pad(region, ((8, 8), (8, 8), (0, 0)), mode="edge")).colour == "green"
    diff = np.abs(arr.astype(np.int16) - np.asarray(src).astype(np.int16))[mask == 0].mean()
    return int(green), int(diff < 12)


def save_grid(images: list, path: str, cols: int = 8) -> None:
    from PIL import Image, ImageDraw

    side = images[0][1].size[0]
    label = 26
    rows = math.ceil(len(images) / cols)
    sheet = Image.new("RGB", (cols * side, rows * (side + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (text, img) in enumerate(images):
        x, y = (i % cols) * side, (i // cols) * (side + label)
        sheet.paste(img, (x, y + label))
        words = text.replace(" background", " bg").split(" ")
        line1, line2 = " ".join(words[: len(words) // 2 + 1]), " ".join(words[len(words) // 2 + 1 :])
        draw.text((x + 2, y + 1), line1[:24], fill="black")
        draw.text((x + 2, y + 13), line2[:24], fill="black")
    sheet.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="evaluate", description="Prompt adherence of the demo model on held-out prompts")
    p.add_argument("--model", default="models/Stable-diffusion/demo-shapes")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grid", default="", help="also save a grid of results (PNG)")
    p.add_argument("--json", default="", help="write the full result here")
    args = p.parse_args(argv)
    r = evaluate(args.model, args.steps, args.guidance, args.seed, args.threads, args.grid)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(r, f, indent=2)
    print("| metric | score |\n|---|---|")
    for k, v in r.items():
        if k != "rows":
            print(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
