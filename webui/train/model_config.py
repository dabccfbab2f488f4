"""The tiny SD architecture of the embedded demo model (and a tinier one for tests).

Same component classes as Stable Diffusion 1.x: ``AutoencoderKL`` (8x down, 4 latent channels),
``UNet2DConditionModel`` with cross-attention, ``CLIPTextModel`` with the real 49,408-token CLIP
vocab and 77 positions, and an SD-like scaled_linear ``DDPMScheduler`` config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinySDConfig:
    """Sizes of a from-scratch model."""

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


DEMO = TinySDConfig()
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
PRESETS = {"demo": DEMO, "test": TEST}

# SD 1.x noise schedule, the config every A1111 sampler name can be built from. (v-prediction, as
# SD 2.x, is supported by the trainer too; for the demo model it did not help: docs/demo-model.md.)
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


def build_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(SCHEDULER_CONFIG)  # keys other schedulers need are kept
