"""The Extras engine (A1111's "Extras" / postprocessing): upscaler 1, upscaler 2 blended by its
visibility, scale by a factor or to a size (crop to fit), GFPGAN with its visibility; one image, a
batch, or a folder. Outputs go to ``outputs/extras-images/<date>/`` with their parameters.
No gradio here; the UI, the REST API and ``app.py upscale`` all build an ``ExtrasRequest``.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from webui.upscale.faces import FaceRestorer
from webui.upscale.registry import UpscalerRegistry

RESIZE_BY, RESIZE_TO = 0, 1  # A1111's resize_mode
MAX_FACTOR = 8.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class ExtrasRequest:
    images: tuple  # PIL images to process
    names: tuple = ()  # their file names (batch/folder), for the output names
    resize_mode: int = RESIZE_BY  # 0: by upscaling_resize; 1: to upscaling_resize_w x _h
    upscaling_resize: float = 2.0  # factor (resize_mode 0)
    upscaling_resize_w: int = 512  # target size (resize_mode 1)
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True  # resize_mode 1: cover the target and centre-crop to it
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0  # 0..1 blend of upscaler 2 over upscaler 1
    gfpgan_visibility: float = 0.0  # 0..1 (0: no face restoration)
    codeformer_visibility: float = 0.0  # CodeFormer is not available: > 0 is refused
    upscale_first: bool = False  # upscale before restoring faces (A1111's option)
    save: bool = True  # write PNGs under outputs/extras-images/<date>/


@dataclass
class ExtrasResult:
    images: list
    infotexts: list  # the "parameters" text of each output (the source's own infotext first, if any)
    paths: list = field(default_factory=list)
    html_info: str = ""  # A1111's response field: the postprocessing parameters


def load_folder(folder: Path, max_pixels: int) -> tuple[list, list]:
    """Every image in ``folder`` (sorted by name) -> (images, names). ValueError when there are none."""
    from webui.uploads import open_image_file

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"input folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"input folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return [open_image_file(p, max_pixels=max_pixels) for p in files], [p.name for p in files]


class ExtrasService:
    def __init__(self, upscalers: UpscalerRegistry, faces: FaceRestorer, outputs_dir: Path, max_side: int = 8192):
        self.upscalers = upscalers
        self.faces = faces
        self.outputs_dir = Path(outputs_dir)
        self.max_side = max_side  # largest output side

    # ------------------------------------------------------------------ validation
    def check_inputs(self, req: ExtrasRequest) -> None:
        if not req.images:
            raise ValueError("no image to process")
        if req.names and len(req.names) != len(req.images):
            raise ValueError(f"{len(req.names)} names for {len(req.images)} images")
        for i, image in enumerate(req.images):
            if not isinstance(image, Image.Image):
                raise ValueError(f"image {i} is not an image")
        if req.resize_mode not in (RESIZE_BY, RESIZE_TO):
            raise ValueError(f"resize_mode must be 0 (scale by) or 1 (scale to), got {req.resize_mode!r}")
        if req.resize_mode == RESIZE_BY and not 0 < req.upscaling_resize <= MAX_FACTOR:
            raise ValueError(f"upscaling_resize must be in (0, {MAX_FACTOR:g}], got {req.upscaling_resize!r}")
        if req.resize_mode == RESIZE_TO:
            for name in ("upscaling_resize_w", "upscaling_resize_h"):
                v = getattr(req, name)
                if not isinstance(v, int) or not 1 <= v <= self.max_side:
                    raise ValueError(f"{name} must be between 1 and {self.max_side}, got {v!r}")
        for name in ("extras_upscaler_2_visibility", "gfpgan_visibility", "codeformer_visibility"):
            v = getattr(req, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {v!r}")
        if req.codeformer_visibility > 0:
            raise ValueError("codeformer_visibility: CodeFormer is not available here; use gfpgan_visibility")
        self.upscalers.find(req.upscaler_1)
        self.upscalers.find(req.upscaler_2)
        if req.gfpgan_visibility > 0:
            self.faces.check_available()
        for image in req.images:
            w, h = self.target_size(req, image.size)[0]
            if max(w, h) > self.max_side:
                raise ValueError(f"output size {w}x{h} exceeds the largest side {self.max_side}")

    @staticmethod
    def target_size(req: ExtrasRequest, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """-> (size to upscale to, centre-crop size or None), A1111's arithmetic."""
        w, h = size
        if req.resize_mode == RESIZE_BY:
            factor = float(req.upscaling_resize)
            return (max(1, round(w * factor)), max(1, round(h * factor))), None
        tw, th = req.upscaling_resize_w, req.upscaling_resize_h
        factor = max(tw / w, th / h)
        scaled = (max(tw, round(w * factor)), max(th, round(h * factor)))
        return scaled, ((tw, th) if req.upscaling_crop else None)

    # ------------------------------------------------------------------ run
    def run(self, req: ExtrasRequest, control=None) -> ExtrasResult:
        """``control`` (a job's JobControl, optional): progress per image, other users' jobs may run
        between images, a cancel stops before the next image (what finished is kept)."""
        from webui.diffusion.infotext import read_png_parameters

        self.check_inputs(req)
        params = self.parameters(req)
        line = ", ".join(f"{k}: {v}" for k, v in params.items())
        images, infotexts, paths = [], [], []
        for i, source in enumerate(req.images):
            if control is not None:
                if i:
                    control.batch_boundary()
                if control.cancelled():
                    break
                control.report(i, len(req.images), text="upscaling")
            original_info = read_png_parameters(source)
            out = self.process(req, source.convert("RGB"))
            info = f"{original_info}\n{line}" if original_info else line
            images.append(out)
            infotexts.append(info)
            if req.save:
                name = req.names[i] if req.names else None
                paths.append(self._save(out, info, name, control))
        return ExtrasResult(images, infotexts, paths, html_info=line)

    def process(self, req: ExtrasRequest, image: Image.Image) -> Image.Image:
        """One RGB image through the postprocessing chain."""
        restore = req.gfpgan_visibility > 0
        if restore and not req.upscale_first:
            image = self.faces.restore(image, req.gfpgan_visibility)
        image = self._upscale(req, image)
        if restore and req.upscale_first:
            image = self.faces.restore(image, req.gfpgan_visibility)
        return image

    def _upscale(self, req: ExtrasRequest, image: Image.Image) -> Image.Image:
        size, crop = self.target_size(req, image.size)
        if req.upscaler_1 == "None" and (req.upscaler_2 == "None" or req.extras_upscaler_2_visibility == 0):
            return image
        first = self._resize(image, req.upscaler_1, size)
        if req.upscaler_2 != "None" and req.extras_upscaler_2_visibility > 0:
            second = self._resize(image, req.upscaler_2, size)
            first = Image.blend(first, second, float(req.extras_upscaler_2_visibility))
        if crop is not None:
            cw, ch = crop
            left, top = (first.width - cw) // 2, (first.height - ch) // 2
            first = first.crop((left, top, left + cw, top + ch))
        return first

    def _resize(self, image: Image.Image, name: str, size: tuple[int, int]) -> Image.Image:
        # "None" next to a real upscaler 2 still has to reach the common size to be blended
        return image.resize(size, Image.LANCZOS) if name == "None" else self.upscalers.upscale(image, name, size)

    @staticmethod
    def parameters(req: ExtrasRequest) -> dict:
        """A1111's postprocessing infotext keys for this request."""
        params: dict = {}
        if req.upscaler_1 != "None" or req.upscaler_2 != "None":
            if req.resize_mode == RESIZE_BY:
                params["Postprocess upscale by"] = f"{req.upscaling_resize:g}"
            else:
                params["Postprocess upscale to"] = f"{req.upscaling_resize_w}x{req.upscaling_resize_h}"
                if req.upscaling_crop:
                    params["Postprocess crop to"] = f"{req.upscaling_resize_w}x{req.upscaling_resize_h}"
            params["Postprocess upscaler"] = req.upscaler_1
            if req.upscaler_2 != "None" and req.extras_upscaler_2_visibility > 0:
                params["Postprocess upscaler 2"] = req.upscaler_2
                params["Postprocess upscaler 2 visibility"] = f"{req.extras_upscaler_2_visibility:g}"
        if req.gfpgan_visibility > 0:
            params["GFPGAN visibility"] = f"{req.gfpgan_visibility:g}"
        return params

    def _save(self, image: Image.Image, info: str, name: str | None, control=None) -> Path:
        from webui.diffusion.infotext import save_png

        folder = self.outputs_dir / "extras-images" / _dt.date.today().isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"^(\d{5})", p.name))]
        stem = f"{max(numbers, default=-1) + 1:05d}"
        if name:
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:64]
            stem += f"-{safe}"
        path = folder / f"{stem}.png"
        if control is not None:
            control.add_output(path, info)  # recorded before the atomic write (history agrees with disk)
        return save_png(image, path, info)
