"""Held-out evaluation of an upscaler file: PSNR / SSIM (Y channel) against Lanczos and bicubic,
and a crop comparison picture.

Protocol (the usual SR benchmark one): each held-out photo is cropped to a multiple of the scale,
downscaled with PIL's anti-aliased bicubic, then upscaled back by each method and compared with the
original; ``scale`` border pixels are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from webui.upscale.degrade import bicubic_down
from webui.upscale.metrics import psnr_y, ssim_y
from webui.upscale.photos import Photo, held_out_photos


@dataclass(frozen=True)
class Score:
    photo: str
    method: str
    psnr: float
    ssim: float


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def _pil_up(lr: np.ndarray, scale: int, resample) -> np.ndarray:
    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), resample))


def methods_for(model_upscale, scale: int) -> dict:
    """name -> function(lr uint8 [h, w, 3]) -> uint8 [h*scale, w*scale, 3]."""
    return {
        "bicubic": lambda lr: _pil_up(lr, scale, Image.BICUBIC),
        "Lanczos": lambda lr: _pil_up(lr, scale, Image.LANCZOS),
        "model": model_upscale,
    }


def evaluate(model_upscale, scale: int, photos: list[Photo] | None = None) -> list[Score]:
    scores = []
    for photo in photos if photos is not None else held_out_photos():
        hr = crop_to_multiple(photo.pixels, scale)
        lr = bicubic_down(hr, scale)
        for method, fn in methods_for(model_upscale, scale).items():
            out = fn(lr)
            scores.append(Score(photo.name, method, psnr_y(hr, out, scale), ssim_y(hr, out, scale)))
    return scores


def network_upscale(net):
    """A torch module (x in [0, 1], [1, 3, h, w] -> [1, 3, h*s, w*s]) as a uint8 -> uint8 function."""
    import torch

    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.array(lr, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255.0)
        with torch.no_grad():
            y = net(x).clamp(0, 1)
        return (y[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)

    return run


def evaluate_file(path: Path, scale: int) -> list[Score]:
    """Evaluate an upscaler file through the same loader users' files take."""
    from webui.upscale.models import load_upscaler_file

    model = load_upscaler_file(Path(path), device="cpu")
    if model.scale != scale:
        raise ValueError(f"{path} upscales x{model.scale}, not x{scale}")
    return evaluate(model.upscale_array, scale)


def format_table(scores: list[Score], model_name: str = "model") -> str:
    """A Markdown table: one row per photo and the mean, PSNR / SSIM per method."""
    methods = list(dict.fromkeys(s.method for s in scores))
    photos = list(dict.fromkeys(s.photo for s in scores))
    names = [model_name if m == "model" else m for m in methods]
    lines = ["| photo | " + " | ".join(f"{n} PSNR / SSIM" for n in names) + " |", "|---" * (len(methods) + 1) + "|"]
    by = {(s.photo, s.method): s for s in scores}
    for photo in photos + ["mean"]:
        cells = []
        for m in methods:
            if photo == "mean":
                ps = [s for s in scores if s.method == m]
                cells.append(f"**{np.mean([s.psnr for s in ps]):.2f}** / {np.mean([s.ssim for s in ps]):.4f}")
            else:
                s = by[(photo, m)]
                cells.append(f"{s.psnr:.2f} / {s.ssim:.4f}")
        lines.append(f"| {photo} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_picture(model_upscale, scale: int, photo: Photo, box: tuple[int, int, int, int], zoom: int = 2,
                       model_name: str = "model") -> Image.Image:
    """A labelled strip of one crop: the low-resolution input (nearest), bicubic, Lanczos, the model and
    the original. ``box`` (left, top, right, bottom) is in the original's pixels, a multiple of ``scale``."""
    from PIL import ImageDraw

    hr = crop_to_multiple(photo.pixels, scale)
    lr = bicubic_down(hr, scale)
    outs = {name: fn(lr) for name, fn in methods_for(model_upscale, scale).items()}
    left, top, right, bottom = box
    w, h = (right - left) * zoom, (bottom - top) * zoom
    lr_crop = Image.fromarray(lr).crop((left // scale, top // scale, right // scale, bottom // scale))
    tiles = [(f"input (x{scale} smaller)", lr_crop.resize((w, h), Image.NEAREST))]
    tiles += [(model_name if n == "model" else n, Image.fromarray(a).crop(box).resize((w, h), Image.NEAREST)) for n, a in outs.items()]
    tiles.append(("original", Image.fromarray(hr).crop(box).resize((w, h), Image.NEAREST)))
    label_h, gap = 22, 6
    sheet = Image.new("RGB", (len(tiles) * (w + gap) - gap, h + label_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (label, tile) in enumerate(tiles):
        x = i * (w + gap)
        sheet.paste(tile, (x, label_h))
        draw.text((x + 4, 5), label, fill=(0, 0, 0))
    return sheet


def main(argv: list[str] | None = None) -> int:
    """``python -m webui.upscale.evaluate``: the README's table and comparison pictures for the embedded files."""
    import argparse

    from webui.upscale.models import load_upscaler_file
    from webui.upscale.photos import load_photo
    from webui.upscale.train import EMBEDDED_DIR, embedded_file

    p = argparse.ArgumentParser(prog="python -m webui.upscale.evaluate")
    p.add_argument("--scale", type=int, nargs="+", default=[2, 4])
    p.add_argument("--dir", type=Path, default=EMBEDDED_DIR)
    p.add_argument("--picture", type=Path, default=None, help="write the crop comparison as <picture>-x<scale>.png")
    a = p.parse_args(argv)
    for scale in a.scale:
        path = a.dir / embedded_file(scale)
        name = path.stem
        print(f"\n### x{scale}: {name}\n")
        print(format_table(evaluate_file(path, scale), model_name=name))
        if a.picture:
            model = load_upscaler_file(path)
            sheet = comparison_picture(model.upscale_array, scale, load_photo("skimage:chelsea"), (136, 40, 264, 136),
                                       zoom=2, model_name=name)
            out = a.picture.with_name(f"{a.picture.stem}-x{scale}.png")
            sheet.save(out)
            print(f"\n{out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
