"""``python app.py doctor``: this machine against the local-deployment requirements, and what to change.

The figures are the project's stated requirements for a comfortable local install: an NVIDIA RTX card
with >= 8 GB VRAM for SD1.5 at 512x512, 8+ CPU cores, 32 GB RAM, about 1 TB of disk for models and
outputs. Every check is a ``Check`` (ok / warn / fail + what to do); ``recommend`` picks the settings
(precision, memory mode, attention) for this machine as a ``PerfConfig`` that Settings can apply.
No gradio here; torch is imported only when ``diagnose`` runs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from webui.config import MemoryMode, PathsConfig, PerfConfig

MIN_VRAM_GB = 8.0  # SD1.5 at 512x512 in fp16 with room to spare
MIN_CORES = 8
MIN_RAM_GB = 32.0
MIN_DISK_GB = 1000.0  # ~1 TB: checkpoints (2-7 GB each), LoRAs, outputs
LOW_VRAM_GB = 6.0  # below this: model offload
TINY_VRAM_GB = 4.0  # below this: sequential offload
PYTHON = (3, 11)  # the version pyproject.toml pins
TORCH_CUDA_FIX = ("pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu124 "
                  "(pick the cuXXX that matches your NVIDIA driver, see nvidia-smi)")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
STATUS_MARK = {"ok": "✔", "warn": "⚠", "fail": "✖", "info": "•"}


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | info
    detail: str  # what was found
    advice: str = ""  # what to do about it


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    recommended: PerfConfig
    reasons: tuple[str, ...] = field(default=())  # why each recommended setting

    def text(self) -> str:
        lines = []
        for c in self.checks:
            lines.append(f"{STATUS_MARK[c.status]} {c.name}: {c.detail}")
            if c.advice:
                lines.append(f"    -> {c.advice}")
        lines.append("")
        lines.append("Recommended settings: " + describe_perf(self.recommended))
        lines += [f"    - {r}" for r in self.reasons]
        return "\n".join(lines)

    def markdown(self) -> str:
        rows = ["| | Check | Found | What to do |", "|---|---|---|---|"]
        for c in self.checks:
            rows.append(f"| {STATUS_MARK[c.status]} | {c.name} | {c.detail} | {c.advice} |")
        reasons = "\n".join(f"- {r}" for r in self.reasons)
        return "\n".join(rows) + f"\n\n**Recommended:** {describe_perf(self.recommended)}\n\n{reasons}"


def describe_perf(perf: PerfConfig) -> str:
    """A PerfConfig in words, for people (the Settings status, the doctor)."""
    on = [name for name, flag in (("autocast", perf.autocast), ("VAE slicing", perf.vae_slicing),
                                  ("VAE tiling", perf.vae_tiling), ("channels-last", perf.channels_last)) if flag]
    parts = [f"device {perf.device}", f"precision {perf.precision}", f"attention {perf.attention}",
             f"memory {MemoryMode(perf.memory).value}", f"TF32 {'on' if perf.tf32 else 'off'}",
             f"CPU threads {perf.threads or 'default'}"]
    from webui.diffusion.speed import speed_infotext

    parts.append(f"speed {speed_infotext(perf, 0, 0).get('Speed', 'off')}")
    if perf.token_merging_ratio:
        parts.append(f"token merging {perf.token_merging_ratio:g} from {perf.token_merging_min_side} px")
    return ", ".join(parts) + (f"; on: {', '.join(on)}" if on else "")


def _ram_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


def _weights(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES:
            found.append(str(p.relative_to(folder)))
    return found


def _models(folder: Path) -> list[str]:
    """Checkpoints in models/Stable-diffusion: single files and diffusers folders (model_index.json)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if (p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES) or (p / "model_index.json").is_file())


@dataclass(frozen=True)
class Machine:
    """What ``diagnose`` measured (kept apart so the advice can be tested with made-up machines)."""

    python: tuple[int, int, int]
    torch_version: str
    torch_cuda: str | None  # the CUDA version torch was built with; None = a CPU-only build
    cuda_available: bool
    gpu_name: str | None
    vram_gb: float | None
    gpu_capability: tuple[int, int] | None
    mps: bool
    cores: int
    ram_gb: float | None
    disk_free_gb: float
    disk_total_gb: float
    nvidia_driver: bool  # nvidia-smi is on PATH (a driver is installed)
    gfpgan: bool
    xformers: bool


def measure(paths: PathsConfig) -> Machine:
    import torch

    cuda = torch.cuda.is_available()
    name = vram = cap = None
    if cuda:
        props = torch.cuda.get_device_properties(0)
        name, vram, cap = props.name, props.total_memory / 1024**3, (props.major, props.minor)
    disk = shutil.disk_usage(paths.models_dir if paths.models_dir.exists() else Path.cwd())
    return Machine(
        python=tuple(sys.version_info[:3]), torch_version=torch.__version__, torch_cuda=torch.version.cuda,
        cuda_available=cuda, gpu_name=name, vram_gb=vram, gpu_capability=cap,
        mps=bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        cores=os.cpu_count() or 1, ram_gb=_ram_gb(), disk_free_gb=disk.free / 1024**3,
        disk_total_gb=disk.total / 1024**3, nvidia_driver=shutil.which("nvidia-smi") is not None,
        gfpgan=importlib.util.find_spec("gfpgan") is not None, xformers=importlib.util.find_spec("xformers") is not None,
    )


def check_machine(m: Machine, paths: PathsConfig) -> list[Check]:
    checks: list[Check] = []
    # GPU and the torch build
    if m.cuda_available:
        rtx = "RTX" in (m.gpu_name or "") or (m.gpu_capability or (0, 0)) >= (7, 5)
        status = "ok" if (m.vram_gb or 0) >= MIN_VRAM_GB and rtx else "warn"
        advice = "" if status == "ok" else (
            f"SD1.5 at 512 wants an NVIDIA RTX card with >= {MIN_VRAM_GB:g} GB; use memory model-offload and "
            "VAE tiling on this one")
        checks.append(Check("GPU", status, f"{m.gpu_name}, {m.vram_gb:.1f} GB VRAM, compute {m.gpu_capability}",
                            advice))
        checks.append(Check("torch", "ok", f"{m.torch_version} built with CUDA {m.torch_cuda}"))
    elif m.torch_cuda is None:
        advice = ("this torch has no CUDA: " + TORCH_CUDA_FIX) if m.nvidia_driver else (
            f"no NVIDIA GPU/driver found: images run on the CPU (minutes per 512 image); the requirement is an "
            f"NVIDIA RTX card with >= {MIN_VRAM_GB:g} GB")
        checks.append(Check("GPU", "fail" if m.nvidia_driver else "warn",
                            "MPS (Apple GPU)" if m.mps else "none usable", "" if m.mps else advice))
        checks.append(Check("torch", "warn" if m.nvidia_driver else "info",
                            f"{m.torch_version}, CPU-only build (this torch has no CUDA)",
                            TORCH_CUDA_FIX if m.nvidia_driver else ""))
    else:
        checks.append(Check("GPU", "fail", f"torch {m.torch_version} has CUDA {m.torch_cuda} but sees no GPU",
                            "install or update the NVIDIA driver (nvidia-smi must work), or check CUDA_VISIBLE_DEVICES"))
    # CPU, RAM, disk
    checks.append(Check("CPU cores", "ok" if m.cores >= MIN_CORES else "warn", f"{m.cores}",
                        "" if m.cores >= MIN_CORES else f"{MIN_CORES}+ cores recommended (talking head, video encoding)"))
    if m.ram_gb is not None:
        checks.append(Check("RAM", "ok" if m.ram_gb >= MIN_RAM_GB * 0.95 else "warn", f"{m.ram_gb:.1f} GB",
                            "" if m.ram_gb >= MIN_RAM_GB * 0.95 else f"{MIN_RAM_GB:g} GB recommended (checkpoints load "
                            "through RAM; the talking head keeps its models in memory)"))
    checks.append(Check("Disk", "ok" if m.disk_free_gb >= MIN_DISK_GB * 0.9 else "warn",
                        f"{m.disk_free_gb:.0f} GB free of {m.disk_total_gb:.0f} GB",
                        "" if m.disk_free_gb >= MIN_DISK_GB * 0.9 else
                        f"about {MIN_DISK_GB / 1000:g} TB recommended for checkpoints (2-7 GB each) and outputs"))
    # Python
    py_ok = tuple(m.python[:2]) == PYTHON
    checks.append(Check("Python", "ok" if py_ok else "warn", ".".join(map(str, m.python)),
                        "" if py_ok else f"the project pins Python {PYTHON[0]}.{PYTHON[1]} (pyproject.toml)"))
    # optional parts and weights
    checks.append(Check("gfpgan", "ok" if m.gfpgan else "info", "installed" if m.gfpgan else "not installed",
                        "" if m.gfpgan else "optional: face restoration in the talking head (pip install gfpgan)"))
    checks.append(Check("xformers", "ok" if m.xformers else "info", "installed" if m.xformers else "not installed",
                        "" if m.xformers or not m.cuda_available else
                        "optional: PyTorch's sdpa attention is as fast on recent torch"))
    sd = _models(paths.sd_dir)
    checks.append(Check("Stable Diffusion models", "ok" if sd else "info",
                        ", ".join(sd[:8]) + (f" (+{len(sd) - 8})" if len(sd) > 8 else "") if sd else
                        f"none in {paths.sd_dir}",
                        "" if sd else "the built-in demo model runs; put .safetensors checkpoints in "
                        f"{paths.sd_dir}"))
    for label, folder in (("VAE", paths.vae_dir), ("LoRA", paths.lora_dir), ("GFPGAN", paths.gfpgan_dir),
                          ("SadTalker checkpoints", paths.checkpoints_dir)):
        found = _weights(folder)
        checks.append(Check(label, "ok" if found else "info",
                            ", ".join(found[:8]) + (f" (+{len(found) - 8})" if len(found) > 8 else "")
                            if found else f"none in {folder}"))
    return checks


def recommend(m: Machine) -> tuple[PerfConfig, list[str]]:
    """Precision, memory mode and attention for this machine, with the reason for each."""
    reasons: list[str] = []
    if m.cuda_available:
        bf16 = (m.gpu_capability or (0, 0)) >= (8, 0)
        precision = "fp16"
        reasons.append("fp16 on the GPU: half the memory and about twice the speed of fp32"
                       + (" (bf16 also works on this Ampere+ card)" if bf16 else ""))
        vram = m.vram_gb or 0
        if vram < TINY_VRAM_GB:
            memory = MemoryMode.SEQUENTIAL_OFFLOAD
            reasons.append(f"{vram:.1f} GB VRAM: sequential offload (slow, but fits)")
        elif vram < LOW_VRAM_GB:
            memory = MemoryMode.MODEL_OFFLOAD
            reasons.append(f"{vram:.1f} GB VRAM: model offload keeps only the running part on the GPU")
        else:
            memory = MemoryMode.NORMAL
            reasons.append(f"{vram:.1f} GB VRAM: everything stays on the GPU")
        attention = "xformers" if m.xformers else "sdpa"
        reasons.append(f"attention {attention}" + (" (installed)" if m.xformers else ": PyTorch's fused kernel"))
        perf = PerfConfig(device="cuda", precision=precision, attention=attention, memory=memory,
                          vae_tiling=vram < LOW_VRAM_GB)
    else:
        perf = PerfConfig(device="mps" if m.mps else "cpu", precision="fp32", attention="sdpa",
                          memory=MemoryMode.NORMAL, threads=0)
        reasons.append("fp32 without a CUDA GPU: fp16/bf16 run many times slower on a CPU (measured ~40x for bf16)")
        reasons.append("memory normal: offloading only helps when a GPU is short of VRAM")
        reasons.append("attention sdpa: PyTorch's fused kernel")
    return perf, reasons


def diagnose(paths: PathsConfig) -> Report:
    m = measure(paths)
    perf, reasons = recommend(m)
    return Report(tuple(check_machine(m, paths)), perf, tuple(reasons))


def precision_problem(perf: PerfConfig, device_type: str) -> str | None:
    """Why ``perf``'s precision is a bad choice on ``device_type`` ("cpu", "cuda", "mps"); None when fine."""
    precision = (perf.precision or "auto").lower()
    if device_type == "cpu" and precision in ("fp16", "bf16"):
        return (f"{precision} on the CPU runs many times slower than fp32 (bf16 measured ~40x slower here, "
                f"~10 s per step); use fp32 or auto on a CPU")
    return None


def with_recommended(current: PerfConfig, recommended: PerfConfig) -> PerfConfig:
    """The current settings with the doctor's precision / memory / attention / device (the one-click apply)."""
    return dataclasses.replace(current, device=recommended.device, precision=recommended.precision,
                               attention=recommended.attention, memory=recommended.memory,
                               vae_tiling=recommended.vae_tiling or current.vae_tiling)


def main(paths: PathsConfig) -> int:
    report = diagnose(paths)
    print(f"SD Talking Studio doctor — {platform.platform()}")
    print(report.text())
    return 1 if any(c.status == "fail" for c in report.checks) else 0
