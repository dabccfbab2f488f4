"""Configuration: frozen dataclasses, built once from the CLI in ``app.py``. Nothing happens at import."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class MemoryMode(str, enum.Enum):
    """One memory policy, mapped to diffusers calls in ``webui.diffusion.perf``."""

    NORMAL = "normal"  # everything on the device
    MODEL_OFFLOAD = "model-offload"  # enable_model_cpu_offload: whole sub-models moved on demand
    SEQUENTIAL_OFFLOAD = "sequential-offload"  # enable_sequential_cpu_offload: layer by layer (slowest, least VRAM)


@dataclass(frozen=True)
class PerfConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | fp16 | bf16 (auto: fp16 on CUDA, fp32 elsewhere)
    autocast: bool = False  # run the UNet under torch.autocast in the chosen precision
    tf32: bool = True  # allow TF32 matmuls/convolutions on Ampere+ GPUs
    attention: str = "sdpa"  # sdpa | xformers | sliced
    vae_slicing: bool = False  # decode a batch one image at a time
    vae_tiling: bool = False  # decode in tiles (large images within memory)
    memory: MemoryMode = MemoryMode.NORMAL  # CPU offload policy
    channels_last: bool = False  # UNet/VAE in channels_last memory format
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # Speed (webui.diffusion.speed): off | cache (DeepCache) | compile (torch.compile) | cache+compile
    speed: str = "off"
    cache_interval: int = 3  # cache: a full UNet every N steps, the shallow branch in between
    cache_branch: int = 0  # cache: skip connections recomputed on the in-between steps (0 = shallowest)
    token_merging_ratio: float = 0.0  # ToMe (tomesd): share of tokens merged; 0 = off
    token_merging_min_side: int = 1024  # ToMe only for images with a side of at least this many pixels


@dataclass(frozen=True)
class PathsConfig:
    models_dir: Path = REPO_ROOT / "models"  # A1111 layout: Stable-diffusion/, VAE/, Lora/, GFPGAN/
    checkpoints_dir: Path = REPO_ROOT / "checkpoints"  # SadTalker weights, official file names
    outputs_dir: Path = REPO_ROOT / "outputs"  # outputs/<tab>/<date>/
    styles_file: Path = REPO_ROOT / "styles.csv"  # A1111 prompt styles (name,prompt,negative_prompt)

    @property
    def sd_dir(self) -> Path:
        return self.models_dir / "Stable-diffusion"

    @property
    def vae_dir(self) -> Path:
        return self.models_dir / "VAE"

    @property
    def lora_dir(self) -> Path:
        return self.models_dir / "Lora"

    @property
    def gfpgan_dir(self) -> Path:
        return self.models_dir / "GFPGAN"

    @property
    def history_db(self) -> Path:
        return self.outputs_dir / "history.sqlite3"  # every job and its outputs (webui.jobs.history)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # --listen switches to 0.0.0.0
    port: int = 7860
    auth: tuple[tuple[str, str], ...] = ()  # (user, password) pairs from --auth / --auth-file
    api: bool = True  # mount the A1111-compatible /sdapi/v1 routes
    admins: tuple[str, ...] = ()  # logins that see everyone's history (--admin USER)
    max_body_bytes: int = 64 * 1024 * 1024  # larger request bodies get 413 (--max-body-mb)
    login_failures_per_minute: int = 10  # then 429 with Retry-After, per client address


@dataclass(frozen=True)
class LimitsConfig:
    max_image_pixels: int = 4096 * 4096  # uploads above this are refused (decompression bombs)
    max_side: int = 2048  # largest width/height a request may ask for
    max_steps: int = 150
    max_batch: int = 16
    max_audio_seconds: float = 120.0  # talking head: longest accepted speech file


@dataclass(frozen=True)
class ClusterConfig:
    """The GPU farm (webui.farm, on Ray). ``address`` None = no farm: one process, as always."""

    address: str | None = None  # "auto" (a running `ray start` cluster) | "HOST:PORT" | "local" (start one here)
    cpu_workers: int = 0  # workers on each node without GPUs (every GPU always gets one worker)
    poll_s: float = 5.0  # how often ray.nodes() is read for nodes that joined or died
    max_retries: int = 2  # a job piece whose worker died is retried on another worker at most this often

    @property
    def enabled(self) -> bool:
        return self.address is not None


@dataclass(frozen=True)
class AppConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    default_model: str | None = None  # model name to load first; None = first found (demo model)
