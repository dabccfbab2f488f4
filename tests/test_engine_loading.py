"""Loading (single file offline, missing files, 9-channel inpainting UNet, VAE files) and perf switches."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_engine_helpers import SIZE, make_models, tiny_dir, tiny_inpaint_dir
from webui.config import PerfConfig
from webui.diffusion.loading import ModelManager, detect_single_file, load_pipeline_set
from webui.diffusion.perf import apply_perf, resolve_device, resolve_dtype, set_vae_tile_size
from webui.diffusion.registry import scan_models
from webui.diffusion.service import ImageService
from webui.diffusion.tiny import to_original_checkpoint, write_vae_file
from webui.diffusion.types import InpaintRequest, ModelInfo, Txt2ImgRequest

FAST = dict(width=SIZE, height=SIZE, steps=2, save=False)
CPU = torch.device("cpu")


def test_single_file_checkpoint_loads_offline(tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(socket, "socket", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    cfg = make_models(tmp_path)
    sd = cfg.paths.sd_dir
    ckpt = to_original_checkpoint(tiny_dir(), sd / "tiny-single.safetensors")
    assert detect_single_file(ckpt) == {"arch": "sd15", "in_channels": 4}
    # its own diffusers config folder beside it (the shipped sd15 one is for full-size SD1.5)
    shutil.copytree(tiny_dir(), sd / "tiny-single.config", ignore=shutil.ignore_patterns("*.safetensors"))
    svc = ImageService(cfg)
    names = [m.name for m in svc.list_models()]
    assert names == ["demo-shapes", "tiny-single"]
    single = svc.txt2img(Txt2ImgRequest(prompt="a red circle", seed=4, model="tiny-single", **FAST))
    folder = svc.txt2img(Txt2ImgRequest(prompt="a red circle", seed=4, model="demo-shapes", **FAST))
    assert np.abs(np.asarray(single.images[0], int) - np.asarray(folder.images[0], int)).max() <= 2
    assert "Model: tiny-single" in single.infotexts[0]


def test_ckpt_and_explicit_config(tmp_path):
    ckpt = to_original_checkpoint(tiny_dir(), tmp_path / "m.ckpt")
    info = ModelInfo(name="m", path=ckpt, kind="single-file", title="m [x]")
    pipes = load_pipeline_set(info, CPU, torch.float32, config_dir=tiny_dir())
    assert pipes.img2img.unet is pipes.txt2img.unet is pipes.inpaint.unet  # one set of weights
    assert pipes.txt2img.vae is pipes.inpaint.vae


def test_missing_files_name_file_and_folder(tmp_path):
    info = ModelInfo(name="gone", path=tmp_path / "gone.safetensors", kind="single-file", title="gone [x]")
    with pytest.raises(FileNotFoundError, match=r"gone\.safetensors.*models/Stable-diffusion"):
        load_pipeline_set(info, CPU, torch.float32)
    model = ModelInfo(name="t", path=tiny_dir(), kind="diffusers", title="t [x]")
    with pytest.raises(FileNotFoundError, match=r"no-vae\.safetensors.*models/VAE"):
        load_pipeline_set(model, CPU, torch.float32, vae_path=tmp_path / "no-vae.safetensors")


def test_vae_file_and_manager_cache(tmp_path):
    cfg = make_models(tmp_path)
    write_vae_file(tiny_dir(), cfg.paths.vae_dir / "tiny-vae.safetensors")
    svc = ImageService(cfg)
    assert svc.list_vaes() == ["tiny-vae.safetensors"]
    a = svc.txt2img(Txt2ImgRequest(prompt="x", seed=2, **FAST))
    b = svc.txt2img(Txt2ImgRequest(prompt="x", seed=2, vae="tiny-vae.safetensors", **FAST))
    assert np.abs(np.asarray(a.images[0], int) - np.asarray(b.images[0], int)).max() <= 2  # same weights
    assert "VAE: tiny-vae.safetensors" in b.infotexts[0]
    svc.txt2img(Txt2ImgRequest(prompt="x", seed=2, vae="tiny-vae.safetensors", **FAST))
    assert svc._manager.load_count == 2  # loaded once per (model, vae), never per request


def test_inpaint_with_9_channel_unet(tmp_path):
    svc = ImageService(make_models(tmp_path, inpaint=True))
    src = Image.new("RGB", (SIZE, SIZE), (200, 40, 40))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    r = svc.inpaint(InpaintRequest(prompt="x", seed=1, image=src, mask=mask, mask_blur=2, **FAST))
    out, orig = np.asarray(r.images[0], int), np.asarray(src, int)
    assert np.abs(out[:10] - orig[:10]).max() <= 1
    assert np.abs(out[24:40, 24:40] - orig[24:40, 24:40]).mean() > 5
    assert svc.txt2img(Txt2ImgRequest(prompt="x", **FAST)).images[0].size == (SIZE, SIZE)  # txt2img via inpaint pipe


def test_each_perf_switch_changes_the_pipeline():
    from diffusers.models.attention_processor import AttnProcessor2_0, SlicedAttnProcessor

    model = ModelInfo(name="t", path=tiny_dir(), kind="diffusers", title="t [x]")
    pipe = load_pipeline_set(model, CPU, torch.float32).txt2img
    threads = torch.get_num_threads()
    try:
        apply_perf(pipe, PerfConfig(attention="sdpa"))
        assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
        apply_perf(pipe, PerfConfig(attention="sliced"))
        assert any(isinstance(p, SlicedAttnProcessor) for p in pipe.unet.attn_processors.values())
        apply_perf(pipe, PerfConfig(vae_tiling=True, vae_slicing=True, channels_last=True, threads=1, tf32=False))
        assert pipe.vae.use_tiling and pipe.vae.use_slicing
        assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert torch.get_num_threads() == 1 and not torch.backends.cuda.matmul.allow_tf32
        apply_perf(pipe, PerfConfig())
        assert not pipe.vae.use_tiling and not pipe.vae.use_slicing and pipe.unet.conv_in.weight.is_contiguous()
        if not __import__("importlib").util.find_spec("xformers"):
            with pytest.raises(ValueError, match="xformers"):
                apply_perf(pipe, PerfConfig(attention="xformers"))
        with pytest.raises(ValueError, match="attention"):
            apply_perf(pipe, PerfConfig(attention="magic"))
    finally:
        torch.set_num_threads(threads)
    assert resolve_device(PerfConfig(device="cpu")) == CPU
    assert resolve_dtype(PerfConfig(), CPU) == torch.float32
    assert resolve_dtype(PerfConfig(precision="fp16"), CPU) == torch.float16


def test_vae_tiling_splits_large_decodes():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(tiny_dir() / "vae"), local_files_only=True)
    calls = []
    vae.decoder.register_forward_pre_hook(lambda mod, args: calls.append(tuple(args[0].shape[-2:])))
    latents = torch.randn(1, 4, 32, 32)  # a 256x256 image
    set_vae_tile_size(vae, 64)
    vae.enable_tiling()
    with torch.no_grad():
        out = vae.decode(latents).sample
    assert out.shape[-2:] == (256, 256)
    assert len(calls) > 1 and max(max(s) for s in calls) <= 8  # every tile is at most 64 px (8 latents)


def test_set_perf_reloads_on_dtype_change(tmp_path):
    svc = ImageService(make_models(tmp_path))
    svc.txt2img(Txt2ImgRequest(prompt="x", **FAST))
    svc.set_perf(PerfConfig(vae_tiling=True))
    assert svc._manager.load_count == 1 and svc._manager.loaded()[0].txt2img.vae.use_tiling
    svc.set_perf(PerfConfig(precision="bf16"))
    assert svc._manager.load_count == 2 and svc._manager.loaded()[0].txt2img.unet.dtype == torch.bfloat16
    with pytest.raises(ValueError):
        svc.set_perf(PerfConfig(attention="nope"))
