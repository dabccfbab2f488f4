"""Running ControlNet units through diffusers' ControlNet pipelines over the loaded model.

``prepare(kind, pipes, units, ...)`` turns the enabled units of a job into a ``ControlNetCall``: a
diffusers ``StableDiffusionControlNet{,Img2Img,Inpaint}Pipeline`` built from the PipelineSet's own
components (the same UNet, VAE, text encoder and tokenizer objects: nothing is copied), a
``MultiControlNetModel`` of the units' ControlNets, and the call's keyword arguments (control
images, per-unit ``controlnet_conditioning_scale`` and ``control_guidance_start/end``).

T2I-Adapters (diffusers ``T2IAdapter`` folders) are units too: ``AdapterNet`` sits in the same
``MultiControlNetModel`` (so diffusers applies each unit's weight and guidance range per step), runs the
adapter on the unit's control map and hands the scaled features to the UNet as
``down_intrablock_additional_residuals`` through a forward pre-hook held while the call runs
(``ControlNetCall.hooked``); it adds no ControlNet residuals.

Control modes follow the extension: "Balanced" adds the control to both halves of the CFG batch
at the unit's weight; "My prompt is more important" scales the 13 residuals of an SD1.5 ControlNet
by ``0.825 ** (12 - i)`` (shallow ones weakest, the middle block at full weight: "soft injection");
"ControlNet is more important" does the same and adds the control only to the conditional half,
so classifier-free guidance amplifies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import contextlib
import functools

import torch

from webui.controlnet.units import CONTROL_MODES, ControlNetUnit, pixel_perfect_resolution

SOFT_DECAY = 0.825
SOFT_ADAPTER = (0.25, 0.62, 0.825, 1.0)  # the extension's soft-injection scales of the 4 adapter features


def _cond_mark(sample, dtype):
    """1 for the conditional half of a [uncond, cond] batch, 0 for the unconditional one."""
    half = sample.shape[0] // 2
    return torch.cat([torch.zeros(half), torch.ones(half)]).to(sample.device, dtype)[:, None, None, None]


class ModeControlNet(torch.nn.Module):
    """A ControlNetModel with a unit's control mode applied to its residuals."""

    def __init__(self, net, mode: str = "Balanced", soft: bool | None = None):
        super().__init__()
        if mode not in CONTROL_MODES:
            raise ValueError(f"control_mode must be one of {CONTROL_MODES}, got {mode!r}")
        self.net = net
        self.mode = mode
        self.soft = mode != CONTROL_MODES[0] if soft is None else soft  # soft injection (forced in some hires passes)
        self.cfg_batch = True  # the pipeline's batch is [uncond, cond] (set per call)

    @property
    def config(self):
        return self.net.config

    @property
    def dtype(self):
        return self.net.dtype

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale=1.0, guess_mode=False, return_dict=False, **kw):
        down, mid = self.net(
            sample, timestep, encoder_hidden_states=encoder_hidden_states, controlnet_cond=controlnet_cond,
            conditioning_scale=conditioning_scale, guess_mode=False, return_dict=False, **kw,
        )
        if self.soft:
            n = len(down)
            down = [d * SOFT_DECAY ** float(n - i) for i, d in enumerate(down)]
        if self.mode == CONTROL_MODES[2] and self.cfg_batch and sample.shape[0] % 2 == 0:
            mark = _cond_mark(sample, down[0].dtype)
            down = [d * mark for d in down]
            mid = mid * mark
        return down, mid


class AdapterSlot:
    """The adapter features of the current step, from the AdapterNets to the UNet's pre-hook."""

    def __init__(self):
        self.pending: list | None = None

    def add(self, features: list) -> None:
        self.pending = features if self.pending is None else [a + b for a, b in zip(self.pending, features)]

    def take(self) -> list | None:
        features, self.pending = self.pending, None
        return features

    def pre_hook(self, module, args, kwargs):
        features = self.take()
        if features is not None:
            sample = args[0] if args else kwargs["sample"]
            extra = [f.to(sample.dtype) for f in features]  # a new list: the UNet pops from it
            old = kwargs.get("down_intrablock_additional_residuals")
            kwargs["down_intrablock_additional_residuals"] = extra if old is None else [a + b for a, b in zip(old, extra)]
        return args, kwargs


class AdapterNet(torch.nn.Module):
    """A T2I-Adapter as a member of a MultiControlNetModel: its features (times the step's
    conditioning scale, i.e. the unit's weight inside its guidance range, 0 outside) go to ``slot``."""

    def __init__(self, adapter, slot: AdapterSlot, mode: str = "Balanced", soft: bool | None = None):
        super().__init__()
        if mode not in CONTROL_MODES:
            raise ValueError(f"control_mode must be one of {CONTROL_MODES}, got {mode!r}")
        self.adapter = adapter
        self.slot = slot
        self.mode = mode
        self.soft = mode != CONTROL_MODES[0] if soft is None else soft
        self.cfg_batch = True
        self._features = None  # (the control tensor, its features): the same map every step

    @property
    def config(self):
        from types import SimpleNamespace

        return SimpleNamespace(global_pool_conditions=False)

    @property
    def dtype(self):
        return next(self.adapter.parameters()).dtype

    def features(self, cond: torch.Tensor) -> list:
        if self._features is None or self._features[0] is not cond:
            x = cond.to(self.dtype)
            if int(self.adapter.config.in_channels) == 1:  # the grey-input (sketch/canny) adapters
                x = x.mean(dim=1, keepdim=True)
            self._features = (cond, list(self.adapter(x)))
        return self._features[1]

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale=1.0, **kw):
        scale = float(conditioning_scale)
        if scale != 0.0:
            feats = self.features(controlnet_cond)
            n = len(feats)
            scales = [scale] * n
            if self.soft:
                soft = SOFT_ADAPTER[-n:] if n <= len(SOFT_ADAPTER) else SOFT_ADAPTER + (1.0,) * (n - len(SOFT_ADAPTER))
                scales = [scale * k for k in soft]
            out = [f * k for f, k in zip(feats, scales)]
            if self.mode == CONTROL_MODES[2] and self.cfg_batch and sample.shape[0] % 2 == 0:
                out = [f * _cond_mark(sample, f.dtype) for f in out]
            self.slot.add(out)
        return None, None  # no ControlNet residuals


@functools.lru_cache(maxsize=1)
def _multi_class():
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    class UnitsControlNet(MultiControlNetModel):
        """MultiControlNetModel whose members may be AdapterNets (they return no residuals)."""

        def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, **kw):
            down, mid = None, None
            for image, scale, net in zip(controlnet_cond, conditioning_scale, self.nets):
                d, m = net(sample=sample, timestep=timestep, encoder_hidden_states=encoder_hidden_states,
                           controlnet_cond=image, conditioning_scale=scale, **kw)
                if d is None:
                    continue
                if down is None:
                    down, mid = list(d), m
                else:
                    down, mid = [a + b for a, b in zip(down, d)], mid + m
            return down, mid

    return UnitsControlNet


def is_adapter(net) -> bool:
    return type(net).__name__ == "T2IAdapter"


@dataclass
class ControlNetCall:
    pipe: Any  # the diffusers ControlNet pipeline (shares the base components)
    kwargs: dict  # extra keyword arguments of the pipeline call
    units: list = field(default_factory=list)  # the enabled units, in order
    control_images: list = field(default_factory=list)  # the control maps given to diffusers
    titles: list = field(default_factory=list)  # ControlNet model titles, for infotext
    detected: list = field(default_factory=list)  # the preprocessed maps before fitting to the size
    controlnet: Any = None  # the MultiControlNetModel of the units' (mode-wrapped) ControlNets
    slot: Any = None  # AdapterSlot when a unit is a T2I-Adapter

    @contextlib.contextmanager
    def hooked(self, unet):
        """While the pipeline runs: the UNet pre-hook that adds the T2I-Adapter features (nothing without adapters)."""
        if self.slot is None:
            yield self
            return
        handle = unet.register_forward_pre_hook(self.slot.pre_hook, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()
            self.slot.take()


def detect_unit(unit: ControlNetUnit, width: int, height: int, fallback=None, annotators=None):
    """The unit's preprocessed map (its module on its image, or on ``fallback``, the init image)."""
    from webui.controlnet.preprocess import run_module

    image = unit.image if unit.image is not None else fallback
    if image is None:
        raise ValueError(f"ControlNet unit with model {unit.model!r} has no input image")
    res = unit.processor_res
    if unit.pixel_perfect:
        res = pixel_perfect_resolution(image.size, width, height, unit.resize_mode)
    return run_module(unit.module, image, res, unit.threshold_a, unit.threshold_b, annotators=annotators)


def crop_unit_images(units, box: tuple, full_size: tuple, width: int, height: int) -> list:
    """"Only masked" inpainting: each unit's own image fitted to the picture's ``full_size`` by the
    unit's resize mode, cut with the same crop ``box`` and resized to ``width`` x ``height`` (the
    extension's ``Resize and Fill``), as the picture itself is. Units without an image are kept: they
    use the cropped init image."""
    from dataclasses import replace

    from webui.controlnet.units import RESIZE_MODES
    from webui.diffusion.images import resize_image

    out = []
    for u in units:
        if u.image is not None:
            fitted = resize_image(u.image.convert("RGB"), *full_size, RESIZE_MODES.index(u.resize_mode))
            u = replace(u, image=resize_image(fitted.crop(box), width, height, 2))
        out.append(u)
    return out


def build_pipeline(kind: str, components: dict, controlnet, inpaint_model: bool = False):
    """A ControlNet pipeline for ``kind`` over ``components`` (the base pipeline's, shared)."""
    from diffusers import (
        StableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionControlNetInpaintPipeline,
        StableDiffusionControlNetPipeline,
    )

    cls = {
        "txt2img": StableDiffusionControlNetPipeline,
        "img2img": StableDiffusionControlNetImg2ImgPipeline,
        "inpaint": StableDiffusionControlNetInpaintPipeline,
    }[kind]
    if inpaint_model and kind != "inpaint":
        cls = StableDiffusionControlNetInpaintPipeline
    base = {k: components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    pipe = cls(**base, controlnet=controlnet, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call(kind: str, components: dict, multi, units: list, titles: list, detected: list, width: int, height: int,
          inpaint_model: bool) -> ControlNetCall:
    from webui.controlnet.preprocess import resize_control

    pipe = build_pipeline(kind, components, multi, inpaint_model)
    images = [resize_control(d, width, height, u.resize_mode) for u, d in zip(units, detected)]
    kwargs = {
        "image" if kind == "txt2img" and not inpaint_model else "control_image": images,
        "controlnet_conditioning_scale": [float(u.weight) for u in units],
        "control_guidance_start": [float(u.guidance_start) for u in units],
        "control_guidance_end": [float(u.guidance_end) for u in units],
        "guess_mode": False,
    }
    slot = next((n.slot for n in multi.nets if isinstance(n, AdapterNet)), None)
    return ControlNetCall(pipe=pipe, kwargs=kwargs, units=list(units), control_images=images, titles=list(titles),
                          detected=list(detected), controlnet=multi, slot=slot)


def prepare(kind: str, components: dict, units: list, nets: list, titles: list, width: int, height: int,
            guidance_scale: float, fallback_image=None, inpaint_model: bool = False, annotators=None) -> ControlNetCall:
    """The pipeline and keyword arguments for the enabled ``units`` (with their loaded ``nets``)."""
    if not units:
        raise ValueError("no enabled ControlNet unit")
    wrapped = []
    slot = AdapterSlot()
    for unit, net in zip(units, nets):
        w = AdapterNet(net, slot, unit.control_mode) if is_adapter(net) else ModeControlNet(net, unit.control_mode)
        w.cfg_batch = guidance_scale > 1.0
        wrapped.append(w)
    detected = [detect_unit(u, width, height, fallback_image, annotators) for u in units]
    return _call(kind, components, _multi_class()(wrapped), units, titles, detected, width, height, inpaint_model)


HIRES_SOFT_MODULES = ("canny", "mlsd")  # the extension forces soft injection for these in the hires pass


def for_second_pass(call: ControlNetCall, components: dict, width: int, height: int) -> ControlNetCall:
    """The same units for hires fix's img2img pass at ``width`` x ``height``: the preprocessed maps
    fitted again (each unit's resize mode), the same ControlNets, weights and guidance ranges, an
    img2img ControlNet pipeline over the same components (the extension's hires behaviour, including
    soft injection for canny/MLSD units in this pass)."""
    from webui.controlnet.preprocess import get_module

    members = []
    for unit, m in zip(call.units, call.controlnet.nets):
        soft = m.soft or any(k in get_module(unit.module).name for k in HIRES_SOFT_MODULES)
        w = AdapterNet(m.adapter, m.slot, m.mode, soft) if isinstance(m, AdapterNet) else ModeControlNet(m.net, m.mode, soft)
        w.cfg_batch = m.cfg_batch
        members.append(w)
    return _call("img2img", components, _multi_class()(members), call.units, call.titles, call.detected, width, height, False)


def infotext_params(call: ControlNetCall) -> dict:
    """``{"ControlNet 0": "Module: ..., Model: ..., ...", ...}`` as the extension writes them."""
    from dataclasses import replace

    from webui.controlnet.preprocess import get_module

    out = {}
    for i, (unit, title) in enumerate(zip(call.units, call.titles)):
        m = get_module(unit.module)  # canonical name, and the thresholds the module really used
        a = float(m.a[1]) if m.a and unit.threshold_a < 0 else unit.threshold_a
        b = float(m.b[1]) if m.b and unit.threshold_b < 0 else unit.threshold_b
        out[f"ControlNet {i}"] = replace(unit, model=title, module=m.name, threshold_a=a, threshold_b=b).infotext()
    return out
