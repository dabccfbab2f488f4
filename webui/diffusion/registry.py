"""Model registry: scan models/ (A1111 layout) for checkpoints, VAEs and LoRAs.

- models/Stable-diffusion/: diffusers folders (a ``model_index.json`` inside) and single files
  (``.safetensors``/``.ckpt``). Title = A1111 ``"name [hash10]"`` where hash10 = first 10 hex of the
  file's SHA-256 (for folders: a digest over the folder's weight files).
- models/VAE/: ``*.safetensors``/``*.pt``/``*.ckpt``; models/Lora/: ``*.safetensors``/``*.pt``/``*.ckpt``.
Hashes are cached by (path, size, mtime) in memory and in ``models/.hash-cache.json``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from webui.config import PathsConfig
from webui.diffusion.types import ModelInfo

DEMO_MODEL_NAME = "demo-shapes"
PLACEHOLDER_MARKER = "PLACEHOLDER"
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")
LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt")
CACHE_FILE = ".hash-cache.json"
SIDECAR_SUFFIX = ".config"  # same as loading.SIDECAR_SUFFIX (kept here to avoid importing torch)

_CHUNK = 1 << 20
_cache_lock = threading.Lock()
_memory_cache: dict[str, dict] = {}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_sha256(path: Path) -> str:
    """Stable digest of a diffusers folder: sha256 over sorted (relative path, file sha256) of weight files."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(_file_sha256(file).encode())
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[int, float]:
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
        return sum(p.stat().st_size for p in files), max((p.stat().st_mtime for p in files), default=0.0)
    st = path.stat()
    return st.st_size, st.st_mtime


def sha256_of(path: Path, cache_dir: Path | None = None) -> str:
    """Full SHA-256 of a file (or folder digest), cached by (path, size, mtime)."""
    path = Path(path).resolve()
    size, mtime = _stamp(path)
    key = str(path)
    cache_file = (cache_dir / CACHE_FILE) if cache_dir else None
    with _cache_lock:
        if cache_file and not _memory_cache.get("__loaded__" + str(cache_file)):
            _memory_cache["__loaded__" + str(cache_file)] = {"loaded": True}
            if cache_file.is_file():
                try:
                    _memory_cache.update(json.loads(cache_file.read_text(encoding="utf-8")))
                except (OSError, json.JSONDecodeError):
                    pass
        entry = _memory_cache.get(key)
        if entry and entry.get("size") == size and entry.get("mtime") == mtime:
            return entry["sha256"]
    value = _folder_sha256(path) if path.is_dir() else _file_sha256(path)
    with _cache_lock:
        _memory_cache[key] = {"size": size, "mtime": mtime, "sha256": value}
        if cache_file:
            entries = {k: v for k, v in _memory_cache.items() if not k.startswith("__loaded__")}
            try:
                cache_file.write_text(json.dumps(entries, indent=1), encoding="utf-8")
            except OSError:  # read-only models dir: the in-memory cache still works
                pass
    return value


def short_hash(sha256: str) -> str:
    return sha256[:10]


def _model_info(path: Path, kind: str, cache_dir: Path) -> ModelInfo:
    name = path.name if kind == "diffusers" else path.stem
    sha = sha256_of(path, cache_dir)
    placeholder = kind == "diffusers" and (path / PLACEHOLDER_MARKER).exists()
    return ModelInfo(
        name=name, path=path, kind=kind, title=f"{name} [{short_hash(sha)}]", sha256=sha, is_placeholder=placeholder
    )


def scan_models(paths: PathsConfig) -> list[ModelInfo]:
    """All checkpoints under models/Stable-diffusion/, the demo model first, then by name."""
    root = Path(paths.sd_dir)
    if not root.is_dir():
        return []
    found: list[ModelInfo] = []
    for entry in sorted(root.rglob("*")):
        inner = [root.joinpath(*entry.relative_to(root).parts[:i]) for i in range(1, len(entry.relative_to(root).parts))]
        if any(p.name.endswith(SIDECAR_SUFFIX) or (p / "model_index.json").is_file() for p in inner):
            continue  # inside a diffusers folder or a single file's own config folder
        if entry.is_dir() and entry.name.endswith(SIDECAR_SUFFIX):
            continue
        if entry.is_dir() and (entry / "model_index.json").is_file():
            found.append(_model_info(entry, "diffusers", paths.models_dir))
        elif entry.is_file() and entry.suffix.lower() in CHECKPOINT_SUFFIXES:
            found.append(_model_info(entry, "single-file", paths.models_dir))
    found.sort(key=lambda m: (m.name != DEMO_MODEL_NAME, m.is_placeholder, m.name.lower()))
    return found


def native_size_from_config(model: ModelInfo) -> int | None:
    """A diffusers folder's native size in pixels from unet/config.json and vae/config.json; None otherwise."""
    if model.kind != "diffusers":
        return None
    try:
        unet = json.loads((Path(model.path) / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((Path(model.path) / "vae" / "config.json").read_text(encoding="utf-8"))
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def match_by_name(items: list, wanted: str):
    """The first of ``items`` (each with ``title``, ``name``, ``path``) that "name", "name [hash]", its
    title or its file name points at; None if none does."""
    text = (wanted or "").strip()
    base = text.split(" [", 1)[0] if text.endswith("]") else text
    for item in items:
        if text in (item.title, item.name, item.path.name) or base == item.name:
            return item
    return None


def find_model(models: list[ModelInfo], name_or_title: str) -> ModelInfo:
    """Match "name", "name [hash]", a title, a file name or a hash; ValueError listing the choices."""
    found = match_by_name(models, name_or_title)
    if found is not None:
        return found
    wanted = (name_or_title or "").strip()
    for m in models:  # a bare hash (A1111 accepts those too)
        if m.sha256 and len(wanted) >= 8 and m.sha256.startswith(wanted.lower()):
            return m
    names = ", ".join(m.title for m in models) or "none found"
    raise ValueError(f"Unknown model {name_or_title!r}; available: {names}")


def _list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes), key=lambda p: p.name.lower())


def scan_vaes(paths: PathsConfig) -> list[Path]:
    return _list_files(Path(paths.vae_dir), VAE_SUFFIXES)


def scan_loras(paths: PathsConfig) -> list[Path]:
    return _list_files(Path(paths.lora_dir), LORA_SUFFIXES)
