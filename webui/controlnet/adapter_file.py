"""T2I-Adapter single files in TencentARC's original layout (``t2iadapter_*_sd14v1.pth``, which the
sd-webui-controlnet extension reads from models/ControlNet/) -> a diffusers ``T2IAdapter``.

The original full adapter (``sk=True``, ``ksize=1``) has ``conv_in.*`` and a flat ``body.<k>`` list of
res-blocks, ``k = level * nums_rb + j``, each with ``block1`` (3x3), ``block2`` (1x1) and, on the
first block of a level whose width changes, ``in_conv`` (1x1). diffusers' ``FullAdapter`` holds the
same weights as ``adapter.body.<level>.{in_conv, resnets.<j>.block1/2}``. Other original variants
(the light colour adapter, the style adapter, ``skep`` skip convolutions) are refused by name.
"""

from __future__ import annotations

UNSHUFFLE = 8  # the original adapters' pixel-unshuffle factor (64 = 8 * 8 values per input channel)


def is_original_adapter(state: dict) -> bool:
    return "conv_in.weight" in state and "body.0.block1.weight" in state


def adapter_from_original(state: dict, name: str):
    """A ``T2IAdapter`` with the weights of an original-layout state dict; ValueError for other variants."""
    from diffusers import T2IAdapter

    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
    if any(k.startswith("body.") and ".skep." in k for k in state) or any(
        state[f"body.{k}.block2.weight"].shape[-1] != 1 for k in blocks
    ):
        raise ValueError(f"T2I-Adapter file {name!r}: only the full adapter layout (sk=True, ksize=1) is supported")
    starts = [k for k in blocks if f"body.{k}.in_conv.weight" in state]
    nums_rb = min(starts) if starts else len(blocks)
    levels = len(blocks) // nums_rb
    if levels * nums_rb != len(blocks) or blocks != list(range(len(blocks))):
        raise ValueError(f"T2I-Adapter file {name!r}: its body blocks {blocks} do not form {nums_rb} blocks per level")
    channels = [int(state[f"body.{level * nums_rb}.block1.weight"].shape[0]) for level in range(levels)]
    mapped = {f"adapter.conv_in.{p}": state[f"conv_in.{p}"] for p in ("weight", "bias")}
    for level in range(levels):
        first = level * nums_rb
        for p in ("weight", "bias"):
            if f"body.{first}.in_conv.{p}" in state:
                mapped[f"adapter.body.{level}.in_conv.{p}"] = state[f"body.{first}.in_conv.{p}"]
            for j in range(nums_rb):
                for part in ("block1", "block2"):
                    mapped[f"adapter.body.{level}.resnets.{j}.{part}.{p}"] = state[f"body.{first + j}.{part}.{p}"]
    in_channels = int(state["conv_in.weight"].shape[1]) // (UNSHUFFLE * UNSHUFFLE)
    model = T2IAdapter(in_channels=in_channels, channels=channels, num_res_blocks=nums_rb,
                       downscale_factor=UNSHUFFLE, adapter_type="full_adapter")
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ValueError(f"T2I-Adapter file {name!r} does not match the full adapter: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return model
