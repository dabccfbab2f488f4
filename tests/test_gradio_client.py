"""Every named Gradio endpoint, called the way a script would: gradio_client with the login."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.app_fixtures import LOGIN

GEN = dict(negative_prompt="", sampler="Euler a", steps=3, cfg_scale=7, width=64, height=64, seed=11,
           batch_count=1, batch_size=2)


@pytest.fixture(scope="module")
def client(live_server):
    from gradio_client import Client

    url, _ = live_server
    return Client(url + "/", auth=LOGIN, verbose=False)


def test_endpoints_have_named_parameters(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/txt2img", "/img2img", "/inpaint", "/talking_head", "/png_info", "/select_model", "/settings",
            "/interrupt"} <= set(api)
    names = [p["parameter_name"] for p in api["/txt2img"]["parameters"]]
    assert names[:10] == ["prompt", "negative_prompt", "sampler", "steps", "cfg_scale", "width", "height", "seed",
                          "batch_count", "batch_size"]
    # then, each with a default: the A1111 extras (variation seed options, styles, the X/Y/Z plot script)
    # and the hires fix fields
    assert {"extra_seed", "subseed", "subseed_strength", "styles", "script", "xyz_x_type"} <= set(names[10:])
    assert {"enable_hr", "hr_upscaler", "hr_second_pass_steps", "denoising_strength", "hr_scale", "hr_resize_x",
            "hr_resize_y", "hr_sampler_name", "hr_prompt", "hr_negative_prompt", "restore_faces"} <= set(names[10:])


def test_txt2img_and_png_info(client):
    gallery, _preview, info = client.predict(prompt="a red circle", api_name="/txt2img", **GEN)
    assert len(gallery) == 2
    assert "Seed: 11" in info and "Size: 64x64" in info
    image = Image.open(gallery[0]["image"])
    assert image.size == (64, 64)

    from gradio_client import handle_file

    text, parsed = client.predict(handle_file(gallery[0]["image"]), api_name="/png_info")
    assert text.startswith("a red circle\nSteps: 3")
    assert parsed["Seed"] in ("11", "12") and parsed["Size-1"] == "64"


def test_img2img_inpaint(client, tmp_path):
    from gradio_client import handle_file

    src = tmp_path / "src.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(src)
    gallery, _p, info = client.predict(prompt="a blue square", image=handle_file(str(src)), resize_mode="Just resize",
                                       strength=0.5, api_name="/img2img", **GEN)
    assert len(gallery) == 2 and "Denoising strength: 0.5" in info

    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((32, 32), 255, np.uint8), 16)).save(mask)
    editor = {"background": handle_file(str(src)), "layers": [], "composite": None, "id": None}
    gallery, _p, info = client.predict(prompt="a green square", editor=editor, mask_upload=handle_file(str(mask)),
                                       mask_blur=0, mask_mode="Inpaint masked", fill="original",
                                       area="Whole picture", padding=32, strength=1.0, api_name="/inpaint", **GEN)
    out = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"), dtype=np.int16)
    assert np.abs(out[:8] - 90).max() <= 2  # far from the mask: untouched


def test_bad_input_is_an_error_and_next_call_works(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="multiple of 8|65"):
        client.predict(prompt="x", api_name="/txt2img", **{**GEN, "width": 65})
    gallery, _p, _i = client.predict(prompt="x", api_name="/txt2img", **GEN)
    assert len(gallery) == 2


def test_select_model_settings_interrupt(client, live_server):
    _, services = live_server
    title = services.image.current_model().title
    assert title in client.predict(title, api_name="/select_model")
    status = client.predict(device="cpu", precision="fp32", attention="sliced", autocast=False, tf32=True,
                            vae_slicing=True, vae_tiling=True, channels_last=False, memory="normal", threads=0,
                            speed="cache", cache_interval=2, cache_branch=1, token_merging_ratio=0.3,
                            token_merging_min_side=1024, api_name="/settings")
    assert "VAE tiling" in status and "attention sliced" in status and "PerfConfig" not in status
    assert "speed cache (interval 2, branch 1)" in status and "token merging 0.3 from 1024 px" in status
    assert services.image.perf.attention == "sliced" and services.image.perf.vae_tiling
    assert (services.image.perf.cache_interval, services.image.perf.cache_branch) == (2, 1)
    assert services.image.perf.token_merging_ratio == 0.3
    client.predict(device="cpu", precision="fp32", attention="sdpa", autocast=False, tf32=True, vae_slicing=False,
                   vae_tiling=False, channels_last=False, memory="normal", threads=0, speed="off", cache_interval=3,
                   cache_branch=0, token_merging_ratio=0.0, token_merging_min_side=1024, api_name="/settings")
    assert services.image.perf.speed == "off"
    client.predict(api_name="/interrupt")


def test_talking_head_endpoint(client, tmp_path):
    from gradio_client import handle_file
    from skimage.data import astronaut

    face = tmp_path / "face.png"
    Image.fromarray(astronaut()).save(face)
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello there."], check=True)
    video, download, timings, speech_wav = client.predict(image=handle_file(str(face)), audio=handle_file(str(speech)),
                                              pose_style=3, size=256, preprocess="crop", still=False, blink=True,
                                              expression_scale=1.0, enhancer=False, engine="default", seed=0,
                                              api_name="/talking_head")
    path = video["video"] if isinstance(video, dict) else video
    assert str(path).endswith(".mp4")
    assert "frames" in timings and "render" in timings
    assert speech_wav is None  # an uploaded speech file: nothing synthesized
    # typed text instead of audio: spoken offline (Mandarin), the WAV comes back beside the video
    video, _, timings, speech_wav = client.predict(image=handle_file(str(face)), audio=None, text="你好。",
                                                   voice="cmn", rate=160, pitch=60, still=True, engine="default",
                                                   api_name="/talking_head")
    assert str(video["video"] if isinstance(video, dict) else video).endswith(".mp4")
    assert str(speech_wav).endswith(".wav") and Path(speech_wav).stat().st_size > 1000


def test_talking_head_endpoint_batch_with_reference(client, tmp_path):
    """Two portraits x one speech file in one call, with a reference video for blinks and pose:
    one video per pair; a portrait without a face is reported, the other video is made."""
    from gradio_client import handle_file
    from skimage.data import astronaut

    face = tmp_path / "face.png"
    Image.fromarray(astronaut()).save(face)
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((160, 160, 3), 128, np.uint8)).save(wall)
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello."], check=True)
    _v, _d, _t, _s = client.predict(image=handle_file(str(face)), audio=handle_file(str(speech)), engine="default",
                                api_name="/talking_head")
    ref = _v["video"] if isinstance(_v, dict) else _v
    video, downloads, report, _speech = client.predict(
        image=None, audio=handle_file(str(speech)), engine="default",
        batch_images=[handle_file(str(face)), handle_file(str(wall))], batch_audios=[],
        ref_eyeblink=handle_file(str(ref)), ref_pose=handle_file(str(ref)),
        api_name="/talking_head")
    assert "1 of 2 videos" in report and "failed" in report and "no face found" in report
    assert len(downloads) == 1 and str(downloads[0]).endswith("face__speech.mp4")
