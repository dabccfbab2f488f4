"""Samplers by A1111 name: one table, A1111 sampler name -> diffusers scheduler class + kwargs.

A1111 (1.9+) names a sampler and, separately, a "schedule type" (Automatic, Karras, Exponential, ...).
Legacy names such as "DPM++ 2M Karras" carry the schedule as a trailing word; we split it off.
Under "Automatic" A1111 gives some samplers a non-uniform schedule (DPM++ 2M/SDE/2S a and DPM2 -> Karras,
the 2M/3M SDE samplers -> Exponential); ``_AUTO_SCHEDULE`` mirrors that.
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any, Mapping

_HAS_TORCHSDE = importlib.util.find_spec("torchsde") is not None

# A1111 sampler name -> (diffusers scheduler class name, extra kwargs)
SAMPLER_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    # DPM++ SDE is DPMSolverSDEScheduler in diffusers, which needs torchsde. Without torchsde we map it to
    # the nearest deterministic relative, DPMSolverSinglestepScheduler (the diffusers docs' own mapping).
    "DPM++ SDE": (
        ("DPMSolverSDEScheduler", {})
        if _HAS_TORCHSDE
        else ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2})
    ),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    # No exact diffusers match for these two; the closest relatives:
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}

# A1111 schedule type -> scheduler kwargs (applied only where the class accepts them)
SCHEDULE_TYPES: dict[str, dict[str, Any]] = {
    "Automatic": {},
    "Uniform": {},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Simple": {"timestep_spacing": "trailing"},
    "Normal": {},
}

# What "Automatic" means for each sampler in A1111 1.9+
_AUTO_SCHEDULE = {
    "DPM++ 2M": "Karras",
    "DPM++ SDE": "Karras",
    "DPM++ 2S a": "Karras",
    "DPM2": "Karras",
    "DPM2 a": "Karras",
    "DPM++ 2M SDE": "Exponential",
    "DPM++ 3M SDE": "Exponential",
}

# Legacy combined names that clients still send
_LEGACY_NAMES = [
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "DPM++ 2M SDE Karras",
    "DPM++ 2M SDE Exponential",
    "DPM++ 2S a Karras",
    "DPM2 Karras",
    "DPM2 a Karras",
    "LMS Karras",
]

SAMPLER_NAMES: list[str] = list(SAMPLER_TABLE) + _LEGACY_NAMES


def split_sampler_name(name: str, schedule: str | None = None) -> tuple[str, str]:
    """"DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"); "Euler a" -> ("Euler a", "Automatic").

    An explicit ``schedule`` (A1111 API ``scheduler``) wins over a trailing word. Raises ValueError
    for an unknown sampler or schedule type.
    """
    name = (name or "").strip()
    base, word = name, None
    if name not in SAMPLER_TABLE:
        for sched in SCHEDULE_TYPES:
            if name.endswith(" " + sched) and name[: -len(sched) - 1] in SAMPLER_TABLE:
                base, word = name[: -len(sched) - 1], sched
                break
        else:
            raise ValueError(f"Unknown sampler {name!r}; valid samplers: {', '.join(SAMPLER_NAMES)}")
    chosen = schedule if schedule not in (None, "", "Automatic") else (word or "Automatic")
    if chosen not in SCHEDULE_TYPES:
        raise ValueError(f"Unknown schedule type {chosen!r}; valid: {', '.join(SCHEDULE_TYPES)}")
    return base, chosen


def scheduler_kwargs(name: str, schedule: str | None = None) -> tuple[str, dict[str, Any]]:
    """The diffusers class name and kwargs for an A1111 sampler name (+ optional schedule type)."""
    base, sched = split_sampler_name(name, schedule)
    cls_name, kwargs = SAMPLER_TABLE[base]
    if sched == "Automatic":
        sched = _AUTO_SCHEDULE.get(base, "Automatic")
    import diffusers  # lazily: the sampler names are needed by the first page, diffusers is not

    cls = getattr(diffusers, cls_name)
    accepted = inspect.signature(cls.__init__).parameters
    merged = dict(kwargs)
    for key, value in SCHEDULE_TYPES[sched].items():
        if key in accepted:  # e.g. DDIM has no Karras sigmas: A1111 ignores the schedule there too
            merged[key] = value
    return cls_name, merged


def make_scheduler(name: str, base_config: Mapping[str, Any], schedule: str | None = None):
    """A fresh scheduler for A1111 sampler ``name`` built from a model's scheduler config.

    ``base_config`` is the model's own scheduler config (``pipe.scheduler.config``); betas,
    prediction type and the like carry over. Unknown names raise ValueError listing valid names.
    """
    cls_name, kwargs = scheduler_kwargs(name, schedule)
    config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    # start from a neutral schedule so a previous sampler's choices never leak in
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        config.pop(key, None)
    config.pop("algorithm_type", None)
    config.pop("solver_order", None)
    config.update(kwargs)
    import diffusers

    return getattr(diffusers, cls_name).from_config(config)


def schedule_type_of(name: str, schedule: str | None = None) -> str | None:
    """The "Schedule type" an A1111 infotext would show for this choice (None when Automatic)."""
    _, sched = split_sampler_name(name, schedule)
    return None if sched == "Automatic" else sched
