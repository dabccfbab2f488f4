"""Infotext, sampler table, LoRA tags, image helpers, registry: no model needed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from webui.diffusion import images as imgs
from webui.diffusion.infotext import build_infotext, parse_infotext, read_png_parameters, save_png
from webui.diffusion.lora import parse_lora_tags
from webui.diffusion.samplers import SAMPLER_NAMES, make_scheduler, split_sampler_name
from webui.diffusion.tiny import SD15_SCHEDULER_CONFIG

# Written by A1111 1.10 (format per its create_infotext; hash shortened to 10 hex)
A1111_EXAMPLE = """masterpiece, a red circle on a blue background,
(best quality:1.2), <lora:tiny-style:0.8>
Negative prompt: lowres, blurry
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, Lora hashes: "tiny-style: 0123456789ab", Version: v1.10.1"""


def test_parse_literal_a1111_example():
    p = parse_infotext(A1111_EXAMPLE)
    assert p["Prompt"] == "masterpiece, a red circle on a blue background,\n(best quality:1.2), <lora:tiny-style:0.8>"
    assert p["Negative prompt"] == "lowres, blurry"
    assert p["Steps"] == "20" and p["Sampler"] == "DPM++ 2M" and p["Schedule type"] == "Karras"
    assert p["Size-1"] == "512" and p["Size-2"] == "768" and "Size" not in p
    assert p["Model hash"] == "6ce0161689" and p["Model"] == "v1-5-pruned-emaonly"
    assert p["Lora hashes"] == "tiny-style: 0123456789ab"
    assert p["Inpaint area"] == "Only masked" and p["Version"] == "v1.10.1"


def test_build_parse_round_trip_and_order():
    params = {
        "Seed": 42,
        "Steps": 20,
        "Sampler": "Euler a",
        "CFG scale": 7.0,
        "Size": (512, 512),
        "Model hash": "0123456789",
        "Model": "demo-shapes",
        "Note": "has, comma: and colon",
        "Denoising strength": 0.5,
        "Empty": None,
    }
    text = build_infotext("a red circle\nsecond line", "blurry", params)
    last = text.splitlines()[-1]
    assert last.startswith("Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model hash: 0123456789, Model: demo-shapes, Denoising strength: 0.5")
    assert 'Note: "has, comma: and colon"' in last and "Empty" not in last
    p = parse_infotext(text)
    assert p["Prompt"] == "a red circle\nsecond line" and p["Negative prompt"] == "blurry"
    assert p["Note"] == "has, comma: and colon" and p["Seed"] == "42"
    # no negative prompt line when empty
    assert "Negative prompt" not in build_infotext("x", "", {"Steps": 1, "Seed": 2, "Sampler": "Euler"})


def test_last_line_needs_three_params():
    p = parse_infotext("a cat\nStyle: cute")
    assert p["Prompt"] == "a cat\nStyle: cute" and "Style" not in p
    assert parse_infotext("a", apply_defaults=True)["Clip skip"] == "1"


def test_png_chunk_round_trip(tmp_path):
    text = build_infotext("ünïcode prompt", "", {"Steps": 2, "Sampler": "Euler", "Seed": 1})
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "a.png", text)
    with Image.open(path) as im:
        assert read_png_parameters(im) == text
    assert read_png_parameters(Image.new("RGB", (8, 8))) is None


def test_sampler_table():
    base = dict(SD15_SCHEDULER_CONFIG)
    for name in SAMPLER_NAMES:
        make_scheduler(name, base)
    s = make_scheduler("DPM++ 2M Karras", base)
    assert type(s).__name__ == "DPMSolverMultistepScheduler" and s.config.use_karras_sigmas
    assert split_sampler_name("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")
    assert type(make_scheduler("Euler a", base)).__name__ == "EulerAncestralDiscreteScheduler"
    with pytest.raises(ValueError, match="Euler a"):
        make_scheduler("Nope Sampler", base)
    for required in ["Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE",
                     "DPM++ SDE Karras", "DPM++ 2M SDE", "DDIM", "PLMS", "UniPC", "LCM"]:
        assert required in SAMPLER_NAMES


def test_lora_tags():
    prompt, loras = parse_lora_tags("a red circle, <lora:tiny-style:0.7> on blue <lora:other>")
    assert prompt == "a red circle, on blue"
    assert loras == [("tiny-style", 0.7), ("other", 1.0)]
    with pytest.raises(ValueError, match="abc"):
        parse_lora_tags("<lora:x:abc>")


def test_resize_modes_and_fill():
    src = Image.fromarray(np.tile(np.arange(100, dtype=np.uint8), (50, 1)))  # 100x50
    for mode in (0, 1, 2, 3):
        assert imgs.resize_image(src.convert("RGB"), 64, 64, mode).size == (64, 64)
    with pytest.raises(ValueError):
        imgs.resize_image(src, 64, 64, 4)
    img = Image.new("RGB", (32, 32), (200, 0, 0))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    filled = np.asarray(imgs.fill_masked(img, mask))
    assert np.abs(filled[16, 16].astype(int) - [200, 0, 0]).max() <= 2
    box = imgs.expand_crop_region((10, 10, 20, 20), 4, 64, 32, 100, 100)
    assert (box[2] - box[0]) == 2 * (box[3] - box[1])


def test_registry_order_hash_placeholder(tmp_path):
    import hashlib

    from webui.config import PathsConfig
    from webui.diffusion.registry import find_model, scan_loras, scan_models, scan_vaes

    sd = tmp_path / "models" / "Stable-diffusion"
    (sd / "aaa-folder").mkdir(parents=True)
    (sd / "aaa-folder" / "model_index.json").write_text("{}")
    (sd / "aaa-folder" / "PLACEHOLDER").write_text("")
    (sd / "demo-shapes" / "unet").mkdir(parents=True)
    (sd / "demo-shapes" / "model_index.json").write_text("{}")
    (sd / "demo-shapes" / "unet" / "w.safetensors").write_bytes(b"abc")
    (sd / "Zeta.safetensors").write_bytes(b"weights")
    (tmp_path / "models" / "VAE").mkdir()
    (tmp_path / "models" / "VAE" / "v.pt").write_bytes(b"x")
    (tmp_path / "models" / "Lora").mkdir()
    (tmp_path / "models" / "Lora" / "style.safetensors").write_bytes(b"x")
    paths = PathsConfig(models_dir=tmp_path / "models")
    models = scan_models(paths)
    assert [m.name for m in models] == ["demo-shapes", "Zeta", "aaa-folder"]
    zeta = models[1]
    assert zeta.title == f"Zeta [{hashlib.sha256(b'weights').hexdigest()[:10]}]" and zeta.kind == "single-file"
    assert models[2].is_placeholder and not models[0].is_placeholder
    assert find_model(models, zeta.title) is zeta and find_model(models, "Zeta") is zeta
    with pytest.raises(ValueError, match="Unknown model"):
        find_model(models, "nope")
    assert [p.name for p in scan_vaes(paths)] == ["v.pt"] and [p.stem for p in scan_loras(paths)] == ["style"]
