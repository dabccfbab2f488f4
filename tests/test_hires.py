"""Hires fix on the tiny seeded SD model: the size doubles (latent and model upscalers), A1111's infotext
keys are written, PNG Info reads them back for txt2img, and bad hires values are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_engine_helpers import SIZE, make_models
from tests.test_upscale_models import srvgg_state
from webui.diffusion.hires import target_size
from webui.diffusion.infotext import parse_infotext, read_png_parameters
from webui.diffusion.service import ImageService
from webui.diffusion.types import HiresFix, Img2ImgRequest, Txt2ImgRequest

FAST = dict(prompt="a red circle", width=SIZE, height=SIZE, steps=2, seed=5, save=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("hires")
    config = make_models(root)
    (root / "models" / "RealESRGAN").mkdir()
    torch.save({"params": srvgg_state(scale=2)}, root / "models" / "RealESRGAN" / "tiny-compact-x2.pth")
    return ImageService(config)


def test_latent_hires_doubles_the_size_and_writes_a1111_keys(service):
    hires = HiresFix(hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.5)
    r = service.txt2img(Txt2ImgRequest(**{**FAST, "save": True}, hires=hires))
    assert r.images[0].size == (2 * SIZE, 2 * SIZE)
    text = r.infotexts[0]
    assert "Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent" in text
    assert "Denoising strength: 0.5" in text and f"Size: {SIZE}x{SIZE}" in text  # Size is the first pass's
    with Image.open(r.paths[0]) as saved:
        assert saved.size == (2 * SIZE, 2 * SIZE)
        info = parse_infotext(read_png_parameters(saved))
    assert info["Hires upscale"] == "2" and info["Hires upscaler"] == "Latent" and info["Denoising strength"] == "0.5"


def test_hires_second_pass_changes_the_picture(service):
    plain = service.txt2img(Txt2ImgRequest(**FAST))
    up = service.txt2img(Txt2ImgRequest(**FAST, hires=HiresFix(hr_upscaler="Lanczos", denoising_strength=0.0)))
    redone = service.txt2img(Txt2ImgRequest(**FAST, hires=HiresFix(hr_upscaler="Lanczos", denoising_strength=0.6)))
    lanczos = plain.images[0].resize((2 * SIZE, 2 * SIZE), Image.LANCZOS)
    # strength 0: the first pass, only upscaled; strength 0.6: a real second pass on top of it
    assert np.abs(np.asarray(up.images[0], int) - np.asarray(lanczos, int)).max() == 0
    assert np.abs(np.asarray(redone.images[0], int) - np.asarray(lanczos, int)).mean() > 1.0


def test_model_upscaler_hires_with_resize_and_sampler(service):
    hires = HiresFix(hr_resize_x=160, hr_resize_y=96, hr_upscaler="tiny-compact-x2", hr_sampler_name="DDIM",
                     hr_prompt="a blue square", denoising_strength=0.4)
    r = service.txt2img(Txt2ImgRequest(**FAST, hires=hires))
    assert r.images[0].size == (160, 96)  # covered 160x160, centre-cropped to 160x96
    info = parse_infotext(r.infotexts[0])
    assert info["Hires resize-1"] == "160" and info["Hires resize-2"] == "96"
    assert info["Hires upscaler"] == "tiny-compact-x2" and info["Hires sampler"] == "DDIM"
    assert info["Hires prompt"] == "a blue square" and "Hires upscale" not in info


def test_target_size_follows_a1111():
    base = Txt2ImgRequest(width=512, height=768)
    assert target_size(Txt2ImgRequest(width=512, height=768, hires=HiresFix(hr_scale=1.5))) == ((768, 1152), (768, 1152))
    assert target_size(Txt2ImgRequest(width=512, height=768, hires=HiresFix(hr_resize_x=1024))) == ((1024, 1536), (1024, 1536))
    assert target_size(Txt2ImgRequest(width=512, height=768, hires=HiresFix(hr_resize_y=1024)))[1] == (680, 1024)
    assert target_size(Txt2ImgRequest(width=512, height=768, hires=HiresFix(hr_resize_x=1024, hr_resize_y=1024))) == (
        (1024, 1536), (1024, 1024))
    assert base.hires is None


@pytest.mark.parametrize(
    "hires, match",
    [(HiresFix(hr_scale=9), "hr_scale"), (HiresFix(hr_upscaler="nope"), "hr_upscaler: unknown upscaler 'nope'"),
     (HiresFix(denoising_strength=1.5), "denoising_strength"), (HiresFix(hr_sampler_name="Bogus"), "Bogus"),
     (HiresFix(hr_scale=4), "exceeds the largest side")],
)
def test_bad_hires_values_are_named(service, hires, match):
    with pytest.raises(ValueError, match=match):
        service.txt2img(Txt2ImgRequest(**{**FAST, "width": 192, "height": 192}, hires=hires))


def test_hires_is_refused_for_img2img_and_restore_faces_without_weights(service):
    image = Image.new("RGB", (SIZE, SIZE), (200, 30, 30))
    with pytest.raises(ValueError, match="txt2img option"):
        service.img2img(Img2ImgRequest(**FAST, image=image, hires=HiresFix()))
    with pytest.raises(ValueError, match="GFPGAN weights not found: put GFPGANv1.4.pth"):
        service.txt2img(Txt2ImgRequest(**FAST, restore_faces=True))


def test_png_info_sends_hires_to_txt2img():
    from webui.ui.hires import infotext_updates

    text = ("a red circle\nSteps: 2, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Denoising strength: 0.5, "
            "Hires resize: 128x96, Hires steps: 10, Hires upscaler: Latent (bicubic), Hires sampler: DDIM")
    names = ["enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y", "hr_second_pass_steps", "hr_upscaler",
             "hr_sampler_name", "hr_prompt", "hr_negative_prompt", "denoising_strength", "restore_faces"]
    widgets = {n: n for n in names}  # stand-ins: the function maps infotext keys to whatever it is given
    updates = infotext_updates(parse_infotext(text), widgets)
    assert updates == {"enable_hr": True, "hr_resize_x": 128, "hr_resize_y": 96, "hr_second_pass_steps": 10,
                       "hr_upscaler": "Latent (bicubic)", "hr_sampler_name": "DDIM", "denoising_strength": 0.5,
                       "restore_faces": False}


def test_variation_seed_with_hires_fix_uses_the_variation_noise_in_both_passes(service):
    """A1111: the first pass starts from the variation noise, the hires pass re-noises with it at its size.
    Strength 1 is the variation seed's own noise: the same pictures as seed = that variation seed."""
    hires = HiresFix(hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.6)
    base = dict(FAST, sampler="Euler")
    plain = service.txt2img(Txt2ImgRequest(**{**base, "seed": 9}, hires=hires))
    full = service.txt2img(Txt2ImgRequest(**{**base, "seed": 5}, subseed=9, subseed_strength=1.0, hires=hires))
    half = service.txt2img(Txt2ImgRequest(**{**base, "seed": 5}, subseed=9, subseed_strength=0.5, hires=hires))
    own = service.txt2img(Txt2ImgRequest(**{**base, "seed": 5}, hires=hires))
    px = [np.asarray(r.images[0], int) for r in (plain, full, half, own)]
    assert px[1].shape == (2 * SIZE, 2 * SIZE, 3)
    assert np.abs(px[1] - px[0]).max() <= 1  # both passes took the variation seed's noise
    assert np.abs(px[2] - px[0]).mean() > 1 and np.abs(px[2] - px[3]).mean() > 1  # in between: a new picture
    info = parse_infotext(half.infotexts[0])
    assert info["Variation seed"] == "9" and info["Variation seed strength"] == "0.5"
    assert info["Hires upscaler"] == "Latent" and info["Seed"] == "5"
