"""A1111 request fields beyond the basics: hires fix and restore_faces (built into the request), and
"no silent ignoring": every A1111 field this project does not implement is refused with a 422 naming
it, unless it carries A1111's neutral default (the value clients such as webuiapi always send).

No FastAPI here: functions take the request body as a dict and raise ValueError naming the field.
"""

from __future__ import annotations

from typing import Any

from webui.diffusion.types import HiresFix

_NONE = (None, "", "None")
# field -> the values that mean "not used" (A1111's and webuiapi's defaults)
NEUTRAL_VALUES: dict[str, tuple] = {
    "tiling": (None, False),
    # subseed_strength / seed_resize_from_* / styles / script_name ("x/y/z plot") are implemented (webui.api)
    "firstphase_width": (None, 0),
    "firstphase_height": (None, 0),
    "hr_checkpoint_name": _NONE + ("Use same checkpoint",),
    "eta": (None, 0, 0.0, 1, 1.0),
    "s_churn": (None, 0, 0.0),
    "s_tmax": (None, 0, 0.0),
    "s_tmin": (None, 0, 0.0),
    "s_noise": (None, 1, 1.0),
    "initial_noise_multiplier": (None, 1, 1.0),
    "refiner_checkpoint": _NONE,
    "refiner_switch_at": (None, 0, 0.0),
    "image_cfg_scale": None,  # any value: A1111 uses it only for instruct-pix2pix models, which this project lacks
    "controlnet_units": (None, []),
}
# the override_settings keys this project applies: the checkpoint, the VAE and the speed settings (webui.diffusion.speed)
SPEED_OVERRIDES = {"speed": str, "cache_interval": int, "cache_branch": int, "token_merging_ratio": float,
                   "token_merging_min_side": int}
OVERRIDE_SETTINGS = ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", *SPEED_OVERRIDES)
HIRES_FIELDS = ("hr_scale", "hr_resize_x", "hr_resize_y", "hr_upscaler", "hr_second_pass_steps", "denoising_strength",
                "hr_sampler_name", "hr_prompt", "hr_negative_prompt")


def unsupported_fields(body: dict[str, Any]) -> list[str]:
    """Messages for each A1111 field that asks for something this project does not do."""
    problems = []
    for name, neutral in NEUTRAL_VALUES.items():
        if neutral is None or name not in body:
            continue
        value = body[name]
        if value not in neutral:
            what = f"script {value!r}" if name == "script_name" else f"{value!r}"
            problems.append(f"{name}: {what} is not implemented here (send {neutral[1]!r} or leave it out)")
    for name in sorted((body.get("alwayson_scripts") or {})):
        if name.lower() == "controlnet":
            continue  # sd-webui-controlnet units: webui.controlnet.units.units_from_alwayson
        problems.append(f"alwayson_scripts.{name}: this script is not available here (ControlNet is)")
    for key in sorted((body.get("override_settings") or {})):
        if key not in OVERRIDE_SETTINGS:
            problems.append(f"override_settings.{key}: this setting is not implemented here (supported: {', '.join(OVERRIDE_SETTINGS)})")
    return problems


def check_unsupported(body: dict[str, Any]) -> None:
    problems = unsupported_fields(body)
    if problems:
        raise ValueError("; ".join(problems))


def _typed(body: dict, name: str, kind, default):
    value = body.get(name, default)
    if value is None:
        return default
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
    return value


def hires_from_body(body: dict[str, Any], sampler_for) -> HiresFix | None:
    """A1111's enable_hr + hr_* fields -> HiresFix (None when enable_hr is false).

    ``sampler_for(name, scheduler)`` joins an A1111 sampler and scheduler into this project's sampler name.
    """
    if not _typed(body, "enable_hr", bool, False):
        return None
    d = HiresFix()
    sampler = body.get("hr_sampler_name") or None
    if sampler in ("Use same sampler",):
        sampler = None
    scheduler = body.get("hr_scheduler")
    if sampler is None and scheduler not in (None, "", "Use same scheduler", "Automatic", "automatic"):
        raise ValueError("hr_scheduler: set hr_sampler_name too (a scheduler alone is not implemented here)")
    return HiresFix(
        hr_scale=_typed(body, "hr_scale", float, d.hr_scale),
        hr_resize_x=_typed(body, "hr_resize_x", int, d.hr_resize_x),
        hr_resize_y=_typed(body, "hr_resize_y", int, d.hr_resize_y),
        hr_upscaler=_typed(body, "hr_upscaler", str, d.hr_upscaler),
        hr_second_pass_steps=_typed(body, "hr_second_pass_steps", int, d.hr_second_pass_steps),
        denoising_strength=_typed(body, "denoising_strength", float, d.denoising_strength),
        hr_sampler_name=sampler_for(sampler, scheduler) if sampler else None,
        hr_prompt=_typed(body, "hr_prompt", str, ""),
        hr_negative_prompt=_typed(body, "hr_negative_prompt", str, ""),
    )


def speed_overrides(body: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """``override_settings`` speed keys -> the request's ``speed_overrides`` (types checked here,
    values by the engine)."""
    settings = body.get("override_settings") or {}
    found = []
    for name, kind in SPEED_OVERRIDES.items():
        if settings.get(name) is not None:
            found.append((name, _typed(settings, name, kind, None)))
    return tuple(found)


def postprocess_fields(body: dict[str, Any], kind: str, sampler_for) -> dict[str, Any]:
    """Extra request fields for txt2img (hires, restore_faces, speed) and img2img (restore_faces, speed)."""
    fields: dict[str, Any] = {"restore_faces": _typed(body, "restore_faces", bool, False),
                              "speed_overrides": speed_overrides(body),
                              # A1111's Clip skip setting
                              "clip_skip": _typed(body.get("override_settings") or {}, "CLIP_stop_at_last_layers", int, 1)}
    if kind == "txt2img":
        fields["hires"] = hires_from_body(body, sampler_for)
    return fields
