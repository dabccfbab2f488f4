"""The Speed setting: DeepCache really skips the deep layers, stays close to off, interval 1 == off;
token merging patches only large images; the modes reach the pipeline from the CLI, the API and requests,
and the infotext records them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import torch

from tests.app_fixtures import LOGIN
from tests.test_engine_helpers import SIZE, make_models
from webui.cli import parse_args
from webui.config import PerfConfig
from webui.diffusion import speed
from webui.diffusion.deepcache import DeepCache, disable_deepcache, enable_deepcache, installed
from webui.diffusion.infotext import parse_infotext
from webui.diffusion.service import ImageService
from webui.diffusion.types import Txt2ImgRequest


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    from webui.diffusion.tiny import build_tiny_components

    return StableDiffusionPipeline(**build_tiny_components(seed=3), requires_safety_checker=False)


def _unet_inputs(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    return x, ctx


def _count_calls(module) -> list[int]:
    n = [0]
    module.register_forward_hook(lambda *a: n.__setitem__(0, n[0] + 1))
    return n


def test_cache_skips_deep_layers_between_full_steps(pipe):
    unet = pipe.unet
    # conv1 lives inside each resnet: it only runs when the resnet really computes
    deep_down = _count_calls(unet.down_blocks[1].resnets[0].conv1)
    mid = _count_calls(unet.mid_block.resnets[0].conv1)
    deep_up = _count_calls(unet.up_blocks[0].resnets[0].conv1)
    shallow_up = _count_calls(unet.up_blocks[-1].resnets[-1].conv1)
    first_down = _count_calls(unet.down_blocks[0].resnets[0].conv1)
    cache = enable_deepcache(unet, interval=3, branch=0)
    try:
        x, ctx = _unet_inputs(unet)
        with torch.no_grad():
            for t in range(900, 0, -100):  # 9 steps, one generation
                unet(x, t, ctx)
        assert cache.calls() == {"full": 3, "partial": 6}
        assert deep_down[0] == mid[0] == deep_up[0] == first_down[0] == 3  # full steps only (branch 0)
        assert shallow_up[0] == 9  # the last up layer runs every step
        # a rising timestep is a new generation: it starts with a full step
        with torch.no_grad():
            unet(x, 900, ctx)
        assert cache.full_step and mid[0] == 4
        # branch 1 also recomputes the first down resnet on partial steps
        enable_deepcache(unet, interval=3, branch=1)
        first_down[0] = mid[0] = 0
        with torch.no_grad():
            for t in range(900, 0, -100):
                unet(x, t, ctx)
        assert first_down[0] == 9 and mid[0] == 3
    finally:
        disable_deepcache(unet)
    assert installed(unet) is None and "forward" not in unet.mid_block.__dict__


def _generate(pipe, steps=8):
    g = torch.Generator().manual_seed(5)
    return pipe("a red circle", num_inference_steps=steps, generator=g, output_type="np",
                height=SIZE, width=SIZE).images


def test_cache_output_close_to_off_and_interval_1_is_off(pipe):
    off = _generate(pipe)
    try:
        enable_deepcache(pipe.unet, interval=1, branch=0)
        assert np.array_equal(_generate(pipe), off)
        enable_deepcache(pipe.unet, interval=3, branch=0)
        cached = _generate(pipe)
    finally:
        disable_deepcache(pipe.unet)
    assert not np.array_equal(cached, off)  # it really reused features
    assert np.abs(cached - off).mean() < 0.05  # images in 0..1
    assert np.array_equal(_generate(pipe), off)  # removal restores the plain UNet exactly


def test_bad_cache_values_name_the_value(pipe):
    with pytest.raises(ValueError, match="interval"):
        DeepCache(pipe.unet, interval=0)
    with pytest.raises(ValueError, match="branch must be below"):
        DeepCache(pipe.unet, branch=99)
    with pytest.raises(ValueError, match="Unknown speed 'turbo'"):
        speed.check_speed(PerfConfig(speed="turbo"))
    with pytest.raises(ValueError, match="token_merging_ratio"):
        speed.check_speed(PerfConfig(token_merging_ratio=0.9))


def test_token_merging_only_for_large_images_and_compile_switch(pipe):
    unet = pipe.unet
    perf = PerfConfig(token_merging_ratio=0.5, token_merging_min_side=128)
    speed.apply_speed(unet, perf, torch.device("cpu"), 64, 64)
    assert not hasattr(unet, "_tome_info")
    speed.apply_speed(unet, perf, torch.device("cpu"), 128, 64)
    assert unet._tome_info["args"]["ratio"] == 0.5
    assert any(type(m).__name__ == "ToMeBlock" for m in unet.modules())
    assert speed.speed_infotext(perf, 128, 64)["Token merging ratio"] == 0.5
    speed.apply_speed(unet, PerfConfig(speed="compile"), torch.device("cpu"), 64, 64)
    assert not any(type(m).__name__ == "ToMeBlock" for m in unet.modules())
    assert unet._compiled_call_impl is not None  # compiled lazily on the first call
    speed.apply_speed(unet, PerfConfig(speed="cache+compile"), torch.device("cpu"), 64, 64)
    assert unet._compiled_call_impl is None and all(layer.compiled for layer in installed(unet).layers)
    speed.apply_speed(unet, PerfConfig(), torch.device("cpu"), 64, 64)
    assert unet._compiled_call_impl is None and installed(unet) is None


def test_cli_speed_flags_on_image_commands_and_server():
    parsed = parse_args(["txt2img", "--prompt", "x", "--output", "o.png", "--speed", "cache", "--cache-interval", "2",
                         "--cache-branch", "1"])
    perf = parsed.config.perf
    assert (perf.speed, perf.cache_interval, perf.cache_branch) == ("cache", 2, 1)
    assert parse_args(["serve", "--speed", "cache+compile"]).config.perf.speed == "cache+compile"
    assert parse_args(["inpaint", "--prompt", "x", "--image", "a.png", "--mask", "m.png", "--output", "o.png",
                       "--speed", "compile"]).config.perf.speed == "compile"
    with pytest.raises(SystemExit):
        parse_args(["txt2img", "--prompt", "x", "--output", "o.png", "--speed", "cache", "--cache-interval", "0"])


def test_request_override_reaches_the_unet_and_infotext(tmp_path):
    service = ImageService(make_models(tmp_path))
    req = Txt2ImgRequest(prompt="a red circle", seed=1, width=SIZE, height=SIZE, steps=6, save=False,
                         speed_overrides=(("speed", "cache"), ("cache_interval", 2)))
    result = service.txt2img(req)
    info = parse_infotext(result.infotexts[0])
    assert info["Speed"] == "cache (interval 2, branch 0)"
    unet = service._manager.loaded()[0].txt2img.unet
    assert installed(unet).calls()["partial"] >= 2  # the cache ran inside the pipeline
    plain = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=1, width=SIZE, height=SIZE, steps=6, save=False))
    assert "Speed" not in parse_infotext(plain.infotexts[0]) and installed(unet) is None
    with pytest.raises(ValueError, match="not a speed setting"):
        service.txt2img(Txt2ImgRequest(prompt="x", save=False, speed_overrides=(("attention", "sliced"),)))
    with pytest.raises(ValueError, match="Unknown speed"):
        service.txt2img(Txt2ImgRequest(prompt="x", save=False, speed_overrides=(("speed", "fast"),)))


def test_api_override_settings_speed(live_server):
    url, _ = live_server
    body = {"prompt": "a red circle", "seed": 3, "steps": 4, "width": 64, "height": 64,
            "override_settings": {"speed": "cache", "cache_interval": 2, "cache_branch": 1}}
    r = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=LOGIN, timeout=300)
    assert r.status_code == 200, r.text
    assert 'Speed: "cache (interval 2, branch 1)"' in json.loads(r.json()["info"])["infotexts"][0]
    r = requests.post(f"{url}/sdapi/v1/txt2img", json={**body, "override_settings": {"speed": "warp"}},
                      auth=LOGIN, timeout=60)
    assert r.status_code == 422 and "warp" in r.text


def test_compiled_artefacts_go_to_the_user_cache(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what torch writes there at start
    speed._compile_options(torch.device("cpu"))
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "sd-talking-studio" / "torchinductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # a user's own choice stays
    speed._compile_options(torch.device("cpu"))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_cache_compile_keeps_a_graph_per_layer():
    """cache+compile compiles each cached layer; the UNet's many resnets share one forward, and dynamo
    must not hit its recompile limit and silently run the rest eagerly (it did: 8 of 22 in SD1.5)."""
    import torch._dynamo
    import torch._dynamo.utils as dynamo_utils
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=3,
                                block_out_channels=(8, 16, 16, 32), down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=8,
                                attention_head_dim=2, norm_num_groups=4).eval()
    cache = enable_deepcache(unet, 3, 0)
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    dynamo_utils.counters.clear()
    try:
        cache.set_compile({"backend": counting_backend})
        with torch.no_grad():
            unet(torch.randn(1, 4, 8, 8), 999, torch.randn(1, 3, 8))
        limits = [k for k in dynamo_utils.counters["unimplemented"] if "recompile limit" in k.lower()]
        assert not limits, limits[0][:200]
        assert len(graphs) > 8  # 28 resnets of 3 shapes, attentions, samplers: more graphs than the default limit
    finally:
        disable_deepcache(unet)
        torch._dynamo.reset()
