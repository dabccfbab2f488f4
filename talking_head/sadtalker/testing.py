"""Checkpoint files in the official SadTalker layout with random values, for tests/benchmarks.

``write_checkpoints(dir, SadTalkerConfig.tiny())`` writes ``SadTalker_V0.0.2_{size}.safetensors``
(prefixes ``kp_extractor.``, ``generator.``, ``audio2exp.``, ``audio2pose.``, ``face_3drecon.``)
and the ``mapping_*.pth.tar`` files (state dict under the key ``mapping`` beside training
state) -- the same names and structure as the released files, at the widths of ``cfg``.
Load them with ``load_sadtalker(dir, ..., cfg=cfg)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import SadTalkerConfig
from .loader import build_networks, mapping_file, renderer_file

__all__ = ["write_checkpoints"]

_RENDERER_PREFIXES = ("kp_extractor", "generator", "audio2exp", "audio2pose", "face_3drecon")


def write_checkpoints(directory: str | Path, cfg: SadTalkerConfig | None = None, size: int = 256,
                      preprocesses: tuple[str, ...] = ("crop", "full"), seed: int = 0) -> list[Path]:
    """Write random seeded weights for ``size`` and the mapping file(s) ``preprocesses`` need.

    Returns the written paths. Official widths (cfg None) make a ~725 MB renderer file.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    renderer = d / renderer_file(size)
    for i, preprocess in enumerate(preprocesses):
        nets = build_networks(cfg, size, preprocess, seed=seed)
        if i == 0:
            modules = nets.modules()
            tensors = {f"{p}.{k}": v.detach().clone().contiguous()
                       for p in _RENDERER_PREFIXES for k, v in modules[p].state_dict().items()}
            save_file(tensors, str(renderer))
            written.append(renderer)
        path = d / mapping_file(preprocess)
        if path not in written:
            state = {k: v.detach().clone() for k, v in nets.mapping.state_dict().items()}
            torch.save({"mapping": state, "epoch": 0}, path)
            written.append(path)
    return written
