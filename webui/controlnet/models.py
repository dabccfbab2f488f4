"""ControlNet files in models/ControlNet/ (A1111's folder): scan, load offline, check the pairing.

- diffusers folders: a ``config.json`` whose ``_class_name`` is ``ControlNetModel`` (+ weights), or
  ``T2IAdapter`` (a T2I-Adapter, kind ``t2i-adapter``; its ``adapter_type`` says SD1.x/2.x or SDXL);
- T2I-Adapter single files in TencentARC's layout (``t2iadapter_*_sd14v1.pth``, see ``adapter_file``);
- single files (``.safetensors`` / ``.pth`` / ``.pt`` / ``.ckpt``) in the original
  ``control_v11p_sd15_*`` layout (``input_blocks.*``, ``input_hint_block.*``, ``zero_convs.*``,
  optionally under ``control_model.``) or diffusers' key layout, loaded with
  ``ControlNetModel.from_single_file(config=<local folder>)``: a ``<stem>.config/config.json``
  folder beside the file when present, else the shipped SD1.5 config (``configs/sd15``);
- the pairing check: a ControlNet runs only on a base model with the same cross-attention width
  and UNet channels (an SDXL ControlNet, 2048, is refused on an SD1.x model, 768, naming both); a
  T2I-Adapter only on the family its ``adapter_type`` names, with the UNet's block channels.
Model titles are the extension's: ``name [first 8 hex of the SHA-256]``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
SD15_CONTROLNET_CONFIG = CONFIGS_DIR / "sd15"
FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
SIDECAR_SUFFIX = ".config"
FAMILIES = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}
LDM_PREFIX = "control_model."


@dataclass(frozen=True)
class ControlNetInfo:
    name: str
    path: Path
    kind: str  # "diffusers" | "single-file" | "t2i-adapter"
    title: str  # "name [hash8]"


def controlnet_dir(models_dir: Path) -> Path:
    return Path(models_dir) / "ControlNet"


FOLDER_KINDS = {"ControlNetModel": "diffusers", "T2IAdapter": "t2i-adapter"}


def _folder_kind(path: Path) -> str | None:
    """"diffusers" (a ControlNet) or "t2i-adapter" for a diffusers folder, else None."""
    conf = path / "config.json"
    if not conf.is_file():
        return None
    try:
        return FOLDER_KINDS.get(json.loads(conf.read_text(encoding="utf-8")).get("_class_name"))
    except (OSError, json.JSONDecodeError):
        return None


def scan_controlnets(models_dir: Path) -> list[ControlNetInfo]:
    """Every ControlNet under models/ControlNet/, by name (folders and files; sidecar configs skipped)."""
    from webui.diffusion.registry import sha256_of

    root = controlnet_dir(models_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name.lower()):
        if entry.name.startswith(".") or entry.name.endswith(SIDECAR_SUFFIX) or entry.name.endswith(".tmp"):
            continue
        if entry.is_dir() and _folder_kind(entry):
            kind, name = _folder_kind(entry), entry.name
        elif entry.is_file() and entry.suffix.lower() in FILE_SUFFIXES:
            kind, name = "single-file", entry.stem
        else:
            continue
        found.append(ControlNetInfo(name, entry, kind, f"{name} [{sha256_of(entry, Path(models_dir))[:8]}]"))
    return found


def find_controlnet(models: list[ControlNetInfo], wanted: str) -> ControlNetInfo:
    """Match "name", "name [hash]" or a file name; ValueError listing what there is."""
    from webui.diffusion.registry import match_by_name

    found = match_by_name(models, wanted)
    if found is not None:
        return found
    have = ", ".join(m.title for m in models) or "none: put ControlNet files or diffusers folders in models/ControlNet/"
    raise ValueError(f"Unknown ControlNet model {wanted!r}; available: {have}")


def _read_state(path: Path) -> dict:
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def single_file_facts(state: dict) -> dict:
    """Cross-attention width and first UNet channel count of a ControlNet state dict (either layout)."""
    cross, channels = None, None
    for key, value in state.items():
        if cross is None and key.endswith("attn2.to_k.weight"):
            cross = int(value.shape[1])
        if channels is None and key.removeprefix(LDM_PREFIX) in ("input_blocks.0.0.weight", "conv_in.weight"):
            channels = int(value.shape[0])
    sdxl = any(k.removeprefix(LDM_PREFIX).startswith(("label_emb.", "add_embedding.")) for k in state)
    if sdxl and cross is None:
        cross = 2048
    return {"cross_attention_dim": cross, "channels": channels}


def config_dir_for(path: Path) -> Path:
    sidecar = path.parent / (path.stem + SIDECAR_SUFFIX)
    return sidecar if (sidecar / "config.json").is_file() else SD15_CONTROLNET_CONFIG


def check_pairing(name: str, cross: int | None, channels: int | None, unet_config, model_name: str) -> None:
    """ValueError when a ControlNet (cross-attention ``cross``, first channels ``channels``) cannot run on the UNet."""
    want_cross = int(unet_config.cross_attention_dim)
    want_channels = int(unet_config.block_out_channels[0])

    def family(dim):
        return FAMILIES.get(dim, f"cross-attention {dim}")

    if cross is not None and cross != want_cross:
        raise ValueError(
            f"ControlNet {name!r} is made for {family(cross)} models (cross-attention dim {cross}) and cannot run on "
            f"{model_name!r}, a {family(want_cross)} model (cross-attention dim {want_cross}); pick a ControlNet for that model"
        )
    if channels is not None and channels != want_channels:
        raise ValueError(
            f"ControlNet {name!r} has {channels} UNet channels but {model_name!r} has {want_channels}: "
            "it was made for a different base architecture"
        )


def check_adapter_pairing(name: str, conf: dict, unet_config, model_name: str) -> None:
    """ValueError when a T2I-Adapter (its config.json ``conf``) cannot run on the UNet."""
    xl = conf.get("adapter_type") == "full_adapter_xl"
    want_cross = int(unet_config.cross_attention_dim)
    if xl != (want_cross == 2048):
        made = "SDXL" if xl else "SD1.x/SD2.x"
        raise ValueError(
            f"T2I-Adapter {name!r} ({conf.get('adapter_type')}) is made for {made} models and cannot run on {model_name!r}, "
            f"a {FAMILIES.get(want_cross, f'cross-attention {want_cross}')} model; pick an adapter for that model"
        )
    channels = [int(c) for c in conf.get("channels") or []]
    want = [int(c) for c in unet_config.block_out_channels]
    if channels and channels != want[: len(channels)]:
        raise ValueError(
            f"T2I-Adapter {name!r} has channels {channels} but {model_name!r} has UNet blocks {want}: "
            "it was made for a different base architecture"
        )


def load_controlnet(info: ControlNetInfo, dtype, device, unet_config, model_name: str):
    """A ``ControlNetModel`` (or ``T2IAdapter``) for ``info``, checked against the base UNet's config, offline."""
    import torch
    from diffusers import ControlNetModel, T2IAdapter

    os.environ["HF_HUB_OFFLINE"] = "1"
    path = Path(info.path)
    if not path.exists():
        raise FileNotFoundError(f"ControlNet file not found: {path.name!r} (expected at {path}); put it in models/ControlNet/")
    if info.kind == "t2i-adapter":
        check_adapter_pairing(info.name, json.loads((path / "config.json").read_text(encoding="utf-8")), unet_config, model_name)
        model = T2IAdapter.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
    elif info.kind == "diffusers":
        conf = json.loads((path / "config.json").read_text(encoding="utf-8"))
        check_pairing(info.name, conf.get("cross_attention_dim"), (conf.get("block_out_channels") or [None])[0], unet_config, model_name)
        model = ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
    else:
        from webui.controlnet.adapter_file import adapter_from_original, is_original_adapter

        state = _read_state(path)
        if is_original_adapter(state):  # t2iadapter_*_sd14v1.pth (TencentARC's layout)
            model = adapter_from_original(state, path.name)
            check_adapter_pairing(info.name, dict(model.config), unet_config, model_name)
            return model.to(device=device, dtype=dtype).eval()
        facts = single_file_facts(state)
        check_pairing(info.name, facts["cross_attention_dim"], facts["channels"], unet_config, model_name)
        config = config_dir_for(path)
        model = ControlNetModel.from_single_file(
            str(path), config=str(config), local_files_only=True, torch_dtype=dtype, original_config=None
        )
        del state
    return model.to(device).eval()


class ControlNetManager:
    """Loaded ControlNets keyed by (path, dtype, device, base model); at most ``max_loaded`` kept."""

    def __init__(self, max_loaded: int = 3):
        self.max_loaded = max_loaded
        self._cache: dict = {}
        self._lock = threading.Lock()
        self.load_count = 0

    def get(self, info: ControlNetInfo, dtype, device, unet_config, model_name: str):
        key = (str(Path(info.path).resolve()), str(dtype), str(device), model_name)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            model = load_controlnet(info, dtype, device, unet_config, model_name)
            while len(self._cache) >= self.max_loaded:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = model
            self.load_count += 1
            return model
