"""Shared tiny-model builders for the engine tests (built once per session, fully offline)."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

from webui.config import AppConfig, LimitsConfig, PathsConfig

SIZE = 64  # pixels; latents are 8x8


@functools.cache
def _build_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="engine-tests-"))


@functools.cache
def tiny_dir() -> Path:
    from webui.diffusion.tiny import save_tiny_model

    return save_tiny_model(_build_root() / "tiny", seed=0, sample_size=SIZE)


@functools.cache
def tiny_inpaint_dir() -> Path:
    from webui.diffusion.tiny import save_tiny_model

    return save_tiny_model(_build_root() / "tiny-inpaint", seed=1, inpaint=True, sample_size=SIZE)


def make_models(root: Path, inpaint: bool = False, name: str = "demo-shapes") -> AppConfig:
    """A models/ tree (A1111 layout) holding a copy of the tiny model, and its AppConfig."""
    sd = root / "models" / "Stable-diffusion"
    sd.mkdir(parents=True, exist_ok=True)
    for sub in ("VAE", "Lora"):
        (root / "models" / sub).mkdir(exist_ok=True)
    shutil.copytree(tiny_inpaint_dir() if inpaint else tiny_dir(), sd / name)
    return AppConfig(
        paths=PathsConfig(models_dir=root / "models", outputs_dir=root / "outputs"),
        limits=LimitsConfig(max_side=512, max_steps=50, max_batch=4),
    )
