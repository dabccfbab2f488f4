"""A1111 API parity: the info keys clients read, variation seeds, styles, prompt-styles, resize mode 3."""

from __future__ import annotations

import json

import requests
from PIL import Image

from tests.app_fixtures import LOGIN
from tests.test_api import b64png, decode


def test_info_keys_variation_and_styles(live_server):
    url, _ = live_server
    body = {"prompt": "on the left", "seed": 5, "subseed": 77, "subseed_strength": 0.3, "steps": 2, "width": 64,
            "height": 64, "batch_size": 2, "styles": ["Circle"], "sampler_name": "Euler"}
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=LOGIN, timeout=300)
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    for key in ("subseed", "all_subseeds", "subseed_strength", "restore_faces", "sd_vae_name", "sd_vae_hash",
                "clip_skip", "styles", "extra_generation_params", "version"):
        assert key in info, key
    assert info["subseed"] == 77 and info["all_subseeds"] == [77, 78] and info["subseed_strength"] == 0.3
    assert info["styles"] == ["Circle"] and info["clip_skip"] == 1 and info["version"]
    assert info["prompt"] == "on the left"  # as A1111: what was sent; all_prompts have the styles applied
    assert info["all_prompts"][0] == "a red circle, on the left" and info["all_negative_prompts"][0] == "blurry"
    assert "Variation seed: 78, Variation seed strength: 0.3" in info["infotexts"][1]
    assert isinstance(info["extra_generation_params"], dict) and "Seed" not in info["extra_generation_params"]

    r = requests.post(f"{url}/sdapi/v1/txt2img", json={**body, "styles": ["Nope"]}, auth=LOGIN, timeout=60)
    assert r.status_code == 422 and "Nope" in r.json()["detail"]
    styles = requests.get(f"{url}/sdapi/v1/prompt-styles", auth=LOGIN, timeout=30).json()
    assert styles == [{"name": "Circle", "prompt": "a red circle, {prompt}", "negative_prompt": "blurry"}]


def test_img2img_resize_mode_3(live_server):
    url, _ = live_server
    body = {"prompt": "x", "init_images": [b64png(Image.new("RGB", (32, 48), (200, 0, 0)))], "resize_mode": 3,
            "denoising_strength": 0.5, "steps": 2, "width": 64, "height": 64}
    r = requests.post(f"{url}/sdapi/v1/img2img", json=body, auth=LOGIN, timeout=300)
    assert r.status_code == 200, r.text
    mask = Image.new("L", (32, 48), 0)
    mask.paste(255, (0, 0, 16, 48))
    r = requests.post(f"{url}/sdapi/v1/img2img", json={**body, "resize_mode": 0, "mask": b64png(mask), "mask_blur": 3},
                      auth=LOGIN, timeout=300)
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["info"])["extra_generation_params"]["Mask blur"] == "3"


def test_xyz_plot_script(live_server):
    """script_name "x/y/z plot" with A1111's positional script_args: X = Steps (index 4), Y = CFG Scale (6)."""
    url, _ = live_server
    args = [4, "1-2", [], 6, "3, 9", [], 0, "", [], True, False, False, False, 0, False, False]
    body = {"prompt": "x", "seed": 3, "steps": 2, "width": 64, "height": 64, "script_name": "X/Y/Z plot",
            "script_args": args}
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=LOGIN, timeout=300)
    assert r.status_code == 200, r.text
    data = r.json()
    info = json.loads(data["info"])
    grid = decode(data["images"][0])
    assert len(data["images"]) == 1 and grid.width > 128 and grid.height > 128
    assert "X Type: Steps" in info["infotexts"][0] and "Y Type: CFG Scale" in info["infotexts"][0]
    r = requests.post(f"{url}/sdapi/v1/txt2img", json={**body, "script_name": "loopback"}, auth=LOGIN, timeout=60)
    assert r.status_code == 422 and "loopback" in r.json()["detail"]
    r = requests.post(f"{url}/sdapi/v1/txt2img", json={**body, "script_args": [5, "1-2"]}, auth=LOGIN, timeout=60)
    assert r.status_code == 422 and "Hires steps" in r.json()["detail"]
    assert requests.get(f"{url}/sdapi/v1/scripts", auth=LOGIN, timeout=30).json()["txt2img"] == ["x/y/z plot"]
