"""Training data: procedurally drawn, captioned scenes, and a folder of image + caption pairs.

The ONE vocabulary table (``VOCAB``) drives drawing, captions, held-out combinations and the
evaluation in ``webui.train.evaluate``. Scenes are drawn with PIL at 2x and downsampled
(anti-aliased), fully determined by a seed: ``render_scene(sample_scene(rng))``.

Image arrays are ``uint8 [H, W, 3]``; tensors handed to training are ``float32 [3, H, W]`` in [-1, 1].
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# ----------------------------------------------------------------------------------------------
# The vocabulary table
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocab:
    """Every word the demo model knows, with what it means on the canvas."""

    # colour name -> RGB (shape fill and plain backgrounds)
    colours: dict = field(
        default_factory=lambda: {
            "red": (220, 30, 30),
            "green": (30, 170, 50),
            "blue": (30, 70, 220),
            "yellow": (245, 215, 30),
            "purple": (140, 40, 170),
            "orange": (245, 130, 20),
            "white": (245, 245, 245),
            "black": (20, 20, 20),
        }
    )
    # shape names (singular -> plural)
    shapes: dict = field(
        default_factory=lambda: {
            "circle": "circles",
            "square": "squares",
            "triangle": "triangles",
            "star": "stars",
            "heart": "hearts",
            "ring": "rings",
        }
    )
    # size name -> (radius as a fraction of the image side, synonyms used in captions)
    sizes: dict = field(
        default_factory=lambda: {
            "small": (0.095, ("small", "little", "tiny")),
            "large": (0.2, ("large", "big")),
        }
    )
    # position name -> ((x, y) centre as fractions of the image side, caption phrases)
    positions: dict = field(
        default_factory=lambda: {
            "left": ((0.28, 0.5), ("on the left", "at the left", "on the left side")),
            "right": ((0.72, 0.5), ("on the right", "at the right", "on the right side")),
            "top": ((0.5, 0.28), ("at the top", "on the top", "near the top")),
            "bottom": ((0.5, 0.72), ("at the bottom", "on the bottom", "near the bottom")),
            "center": ((0.5, 0.5), ("in the center", "in the middle", "in the centre")),
        }
    )
    # (colour, shape) pairs never drawn during training; the evaluation prompts use them
    held_out: tuple = (
        ("red", "star"),
        ("green", "heart"),
        ("blue", "triangle"),
        ("yellow", "ring"),
        ("purple", "square"),
        ("orange", "circle"),
    )


VOCAB = Vocab()


# ----------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeSpec:
    """One drawn shape: names from ``VOCAB`` plus the exact jittered geometry (fractions of side)."""

    shape: str
    colour: str
    size: str
    position: str
    cx: float
    cy: float
    radius: float
    angle: float = 0.0  # small rotation in degrees


@dataclass(frozen=True)
class Scene:
    """A whole picture: a plain (one colour) or two-tone (left/right halves) background and shapes."""

    background: tuple  # (colour,) or (colour_left, colour_right)
    shapes: tuple  # of ShapeSpec
    caption: str


def _is_allowed(colour: str, shape: str, holdout: bool) -> bool:
    return not (holdout and (colour, shape) in VOCAB.held_out)


def _jittered(rng: random.Random, shape: str, colour: str, size: str, position: str) -> ShapeSpec:
    (x, y), _ = VOCAB.positions[position]
    radius, _ = VOCAB.sizes[size]
    return ShapeSpec(
        shape=shape,
        colour=colour,
        size=size,
        position=position,
        cx=x + rng.uniform(-0.03, 0.03),
        cy=y + rng.uniform(-0.03, 0.03),
        radius=radius * rng.uniform(0.9, 1.1),
        angle=rng.uniform(-8, 8),
    )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption_shape(rng: random.Random, s: ShapeSpec, with_position: bool = True) -> str:
    size = rng.choice(VOCAB.sizes[s.size][1])
    where = rng.choice(VOCAB.positions[s.position][1])
    form = rng.randrange(3)
    if form == 0:
        text = f"{_article(size)} {size} {s.colour} {s.shape}"
    elif form == 1:
        text = f"{_article(s.colour)} {s.colour} {s.shape}, {size},"
    else:
        text = f"{size} {s.colour} {s.shape}"
    return f"{text} {where}" if with_position else text


def caption_background(rng: random.Random, background: tuple) -> str:
    name = background[0] if len(background) == 1 else f"{background[0]} and {background[1]}"
    return rng.choice(
        [
            f", {name} background",
            f" on a {name} background",
            f", on {_article(name)} {name} background",
            f" with a {name} background",
        ]
    )


def sample_scene(rng: random.Random, holdout: bool = True) -> Scene:
    """A random scene and a natural caption for it. ``holdout`` skips ``VOCAB.held_out`` pairs."""
    colours = list(VOCAB.colours)
    shapes = list(VOCAB.shapes)
    kind = rng.random()
    specs: list[ShapeSpec] = []
    if kind < 0.7:  # one shape
        while True:
            colour, shape = rng.choice(colours), rng.choice(shapes)
            if _is_allowed(colour, shape, holdout):
                break
        specs.append(_jittered(rng, shape, colour, rng.choice(list(VOCAB.sizes)), rng.choice(list(VOCAB.positions))))
    elif kind < 0.85:  # two of the same
        while True:
            colour, shape = rng.choice(colours), rng.choice(shapes)
            if _is_allowed(colour, shape, holdout):
                break
        size = rng.choice(list(VOCAB.sizes))
        pair = rng.choice([("left", "right"), ("top", "bottom")])
        specs = [_jittered(rng, shape, colour, size, p) for p in pair]
    else:  # two different shapes, each with its own words
        pair = rng.choice([("left", "right"), ("top", "bottom"), ("right", "left"), ("bottom", "top")])
        for p in pair:
            while True:
                colour, shape = rng.choice(colours), rng.choice(shapes)
                if _is_allowed(colour, shape, holdout):
                    break
            specs.append(_jittered(rng, shape, colour, rng.choice(list(VOCAB.sizes)), p))

    used = {s.colour for s in specs}
    free = [c for c in colours if c not in used]
    if rng.random() < 0.8:
        background = (rng.choice(free),)
    else:
        a, b = rng.sample(free, 2)
        background = (a, b)

    # caption
    if kind < 0.7:
        text = caption_shape(rng, specs[0])
    elif kind < 0.85:
        s = specs[0]
        size = rng.choice(VOCAB.sizes[s.size][1])
        where = "on the left and right" if s.position in ("left", "right") else "at the top and bottom"
        text = f"two {size} {s.colour} {VOCAB.shapes[s.shape]} {where}"
    else:
        text = " and ".join(caption_shape(rng, s) for s in specs)
    caption = (text + caption_background(rng, background)).replace(",,", ",").replace(", on", " on")
    return Scene(background=background, shapes=tuple(specs), caption=caption)


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------


def _rotate(points: list, cx: float, cy: float, angle_deg: float) -> list:
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    return [(cx + (x - cx) * ca - (y - cy) * sa, cy + (x - cx) * sa + (y - cy) * ca) for x, y in points]


def shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float = 0.0) -> list:
    """Outline points (pixels) of a filled polygon shape; circle/ring are drawn as ellipses."""
    if shape == "square":
        h = r * 0.82
        pts = [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    elif shape == "triangle":
        R = r * 1.15
        pts = [(cx + R * math.cos(math.radians(-90 + 120 * k)), cy + 0.1 * r + R * math.sin(math.radians(-90 + 120 * k))) for k in range(3)]
    elif shape == "star":
        R, rin = r * 1.15, r * 1.15 * 0.42
        pts = []
        for k in range(10):
            rad = R if k % 2 == 0 else rin
            a = math.radians(-90 + 36 * k)
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    elif shape == "heart":
        pts = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((cx + x * r / 16.0, cy - (y + 2.5) * r / 16.0))
    else:
        raise ValueError(f"no polygon for shape {shape!r}")
    return _rotate(pts, cx, cy, angle)


def render_scene(scene: Scene, size: int = 128) -> np.ndarray:
    """Draw ``scene`` at ``size`` x ``size``. Returns uint8 [size, size, 3]."""
    ss = 2  # supersampling
    S = size * ss
    img = Image.new("RGB", (S, S), VOCAB.colours[scene.background[0]])
    draw = ImageDraw.Draw(img)
    if len(scene.background) == 2:
        draw.rectangle([S // 2, 0, S, S], fill=VOCAB.colours[scene.background[1]])
    for s in scene.shapes:
        cx, cy, r = s.cx * S, s.cy * S, s.radius * S
        fill = VOCAB.colours[s.colour]
        if s.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif s.shape == "ring":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            ri = r * 0.55
            # the hole shows whatever background is under it
            hole = Image.new("L", (S, S), 0)
            ImageDraw.Draw(hole).ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=255)
            bg = Image.new("RGB", (S, S), VOCAB.colours[scene.background[0]])
            if len(scene.background) == 2:
                ImageDraw.Draw(bg).rectangle([S // 2, 0, S, S], fill=VOCAB.colours[scene.background[1]])
            img.paste(bg, (0, 0), hole)
        else:
            draw.polygon(shape_polygon(s.shape, cx, cy, r, s.angle), fill=fill)
    return np.asarray(img.resize((size, size), Image.LANCZOS), dtype=np.uint8)


def scene_for_seed(seed: int, holdout: bool = True) -> Scene:
    return sample_scene(random.Random(seed), holdout=holdout)


def to_tensor(image: np.ndarray):
    """uint8 [H, W, 3] -> float32 torch [3, H, W] in [-1, 1]."""
    import torch

    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(127.5).sub(1.0)


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ShapesData:
    """Unlimited seeded scenes: item ``i`` is always the same scene (seed + i)."""

    def __init__(self, seed: int = 0, size: int = 128, holdout: bool = True):
        self.seed, self.size, self.holdout = seed, size, holdout

    def item(self, index: int) -> tuple[np.ndarray, str]:
        scene = scene_for_seed(self.seed * 1_000_003 + index, self.holdout)
        return render_scene(scene, self.size), scene.caption


class FolderData:
    """Image + caption pairs: ``foo.png`` with ``foo.txt`` beside it (missing .txt -> empty caption)."""

    def __init__(self, folder: str | Path, size: int = 128):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"training data folder {str(self.folder)!r} does not exist")
        self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(self.folder)!r}")
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def item(self, index: int) -> tuple[np.ndarray, str]:
        path = self.files[index % len(self.files)]
        img = Image.open(path).convert("RGB")
        w, h = img.size
        side = min(w, h)
        img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        img = img.resize((self.size, self.size), Image.LANCZOS)
        txt = path.with_suffix(".txt")
        caption = txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
        return np.asarray(img, dtype=np.uint8), caption
