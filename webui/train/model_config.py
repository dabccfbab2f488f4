"""The tiny SD architectures of the embedded demo model (and a tinier one for tests).

Same component classes as Stable Diffusion 1.x: ``AutoencoderKL`` (8x down, 4 latent channels),
``UNet2DConditionModel`` with cross-attention, ``CLIPTextModel`` with the real 49,408-token CLIP
vocab and 77 positions, and a ``DDPMScheduler`` config every A1111 sampler name can be built from.

Two recipes (docs/demo-model.md):
- ``demo`` (the shipped model, run 16): SD 1.x's noise schedule and epsilon prediction, a 3-level
  UNet with cross-attention at 8x8 and in the 4x4 mid block (none at 16x16, so its steps are 1.5x
  faster). 11,000 steps learn colours and shapes; then 4000 steps that restart from their EMA
  weights and weigh the noisiest steps' x0 error learn position words.
- ``position`` (run 6): follows position words (100 % on the held-out prompts), but draws blobs.
  It gets position from two things a stock UNet does not get for free:
  - a UNet that knows where it is. A stock ``UNet2DConditionModel`` has no positional input, only
    the zero padding of its convolutions. Four levels take 16x16 latents down to a 2x2 bottleneck,
    where every cell is a corner its convolutions tell apart by the padding, and cross-attention
    there can put "left" into the left cells;
  - a schedule whose noisiest step leaves no layout to read from the noise
    (``low_terminal_snr_betas``), with v-prediction, and a quarter of the training timesteps
    drawn from the noisiest tenth.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinySDConfig:
    """Sizes and training recipe of a from-scratch model."""

    resolution: int = 128  # native image side in pixels
    vae_channels: tuple = (16, 32, 64, 64)  # 4 blocks -> 8x downsampling (128 px -> 16x16 latent)
    vae_layers_per_block: int = 1
    latent_channels: int = 4  # as SD: 4-channel UNet inpainting blends these
    unet_channels: tuple = (64, 128, 128)  # 16 -> 8 -> 4
    unet_attention: tuple = (True, True, False)  # cross-attention per level (+ the mid block)
    unet_layers_per_block: int = 1
    unet_head_dim: int = 32  # attention head dimension (diffusers' "attention_head_dim" = heads)
    text_hidden: int = 64  # also the UNet cross_attention_dim (49,408 x 64 token table = 3.2M params)
    text_layers: int = 3
    text_heads: int = 4
    text_intermediate: int = 256
    schedule: str = "sd1"  # "sd1" (SD 1.x, epsilon) or "low-terminal-snr" (v-prediction)
    high_noise_share: float = 0.0  # share of training timesteps drawn from the noisiest tenth
    high_noise_weight: float = 0.0  # lowest x0-error weight of a training timestep (trainer.loss_weight)
    high_noise_from: int = 0  # UNet step from which the two settings above apply
    high_noise_lr: float = 0.0  # > 0: that phase restarts from the EMA weights at this learning rate
    high_noise_batch: int = 0  # images per step in that phase (0: batch_size)
    high_noise_frozen_text: int = 0  # 1: the text encoder is frozen in that phase
    pyramid_noise: float = 0.0  # multi-resolution training noise discount (0: plain Gaussian)
    steps: int = 4000  # default optimizer steps of the UNet stage
    batch_size: int = 32  # default images per optimizer step of the UNet stage


DEMO = TinySDConfig(
    unet_attention=(False, True, False),  # none at 16x16: steps 1.5x faster than with it
    steps=15000,  # 16 images each: about 49 minutes on 2 CPU cores
    batch_size=16,
    high_noise_from=11000,  # then 4000 steps that fine-tune the EMA weights for position words
    high_noise_lr=5e-4,
    high_noise_share=0.5,
    high_noise_weight=1.0,
)
POSITION = TinySDConfig(
    unet_channels=(64, 96, 128, 128),  # 16 -> 8 -> 4 -> 2: the 2x2 bottleneck knows left from right
    unet_attention=(False, True, True, True),  # none at 16x16 (keeps the weights under 25 MB)
    schedule="low-terminal-snr",
    high_noise_share=0.25,
    steps=8000,
)
TEST = TinySDConfig(
    resolution=32,
    vae_channels=(8, 16),
    unet_channels=(16, 32),
    unet_attention=(True, False),
    unet_head_dim=8,
    text_hidden=32,
    text_layers=1,
    text_heads=2,
    text_intermediate=64,
)
PRESETS = {"demo": DEMO, "position": POSITION, "test": TEST}


def preset(name: str) -> TinySDConfig:
    """The preset called ``name``; ValueError naming the valid ones otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]

TERMINAL_SIGNAL = 0.01  # sqrt(alpha_bar) at the last training step (SD 1.x: 0.068)


def low_terminal_snr_betas(terminal: float = TERMINAL_SIGNAL) -> list:
    """SD 1.x's scaled_linear betas (``SCHEDULER_CONFIG``), rescaled so the last step keeps almost no signal.

    With SD's schedule the noisiest training step still holds 6.8 % of the image (sqrt(alpha_bar)
    = 0.068). On 16x16 latents the denoiser reads where a large shape is from that remnant, so at
    sampling time the seed's noise picks the layout. Following Lin et al. 2024 ("Common diffusion
    noise schedules and sample steps are flawed"), sqrt(alpha_bar) is shifted and scaled linearly
    so it still starts at SD's value but ends at ``terminal`` (not exactly 0, so every sampler's
    sigma_max stays finite: about 100).
    """
    import numpy as np

    sd = SCHEDULER_CONFIG
    betas = np.linspace(sd["beta_start"] ** 0.5, sd["beta_end"] ** 0.5, sd["num_train_timesteps"], dtype=np.float64) ** 2
    root = np.sqrt(np.cumprod(1.0 - betas))
    first, last = root[0], root[-1]
    root = terminal + (root - last) * (first - terminal) / (first - last)
    alpha_bar = root**2
    alphas = alpha_bar / np.concatenate([[1.0], alpha_bar[:-1]])
    return [float(b) for b in 1.0 - alphas]


# SD 1.x noise schedule, the config every A1111 sampler name can be built from.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)


def scheduler_config(schedule: str = "sd1") -> dict:
    """``sd1``: SD 1.x. ``low-terminal-snr``: the rescaled betas above, given to every diffusers
    scheduler as ``trained_betas`` (so each A1111 sampler samples what was trained), v-prediction
    (as SD 2.x; epsilon is ill-posed when almost no signal is left) and "trailing" timesteps, so
    sampling starts at the last (noisiest) training step."""
    if schedule == "sd1":
        return dict(SCHEDULER_CONFIG)
    if schedule == "low-terminal-snr":
        return dict(
            SCHEDULER_CONFIG,
            trained_betas=low_terminal_snr_betas(),
            timestep_spacing="trailing",
            prediction_type="v_prediction",
        )
    raise ValueError(f"unknown noise schedule {schedule!r}; choose 'sd1' or 'low-terminal-snr'")


def build_vae(cfg: TinySDConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=cfg.vae_layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=8,
        sample_size=cfg.resolution,
        mid_block_add_attention=False,  # fully convolutional: trainable on crops
        scaling_factor=1.0,  # set from the latent statistics after the VAE is trained
    )


def build_text_encoder(cfg: TinySDConfig):
    from transformers import CLIPTextConfig, CLIPTextModel

    from webui.diffusion.tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE

    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=MODEL_MAX_LENGTH,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=cfg.text_hidden,
    )
    return CLIPTextModel(config)


def build_unet(cfg: TinySDConfig):
    from diffusers import UNet2DConditionModel

    if len(cfg.unet_attention) != len(cfg.unet_channels):
        raise ValueError("unet_attention needs one flag per UNet level")
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.unet_attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.unet_attention))
    factor = 2 ** (len(cfg.vae_channels) - 1)
    return UNet2DConditionModel(
        sample_size=cfg.resolution // factor,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers_per_block,
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=max(1, cfg.unet_channels[-1] // cfg.unet_head_dim),
        norm_num_groups=8,
    )


def build_scheduler(cfg: TinySDConfig = DEMO):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler_config(cfg.schedule))  # keys other schedulers need are kept
