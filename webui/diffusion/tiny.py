"""Tiny SD-architecture components (tests, placeholder model) and a diffusers -> original converter.

The architecture is Stable Diffusion 1.x in miniature: ``UNet2DConditionModel`` with cross-attention,
a 4-level ``AutoencoderKL`` (8x downsampling, like SD), a small ``CLIPTextModel`` over the real
49,408-token CLIP vocabulary, and the SD1.5 PNDM scheduler config. Everything is seeded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from webui.diffusion.tokenizer import VOCAB_SIZE, load_clip_tokenizer, write_tokenizer_files

PLACEHOLDER_MARKER = "PLACEHOLDER"

# The SD1.5 scheduler config (what v1-5's scheduler/scheduler_config.json holds)
SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def build_tiny_components(seed: int = 0, sample_size: int = 64, in_channels: int = 4) -> dict:
    """Seeded tiny components for a StableDiffusion(Inpaint)Pipeline.

    ``sample_size`` is the image size in pixels the model is configured for (latents are /8).
    ``in_channels`` 4 = normal UNet, 9 = inpainting UNet (latents + mask + masked-image latents).
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size // 8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=sample_size,
    )
    torch.manual_seed(seed + 2)
    text_config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=77,
        projection_dim=32,
    )
    text_encoder = CLIPTextModel(text_config)
    scheduler = PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": load_clip_tokenizer(),
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
    }


def save_tiny_model(path: Path | str, seed: int = 0, inpaint: bool = False, sample_size: int = 64) -> Path:
    """Write a tiny diffusers folder (model_index.json + safetensors) at ``path``."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    path = Path(path)
    components = build_tiny_components(seed=seed, sample_size=sample_size, in_channels=9 if inpaint else 4)
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = cls(**components, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    write_tokenizer_files(path / "tokenizer")  # vocab.json/merges.txt beside tokenizer.json
    return path


def create_placeholder_model(path: Path | str, seed: int = 0) -> Path:
    """A tiny random-weight model marked with a PLACEHOLDER file (shown plainly as such in the UI)."""
    path = save_tiny_model(path, seed=seed)
    (path / PLACEHOLDER_MARKER).write_text(
        "Random-weight stand-in written because no demo model was found. Replace this folder with real weights.\n",
        encoding="utf-8",
    )
    return path


# ----------------------------------------------------------------------------------------------
# diffusers folder -> original CompVis single-file layout (model.diffusion_model.*, first_stage_model.*,
# cond_stage_model.transformer.text_model.*). Written from the two layouts' naming rules.

_RESNET_TO_LDM = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]


def _rename_resnet(rest: str, table: list[tuple[str, str]]) -> str:
    for old, new in table:
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def unet_to_original(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """diffusers UNet2DConditionModel keys -> LDM ``model.diffusion_model.*`` keys."""
    per_level = layers_per_block + 1
    up_has_attn = {int(m.group(1)) for k in state if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out: dict[str, torch.Tensor] = {}
    fixed = {
        "conv_in.": "input_blocks.0.0.",
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
    }
    for key, value in state.items():
        new = None
        for old, repl in fixed.items():
            if key.startswith(old):
                new = repl + key[len(old) :]
        if new is None and (m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)):
            i, kind, j, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            idx = i * per_level + j + 1
            new = f"input_blocks.{idx}.0.{_rename_resnet(rest, _RESNET_TO_LDM)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
        elif new is None and (m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)):
            new = f"input_blocks.{(int(m.group(1)) + 1) * per_level}.0.op.{m.group(2)}"
        elif new is None and (m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key)):
            new = f"middle_block.{2 * int(m.group(1))}.{_rename_resnet(m.group(2), _RESNET_TO_LDM)}"
        elif new is None and (m := re.match(r"mid_block\.attentions\.0\.(.*)", key)):
            new = f"middle_block.1.{m.group(1)}"
        elif new is None and (m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)):
            i, kind, j, rest = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            idx = i * per_level + j
            new = f"output_blocks.{idx}.0.{_rename_resnet(rest, _RESNET_TO_LDM)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
        elif new is None and (m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)):
            i = int(m.group(1))
            slot = 2 if i in up_has_attn else 1
            new = f"output_blocks.{i * per_level + layers_per_block}.{slot}.conv.{m.group(2)}"
        if new is None:
            raise KeyError(f"no original-layout name for UNet key {key!r}")
        out["model.diffusion_model." + new] = value
    return out


_VAE_RESNET = [("conv_shortcut", "nin_shortcut")]
_VAE_ATTN = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def vae_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL keys -> LDM ``first_stage_model.*`` keys (attention linears -> 1x1 convs)."""
    n_up = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{m.group(1)}.block.{m.group(2)}.{_rename_resnet(m.group(3), _VAE_RESNET)}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"encoder.down.{m.group(1)}.downsample.conv.{m.group(2)}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{n_up - 1 - int(m.group(1))}.block.{m.group(2)}.{_rename_resnet(m.group(3), _VAE_RESNET)}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            new = f"decoder.up.{n_up - 1 - int(m.group(1))}.upsample.conv.{m.group(2)}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}.{_rename_resnet(m.group(3), _VAE_RESNET)}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            new = f"{m.group(1)}.mid.attn_1.{_rename_resnet(m.group(2), _VAE_ATTN)}"
            if value.ndim == 2:  # LDM stores these as 1x1 convolutions
                value = value[:, :, None, None]
        elif m := re.match(r"(encoder|decoder)\.conv_norm_out\.(.*)", key):
            new = f"{m.group(1)}.norm_out.{m.group(2)}"
        out["first_stage_model." + new] = value
    return out


def text_encoder_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModel keys -> ``cond_stage_model.transformer.text_model.*`` (transformers >= 5.6 drops
    the ``text_model.`` prefix; the original layout has it)."""
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        name = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + name] = value
    return out


def to_original_checkpoint(pipe_dir: Path | str, out_file: Path | str) -> Path:
    """Convert a diffusers SD folder to one A1111-style checkpoint (.safetensors, or .ckpt/.pt)."""
    from safetensors.torch import load_file, save_file

    pipe_dir, out_file = Path(pipe_dir), Path(out_file)
    unet_cfg = json.loads((pipe_dir / "unet" / "config.json").read_text())
    unet = load_file(pipe_dir / "unet" / "diffusion_pytorch_model.safetensors")
    vae = load_file(pipe_dir / "vae" / "diffusion_pytorch_model.safetensors")
    text = load_file(pipe_dir / "text_encoder" / "model.safetensors")
    state = {
        **unet_to_original(unet, unet_cfg["layers_per_block"]),
        **vae_to_original(vae),
        **text_encoder_to_original(text),
    }
    state = {k: v.contiguous() for k, v in state.items()}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if out_file.suffix == ".safetensors":
        save_file(state, str(out_file))
    else:
        torch.save({"state_dict": state}, out_file)
    return out_file


def write_vae_file(pipe_dir: Path | str, out_file: Path | str) -> Path:
    """The model's VAE alone in A1111's models/VAE layout (``encoder.*``/``decoder.*`` keys)."""
    from safetensors.torch import load_file, save_file

    vae = vae_to_original(load_file(Path(pipe_dir) / "vae" / "diffusion_pytorch_model.safetensors"))
    state = {k[len("first_stage_model.") :]: v.contiguous() for k, v in vae.items()}
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_file))
    return Path(out_file)
