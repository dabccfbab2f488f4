"""Write the offline diffusers config folders used to load single-file checkpoints.

Run once (``python -m webui.diffusion.configs.make_configs``); the output is committed. The values
are those of the public SD1.5 (and SD1.5-inpainting) diffusers configs; only configs and tokenizer
files are written, no weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from webui.diffusion.tiny import SD15_SCHEDULER_CONFIG
from webui.diffusion.tokenizer import write_tokenizer_files

HERE = Path(__file__).resolve().parent

SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

SD15_TEXT = {
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}


def model_index(pipeline_class: str) -> dict:
    return {
        "_class_name": pipeline_class,
        "feature_extractor": [None, None],
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "requires_safety_checker": False,
    }


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_sd15(out: Path, inpaint: bool = False) -> Path:
    _write(out / "model_index.json", model_index("StableDiffusionInpaintPipeline" if inpaint else "StableDiffusionPipeline"))
    _write(out / "unet" / "config.json", {**SD15_UNET, "in_channels": 9 if inpaint else 4})
    _write(out / "vae" / "config.json", SD15_VAE)
    _write(out / "text_encoder" / "config.json", SD15_TEXT)
    _write(out / "scheduler" / "scheduler_config.json", SD15_SCHEDULER_CONFIG)
    write_tokenizer_files(out / "tokenizer")
    return out


if __name__ == "__main__":
    write_sd15(HERE / "sd15")
    write_sd15(HERE / "sd15-inpaint", inpaint=True)
    print("wrote", HERE / "sd15", HERE / "sd15-inpaint")
