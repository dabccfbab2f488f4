"""The Extras REST routes with webuiapi itself (its request shapes, unchanged), the upscaler lists, the
422s for A1111 fields this project does not implement, the Extras engine's sizes, saving and CLI."""

from __future__ import annotations

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from tests.app_fixtures import LOGIN
from tests.test_upscale_models import srvgg_state


@pytest.fixture(scope="module")
def server(live_server):
    url, services = live_server
    folder = services.config.paths.models_dir / "RealESRGAN"
    folder.mkdir(exist_ok=True)
    torch.save({"params": srvgg_state(scale=4)}, folder / "tiny-compact-x4.pth")
    return url, services


@pytest.fixture(scope="module")
def api(server):
    import webuiapi

    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    return webuiapi.WebUIApi(host="127.0.0.1", port=port, username=LOGIN[0], password=LOGIN[1])


def photo(w=40, h=30, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_lists_in_a1111_shapes(api):
    upscalers = api.get_upscalers()
    names = [u["name"] for u in upscalers]
    assert names[:3] == ["None", "Lanczos", "Nearest"] and "tiny-compact-x4" in names
    item = next(u for u in upscalers if u["name"] == "tiny-compact-x4")
    assert set(item) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert item["scale"] == 4 and item["model_path"].endswith("RealESRGAN/tiny-compact-x4.pth")
    assert [m["name"] for m in api.get_latent_upscale_modes()][:3] == ["Latent", "Latent (antialiased)", "Latent (bicubic)"]
    assert api.get_face_restorers() == [{"name": "GFPGAN", "cmd_dir": None}]


def test_extra_single_image_with_webuiapi(api):
    result = api.extra_single_image(image=photo(), upscaler_1="tiny-compact-x4", upscaling_resize=4)
    assert result.image.size == (160, 120)
    assert "Postprocess upscale by: 4" in result.info and "Postprocess upscaler: tiny-compact-x4" in result.info
    assert "Postprocess upscaler: tiny-compact-x4" in result.image.info["parameters"]
    # scale to a size with crop, upscaler 2 blended in
    result = api.extra_single_image(image=photo(), resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100,
                                    upscaler_1="Lanczos", upscaler_2="Nearest", extras_upscaler_2_visibility=0.5)
    assert result.image.size == (100, 100)
    assert "Postprocess upscaler 2: Nearest" in result.info


def test_extra_batch_images_with_webuiapi(api):
    result = api.extra_batch_images(images=[photo(seed=1), photo(20, 20, seed=2)], upscaler_1="Lanczos",
                                    upscaling_resize=2)
    assert [im.size for im in result.images] == [(80, 60), (40, 40)]


def test_extras_errors_are_422(server):
    url, _ = server
    image = api_png(photo())
    for bad, word in (({"upscaler_1": "nope"}, "nope"), ({"gfpgan_visibility": 0.5}, "GFPGANv1.4.pth"),
                      ({"codeformer_visibility": 0.5}, "CodeFormer"), ({"image": "!!"}, "image")):
        r = requests.post(f"{url}/sdapi/v1/extra-single-image", json={"image": image, "upscaler_1": "Lanczos", **bad},
                          auth=LOGIN, timeout=60)
        assert r.status_code == 422 and word in r.text, (bad, r.text)


def api_png(image: Image.Image) -> str:
    from tests.test_api import b64png

    return b64png(image)


@pytest.mark.parametrize(
    "field, value, word",
    [("tiling", True, "tiling"), ("script_name", "loopback", "script_name 'loopback'"),
     ("alwayson_scripts", {"adetailer": {"args": []}}, "alwayson_scripts.adetailer"),
     ("s_churn", 0.5, "s_churn"), ("override_settings", {"eta_noise_seed_delta": 31337}, "eta_noise_seed_delta")],
)
def test_unimplemented_a1111_fields_are_422(server, field, value, word):
    url, _ = server
    body = {"prompt": "x", "steps": 1, "width": 64, "height": 64, field: value}
    for route in ("txt2img", "img2img"):
        if route == "img2img":
            body["init_images"] = [api_png(photo(64, 64))]
        r = requests.post(f"{url}/sdapi/v1/{route}", json=body, auth=LOGIN, timeout=60)
        assert r.status_code == 422 and word in r.json()["detail"], (route, r.text)


def test_clip_skip_over_the_api(server):
    """A1111's Clip skip setting: override_settings.CLIP_stop_at_last_layers; info and infotext carry it."""
    import json

    url, _ = server
    body = {"prompt": "a red circle", "steps": 1, "width": 64, "height": 64, "seed": 3,
            "override_settings": {"CLIP_stop_at_last_layers": 2}}
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=LOGIN, timeout=120)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]
    body["override_settings"] = {"CLIP_stop_at_last_layers": 0}
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=LOGIN, timeout=120)
    assert r.status_code == 422 and "clip_skip" in r.text


def test_txt2img_hires_over_the_api_like_webuiapi(api):
    result = api.txt2img(prompt="a red circle", steps=2, width=64, height=64, seed=3, enable_hr=True, hr_scale=2,
                         hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.5)
    assert result.image.size == (128, 128)
    assert "Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent" in result.info["infotexts"][0]


def test_extras_engine_folder_saving_and_cli(server, tmp_path):
    from webui.upscale.extras import RESIZE_TO, ExtrasRequest, load_folder

    _, services = server
    (tmp_path / "in").mkdir()
    photo(seed=4).save(tmp_path / "in" / "b.png")
    photo(30, 40, seed=5).save(tmp_path / "in" / "a.jpg")
    images, names = load_folder(tmp_path / "in", 10**7)
    assert names == ["a.jpg", "b.png"]
    result = services.extras.run(ExtrasRequest(images=tuple(images), names=tuple(names), resize_mode=RESIZE_TO,
                                               upscaling_resize_w=64, upscaling_resize_h=48, upscaling_crop=False,
                                               upscaler_1="tiny-compact-x4"))
    assert [im.size for im in result.images] == [(64, 85), (64, 48)]  # no crop: covers the size, keeps the aspect
    assert result.paths[0].name.endswith("-a.png") and result.paths[1].name.endswith("-b.png")
    assert result.paths[0].parent.parent.name == "extras-images"
    with Image.open(result.paths[1]) as saved:
        assert "Postprocess upscale to: 64x48" in saved.info["parameters"]

    from app import main

    out = tmp_path / "up.png"
    rc = main(["upscale", "--image", str(tmp_path / "in" / "b.png"), "--upscaler", "tiny-compact-x4", "--scale", "2",
               "--output", str(out), "--models-dir", str(services.config.paths.models_dir)])
    assert rc == 0
    with Image.open(out) as up:
        assert up.size == (80, 60) and "Postprocess upscaler: tiny-compact-x4" in up.info["parameters"]
    assert main(["upscale", "--image", str(out), "--upscaler", "nope", "--output", str(out)]) == 2
