"""Sketch-conditioned training data for the embedded ControlNet: (sketch, picture, caption) triples.

The same scene generator as the demo model (``webui.train.data``: its vocabulary, shape geometry
and renderer), but shapes go anywhere at any size, and each scene comes with a sketch of its
shapes in the scribble ControlNets' convention: white strokes on black. A sketch is either the
shapes' outlines (hand-drawn-like: wobbly vertices, a random pen width) or their filled
silhouettes. Captions name colour, shape and background; position words are mostly left out
(the sketch says where), so "a blue triangle, yellow background" is the kind of prompt it learns.

Everything is a pure function of a seed: ``sketch_item(seed)``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from webui.train.data import (
    VOCAB,
    Scene,
    ShapeSpec,
    _is_allowed,
    caption_background,
    caption_shape,
    render_scene,
    shape_polygon,
)

RADIUS_RANGE = (0.08, 0.27)  # shape radius as a fraction of the image side
SMALL_BELOW = 0.145  # radius under which a caption says "small"


@dataclass(frozen=True)
class SketchItem:
    sketch: np.ndarray  # uint8 [H, W, 3], white strokes on black
    image: np.ndarray  # uint8 [H, W, 3], the scene as the demo model draws it
    filled: np.ndarray  # bool [H, W], the shapes' filled region (what the evaluation compares with)
    caption: str
    scene: Scene
    outline: bool  # True: outline strokes, False: filled silhouettes


def _nearest_position(cx: float, cy: float) -> str:
    return min(VOCAB.positions, key=lambda p: (VOCAB.positions[p][0][0] - cx) ** 2 + (VOCAB.positions[p][0][1] - cy) ** 2)


def _free_shape(rng: random.Random, shape: str, colour: str, taken: list) -> ShapeSpec:
    """A shape anywhere inside the canvas, at any size, not overlapping ``taken`` much."""
    for _ in range(50):
        r = rng.uniform(*RADIUS_RANGE)
        cx, cy = rng.uniform(r * 1.1, 1 - r * 1.1), rng.uniform(r * 1.1, 1 - r * 1.1)
        if all(math.hypot(cx - s.cx, cy - s.cy) > (r + s.radius) * 1.05 for s in taken):
            break
    size = "small" if r < SMALL_BELOW else "large"
    return ShapeSpec(shape, colour, size, _nearest_position(cx, cy), cx, cy, r, rng.uniform(-15, 15))


def sample_sketch_scene(rng: random.Random, holdout: bool = True) -> Scene:
    colours, shapes = list(VOCAB.colours), list(VOCAB.shapes)
    n = 1 if rng.random() < 0.75 else 2
    specs: list = []
    for _ in range(n):
        while True:
            colour, shape = rng.choice(colours), rng.choice(shapes)
            if _is_allowed(colour, shape, holdout):
                break
        specs.append(_free_shape(rng, shape, colour, specs))
    free = [c for c in colours if c not in {s.colour for s in specs}]
    background = (rng.choice(free),)
    with_position = rng.random() < 0.2
    text = " and ".join(caption_shape(rng, s, with_position=with_position) for s in specs)
    caption = (text + caption_background(rng, background)).replace(",,", ",").replace(", on", " on").replace(" ,", ",")
    return Scene(background=background, shapes=tuple(specs), caption=caption)


def _outline_points(s: ShapeSpec, S: int) -> list:
    cx, cy, r = s.cx * S, s.cy * S, s.radius * S
    if s.shape in ("circle", "ring"):
        return [(cx + r * math.cos(2 * math.pi * k / 48), cy + r * math.sin(2 * math.pi * k / 48)) for k in range(48)]
    return shape_polygon(s.shape, cx, cy, r, s.angle)


def _wobble(rng: random.Random, pts: list, amount: float) -> list:
    return [(x + rng.gauss(0, amount), y + rng.gauss(0, amount)) for x, y in pts]


def draw_sketch(scene: Scene, size: int, outline: bool, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """The sketch (white on black, uint8 RGB) and the filled region (bool) of ``scene``'s shapes."""
    ss = 2
    S = size * ss
    sketch = Image.new("L", (S, S), 0)
    fill = Image.new("L", (S, S), 0)
    ds, df = ImageDraw.Draw(sketch), ImageDraw.Draw(fill)
    pen = max(2, int(round(rng.uniform(0.012, 0.04) * S)))
    for s in scene.shapes:
        pts = _outline_points(s, S)
        df.polygon(pts, fill=255)
        rough = _wobble(rng, pts, 0.025 * s.radius * S) if outline else pts
        if outline:
            ds.line(rough + rough[:1], fill=255, width=pen, joint="curve")
        else:
            ds.polygon(rough, fill=255)
        if s.shape == "ring":
            cx, cy, ri = s.cx * S, s.cy * S, s.radius * S * 0.55
            box = [cx - ri, cy - ri, cx + ri, cy + ri]
            df.ellipse(box, fill=0)
            if outline:
                ds.ellipse(box, outline=255, width=pen)
            else:
                ds.ellipse(box, fill=0)
    sk = np.asarray(sketch.resize((size, size), Image.LANCZOS), dtype=np.uint8)
    filled = np.asarray(fill.resize((size, size), Image.BILINEAR), dtype=np.uint8) >= 128
    return np.repeat(sk[..., None], 3, axis=2), filled


def sketch_item(seed: int, size: int = 128, holdout: bool = True) -> SketchItem:
    rng = random.Random(seed)
    scene = sample_sketch_scene(rng, holdout)
    outline = rng.random() < 0.5
    sketch, filled = draw_sketch(scene, size, outline, rng)
    return SketchItem(sketch, render_scene(scene, size), filled, scene.caption, scene, outline)


class SketchData:
    """Unlimited seeded sketch items: item ``i`` is always the same (seed, i)."""

    def __init__(self, seed: int = 0, size: int = 128, holdout: bool = True):
        self.seed, self.size, self.holdout = seed, size, holdout

    def item(self, index: int) -> SketchItem:
        return sketch_item(self.seed * 1_000_003 + index + 7_777, self.size, self.holdout)
