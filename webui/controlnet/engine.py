"""What the image service asks of ControlNet: list models/modules, validate a job's units, and
prepare the diffusers call for them (the ControlNets cached, the pipelines over the job's own
loaded components). Used by ``webui.diffusion.service.ImageService`` and the API; no gradio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from webui.controlnet.units import MAX_UNITS, ControlNetUnit


class ControlNetEngine:
    def __init__(self, models_dir: Path, max_loaded: int = 3):
        from webui.controlnet.depth import Annotators
        from webui.controlnet.models import ControlNetManager

        self.models_dir = Path(models_dir)
        self.manager = ControlNetManager(max_loaded)
        self.annotators = Annotators(self.models_dir)  # the depth/normal modules' models

    def list_models(self):
        from webui.controlnet.models import scan_controlnets

        return scan_controlnets(self.models_dir)

    def model_titles(self) -> list[str]:
        return [m.title for m in self.list_models()]

    def find(self, name: str):
        from webui.controlnet.models import find_controlnet

        return find_controlnet(self.list_models(), name)

    @staticmethod
    def enabled(units) -> list[ControlNetUnit]:
        return [u for u in (units or ()) if u.active]

    def check(self, units, has_init_image: bool = False) -> None:
        """ValueError naming the first bad unit field (module, model, image, counts)."""
        from webui.controlnet.preprocess import get_module, missing_file

        units = tuple(units or ())
        for u in units:
            if not isinstance(u, ControlNetUnit):
                raise ValueError(f"ControlNet units must be ControlNetUnit objects, got {type(u).__name__}")
        active = self.enabled(units)
        if len(active) > MAX_UNITS:
            raise ValueError(f"at most {MAX_UNITS} ControlNet units can be enabled, got {len(active)}")
        for i, u in enumerate(active):
            m = get_module(u.module)
            need = missing_file(m, self.annotators)
            if need:
                raise ValueError(f"ControlNet unit {i}: module {m.name!r} needs {need}")
            self.find(u.model)
            if u.image is None and not has_init_image:
                raise ValueError(f"ControlNet unit {i} (model {u.model!r}) has no input image")
            if u.guidance_start > u.guidance_end:
                raise ValueError(f"ControlNet unit {i}: guidance_start {u.guidance_start} is after guidance_end {u.guidance_end}")

    def prepare(self, kind: str, pipes, units, width: int, height: int, guidance_scale: float, fallback_image=None) -> Any:
        """A ``webui.controlnet.run.ControlNetCall`` for the enabled units, or None when there are none."""
        from webui.controlnet.run import prepare

        active = self.enabled(units)
        if not active:
            return None
        unet = pipes.txt2img.unet
        infos = [self.find(u.model) for u in active]
        nets = [self.manager.get(info, pipes.dtype, pipes.device, unet.config, pipes.model.name) for info in infos]
        return prepare(
            kind, pipes.txt2img.components, active, nets, [i.title for i in infos], width, height, guidance_scale,
            fallback_image=fallback_image, inpaint_model=pipes.is_inpaint_model, annotators=self.annotators,
        )

    @staticmethod
    def prepare_second_pass(call, pipes, width: int, height: int) -> Any:
        """Hires fix: ``call``'s units again for the img2img pass at ``width`` x ``height`` (None without units)."""
        from webui.controlnet.run import for_second_pass

        return None if call is None else for_second_pass(call, pipes.txt2img.components, width, height)

    def module_choices(self) -> list:
        """(dropdown label, module name) for every module; those that cannot run yet say what they need."""
        from webui.controlnet.preprocess import MODULE_LIST, module_label

        return [(module_label(m, self.annotators), m.name) for m in MODULE_LIST]

    def detect(self, module: str, images: list, res: int = 512, a: float = -1, b: float = -1) -> list:
        from webui.controlnet.preprocess import run_module

        return [run_module(module, img, res, a, b, annotators=self.annotators) for img in images]
