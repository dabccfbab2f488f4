"""A1111's "X/Y/Z plot" script: vary up to three parameters along the axes of a labelled image grid.

API clients send ``script_name: "x/y/z plot"`` with A1111's ``script_args`` (scripts/xyz_grid.py)::

    [x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown,
     z_type, z_values, z_values_dropdown, draw_legend, include_lone_images, include_sub_grids,
     no_fixed_seeds, margin_size, csv_mode, raw_mode]

An axis type is an index into A1111's axis list for that tab (txt2img and img2img lists differ, see
``AXES``) or the axis label itself. Values are comma-separated (CSV quoting allowed), with A1111's
ranges: ``1-5`` (step 1), ``1-9 (+2)`` (step), ``1-10 [4]`` (count); floats likewise. The dropdown value
lists are used for axes with fixed choices (sampler, checkpoint, VAE, styles) unless ``csv_mode``.
No gradio here: the caller passes a function that runs one request and returns its ImageResult.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from webui.diffusion.types import ImageResult, Img2ImgRequest, Txt2ImgRequest

SCRIPT_NAME = "x/y/z plot"
TITLE = "X/Y/Z plot"
MAX_CELLS = 100  # a bigger grid is refused (A1111 limits the grid's megapixels instead)
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Axis:
    label: str  # A1111's label, also shown in the UI
    kind: type  # int | float | str
    field: Optional[str]  # the request field it sets; None = special (Nothing, Prompt S/R, Styles) or unsupported
    tabs: str = "both"  # "both" | "txt2img" | "img2img": where A1111 lists it
    supported: bool = True
    cost: float = 0.0  # expensive axes (checkpoint) are iterated outermost, as A1111 does
    choices: bool = False  # values come from a fixed list (dropdown in the UI)


# A1111's axis_options, in its order (the indices API clients send depend on it)
AXES: tuple[Axis, ...] = (
    Axis("Nothing", str, None),
    Axis("Seed", int, "seed"),
    Axis("Var. seed", int, "subseed"),
    Axis("Var. strength", float, "subseed_strength"),
    Axis("Steps", int, "steps"),
    Axis("Hires steps", int, "hires.hr_second_pass_steps", "txt2img"),
    Axis("CFG Scale", float, "cfg_scale"),
    Axis("Image CFG Scale", float, None, "img2img", supported=False),
    Axis("Prompt S/R", str, None),
    Axis("Prompt order", str, None, supported=False),
    Axis("Sampler", str, "sampler", "txt2img", choices=True),
    Axis("Hires sampler", str, "hires.hr_sampler_name", "txt2img", choices=True),
    Axis("Sampler", str, "sampler", "img2img", choices=True),
    Axis("Checkpoint name", str, "model", cost=1.0, choices=True),
    Axis("Negative Guidance minimum sigma", float, None, supported=False),
    Axis("Sigma Churn", float, None, supported=False),
    Axis("Sigma min", float, None, supported=False),
    Axis("Sigma max", float, None, supported=False),
    Axis("Sigma noise", float, None, supported=False),
    Axis("Schedule type", str, None, supported=False),
    Axis("Schedule min sigma", float, None, supported=False),
    Axis("Schedule max sigma", float, None, supported=False),
    Axis("Schedule rho", float, None, supported=False),
    Axis("Eta", float, None, supported=False),
    Axis("Clip skip", int, "clip_skip"),
    Axis("Denoising", float, "denoising_strength"),
    Axis("Initial noise multiplier", float, None, supported=False),
    Axis("Extra noise", float, None, supported=False),
    Axis("Hires upscaler", str, "hires.hr_upscaler", "txt2img", choices=True),
    Axis("Cond. Image Mask Weight", float, None, "img2img", supported=False),
    Axis("VAE", str, "vae", cost=0.7, choices=True),
    Axis("Styles", str, None, choices=True),
    Axis("UniPC Order", int, None, supported=False),
    Axis("Face restore", str, "restore_faces", choices=True),
    Axis("Token merging ratio", float, "speed.token_merging_ratio"),
    Axis("Token merging ratio high-res", float, None, supported=False),
    Axis("Always discard next-to-last sigma", str, None, supported=False),
    Axis("SGM noise multiplier", str, None, supported=False),
    Axis("Refiner checkpoint", str, None, supported=False),
    Axis("Refiner switch at", float, None, supported=False),
    Axis("RNG source", str, None, supported=False),
    # not in A1111's list (so its indices stay A1111's): the image size
    Axis("Width", int, "width"),
    Axis("Height", int, "height"),
    Axis("Size", str, None),  # "WxH"
)
BOOL_CHOICES = ("True", "False")  # the Face restore axis


def axes_for(tab: str) -> list[Axis]:
    """The axis list A1111 shows (and indexes) on ``tab`` ("txt2img" or "img2img"; inpaint is img2img)."""
    tab = "txt2img" if tab == "txt2img" else "img2img"
    return [a for a in AXES if a.tabs in ("both", tab)]


def supported_labels(tab: str) -> list[str]:
    return [a.label for a in axes_for(tab) if a.supported]


@dataclass(frozen=True)
class XYZArgs:
    """The script's arguments, by name (``from_script_args`` reads A1111's positional list)."""

    x_type: Any = "Seed"  # index into axes_for(tab) or a label
    x_values: str = ""
    y_type: Any = "Nothing"
    y_values: str = ""
    z_type: Any = "Nothing"
    z_values: str = ""
    x_values_dropdown: Sequence[str] = ()
    y_values_dropdown: Sequence[str] = ()
    z_values_dropdown: Sequence[str] = ()
    draw_legend: bool = True
    include_lone_images: bool = False
    include_sub_grids: bool = False
    no_fixed_seeds: bool = False  # "Keep -1 for seeds"
    margin_size: int = 0
    csv_mode: bool = False  # text values even for axes with choices
    raw_mode: bool = False  # one value per line

    @classmethod
    def from_script_args(cls, args: Sequence[Any]) -> "XYZArgs":
        names = ["x_type", "x_values", "x_values_dropdown", "y_type", "y_values", "y_values_dropdown", "z_type",
                 "z_values", "z_values_dropdown", "draw_legend", "include_lone_images", "include_sub_grids",
                 "no_fixed_seeds", "margin_size", "csv_mode", "raw_mode"]
        if not isinstance(args, (list, tuple)) or len(args) < 2:
            raise ValueError("script_args for x/y/z plot: expected [x_type, x_values, x_values_dropdown, y_type, ...]")
        values = dict(zip(names, args))
        for key in ("x_values_dropdown", "y_values_dropdown", "z_values_dropdown"):
            values[key] = tuple(values.get(key) or ())
        for key in ("x_values", "y_values", "z_values"):
            values[key] = "" if values.get(key) is None else str(values[key])
        return cls(**values)


def resolve_axis(tab: str, value: Any) -> Axis:
    axes = axes_for(tab)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not 0 <= value < len(axes):
            raise ValueError(f"x/y/z plot: axis type {value} is out of range 0..{len(axes) - 1} for {tab}")
        axis = axes[int(value)]
    else:
        matches = [a for a in axes if a.label.lower() == str(value).strip().lower()]
        if not matches:
            raise ValueError(f"x/y/z plot: unknown axis type {value!r}; supported: {', '.join(supported_labels(tab))}")
        axis = matches[0]
    if not axis.supported:
        raise ValueError(f"x/y/z plot: the axis {axis.label!r} is not supported here; "
                         f"supported: {', '.join(supported_labels(tab))}")
    return axis


_NUM = r"[+-]?\s*\d+(?:\.\d*)?"
_RANGE_STEP = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*\(\s*([+-]\s*\d+(?:\.\d*)?)\s*\)\s*")
_RANGE_COUNT = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*\[\s*(\d+)\s*\]\s*")
_RANGE = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*")


def _num(text: str) -> float:
    return float(text.replace(" ", ""))


def expand_numbers(value: str, kind: type) -> list:
    """One CSV item of a numeric axis -> its values: ``5``, ``1-5``, ``1-9 (+2)``, ``1-10 [4]``."""
    text = value.strip()
    if m := _RANGE_STEP.fullmatch(text):
        start, end, step = _num(m[1]), _num(m[2]), _num(m[3])
        if step == 0:
            raise ValueError(f"x/y/z plot: range {text!r} has a step of 0")
        if kind is int:
            return list(range(int(start), int(end) + (1 if step > 0 else -1), int(step)))
        return [round(v, 8) for v in np.arange(start, end + step / 2, step).tolist()]
    if m := _RANGE_COUNT.fullmatch(text):
        values = np.linspace(_num(m[1]), _num(m[2]), int(m[3])).tolist()
        return [int(v) for v in values] if kind is int else [round(v, 8) for v in values]
    if m := _RANGE.fullmatch(text):
        start, end = _num(m[1]), _num(m[2])
        if kind is int:
            return list(range(int(start), int(end) + 1))
        return [round(v, 8) for v in np.arange(start, end + 0.5, 1.0).tolist()]
    try:
        return [kind(float(text)) if kind is int else kind(text)]
    except ValueError:
        raise ValueError(f"x/y/z plot: {text!r} is not a number") from None


def split_values(text: str, raw_mode: bool = False) -> list[str]:
    if raw_mode and "\n" in text.strip():
        return [line for line in text.strip().split("\n")]
    rows = csv.reader(io.StringIO(text))
    return [item.strip() for row in rows for item in row if item.strip()]


def axis_values(axis: Axis, text: str, dropdown: Sequence[str], csv_mode: bool, raw_mode: bool) -> list:
    if axis.label == "Nothing":
        return [None]
    items = list(dropdown) if axis.choices and not csv_mode and dropdown else split_values(text, raw_mode)
    if not items:
        raise ValueError(f"x/y/z plot: the {axis.label} axis has no values")
    if axis.kind in (int, float):
        return [v for item in items for v in expand_numbers(item, axis.kind)]
    return items


def apply_axis(axis: Axis, req: Txt2ImgRequest, value: Any, values: list) -> Txt2ImgRequest:
    """One axis value set on a request (A1111's ``apply`` functions)."""
    if axis.label == "Nothing":
        return req
    if axis.label == "Prompt S/R":
        search = values[0]
        if search not in req.prompt and search not in req.negative_prompt:
            raise ValueError(f"x/y/z plot: Prompt S/R did not find {search!r} in the prompt or negative prompt")
        return dataclasses.replace(req, prompt=req.prompt.replace(search, value),
                                   negative_prompt=req.negative_prompt.replace(search, value))
    if axis.label == "Styles":
        return dataclasses.replace(req, styles=tuple(req.styles) + tuple(s.strip() for s in value.split(",") if s.strip()))
    if axis.label == "Size":
        m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(value))
        if not m:
            raise ValueError(f"x/y/z plot: a Size value must look like 512x768, got {value!r}")
        return dataclasses.replace(req, width=int(m[1]), height=int(m[2]))
    if axis.field == "denoising_strength" and not isinstance(req, Img2ImgRequest):
        raise ValueError("x/y/z plot: the Denoising axis needs img2img or inpaint")
    if axis.field.startswith("hires."):
        if req.hires is None:
            raise ValueError(f"x/y/z plot: the {axis.label} axis needs hires fix turned on")
        return dataclasses.replace(req, hires=dataclasses.replace(req.hires, **{axis.field[len("hires."):]: value}))
    if axis.field.startswith("speed."):
        overrides = dict(req.speed_overrides) | {axis.field[len("speed."):]: value}
        return dataclasses.replace(req, speed_overrides=tuple(overrides.items()))
    if axis.field == "restore_faces":
        if str(value) not in BOOL_CHOICES:
            raise ValueError(f"x/y/z plot: Face restore values are True or False, got {value!r}")
        value = str(value) == "True"
    if axis.field == "vae" and value in ("None", "Automatic"):
        value = None
    return dataclasses.replace(req, **{axis.field: value})


def format_label(axis: Axis, value: Any) -> str:
    if axis.label == "Nothing":
        return ""
    if isinstance(value, float):
        value = round(value, 8)
    if axis.label in ("Prompt S/R", "Sampler", "Checkpoint name", "VAE", "Styles", "Hires sampler", "Hires upscaler"):
        return str(value)
    return f"{axis.label}: {value}"


# ---------------------------------------------------------------------------------------------- grid image
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def image_grid(cells: list[Image.Image], cols: int, margin: int = 0) -> Image.Image:
    w, h = cells[0].size
    rows = (len(cells) + cols - 1) // cols
    grid = Image.new("RGB", (cols * w + (cols - 1) * margin, rows * h + (rows - 1) * margin), "white")
    for i, cell in enumerate(cells):
        grid.paste(cell.convert("RGB").resize((w, h)), ((i % cols) * (w + margin), (i // cols) * (h + margin)))
    return grid


def annotate_grid(grid: Image.Image, cell_w: int, cell_h: int, col_labels: list[str], row_labels: list[str],
                  margin: int = 0) -> Image.Image:
    """Column labels above, row labels on the left (empty labels take no room), like A1111's legend."""
    font = _font(min(28, max(12, cell_w // 10)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(font.size * 1.25) if hasattr(font, "size") else 14
    col_lines = [_wrap(probe, t, font, cell_w - 4) for t in col_labels]
    row_w = max(cell_w // 2, 64) if any(row_labels) else 0
    row_lines = [_wrap(probe, t, font, row_w - 8) for t in row_labels]
    top = (max(len(lines) for lines in col_lines) * line_h + 8) if any(col_labels) else 0
    out = Image.new("RGB", (grid.width + row_w, grid.height + top), "white")
    out.paste(grid, (row_w, top))
    draw = ImageDraw.Draw(out)
    for i, lines in enumerate(col_lines):
        cx = row_w + i * (cell_w + margin) + cell_w // 2
        for j, line in enumerate(lines):
            draw.text((cx, 4 + j * line_h), line, fill="black", font=font, anchor="ma")
    for i, lines in enumerate(row_lines):
        cy = top + i * (cell_h + margin) + cell_h // 2 - len(lines) * line_h // 2
        for j, line in enumerate(lines):
            draw.text((row_w // 2, cy + j * line_h), line, fill="black", font=font, anchor="ma")
    return out


# ---------------------------------------------------------------------------------------------- the plot
@dataclass
class XYZResult:
    result: ImageResult  # images: [grid, sub-grids?, cells?] with their infotexts (grid first)
    cells: list[ImageResult]  # one per cell, x fastest, then y, then z


def run_xyz(tab: str, base: Txt2ImgRequest, args: XYZArgs, run_cell: Callable[[Txt2ImgRequest], ImageResult],
            save_grid: Callable[[Image.Image, str], Any] | None = None) -> XYZResult:
    """Runs every cell through ``run_cell`` and assembles A1111's output: the grid (z grids side by side).

    ``save_grid(image, infotext)`` (when the request saves) writes the grid and returns its path.
    """
    # 1. Axes and their values (all checked before the first image)
    opts = [resolve_axis(tab, t) for t in (args.x_type, args.y_type, args.z_type)]
    texts = (args.x_values, args.y_values, args.z_values)
    drops = (args.x_values_dropdown, args.y_values_dropdown, args.z_values_dropdown)
    values = [axis_values(a, t, d, args.csv_mode, args.raw_mode) for a, t, d in zip(opts, texts, drops)]
    xs, ys, zs = values
    if len(xs) * len(ys) * len(zs) > MAX_CELLS:
        raise ValueError(f"x/y/z plot: {len(xs)}x{len(ys)}x{len(zs)} = {len(xs) * len(ys) * len(zs)} images, "
                         f"more than {MAX_CELLS}")

    # 2. Fixed seeds: -1 becomes one random seed shared by every cell (unless "Keep -1 for seeds")
    base = dataclasses.replace(base, batch_count=1, batch_size=1)
    if not args.no_fixed_seeds:
        seed = random.randrange(MAX_SEED + 1) if base.seed == -1 else base.seed
        subseed = random.randrange(MAX_SEED + 1) if base.subseed == -1 else base.subseed
        base = dataclasses.replace(base, seed=seed, subseed=subseed)
        for i, axis in enumerate(opts):
            if axis.label in ("Seed", "Var. seed"):
                values[i] = [random.randrange(MAX_SEED + 1) if v == -1 else v for v in values[i]]
    requests = {}
    for iz, z in enumerate(zs):
        for iy, y in enumerate(ys):
            for ix, x in enumerate(xs):
                req = base
                for axis, value, vals in zip(opts, (x, y, z), values):
                    req = apply_axis(axis, req, value, vals)
                requests[(ix, iy, iz)] = req

    # 3. Cells, the costliest axis outermost (a checkpoint loads once per value)
    order = sorted(range(3), key=lambda i: -opts[i].cost)
    sizes = (len(xs), len(ys), len(zs))
    cells: dict[tuple, ImageResult] = {}
    for a in range(sizes[order[0]]):
        for b in range(sizes[order[1]]):
            for c in range(sizes[order[2]]):
                idx = [0, 0, 0]
                idx[order[0]], idx[order[1]], idx[order[2]] = a, b, c
                cells[tuple(idx)] = run_cell(requests[tuple(idx)])

    # 4. Grids: one per z value (x across, y down), then the z grids side by side
    labels = [[format_label(opts[i], v) for v in values[i]] for i in range(3)]
    flat = [cells[(ix, iy, iz)] for iz in range(len(zs)) for iy in range(len(ys)) for ix in range(len(xs))]
    first = next((c for c in flat if c.images), None)
    if first is None:
        return XYZResult(ImageResult(images=[], seeds=[], infotexts=[], interrupted=True), flat)
    cell_w, cell_h = first.images[0].size
    blank = Image.new("RGB", (cell_w, cell_h), "black")

    def cell_image(r: ImageResult) -> Image.Image:
        return r.images[0] if r.images else blank

    sub_grids = []
    for iz in range(len(zs)):
        imgs = [cell_image(cells[(ix, iy, iz)]) for iy in range(len(ys)) for ix in range(len(xs))]
        grid = image_grid(imgs, len(xs), args.margin_size)
        if args.draw_legend:
            grid = annotate_grid(grid, cell_w, cell_h, labels[0], labels[1], args.margin_size)
        sub_grids.append(grid)
    if len(sub_grids) == 1:
        main = sub_grids[0]
    else:
        gw, gh = max(g.width for g in sub_grids), max(g.height for g in sub_grids)
        main = image_grid([g.resize((gw, gh)) if g.size != (gw, gh) else g for g in sub_grids], len(sub_grids),
                          args.margin_size)
        if args.draw_legend:
            main = annotate_grid(main, gw, gh, labels[2], [""], args.margin_size)

    # 5. Infotexts: the grid's is the first cell's plus the script's own keys
    extra = [f"Script: {TITLE}"]
    for name, axis, text in zip("XYZ", opts, texts):
        if axis.label != "Nothing":
            value_text = text if text or not axis.choices else ", ".join(drops["XYZ".index(name)])
            extra.append(f"{name} Type: {axis.label}, {name} Values: {_quote(value_text)}")
    grid_info = (first.infotexts[0] if first.infotexts else "") + ", " + ", ".join(extra)
    images, infotexts, seeds, subseeds = [main], [grid_info], [first.seeds[0]], first.subseeds[:1]
    if args.include_sub_grids and len(sub_grids) > 1:
        images += sub_grids
        infotexts += [grid_info] * len(sub_grids)
        seeds += [first.seeds[0]] * len(sub_grids)
    if args.include_lone_images:
        for r in flat:
            images += r.images[:1]
            infotexts += r.infotexts[:1]
            seeds += r.seeds[:1]
            subseeds += r.subseeds[:1]
    paths = [save_grid(main, grid_info)] if save_grid is not None and base.save else []
    interrupted = any(r.interrupted for r in flat)
    return XYZResult(ImageResult(images=images, seeds=seeds, infotexts=infotexts, paths=paths,
                                 interrupted=interrupted, subseeds=subseeds), flat)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if ("," in text or ":" in text) else text
