"""Load a model once into a PipelineSet (txt2img + img2img + inpaint over the SAME components).

- diffusers folders: ``StableDiffusionPipeline.from_pretrained(path, local_files_only=True, ...)``
- single files (A1111/CompVis layout): ``from_single_file(ckpt, config=<shipped config folder>,
  local_files_only=True)``; sd15 vs sd15-inpaint chosen by the UNet ``conv_in`` input channels
  read from the file (9 = inpainting UNet).
- optional VAE file from models/VAE via ``AutoencoderKL.from_single_file`` with the shipped VAE config.
Nothing is ever downloaded: HF_HUB_OFFLINE is set and every call passes ``local_files_only=True``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webui.config import MemoryMode, PerfConfig
from webui.diffusion.types import ModelInfo

if TYPE_CHECKING:  # torch is imported where it runs: building the first page does not need it
    import torch

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
SD15_CONFIG = CONFIGS_DIR / "sd15"
SD15_INPAINT_CONFIG = CONFIGS_DIR / "sd15-inpaint"

CONV_IN_KEY = "model.diffusion_model.input_blocks.0.0.weight"  # [320, in_channels, 3, 3] in SD1.x
SDXL_MARKER = "conditioner.embedders.1.model.ln_final.weight"
SD2_MARKER = "cond_stage_model.model.ln_final.weight"


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def require_file(path: Path, folder_hint: str) -> Path:
    """FileNotFoundError naming the file and the folder it belongs in."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Model file not found: {path.name!r} (expected at {path}); put it in {folder_hint}")
    return path


def _read_keys_and_shapes(path: Path, wanted: list[str]) -> tuple[set[str], dict[str, tuple[int, ...]]]:
    """All keys of a checkpoint and the shapes of ``wanted`` ones, without loading whole tensors
    (safetensors header) or with ``torch.load(weights_only=True, mmap=True)`` for .ckpt/.pt."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            keys = set(fh.keys())
            for key in wanted:
                if key in keys:
                    shapes[key] = tuple(fh.get_slice(key).get_shape())
        return keys, shapes
    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    keys = set(state)
    for key in wanted:
        if key in keys:
            shapes[key] = tuple(state[key].shape)
    return keys, shapes


def detect_single_file(path: Path) -> dict[str, Any]:
    """Architecture facts of an original-layout checkpoint: ``{"arch": "sd15", "in_channels": 4|9}``."""
    keys, shapes = _read_keys_and_shapes(path, [CONV_IN_KEY])
    if SDXL_MARKER in keys:
        return {"arch": "sdxl", "in_channels": None}
    if SD2_MARKER in keys:
        return {"arch": "sd2", "in_channels": None}
    if CONV_IN_KEY not in shapes:
        raise ValueError(f"{path.name} is not a Stable Diffusion checkpoint (no {CONV_IN_KEY})")
    return {"arch": "sd15", "in_channels": shapes[CONV_IN_KEY][1]}


SIDECAR_SUFFIX = ".config"  # <checkpoint stem>.config/ beside a file: its own diffusers config folder


def sidecar_config_dir(path: Path) -> Path | None:
    """``models/Stable-diffusion/foo.config/`` (a diffusers config folder) for ``foo.safetensors``, if present."""
    sidecar = Path(path).parent / (Path(path).stem + SIDECAR_SUFFIX)
    return sidecar if (sidecar / "model_index.json").is_file() else None


def config_dir_for(path: Path) -> Path:
    """The config folder for a single-file checkpoint: its sidecar folder, else the shipped one."""
    sidecar = sidecar_config_dir(path)
    if sidecar is not None:
        return sidecar
    facts = detect_single_file(path)
    if facts["arch"] != "sd15":
        raise ValueError(
            f"{path.name} looks like an {facts['arch'].upper()} checkpoint; only SD1.x single files have a shipped "
            "offline config yet. Convert it to a diffusers folder and put that in models/Stable-diffusion/."
        )
    return SD15_INPAINT_CONFIG if facts["in_channels"] == 9 else SD15_CONFIG


@dataclass
class PipelineSet:
    """The three pipelines of one loaded model; they share unet/vae/text_encoder/tokenizer objects."""

    model: ModelInfo
    txt2img: Any
    img2img: Any
    inpaint: Any
    device: torch.device
    dtype: torch.dtype
    vae_name: str | None = None
    base_scheduler_config: dict = field(default_factory=dict)
    loras: dict[str, str] = field(default_factory=dict)  # adapter name -> file name, loaded into the UNet

    @property
    def is_inpaint_model(self) -> bool:
        return self.txt2img.unet.config.in_channels == 9


def _load_vae(vae_path: Path, dtype: torch.dtype, config_dir: Path):
    from diffusers import AutoencoderKL

    require_file(vae_path, "models/VAE/")
    _offline()
    return AutoencoderKL.from_single_file(
        str(vae_path), config=str(config_dir), subfolder="vae", local_files_only=True, dtype=dtype
    )


def load_pipeline_set(
    model: ModelInfo,
    device: torch.device,
    dtype: torch.dtype,
    vae_path: Path | None = None,
    config_dir: Path | None = None,
) -> PipelineSet:
    """Load ``model`` once and build txt2img/img2img/inpaint pipelines from the same components."""
    from diffusers import (
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
    )

    _offline()
    common = dict(local_files_only=True, safety_checker=None, requires_safety_checker=False, dtype=dtype)
    path = Path(model.path)
    if model.kind == "diffusers":
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"Model folder not found or incomplete: {path.name!r} (no model_index.json in {path}); "
                "put diffusers folders in models/Stable-diffusion/"
            )
        pipe = StableDiffusionPipeline.from_pretrained(str(path), **common)
        config_dir = config_dir or path
    else:
        require_file(path, "models/Stable-diffusion/")
        config_dir = Path(config_dir) if config_dir else config_dir_for(path)
        if not (config_dir / "model_index.json").is_file():
            raise FileNotFoundError(f"Config folder {config_dir} has no model_index.json")
        in_channels = detect_single_file(path)["in_channels"]
        cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
        loaded = cls.from_single_file(str(path), config=str(config_dir), **common)
        pipe = StableDiffusionPipeline(**loaded.components) if cls is not StableDiffusionPipeline else loaded

    if vae_path is not None:
        vae_config = config_dir if (Path(config_dir) / "vae" / "config.json").is_file() else SD15_CONFIG
        pipe.vae = _load_vae(Path(vae_path), dtype, Path(vae_config))

    pipe.set_progress_bar_config(disable=True)
    components = pipe.components
    img2img = StableDiffusionImg2ImgPipeline(**components)
    inpaint = StableDiffusionInpaintPipeline(**components)
    for p in (img2img, inpaint):
        p.set_progress_bar_config(disable=True)
    return PipelineSet(
        model=model,
        txt2img=pipe,
        img2img=img2img,
        inpaint=inpaint,
        device=device,
        dtype=dtype,
        vae_name=Path(vae_path).name if vae_path else None,
        base_scheduler_config=dict(pipe.scheduler.config),
    )


def move_to_device(pipes: PipelineSet, perf: PerfConfig) -> None:
    """Put the shared components on the device unless a CUDA offload mode manages placement."""
    if pipes.device.type == "cuda" and MemoryMode(perf.memory) is not MemoryMode.NORMAL:
        return  # enable_*_cpu_offload moves sub-models on demand
    pipes.txt2img.to(pipes.device)


class ModelManager:
    """Loaded pipelines keyed by (model path, vae, dtype, device, memory mode); loaded once, reused.

    Keeps at most ``max_loaded`` models (A1111 keeps one by default) to bound memory.
    """

    def __init__(self, max_loaded: int = 1):
        self.max_loaded = max(1, max_loaded)
        self._cache: dict[tuple, PipelineSet] = {}
        self._lock = threading.Lock()
        self.load_count = 0  # how many real loads happened (tests check "never per request")

    @staticmethod
    def key(model: ModelInfo, vae_path: Path | None, dtype: torch.dtype, device: torch.device, memory: MemoryMode) -> tuple:
        return (str(Path(model.path).resolve()), str(vae_path) if vae_path else None, str(dtype), str(device), MemoryMode(memory).value)

    def get(
        self,
        model: ModelInfo,
        perf: PerfConfig,
        device: torch.device,
        dtype: torch.dtype,
        vae_path: Path | None = None,
        config_dir: Path | None = None,
    ) -> PipelineSet:
        import torch

        from webui.diffusion.perf import apply_perf

        key = self.key(model, vae_path, dtype, device, perf.memory)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            while len(self._cache) >= self.max_loaded:
                old_key = next(iter(self._cache))
                del self._cache[old_key]
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            pipes = load_pipeline_set(model, device, dtype, vae_path=vae_path, config_dir=config_dir)
            move_to_device(pipes, perf)
            apply_perf(pipes.txt2img, perf, device)
            self._cache[key] = pipes
            self.load_count += 1
            return pipes

    def loaded(self) -> list[PipelineSet]:
        return list(self._cache.values())

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
