"""Upscaler model files through spandrel: tiny random ESRGAN (RRDBNet), Real-ESRGAN compact (SRVGG) and
SwinIR state dicts in the official key layouts; tiled == untiled away from the seams; clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from webui.upscale.models import load_upscaler_file
from webui.upscale.registry import BUILTIN_UPSCALERS, UpscalerRegistry
from webui.upscale.tiling import tiled_apply


def _conv(gen, out_ch, in_ch, k=3):
    return {
        "weight": torch.randn(out_ch, in_ch, k, k, generator=gen) * (0.5 / (in_ch * k * k) ** 0.5),
        "bias": torch.randn(out_ch, generator=gen) * 0.01,
    }


def _add(sd, prefix, params):
    sd.update({f"{prefix}.{k}": v for k, v in params.items()})


def rrdbnet_x4_state(nf=8, gc=32, nb=1, seed=0) -> dict:
    """Real-ESRGAN / BasicSR ``RRDBNet`` x4 keys (as in RealESRGAN_x4plus.pth), random weights; the
    growth channels are 32 as in every official ESRGAN file (spandrel assumes it)."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict = {}
    _add(sd, "conv_first", _conv(gen, nf, 3))
    for b in range(nb):
        for r in (1, 2, 3):
            for c in range(1, 6):
                out_ch = nf if c == 5 else gc
                _add(sd, f"body.{b}.rdb{r}.conv{c}", _conv(gen, out_ch, nf + (c - 1) * gc))
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        _add(sd, name, _conv(gen, nf, nf))
    _add(sd, "conv_last", _conv(gen, 3, nf))
    return sd


def srvgg_state(nf=8, num_conv=2, scale=4, seed=0) -> dict:
    """Real-ESRGAN ``SRVGGNetCompact`` keys (as in realesr-general-x4v3.pth): convs and PReLUs in ``body``."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict = {}
    _add(sd, "body.0", _conv(gen, nf, 3))
    sd["body.1.weight"] = torch.full((nf,), 0.25)
    for i in range(num_conv):
        _add(sd, f"body.{2 * i + 2}", _conv(gen, nf, nf))
        sd[f"body.{2 * i + 3}.weight"] = torch.full((nf,), 0.25)
    _add(sd, f"body.{2 * num_conv + 2}", _conv(gen, 3 * scale * scale, nf))
    return sd


def swinir_state(seed=0) -> dict:
    """A tiny SwinIR (classical SR, pixelshuffle, x2); the network class has the official key names."""
    from webui.upscale.spandrel_import import import_spandrel

    import_spandrel()
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    net = SwinIR(upscale=2, in_chans=3, img_size=16, window_size=4, img_range=1.0, depths=[2], embed_dim=12,
                 num_heads=[2], mlp_ratio=2, upsampler="pixelshuffle", resi_connection="1conv")
    return net.state_dict()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("upscale-models")
    for folder in ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT"):
        (root / folder).mkdir()
    torch.save({"params_ema": rrdbnet_x4_state()}, root / "ESRGAN" / "tiny-RRDB-x4.pth")
    torch.save({"params": srvgg_state()}, root / "RealESRGAN" / "tiny-compact-x4.pth")
    from safetensors.torch import save_file

    save_file(swinir_state(), str(root / "SwinIR" / "tiny-SwinIR-x2.safetensors"))
    (root / "HAT" / "broken.pth").write_bytes(b"this is not a checkpoint")
    torch.save({"foo.weight": torch.zeros(3, 3)}, root / "DAT" / "unknown.pth")
    return root


def test_official_state_dict_key_layouts():
    rrdb = rrdbnet_x4_state()
    assert "body.0.rdb1.conv1.weight" in rrdb and "conv_up2.weight" in rrdb and "conv_last.bias" in rrdb
    srvgg = srvgg_state()
    assert "body.0.weight" in srvgg and "body.1.weight" in srvgg and srvgg["body.6.weight"].shape[0] == 48
    swin = swinir_state()
    assert "layers.0.residual_group.blocks.0.attn.relative_position_bias_table" in swin
    assert "conv_before_upsample.0.weight" in swin and "upsample.0.weight" in swin


@pytest.mark.parametrize(
    "relpath, arch, scale",
    [("ESRGAN/tiny-RRDB-x4.pth", "ESRGAN", 4), ("RealESRGAN/tiny-compact-x4.pth", "RealESRGAN Compact", 4),
     ("SwinIR/tiny-SwinIR-x2.safetensors", "SwinIR", 2)],
)
def test_spandrel_loads_each_architecture(models_dir, relpath, arch, scale):
    model = load_upscaler_file(models_dir / relpath)
    assert model.architecture == arch and model.scale == scale and model.dtype == torch.float32
    image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    out = model.upscale_array(image)
    assert out.shape == (20 * scale, 24 * scale, 3) and out.dtype == np.uint8
    assert out.std() > 0  # the random network does something


def test_spandrel_import_needs_no_torchvision():
    from webui.upscale.spandrel_import import import_spandrel

    assert import_spandrel().ModelLoader is not None
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        assert not any(m == "torchvision" or m.startswith("torchvision.") for m in sys.modules)


def test_broken_and_unknown_files_name_the_file(models_dir):
    with pytest.raises(ValueError, match=r"broken\.pth"):
        load_upscaler_file(models_dir / "HAT" / "broken.pth")
    with pytest.raises(ValueError, match=r"unknown\.pth.*does not recognise"):
        load_upscaler_file(models_dir / "DAT" / "unknown.pth")
    with pytest.raises(FileNotFoundError, match=r"missing-x4\.pth not found in .*ESRGAN"):
        load_upscaler_file(models_dir / "ESRGAN" / "missing-x4.pth")


def test_registry_lists_builtins_and_files_and_upscales_to_exact_size(models_dir):
    reg = UpscalerRegistry(models_dir)
    names = reg.names()
    assert names[: len(BUILTIN_UPSCALERS)] == ["None", "Lanczos", "Nearest"]
    assert {"tiny-RRDB-x4", "tiny-compact-x4", "tiny-SwinIR-x2", "broken", "unknown"} <= set(names)
    assert reg.find("tiny-compact-x4").scale == 4 and reg.find("tiny-SwinIR-x2").folder == "SwinIR"
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 20, 3), dtype=np.uint8))
    assert reg.upscale(img, "tiny-compact-x4", (50, 40)).size == (50, 40)  # x4 then Lanczos down
    assert reg.upscale(img, "tiny-SwinIR-x2", (80, 64)).size == (80, 64)  # x2 twice
    assert reg.upscale(img, "Lanczos", (40, 32)).size == (40, 32)
    assert reg.upscale(img, "None", (40, 32)).size == (20, 16)  # A1111: None does not resize
    assert reg.model(reg.find("tiny-compact-x4")) is reg.model(reg.find("tiny-compact-x4"))  # loaded once
    with pytest.raises(ValueError, match="unknown upscaler 'nope'"):
        reg.upscale(img, "nope", (40, 32))
    with pytest.raises(ValueError, match="latent mode"):
        reg.find("Latent (bicubic)")
    with pytest.raises(ValueError, match="broken"):
        reg.upscale(img, "broken", (40, 32))


@pytest.mark.parametrize("relpath, tile, overlap", [("RealESRGAN/tiny-compact-x4.pth", 24, 12), ("ESRGAN/tiny-RRDB-x4.pth", 64, 40)])
def test_tiled_and_untiled_agree_away_from_seams(models_dir, relpath, tile, overlap):
    model = load_upscaler_file(models_dir / relpath)
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    whole = model.descriptor(x)
    calls = []

    def run(t):
        calls.append(tuple(t.shape[2:]))
        return model.descriptor(t)

    tiled = tiled_apply(run, x, 4, tile=tile, overlap=overlap)
    assert len(calls) >= 4 and max(max(c) for c in calls) <= tile  # bounded: never more than a tile at once
    assert tiled.shape == whole.shape
    # every kept pixel had overlap/2 pixels of context, more than the network's receptive field
    assert torch.allclose(tiled, whole, atol=1e-4), (tiled - whole).abs().max()


def test_tiles_differ_when_the_overlap_is_too_small(models_dir):
    """The check above can fail: with no overlap the seams show."""
    model = load_upscaler_file(models_dir / "ESRGAN" / "tiny-RRDB-x4.pth")
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    tiled = tiled_apply(model.descriptor, x, 4, tile=32, overlap=0)
    assert (tiled - model.descriptor(x)).abs().max() > 1e-3
