"""The "Speed" setting: off | cache | compile | cache+compile, plus token merging (ToMe).

Everything works on the UNet object (shared by txt2img/img2img/inpaint and any other pipeline built from
the same components), and is applied again, idempotently, before every generation, because a request
may override the settings (A1111's ``override_settings``).

- ``cache``: DeepCache feature reuse (:mod:`webui.diffusion.deepcache`), every ``cache_interval`` steps
  a full UNet, else the shallow branch ``cache_branch``.
- ``compile``: ``torch.compile``. CPU: inductor with weight freezing. CUDA: ``max-autotune``,
  channels_last and fused QKV projections. Compiled artefacts go to ``TORCHINDUCTOR_CACHE_DIR`` (by
  default under the user cache, ``~/.cache/sd-talking-studio/torchinductor``) so a second start reuses
  them. With ``cache+compile`` each UNet layer is compiled on its own (the cache decides per layer).
- Token merging: ``tomesd`` at ``token_merging_ratio`` for images whose larger side is at least
  ``token_merging_min_side`` pixels (where it pays); below that the UNet runs unpatched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui.diffusion import deepcache

if TYPE_CHECKING:  # torch is imported where it runs: the CLI checks speed settings without it
    import torch

SPEED_MODES = ("off", "cache", "compile", "cache+compile")
STATE_ATTR = "_studio_speed"  # what is applied to a UNet: {"compile": ..., "tome": ...}
# PerfConfig fields a request may override (API override_settings keys of the same names)
SPEED_FIELDS = ("speed", "cache_interval", "cache_branch", "token_merging_ratio", "token_merging_min_side")


def inductor_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sd-talking-studio" / "torchinductor"


def check_speed(perf: Any, unet: torch.nn.Module | None = None) -> None:
    """ValueError naming a bad speed value of ``perf`` (a PerfConfig)."""
    if perf.speed not in SPEED_MODES:
        raise ValueError(f"Unknown speed {perf.speed!r}; use one of {', '.join(SPEED_MODES)}")
    deepcache.check_params(unet if uses_cache(perf) else None, perf.cache_interval, perf.cache_branch)
    ratio = perf.token_merging_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 0.75:
        raise ValueError(f"token_merging_ratio must be between 0 and 0.75, got {ratio!r}")
    side = perf.token_merging_min_side
    if isinstance(side, bool) or not isinstance(side, int) or side < 0:
        raise ValueError(f"token_merging_min_side must be an integer >= 0, got {side!r}")


def uses_cache(perf: Any) -> bool:
    return perf.speed in ("cache", "cache+compile")


def uses_compile(perf: Any) -> bool:
    return perf.speed in ("compile", "cache+compile")


def tome_ratio_for(perf: Any, width: int, height: int) -> float:
    return float(perf.token_merging_ratio) if max(width, height) >= perf.token_merging_min_side else 0.0


def _compile_options(device: torch.device) -> dict:
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # torch writes its temp-folder default into the variable when it starts; only a user's own value stays
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache_dir())

    inductor_config.fx_graph_cache = True
    if device.type == "cpu":
        inductor_config.freezing = True  # weights become constants: folded and pre-packed
        return {"fullgraph": False}
    return {"mode": "max-autotune", "fullgraph": False}


def _set_compile(unet: torch.nn.Module, kind: str | None, device: torch.device) -> None:
    """kind: None | "unet" (whole model) | "layers" (each cached layer, for cache+compile)."""
    import torch

    cache = deepcache.installed(unet)
    if kind == "unet":
        if device.type == "cuda":
            unet.to(memory_format=torch.channels_last)
            if hasattr(unet, "fuse_qkv_projections"):
                unet.fuse_qkv_projections()
        unet.compile(**_compile_options(device))
    else:
        unet._compiled_call_impl = None  # undo nn.Module.compile
        if device.type == "cuda" and hasattr(unet, "unfuse_qkv_projections"):
            unet.unfuse_qkv_projections()
    if cache is not None:
        cache.set_compile(_compile_options(device) if kind == "layers" else None)


def apply_speed(unet: torch.nn.Module, perf: Any, device: torch.device, width: int, height: int) -> None:
    """Bring ``unet`` to the speed state ``perf`` asks for at this image size (cheap when unchanged)."""
    check_speed(perf, unet)
    state = getattr(unet, STATE_ATTR, {"compile": None, "tome": 0.0})
    ratio = tome_ratio_for(perf, width, height)
    if ratio != state["tome"]:
        import tomesd

        if ratio > 0:
            tomesd.apply_patch(unet, ratio=ratio, use_rand=False)  # same seed, same image
        else:
            tomesd.remove_patch(unet)
    if uses_cache(perf):
        deepcache.enable_deepcache(unet, perf.cache_interval, perf.cache_branch)
    else:
        deepcache.disable_deepcache(unet)
    kind = ("layers" if uses_cache(perf) else "unet") if uses_compile(perf) else None
    have_layers_compiled = deepcache.installed(unet) is not None and deepcache.installed(unet).compile_options is not None
    if kind != state["compile"] or (kind == "layers" and not have_layers_compiled):
        _set_compile(unet, kind, device)
    setattr(unet, STATE_ATTR, {"compile": kind, "tome": ratio})


def reset(unet: torch.nn.Module) -> None:
    """Call before a generation: the cache starts with a full step."""
    cache = deepcache.installed(unet)
    if cache is not None:
        cache.reset()


def speed_infotext(perf: Any, width: int, height: int) -> dict[str, Any]:
    """Infotext keys, e.g. ``Speed: cache (interval 3, branch 0)`` and ``Token merging ratio: 0.5``."""
    params: dict[str, Any] = {}
    if perf.speed != "off":
        text = perf.speed
        if uses_cache(perf):
            text += f" (interval {perf.cache_interval}, branch {perf.cache_branch})"
        params["Speed"] = text
    ratio = tome_ratio_for(perf, width, height)
    params["Token merging ratio"] = ratio if ratio > 0 else None  # A1111's key
    return params
