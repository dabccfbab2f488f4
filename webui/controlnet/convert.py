"""diffusers ``ControlNetModel`` keys -> the original ``control_v11p_sd15_*`` layout (single files).

Used to write the embedded ControlNet also as one ``.safetensors`` file and to make tiny test files
in the layout users download. The encoder part is named as the LDM UNet's input/middle blocks;
the ControlNet-only parts are ``input_hint_block.{0,2,...,14}`` (the conditioning embedding),
``zero_convs.{i}.0`` and ``middle_block_out.0``. Loading goes the other way through diffusers'
own converter (``ControlNetModel.from_single_file``).
"""

from __future__ import annotations

import re
from pathlib import Path

UNET_PREFIX = "model.diffusion_model."


def controlnet_to_original(state: dict, layers_per_block: int) -> dict:
    from webui.diffusion.tiny import unet_to_original

    shared, out = {}, {}
    for key, value in state.items():
        if key.startswith("controlnet_cond_embedding."):
            rest = key[len("controlnet_cond_embedding.") :]
            if rest.startswith("conv_in."):
                out["input_hint_block.0." + rest[len("conv_in.") :]] = value
            elif rest.startswith("conv_out."):
                out["input_hint_block.14." + rest[len("conv_out.") :]] = value
            else:
                m = re.match(r"blocks\.(\d+)\.(.*)", rest)
                out[f"input_hint_block.{2 * (int(m.group(1)) + 1)}.{m.group(2)}"] = value
        elif m := re.match(r"controlnet_down_blocks\.(\d+)\.(.*)", key):
            out[f"zero_convs.{m.group(1)}.0.{m.group(2)}"] = value
        elif key.startswith("controlnet_mid_block."):
            out["middle_block_out.0." + key[len("controlnet_mid_block.") :]] = value
        else:
            shared[key] = value
    for key, value in unet_to_original(shared, layers_per_block).items():
        out[key[len(UNET_PREFIX) :]] = value
    return out


def write_single_file(controlnet, path: Path | str, dtype=None) -> Path:
    """Save ``controlnet`` as one original-layout ``.safetensors`` file."""
    from safetensors.torch import save_file

    state = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in controlnet.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(controlnet_to_original(state, controlnet.config.layers_per_block), str(path))
    return path
