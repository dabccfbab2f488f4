"""Device, precision and memory/speed switches, each mapped to the real torch/diffusers call."""

from __future__ import annotations

import contextlib
import importlib.util
from typing import TYPE_CHECKING, Any, Iterator

from webui.config import MemoryMode, PerfConfig

if TYPE_CHECKING:  # torch is imported where it runs: building the first page does not need it
    import torch

ATTENTION_MODES = ("sdpa", "xformers", "sliced")
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # name -> torch dtype attribute


def resolve_device(perf: PerfConfig) -> torch.device:
    """``auto``: cuda > mps > cpu. An explicit device is honoured (ValueError if unavailable)."""
    import torch

    name = (perf.device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"Unknown device {perf.device!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {perf.device!r} requested but this torch build has no working CUDA")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Device {perf.device!r} requested but MPS is not available")
    return device


def resolve_dtype(perf: PerfConfig, device: torch.device) -> torch.dtype:
    """``auto`` = fp16 on CUDA, fp32 elsewhere (CPU half kernels are missing or emulated)."""
    import torch

    name = (perf.precision or "auto").lower()
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in PRECISIONS:
        raise ValueError(f"Unknown precision {perf.precision!r}; use auto, {', '.join(PRECISIONS)}")
    return getattr(torch, PRECISIONS[name])


def xformers_available() -> bool:
    return importlib.util.find_spec("xformers") is not None


def check_perf(perf: PerfConfig) -> None:
    """ValueError for switch values that cannot work here."""
    if perf.attention not in ATTENTION_MODES:
        raise ValueError(f"Unknown attention {perf.attention!r}; use one of {', '.join(ATTENTION_MODES)}")
    if perf.attention == "xformers" and not xformers_available():
        raise ValueError("attention='xformers' requested but xformers is not installed; use 'sdpa'")
    if perf.threads < 0:
        raise ValueError(f"threads must be >= 0, got {perf.threads}")
    MemoryMode(perf.memory)
    from webui.diffusion.speed import check_speed

    check_speed(perf)


def apply_global_perf(perf: PerfConfig) -> None:
    """Process-wide switches: TF32 and CPU thread count."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = bool(perf.tf32)
    torch.backends.cudnn.allow_tf32 = bool(perf.tf32)
    if perf.threads > 0:
        torch.set_num_threads(perf.threads)


def _set_attention(pipe: Any, mode: str) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    # reset first so switching modes never stacks (slicing sets its own processors)
    if hasattr(pipe, "disable_attention_slicing"):
        pipe.disable_attention_slicing()
    if mode == "xformers":
        pipe.enable_xformers_memory_efficient_attention()
    elif mode == "sliced":
        pipe.enable_attention_slicing()
    else:  # sdpa: torch.nn.functional.scaled_dot_product_attention
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        if hasattr(pipe.vae, "set_attn_processor"):
            pipe.vae.set_attn_processor(AttnProcessor2_0())


def apply_perf(pipe: Any, perf: PerfConfig, device: torch.device | None = None) -> None:
    """Apply every switch of ``perf`` to ``pipe`` (components are shared, so this covers the
    img2img/inpaint pipelines built from the same components).

    Memory modes: on CUDA, ``model-offload`` -> ``enable_model_cpu_offload`` and
    ``sequential-offload`` -> ``enable_sequential_cpu_offload``. On CPU/MPS they are no-ops: the
    weights already live in system memory. Switching memory mode needs a reload (the service does it).
    """
    import torch

    check_perf(perf)
    apply_global_perf(perf)
    _set_attention(pipe, perf.attention)

    if perf.vae_slicing:
        pipe.vae.enable_slicing()
    else:
        pipe.vae.disable_slicing()
    if perf.vae_tiling:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()

    fmt = torch.channels_last if perf.channels_last else torch.contiguous_format
    pipe.unet.to(memory_format=fmt)
    pipe.vae.to(memory_format=fmt)

    device = device or resolve_device(perf)
    memory = MemoryMode(perf.memory)
    if device.type == "cuda" and memory is MemoryMode.MODEL_OFFLOAD:
        pipe.enable_model_cpu_offload(device=device)
    elif device.type == "cuda" and memory is MemoryMode.SEQUENTIAL_OFFLOAD:
        pipe.enable_sequential_cpu_offload(device=device)


def unet_memory_format(pipe: Any) -> torch.memory_format:
    """channels_last or contiguous, read from the UNet's first conv weight."""
    import torch

    weight = pipe.unet.conv_in.weight
    return torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous() else torch.contiguous_format


def set_vae_tile_size(vae: Any, sample_size: int) -> None:
    """Set the VAE tile size in pixels (diffusers reads ``tile_sample_min_size``/``tile_latent_min_size``)."""
    vae.tile_sample_min_size = int(sample_size)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    vae.tile_latent_min_size = int(sample_size) // scale


@contextlib.contextmanager
def autocast_context(perf: PerfConfig, device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """``torch.autocast`` in ``dtype`` when ``perf.autocast`` is on and dtype is a half type; else nothing."""
    import torch

    if perf.autocast and dtype in (torch.float16, torch.bfloat16):
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
    else:
        yield
