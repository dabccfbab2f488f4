"""The A1111-compatible REST API on the live server: what webuiapi-style clients send and read back."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import requests
from PIL import Image

from tests.app_fixtures import LOGIN


def b64png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_login_required(live_server):
    url, _ = live_server
    r = requests.get(f"{url}/sdapi/v1/sd-models", timeout=30)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Basic"
    r = requests.get(f"{url}/sdapi/v1/sd-models", auth=("alice", "wrong"), timeout=30)
    assert r.status_code == 401


def test_txt2img_like_webuiapi(live_server):
    url, _ = live_server
    body = {"prompt": "a red circle", "negative_prompt": "", "seed": 1234, "steps": 3, "cfg_scale": 7,
            "width": 64, "height": 64, "sampler_name": "Euler a", "sampler_index": "Euler a",
            "scheduler": "automatic", "batch_size": 2, "n_iter": 1, "enable_hr": False, "restore_faces": False,
            "alwayson_scripts": {}, "script_args": []}
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=LOGIN, timeout=300)
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["images"]) == 2
    first = decode(data["images"][0])
    assert first.size == (64, 64)
    info = json.loads(data["info"])
    assert info["all_seeds"] == [1234, 1235]
    assert info["infotexts"][0].startswith("a red circle\nSteps: 3, Sampler: Euler a")
    assert first.info["parameters"] == info["infotexts"][0]
    assert data["parameters"]["prompt"] == "a red circle"


def test_txt2img_bad_input_is_422_and_server_survives(live_server):
    url, _ = live_server
    for bad in ({"width": 65}, {"steps": 0}, {"sampler_name": "Nope"}, {"cfg_scale": 99}):
        body = {"prompt": "x", "steps": 2, "width": 64, "height": 64, **bad}
        r = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=LOGIN, timeout=120)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"]
    r = requests.post(f"{url}/sdapi/v1/txt2img", json={"prompt": "ok", "steps": 2, "width": 64, "height": 64},
                      auth=LOGIN, timeout=120)
    assert r.status_code == 200


def test_img2img_and_inpaint(live_server):
    url, _ = live_server
    source = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))).convert("RGB")
    body = {"prompt": "a blue square", "init_images": ["data:image/png;base64," + b64png(source)], "steps": 4,
            "width": 64, "height": 64, "denoising_strength": 0.0, "seed": 7}
    r = requests.post(f"{url}/sdapi/v1/img2img", json=body, auth=LOGIN, timeout=300)
    assert r.status_code == 200, r.text
    out = np.asarray(decode(r.json()["images"][0]).convert("RGB"), dtype=np.int16)
    assert np.abs(out - np.asarray(source, dtype=np.int16)).max() <= 2  # strength 0 returns the input

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    body.update(mask=b64png(mask), denoising_strength=1.0, inpainting_fill=1, inpaint_full_res=False, mask_blur=0)
    r = requests.post(f"{url}/sdapi/v1/img2img", json=body, auth=LOGIN, timeout=300)
    assert r.status_code == 200, r.text
    out = np.asarray(decode(r.json()["images"][0]).convert("RGB"), dtype=np.int16)
    outside = np.ones((64, 64), bool)
    outside[12:52, 12:52] = False
    assert np.abs(out - np.asarray(source, dtype=np.int16))[outside].mean() < 3

    body["mask"] = b64png(Image.new("L", (32, 32), 255))
    r = requests.post(f"{url}/sdapi/v1/img2img", json=body, auth=LOGIN, timeout=120)
    assert r.status_code == 422 and "mask" in r.json()["detail"].lower()
    body["init_images"] = [base64.b64encode(b"definitely not a png").decode()]
    r = requests.post(f"{url}/sdapi/v1/img2img", json=body, auth=LOGIN, timeout=120)
    assert r.status_code == 422 and "init_images" in r.json()["detail"]


def test_models_options_samplers_progress_pnginfo(live_server):
    url, _ = live_server
    models = requests.get(f"{url}/sdapi/v1/sd-models", auth=LOGIN, timeout=60).json()
    assert models[0]["model_name"] == "tiny-sd"
    assert models[0]["title"].startswith("tiny-sd [") and len(models[0]["hash"]) == 10
    r = requests.post(f"{url}/sdapi/v1/options", json={"sd_model_checkpoint": models[0]["title"]}, auth=LOGIN,
                      timeout=120)
    assert r.status_code == 200
    assert requests.get(f"{url}/sdapi/v1/options", auth=LOGIN, timeout=30).json()["sd_model_checkpoint"] == \
        models[0]["title"]
    r = requests.post(f"{url}/sdapi/v1/options", json={"sd_model_checkpoint": "missing-model"}, auth=LOGIN, timeout=30)
    assert r.status_code == 422
    names = [s["name"] for s in requests.get(f"{url}/sdapi/v1/samplers", auth=LOGIN, timeout=30).json()]
    assert {"Euler a", "DPM++ 2M", "DDIM", "UniPC", "LCM"} <= set(names)
    progress = requests.get(f"{url}/sdapi/v1/progress", auth=LOGIN, timeout=30).json()
    assert 0.0 <= progress["progress"] <= 1.0 and "state" in progress
    assert requests.post(f"{url}/sdapi/v1/interrupt", auth=LOGIN, timeout=30).json() == {}

    from PIL.PngImagePlugin import PngInfo

    text = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x768"
    meta = PngInfo()
    meta.add_text("parameters", text)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=meta)
    r = requests.post(f"{url}/sdapi/v1/png-info", json={"image": base64.b64encode(buf.getvalue()).decode()},
                      auth=LOGIN, timeout=30)
    assert r.json()["info"] == text
    assert r.json()["parameters"]["Size-2"] == "768"
