"""Strict loading of the official SadTalker checkpoints, cached process-wide.

Files (in ``checkpoints/``):
- ``SadTalker_V0.0.2_{256,512}.safetensors``: one flat file whose key prefixes are
  ``kp_extractor.``, ``generator.``, ``audio2exp.``, ``audio2pose.``, ``face_3drecon.``.
- ``mapping_00229-model.pth.tar`` (70-dim MappingNet; preprocess crop/extcrop/resize) or
  ``mapping_00109-model.pth.tar`` (73-dim; full/extfull): a torch pickle whose dict key
  ``mapping`` is the state dict; the rest is training state and is ignored.

Every key must match: a missing or unexpected key, or a shape mismatch, is a
:class:`CheckpointError` naming the keys and the file.

Pickle policy: mapping files are read with ``torch.load(weights_only=True)``, which accepts
plain dicts of tensors, numbers, strings, lists/tuples (incl. optimizer state). If a file
holds other Python objects the restricted unpickler refuses it and we raise, unless the
caller explicitly trusts the file (``allow_unsafe_pickle=True``), in which case the full
unpickler is used (it can run code from the file: only for files from a trusted source).
"""

from __future__ import annotations

import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .audio2exp import ExpNet
from .audio2pose import PoseVAE
from .config import SadTalkerConfig
from .face3d import ReconNet
from .facerender import KPDetector, OcclusionAwareSPADEGenerator
from .mapping import MappingNet

SIZES = (256, 512)
PREPROCESS_MODES = ("crop", "extcrop", "resize", "full", "extfull")
FULL_MODES = ("full", "extfull")
MAPPING_70 = "mapping_00229-model.pth.tar"
MAPPING_73 = "mapping_00109-model.pth.tar"
PREFIXES = ("kp_extractor", "generator", "audio2exp", "audio2pose", "face_3drecon")


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used (corrupt, truncated, wrong keys)."""


def check_options(size: int, preprocess: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if preprocess not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")


def renderer_file(size: int) -> str:
    return f"SadTalker_V0.0.2_{size}.safetensors"


def mapping_file(preprocess: str) -> str:
    return MAPPING_73 if preprocess in FULL_MODES else MAPPING_70


def coeff_nc(preprocess: str) -> int:
    """MappingNet input width: 73 (exp 64 + pose 6 + crop 3) in full modes, else 70."""
    return 73 if preprocess in FULL_MODES else 70


def required_files(size: int = 256, preprocess: str = "crop") -> list[str]:
    """File names (relative to the checkpoints folder) needed for one (size, preprocess)."""
    check_options(size, preprocess)
    return [renderer_file(size), mapping_file(preprocess)]


def missing_files(checkpoints_dir: str | os.PathLike, size: int = 256, preprocess: str = "crop") -> list[str]:
    """The required file names that are absent (or empty) in ``checkpoints_dir``."""
    d = Path(checkpoints_dir)
    return [n for n in required_files(size, preprocess) if not ((d / n).is_file() and (d / n).stat().st_size > 0)]


def sadtalker_available(checkpoints_dir: str | os.PathLike, size: int = 256, preprocess: str = "crop") -> bool:
    """True when every required file is present (non-empty) -- used by ``--engine auto``."""
    try:
        return not missing_files(checkpoints_dir, size, preprocess)
    except ValueError:
        return False


def _require(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"SadTalker checkpoint '{path.name}' not found in '{path.parent}'. Put the official "
            f"file in the checkpoints/ folder (looked for {path}).")


# ----------------------------------------------------------------------------- readers

def read_safetensors(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """Read the renderer file and split it by prefix -> {prefix: {key without prefix: tensor}}."""
    from safetensors import safe_open

    path = Path(path)
    _require(path)
    groups: dict[str, dict[str, torch.Tensor]] = {p: {} for p in PREFIXES}
    unknown: list[str] = []
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                prefix, _, rest = key.partition(".")
                if prefix in groups and rest:
                    groups[prefix][rest] = f.get_tensor(key)
                else:
                    unknown.append(key)
    except Exception as e:  # safetensors raises its own error type for bad headers/lengths
        raise CheckpointError(f"cannot read '{path.name}' ({path}): truncated or corrupt safetensors file: {e}") from e
    if unknown:
        raise CheckpointError(f"'{path.name}': unexpected keys (no known prefix): {sorted(unknown)[:20]}")
    empty = [p for p, g in groups.items() if not g]
    if empty:
        raise CheckpointError(f"'{path.name}': missing all keys for {', '.join(p + '.' for p in empty)}")
    return groups


def read_mapping(path: str | os.PathLike, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read the ``mapping`` state dict out of a ``mapping_*.pth.tar`` training checkpoint."""
    path = Path(path)
    _require(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not allow_unsafe_pickle:
            raise CheckpointError(
                f"'{path.name}' contains Python objects the safe loader refuses ({e}). If the file comes "
                f"from a trusted source, load it with allow_unsafe_pickle=True.") from e
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e2:
            raise CheckpointError(f"cannot read '{path.name}' ({path}): {e2}") from e2
    except Exception as e:
        raise CheckpointError(f"cannot read '{path.name}' ({path}): truncated or corrupt torch file: {e}") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("mapping"), dict):
        raise CheckpointError(f"'{path.name}' has no 'mapping' state dict (top-level keys: "
                              f"{sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__})")
    return obj["mapping"]


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with a readable error for missing / unexpected keys and shape mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:20]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:20]}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:20]}")
        raise CheckpointError(f"{source}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True, assign=True)


# ----------------------------------------------------------------------------- networks

@dataclass
class SadTalkerNets:
    """The six networks, in eval mode, on one device."""

    face3d: ReconNet
    expnet: ExpNet
    posevae: PoseVAE
    mapping: MappingNet
    kp_detector: KPDetector
    generator: OcclusionAwareSPADEGenerator
    size: int
    coeff_nc: int
    device: torch.device
    dtype: torch.dtype

    def modules(self) -> dict[str, nn.Module]:
        return {"face_3drecon": self.face3d, "audio2exp": self.expnet, "audio2pose": self.posevae,
                "mapping": self.mapping, "kp_extractor": self.kp_detector, "generator": self.generator}


def build_networks(cfg: SadTalkerConfig | None = None, size: int = 256, preprocess: str = "crop",
                   device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                   seed: int | None = 0) -> SadTalkerNets:
    """Randomly initialised networks (seeded), eval mode -- tests and benchmarks."""
    nets = _construct(cfg or SadTalkerConfig(), size, preprocess, device, dtype, seed)
    return _finish(nets)


def _construct(cfg, size, preprocess, device, dtype, seed) -> SadTalkerNets:
    check_options(size, preprocess)
    if seed is not None:
        torch.manual_seed(seed)
    return SadTalkerNets(ReconNet(cfg.face3d), ExpNet(cfg.expnet), PoseVAE(cfg.posevae),
                         MappingNet(coeff_nc(preprocess), cfg.mapping), KPDetector(cfg.kp),
                         OcclusionAwareSPADEGenerator(cfg.generator), size, coeff_nc(preprocess),
                         torch.device(device), dtype)


def _finish(nets: SadTalkerNets) -> SadTalkerNets:
    for m in nets.modules().values():
        m.eval().requires_grad_(False).to(device=nets.device, dtype=nets.dtype)
    return nets


_CACHE: dict[tuple, SadTalkerNets] = {}
_LOCK = threading.Lock()


def load_sadtalker(checkpoints_dir: str | os.PathLike, size: int = 256, preprocess: str = "crop",
                   device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                   allow_unsafe_pickle: bool = False, cfg: SadTalkerConfig | None = None) -> SadTalkerNets:
    """Load (once per process) the official weights for (size, preprocess) onto device/dtype.

    ``cfg``: network widths the files must match key for key and shape for shape (default:
    the official ones; tests pass ``SadTalkerConfig.tiny()`` with files written in the same
    layout at tiny widths).  Cache key: (resolved checkpoints_dir, size, mapping file, device,
    dtype, cfg). Raises FileNotFoundError for a missing file, CheckpointError for an unusable one.
    """
    check_options(size, preprocess)
    cfg = cfg or SadTalkerConfig()
    root = Path(checkpoints_dir).expanduser().resolve()
    dev = torch.device(device)
    key = (str(root), size, mapping_file(preprocess), str(dev), dtype, cfg)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        for name in required_files(size, preprocess):
            _require(root / name)
        with torch.device("meta"):  # no random init of 180M parameters: the file provides every tensor
            nets = _construct(cfg, size, preprocess, "cpu", torch.float32, seed=None)
        groups = read_safetensors(root / renderer_file(size))
        name = renderer_file(size)
        for prefix, module in (("kp_extractor", nets.kp_detector), ("generator", nets.generator),
                               ("audio2exp", nets.expnet), ("audio2pose", nets.posevae),
                               ("face_3drecon", nets.face3d)):
            load_strict(module, groups[prefix], f"'{name}' (prefix '{prefix}.')")
        del groups
        load_strict(nets.mapping, read_mapping(root / mapping_file(preprocess), allow_unsafe_pickle),
                    f"'{mapping_file(preprocess)}' (dict key 'mapping')")
        nets.device, nets.dtype = dev, dtype
        _CACHE[key] = _finish(nets)
        return _CACHE[key]


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
