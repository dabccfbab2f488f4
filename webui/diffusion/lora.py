"""A1111 ``<lora:name:weight>`` prompt tags -> diffusers LoRA adapters from models/Lora/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)
LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")


def parse_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Remove ``<lora:name:weight>`` tags from ``prompt``.

    Returns the cleaned prompt and ``[(name, weight), ...]`` (weight defaults to 1.0 as in A1111;
    a repeated name keeps the last weight). A non-numeric weight raises ValueError.
    """
    found: dict[str, float] = {}
    for match in LORA_TAG.finditer(prompt or ""):
        name = match.group(1).strip()
        raw = (match.group(2) or "").strip()
        try:
            weight = float(raw) if raw else 1.0
        except ValueError:
            raise ValueError(f"LoRA weight {raw!r} in {match.group(0)!r} is not a number") from None
        found[name] = weight
    cleaned = LORA_TAG.sub("", prompt or "")
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned)
    cleaned = re.sub(r"\s+,", ",", cleaned).strip().strip(",").strip()
    return cleaned, list(found.items())


def find_lora_file(lora_dir: Path, name: str) -> Path:
    """The file for LoRA ``name`` (stem or file name) in models/Lora; ValueError naming the folder."""
    lora_dir = Path(lora_dir)
    candidates = []
    if lora_dir.is_dir():
        candidates = [p for p in lora_dir.rglob("*") if p.is_file() and p.suffix.lower() in LORA_SUFFIXES]
    for path in sorted(candidates):
        if name in (path.stem, path.name):
            return path
    available = ", ".join(sorted(p.stem for p in candidates)) or "none"
    raise ValueError(f"Unknown LoRA {name!r}: no such file in {lora_dir} (models/Lora); available: {available}")


def adapter_name_for(path: Path) -> str:
    """A PEFT-safe adapter name (no dots) derived from the file stem."""
    return "lora_" + re.sub(r"[^0-9A-Za-z_]", "_", Path(path).stem)


def apply_loras(pipe: Any, loaded: dict[str, str], lora_dir: Path, loras: list[tuple[str, float]]) -> dict[str, str]:
    """Activate ``loras`` on ``pipe`` (components shared with img2img/inpaint).

    Files are loaded once with ``pipe.load_lora_weights(dir, weight_name=..., adapter_name=...)`` and
    remembered in ``loaded`` (adapter -> file name); then ``set_adapters`` selects this request's
    set with its weights. With no tags, loaded adapters are switched off. Returns the
    ``{name: short hash}`` map for the infotext's "Lora hashes".
    """
    from webui.diffusion.registry import sha256_of

    hashes: dict[str, str] = {}
    names, weights = [], []
    for name, weight in loras:
        path = find_lora_file(lora_dir, name)
        adapter = adapter_name_for(path)
        if adapter not in loaded:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
            loaded[adapter] = path.name
        names.append(adapter)
        weights.append(weight)
        hashes[name] = sha256_of(path)[:12]  # A1111 shows a 12-hex short hash for networks
    if names:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)
    elif loaded:
        pipe.disable_lora()  # no tag this time: every loaded LoRA off
    return hashes


def lora_hashes_text(hashes: dict[str, str]) -> str | None:
    """``"name1: hash1, name2: hash2"`` as A1111 writes it (the infotext JSON-quotes it)."""
    if not hashes:
        return None
    return ", ".join(f"{name}: {h}" for name, h in hashes.items())
