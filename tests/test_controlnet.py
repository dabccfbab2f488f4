"""ControlNet: loading both file layouts offline, the pairing check, preprocessors on drawn scenes,
control modes, multi-unit arguments reaching diffusers, and the service/infotext path."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from webui.config import AppConfig, PathsConfig
from webui.controlnet import models as cn_models
from webui.controlnet.preprocess import get_module, resize_control, run_module
from webui.controlnet.units import ControlNetUnit, pixel_perfect_resolution, unit_from_api, units_from_alwayson
from webui.diffusion.types import Img2ImgRequest, InpaintRequest, Txt2ImgRequest

SIZE = 64
FAST = dict(steps=4, width=SIZE, height=SIZE, save=False)


def arr(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int32)


def tiny_controlnet(unet_dir: Path, seed: int = 0):
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(unet_dir, subfolder="unet", local_files_only=True)
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32, 32))
    with torch.no_grad():
        for p in net.parameters():  # non-zero everywhere (from_unet zero-initialises the output convs)
            p.normal_(0, 0.05)
    return net, unet


@pytest.fixture(scope="module")
def cn_models_dir(tmp_path_factory):
    """models/ with the tiny SD model and tiny ControlNets: a diffusers folder and an original-layout file."""
    from webui.controlnet.convert import write_single_file
    from webui.diffusion.tiny import save_tiny_model

    models = tmp_path_factory.mktemp("cnmodels")
    for sub in ("Stable-diffusion", "VAE", "Lora", "ControlNet"):
        (models / sub).mkdir()
    sd = save_tiny_model(models / "Stable-diffusion" / "tiny-sd", seed=0)
    net, _ = tiny_controlnet(sd)
    net.save_pretrained(models / "ControlNet" / "tiny-cn")
    write_single_file(net, models / "ControlNet" / "control_tiny_scribble.safetensors")
    sidecar = models / "ControlNet" / "control_tiny_scribble.config"
    sidecar.mkdir()
    (sidecar / "config.json").write_text((models / "ControlNet" / "tiny-cn" / "config.json").read_text())
    other, _ = tiny_controlnet(sd, seed=5)
    other.save_pretrained(models / "ControlNet" / "tiny-cn-b")
    return models, net


@pytest.fixture(scope="module")
def service(cn_models_dir, tmp_path_factory):
    from webui.diffusion.service import ImageService

    models, _ = cn_models_dir
    out = tmp_path_factory.mktemp("out")
    return ImageService(AppConfig(paths=PathsConfig(models_dir=models, outputs_dir=out, checkpoints_dir=out)))


def sketch(size=SIZE, box=(6, 16, 30, 48)) -> Image.Image:
    """A black-on-white drawn triangle (what the sketchpad gives)."""
    img = Image.new("RGB", (size, size), "white")
    x0, y0, x1, y1 = box
    ImageDraw.Draw(img).polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], outline="black", width=3)
    return img


# ------------------------------------------------------------------ loading


def test_both_layouts_load_offline_with_the_same_weights(cn_models_dir):
    models, net = cn_models_dir
    found = {m.name: m for m in cn_models.scan_controlnets(models)}
    assert set(found) == {"tiny-cn", "tiny-cn-b", "control_tiny_scribble"}  # the sidecar config is no model
    assert found["control_tiny_scribble"].kind == "single-file" and found["tiny-cn"].kind == "diffusers"
    assert found["tiny-cn"].title.startswith("tiny-cn [") and len(found["tiny-cn"].title.split("[")[1]) == 9
    from safetensors import safe_open

    with safe_open(str(found["control_tiny_scribble"].path), "pt") as fh:
        keys = set(fh.keys())
    assert {"input_hint_block.0.weight", "input_hint_block.14.weight", "zero_convs.0.0.weight",
            "middle_block_out.0.weight", "input_blocks.1.1.proj_in.weight"} <= keys  # the control_v11p layout
    unet_config = type("C", (), {"cross_attention_dim": 32, "block_out_channels": (32, 64)})
    ref = net.state_dict()
    for name in ("tiny-cn", "control_tiny_scribble"):
        loaded = cn_models.load_controlnet(found[name], torch.float32, torch.device("cpu"), unet_config, "tiny-sd")
        got = loaded.state_dict()
        assert set(got) == set(ref)
        assert all(torch.equal(got[k], ref[k]) for k in ref), name


def test_single_file_without_sidecar_uses_the_shipped_sd15_config(tmp_path):
    from diffusers import ControlNetModel

    f = tmp_path / "control_v11p_sd15_canny.pth"
    assert cn_models.config_dir_for(f) == cn_models.SD15_CONTROLNET_CONFIG
    conf = ControlNetModel.load_config(str(cn_models.SD15_CONTROLNET_CONFIG))
    assert conf["cross_attention_dim"] == 768 and list(conf["block_out_channels"]) == [320, 640, 1280, 1280]
    assert list(conf["conditioning_embedding_out_channels"]) == [16, 32, 96, 256]


def test_missing_file_names_file_and_folder(tmp_path):
    info = cn_models.ControlNetInfo("gone", tmp_path / "gone.safetensors", "single-file", "gone [00000000]")
    with pytest.raises(FileNotFoundError, match=r"gone.safetensors.*models/ControlNet/"):
        cn_models.load_controlnet(info, torch.float32, torch.device("cpu"), None, "m")


def test_sdxl_controlnet_on_sd15_is_refused_naming_both():
    sd15 = type("C", (), {"cross_attention_dim": 768, "block_out_channels": (320, 640, 1280, 1280)})
    state = {"input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3), "label_emb.0.0.weight": torch.zeros(1, 1),
             "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(640, 2048)}
    facts = cn_models.single_file_facts(state)
    assert facts == {"cross_attention_dim": 2048, "channels": 320}
    with pytest.raises(ValueError, match=r"control_xl.*SDXL.*2048.*realistic.*SD1\.x.*768"):
        cn_models.check_pairing("control_xl", facts["cross_attention_dim"], facts["channels"], sd15, "realistic")
    cn_models.check_pairing("control_sd15", 768, 320, sd15, "realistic")  # the right pairing passes


def test_wrong_pairing_through_the_service(service, cn_models_dir, tmp_path):
    models, _ = cn_models_dir
    from diffusers import ControlNetModel

    big = ControlNetModel(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                          cross_attention_dim=768, layers_per_block=1, norm_num_groups=32, attention_head_dim=8,
                          conditioning_embedding_out_channels=(8, 16, 32, 32))
    big.save_pretrained(models / "ControlNet" / "wrong-dim")
    try:
        unit = ControlNetUnit(model="wrong-dim", image=sketch())
        with pytest.raises(ValueError, match=r"wrong-dim.*768.*tiny-sd.*32"):
            service.txt2img(Txt2ImgRequest(prompt="x", controlnet_units=(unit,), **FAST))
    finally:
        import shutil

        shutil.rmtree(models / "ControlNet" / "wrong-dim")


# ------------------------------------------------------------------ preprocessors


@pytest.fixture(scope="module")
def scene():
    """A drawn scene: a red square on white, 128 px, its exact filled mask."""
    img = Image.new("RGB", (128, 128), (255, 255, 255))
    ImageDraw.Draw(img).rectangle([32, 40, 80, 88], fill=(220, 30, 30))
    mask = np.zeros((128, 128), bool)
    mask[40:89, 32:81] = True
    return img, mask


def edge_band(mask: np.ndarray, width: int = 2) -> np.ndarray:
    import cv2

    m = mask.astype(np.uint8)
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return (cv2.dilate(m, k) - cv2.erode(m, k)).astype(bool)


def test_canny_lineart_xdog_mark_the_outline(scene):
    img, mask = scene
    band = edge_band(mask)
    for name in ("canny", "lineart_canny", "lineart_standard", "scribble_xdog"):
        out = arr(run_module(name, img, 128))[..., 0]
        on = out > 127
        assert on.sum() > 50, name
        assert on[band].mean() > 0.2, name  # along the square's border
        assert (on & ~edge_band(mask, 5)).sum() < 0.02 * on.size, name  # and hardly anywhere else
    assert arr(run_module("canny", img, 128, 100, 200)).shape == (128, 128, 3)


def test_drawing_threshold_invert(scene):
    img, mask = scene
    drawn = arr(run_module("scribble_drawing", img, 128))[..., 0] > 127
    assert (drawn == mask).mean() > 0.99  # the filled shape, white on black
    inv = arr(run_module("invert", img))
    assert np.array_equal(inv, 255 - arr(img))
    th = arr(run_module("threshold", img, 128, 200))[..., 0] > 127  # grey of red (220,30,30) is ~84
    assert (th == ~mask).mean() > 0.99


def test_tile_blur_shuffle(scene):
    img, _ = scene
    assert run_module("tile_resample", img, 128, 4).size == (32, 32)
    blurred = arr(run_module("blur_gaussian", img, 128, 5))
    assert blurred.std() < arr(img).std() and 60 < blurred[64, 32, 1] < 225  # the border softened
    a, b = arr(run_module("shuffle", img, 128)), arr(run_module("shuffle", img, 128))
    assert np.array_equal(a, b)  # seeded
    assert not np.array_equal(a, arr(img))
    colours = {tuple(c) for c in a.reshape(-1, 3)[::7]}
    assert all(min(abs(c[0] - 220) + abs(c[1] - 30), abs(c[0] - 255) + abs(c[1] - 255)) < 260 for c in colours)


def test_unavailable_modules_name_the_file(tmp_path):
    from webui.controlnet.depth import Annotators

    with pytest.raises(ValueError, match=r"scannet\.pt.*models/ControlNet/annotator/normal_bae/"):
        run_module("normal_bae", Image.new("RGB", (64, 64)))
    with pytest.raises(ValueError, match=r"depth_midas.*transformers depth model, e\.g\. Intel/dpt-hybrid-midas, in "
                                         r"models/ControlNet/annotators/depth_midas/.*config\.json.*looked in"):
        run_module("depth_midas", Image.new("RGB", (64, 64)), annotators=Annotators(tmp_path))
    with pytest.raises(ValueError, match="Unknown ControlNet module 'nope'"):
        get_module("nope")


def tiny_dpt(folder: Path, seed: int = 0):
    """A tiny random ViT DPT (the MiDaS architecture family) saved as a Hugging Face folder."""
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(seed)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, backbone_out_indices=[0, 1, 2, 3], num_attention_heads=2,
                       intermediate_size=37, image_size=64, patch_size=16, neck_hidden_sizes=[8, 16, 32, 32],
                       fusion_hidden_size=16, is_hybrid=False, head_in_index=-1)
    model = DPTForDepthEstimation(config).eval()
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({  # Intel/dpt-hybrid-midas's numbers
        "image_processor_type": "DPTImageProcessor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "size": {"height": 384, "width": 384}, "keep_aspect_ratio": False, "ensure_multiple_of": 1}))
    return model


def tiny_depth_anything(folder: Path, seed: int = 0):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, patch_size=14,
                            image_size=56, out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False)
    model = DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
        head_hidden_size=8, patch_size=14)).eval()
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "size": {"height": 70, "width": 70},
        "keep_aspect_ratio": True, "ensure_multiple_of": 14}))
    return model


def test_depth_modules_read_transformers_folders_offline(tmp_path, scene):
    from transformers import DPTImageProcessorPil

    from webui.api_controlnet import module_detail
    from webui.controlnet.depth import Annotators
    from webui.controlnet.preprocess import module_label

    annotators = Annotators(tmp_path)
    assert "needs" in module_detail(annotators)["depth_midas"] and "(needs" in module_label(get_module("depth_midas"), annotators)
    model = tiny_dpt(tmp_path / "ControlNet" / "annotators" / "depth_midas")
    tiny_depth_anything(tmp_path / "ControlNet" / "annotators" / "depth_anything_v2")
    detail = module_detail(annotators)
    assert "needs" not in detail["depth_midas"] and not detail["depth_midas"]["model_free"]
    assert module_label(get_module("normal_midas"), annotators) == "normal_midas"
    assert "needs" in detail["depth_anything"]  # its own folder is still empty

    img, _ = scene
    small = img.resize((64, 64))
    got = arr(run_module("depth_midas", small, 64, annotators=annotators))
    assert got.shape == (64, 64, 3) and (got[..., 0] == got[..., 2]).all()  # grey
    assert got.min() == 0 and got.max() == 255  # scaled to the full range
    # the same numbers as transformers' own DPT preprocessing and forward pass, scaled 0-255
    pixels = DPTImageProcessorPil(size={"height": 64, "width": 64}, keep_aspect_ratio=False, image_mean=[0.5] * 3,
                                  image_std=[0.5] * 3)(images=small, return_tensors="pt").pixel_values
    with torch.no_grad():
        ref = model(pixel_values=pixels).predicted_depth[0].numpy()
    ref = (ref - ref.min()) / (ref.max() - ref.min()) * 255
    assert np.abs(got[..., 0] - ref).max() <= 2
    wide = run_module("depth_midas", img.resize((128, 64)), 64, annotators=annotators)  # square DPT grid, map at 128x64
    assert wide.size == (128, 64)
    normal = arr(run_module("normal_midas", small, 64, annotators=annotators))
    assert normal.shape == (64, 64, 3) and (normal[..., 0] >= 127).all()  # z (first channel) always faces the viewer
    anything = run_module("depth_anything_v2", img.resize((96, 64)), annotators=annotators)  # its own 70 px short side
    assert anything.size == (96, 64) and arr(anything).max() == 255


def test_depth_midas_runs_a_dpt_hybrid_folder_at_its_own_size(tmp_path):
    """DPT-hybrid (Intel/dpt-hybrid-midas's architecture: a BiT backbone) takes only its image_size."""
    from transformers import BitConfig, DPTConfig, DPTForDepthEstimation

    from webui.controlnet.depth import Annotators

    torch.manual_seed(0)
    bit = BitConfig(global_padding="same", layer_type="bottleneck", depths=[1, 1, 1], hidden_sizes=[16, 32, 64],
                    out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True, num_groups=2)
    config = DPTConfig(is_hybrid=True, backbone_config=bit, backbone_featmap_shape=[1, 64, 4, 4], hidden_size=32,
                       num_hidden_layers=4, backbone_out_indices=[0, 1, 2, 3], num_attention_heads=2, intermediate_size=37,
                       image_size=64, patch_size=16, neck_hidden_sizes=[16, 32, 32, 32], fusion_hidden_size=16,
                       readout_type="project", neck_ignore_stages=[0, 1])
    DPTForDepthEstimation(config).eval().save_pretrained(tmp_path / "ControlNet" / "annotators" / "depth_midas")
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    out = run_module("depth_midas", img, 128, annotators=Annotators(tmp_path))  # the model still sees 64x64
    assert out.size == (192, 128) and arr(out).max() == 255 and arr(out).min() == 0


def test_normal_from_depth_follows_the_extension():
    from webui.controlnet.depth import normal_from_depth

    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    dome = np.clip(900 - (xx - 32) ** 2 - (yy - 32) ** 2, 0, None) / 9  # near (large) in the middle, 0 around
    n = normal_from_depth(dome, bg_threshold=0.1).astype(int)
    assert tuple(n[2, 2]) == (255, 127, 127)  # background: x, y zeroed -> (z, y, x) = (1, 0, 0)
    assert n[32, 20, 2] > 160 and n[32, 44, 2] < 95  # x (last channel): the depth rises to the right, then falls
    assert n[20, 32, 1] > 160 and n[44, 32, 1] < 95  # y (middle channel): downwards in image rows
    assert abs(n[32, 20, 1] - 127) <= 1 and abs(n[20, 32, 2] - 127) <= 1
    strict = normal_from_depth(dome, bg_threshold=0.9).astype(int)
    assert tuple(strict[32, 20]) == (255, 127, 127)  # a higher threshold counts more of the dome as background


def test_a_unit_with_a_missing_depth_model_is_refused_naming_the_folder(service):
    unit = ControlNetUnit(module="depth_anything", model="tiny-cn", image=sketch())
    with pytest.raises(ValueError, match=r"unit 0: module 'depth_anything' needs .*models/ControlNet/annotators/depth_anything/"):
        service.txt2img(Txt2ImgRequest(prompt="x", controlnet_units=(unit,), **FAST))


def test_openpose_drawing_convention():
    from webui.controlnet.openpose import COLOURS, LIMBS, draw_body

    kp = [(50, 20), (50, 40), (35, 40), (30, 60), (28, 80), (65, 40), (70, 60), (72, 80), (40, 80), (40, 105), (40, 125),
          (60, 80), (60, 105), (60, 125), (45, 16), (55, 16), (40, 18), (60, 18)]
    canvas = draw_body(np.zeros((140, 100, 3), np.uint8), kp)
    for i, (a, b) in enumerate(LIMBS):
        if i in (2, 5, 8, 11):  # long limbs: their midpoint shows the limb colour at 0.6 opacity
            mx, my = (kp[a][0] + kp[b][0]) // 2, (kp[a][1] + kp[b][1]) // 2
            got = canvas[my, mx].astype(int)
            assert np.abs(got - np.array(COLOURS[i]) * 0.6).max() < 40, (i, got)
    assert tuple(canvas[kp[4][1], kp[4][0]]) == COLOURS[4]  # keypoint dots in full colour
    assert canvas[2, 2].sum() == 0


def test_openpose_on_a_photo_finds_a_skeleton():
    from webui.controlnet.openpose import COLOURS

    from skimage.data import astronaut

    out = arr(run_module("openpose", Image.fromarray(astronaut()), 256))
    lit = out.reshape(-1, 3)[out.reshape(-1, 3).sum(1) > 0]
    assert len(lit) > 200  # limbs were drawn
    assert (out.sum(2) == 0).mean() > 0.8  # on black
    palette = np.array(COLOURS)
    full = lit[(np.abs(lit[:, None, :] - palette[None]).max(2) < 3).any(1)]
    assert len(full) > 20  # keypoint dots in the OpenPose colours


def test_resize_modes_and_pixel_perfect():
    wide = Image.new("RGB", (200, 100), "black")
    ImageDraw.Draw(wide).rectangle([0, 0, 49, 99], fill="white")  # white left quarter
    just = arr(resize_control(wide, 64, 64, "Just Resize"))
    assert just[:, :14].min() > 200 and just[:, 18:].max() < 60
    crop = arr(resize_control(wide, 64, 64, "Crop and Resize"))  # the centre 100x100: the white strip is cut off
    assert crop.max() < 60
    fill = arr(resize_control(wide, 64, 64, "Resize and Fill"))  # 64x32 in the middle, black padding
    assert fill[:14].max() < 60 and fill[20:44, :14].min() > 200
    assert pixel_perfect_resolution((200, 100), 64, 64, "Crop and Resize") == 64
    assert pixel_perfect_resolution((200, 100), 64, 64, "Resize and Fill") == 32


# ------------------------------------------------------------------ units and API parsing


def test_unit_from_webuiapi_json():
    import webuiapi

    u = webuiapi.ControlNetUnit(image=sketch(), module="canny", model="tiny-cn", weight=0.7, resize_mode="Just Resize",
                                guidance_start=0.1, guidance_end=0.6, control_mode=2, pixel_perfect=True)
    d = json.loads(json.dumps(u.to_dict()))  # exactly what goes over the wire
    unit = unit_from_api(d)
    assert (unit.module, unit.model, unit.weight, unit.resize_mode) == ("canny", "tiny-cn", 0.7, "Just Resize")
    assert (unit.guidance_start, unit.guidance_end, unit.control_mode) == (0.1, 0.6, "ControlNet is more important")
    assert unit.pixel_perfect and unit.image.size == (SIZE, SIZE)
    units = units_from_alwayson({"controlnet": {"args": [d, {"enabled": False}]}})
    assert len(units) == 2 and units[0].active and not units[1].active
    with pytest.raises(ValueError, match="weight"):
        unit_from_api({**d, "weight": 5})
    with pytest.raises(ValueError, match="control_mode"):
        unit_from_api({**d, "control_mode": "Loud"})
    with pytest.raises(ValueError, match="at most 3"):
        units_from_alwayson({"controlnet": {"args": [d] * 4}})


def test_infotext_as_the_extension_writes_it():
    u = ControlNetUnit(module="canny", model="tiny-cn [12345678]", weight=1.0, threshold_a=100, threshold_b=200)
    assert u.infotext() == (
        "Module: canny, Model: tiny-cn [12345678], Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512, "
        "Threshold A: 100, Threshold B: 200, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, "
        "Control Mode: Balanced"
    )


# ------------------------------------------------------------------ control modes and diffusers arguments


def test_control_modes(cn_models_dir):
    from webui.controlnet.run import ModeControlNet

    _, net = cn_models_dir
    x = torch.randn(2, 4, 8, 8)
    cond = torch.rand(2, 3, 64, 64)
    text = torch.randn(2, 77, 32)
    with torch.no_grad():
        ref_down, ref_mid = net(x, 10, encoder_hidden_states=text, controlnet_cond=cond, conditioning_scale=0.5, return_dict=False)
        bal = ModeControlNet(net, "Balanced")(x, 10, text, cond, conditioning_scale=0.5)
        soft = ModeControlNet(net, "My prompt is more important")(x, 10, text, cond, conditioning_scale=0.5)
        hard = ModeControlNet(net, "ControlNet is more important")(x, 10, text, cond, conditioning_scale=0.5)
    n = len(ref_down)
    assert all(torch.allclose(a, b) for a, b in zip(bal[0], ref_down)) and torch.allclose(bal[1], ref_mid)
    for i, (s, r) in enumerate(zip(soft[0], ref_down)):
        assert torch.allclose(s, r * 0.825 ** (n - i), atol=1e-6)
    assert torch.allclose(soft[1], ref_mid)  # the middle block keeps full weight
    assert hard[0][0][0].abs().max() == 0 and hard[1][0].abs().max() == 0  # nothing on the unconditional half
    assert torch.allclose(hard[0][0][1], ref_down[0][1] * 0.825**n, atol=1e-6)


def test_two_units_weights_and_guidance_reach_diffusers(service, monkeypatch):
    from diffusers import StableDiffusionControlNetPipeline
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    from webui.controlnet.run import ModeControlNet

    calls, flat = [], []
    original_call = StableDiffusionControlNetPipeline.__call__
    original_fwd = ModeControlNet.forward

    def spy_call(self, *args, **kwargs):
        calls.append((self, kwargs))
        return original_call(self, *args, **kwargs)

    def spy_fwd(self, *args, **kwargs):
        flat.append(float(kwargs["conditioning_scale"]))
        return original_fwd(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionControlNetPipeline, "__call__", spy_call)
    monkeypatch.setattr(ModeControlNet, "forward", spy_fwd)
    units = (
        ControlNetUnit(module="invert", model="tiny-cn", weight=0.8, image=sketch(), guidance_start=0.0, guidance_end=0.5),
        ControlNetUnit(enabled=False, model="tiny-cn-b", image=sketch()),
        ControlNetUnit(module="scribble_drawing", model="tiny-cn-b", weight=1.3, image=sketch(), guidance_start=0.5,
                       guidance_end=1.0, control_mode="My prompt is more important"),
    )
    r = service.txt2img(Txt2ImgRequest(prompt="a triangle", seed=1, controlnet_units=units, **FAST))
    (pipe, kwargs), = calls
    base = service._pipes(service.current_model(), None)
    assert pipe.unet is base.txt2img.unet and pipe.vae is base.txt2img.vae and pipe.text_encoder is base.txt2img.text_encoder
    assert kwargs["controlnet_conditioning_scale"] == [0.8, 1.3]
    assert kwargs["control_guidance_start"] == [0.0, 0.5] and kwargs["control_guidance_end"] == [0.5, 1.0]
    assert [n.mode for n in pipe.controlnet.nets] == ["Balanced", "My prompt is more important"]
    control = arr(kwargs["image"][0])
    on = control[..., 0] > 127  # inverted sketch: white strokes on black, where the triangle was drawn
    assert on[14:51, 4:33].sum() > 40 and on[:, 36:].sum() == 0 and on[:12].sum() == 0
    # the guidance ranges as diffusers applies them: unit 0 in the first half of the steps, unit 1 in the second
    scales = [flat[i : i + 2] for i in range(0, len(flat), 2)]  # per step: [unit 0, unit 1]
    assert isinstance(pipe.controlnet, MultiControlNetModel)
    assert scales[0] == [0.8, 0.0] and scales[-1] == [0.0, 1.3] and len(scales) == 4
    info = r.infotexts[0]
    assert 'ControlNet 0: "Module: invert (from white bg & black line), Model: tiny-cn [' in info
    assert 'ControlNet 1: "Module: scribble_drawing, Model: tiny-cn-b [' in info and "Control Mode: My prompt is more important" in info
    assert "Weight: 1.3" in info and "Guidance Start: 0.5" in info


def test_control_changes_the_image_and_img2img_inpaint_run(service):
    plain = service.txt2img(Txt2ImgRequest(prompt="x", seed=2, **FAST)).images[0]
    unit = ControlNetUnit(module="invert", model="control_tiny_scribble", image=sketch(), weight=2.0)
    ctrl = service.txt2img(Txt2ImgRequest(prompt="x", seed=2, controlnet_units=(unit,), **FAST)).images[0]
    assert np.abs(arr(plain) - arr(ctrl)).mean() > 1
    src = Image.new("RGB", (SIZE, SIZE), (30, 160, 60))
    no_image = ControlNetUnit(module="canny", model="tiny-cn")  # img2img: the unit falls back to the init image
    r = service.img2img(Img2ImgRequest(prompt="x", seed=2, image=src, controlnet_units=(no_image,), **FAST))
    assert r.images[0].size == (SIZE, SIZE) and "ControlNet 0:" in r.infotexts[0]
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rectangle([16, 16, 48, 48], fill=255)
    r = service.inpaint(InpaintRequest(prompt="x", seed=2, image=src, mask=mask, mask_blur=0, controlnet_units=(unit,), **FAST))
    assert np.abs(arr(r.images[0])[:8] - arr(src)[:8]).max() <= 1  # outside the mask kept
    with pytest.raises(ValueError, match="no input image"):
        service.txt2img(Txt2ImgRequest(prompt="x", controlnet_units=(ControlNetUnit(model="tiny-cn"),), **FAST))
    with pytest.raises(ValueError, match="Unknown ControlNet model 'nope'"):
        service.txt2img(Txt2ImgRequest(prompt="x", controlnet_units=(ControlNetUnit(model="nope", image=sketch()),), **FAST))


def test_hires_fix_runs_the_units_again_at_the_hires_size(service, monkeypatch):
    from diffusers import StableDiffusionControlNetImg2ImgPipeline

    from webui.controlnet.run import ModeControlNet
    from webui.diffusion.types import HiresFix

    conds, calls = [], []
    original_fwd = ModeControlNet.forward
    original_call = StableDiffusionControlNetImg2ImgPipeline.__call__

    def spy_fwd(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale=1.0, **kw):
        conds.append((tuple(controlnet_cond.shape[-2:]), tuple(sample.shape[-2:]), float(conditioning_scale)))
        return original_fwd(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, **kw)

    def spy_call(self, *args, **kwargs):
        calls.append((self, kwargs))
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(ModeControlNet, "forward", spy_fwd)
    monkeypatch.setattr(StableDiffusionControlNetImg2ImgPipeline, "__call__", spy_call)
    unit = ControlNetUnit(module="invert", model="tiny-cn", weight=0.7, image=sketch(), guidance_end=0.5)
    hires = HiresFix(hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=4, denoising_strength=1.0)
    r = service.txt2img(Txt2ImgRequest(prompt="a triangle", seed=1, controlnet_units=(unit,), hires=hires, **FAST))
    assert r.images[0].size == (2 * SIZE, 2 * SIZE)
    (pipe, kwargs), = calls  # the second pass went through the ControlNet img2img pipeline
    base = service._pipes(service.current_model(), None)
    assert pipe.unet is base.txt2img.unet and pipe.vae is base.txt2img.vae  # over the shared components
    hr_map = kwargs["control_image"][0]
    assert hr_map.size == (2 * SIZE, 2 * SIZE)
    on = arr(hr_map)[..., 0] > 127  # the inverted sketch, scaled 2x: strokes only where the triangle was drawn
    assert on[28:102, 8:66].sum() > 80 and on[:, 72:].sum() == 0
    assert kwargs["controlnet_conditioning_scale"] == [0.7] and kwargs["control_guidance_end"] == [0.5]
    first = [c for c in conds if c[0] == (SIZE, SIZE)]
    second = [c for c in conds if c[0] == (2 * SIZE, 2 * SIZE)]
    assert first and second and len(first) + len(second) == len(conds)
    assert all(c[1] == (2 * SIZE // 8, 2 * SIZE // 8) for c in second)  # the hires latents
    # each pass keeps the unit's guidance range: weight 0.7 in the first half of its steps, then 0
    for part in (first, second):
        assert part[0][2] == pytest.approx(0.7) and part[-1][2] == 0.0
    info = r.infotexts[0]
    assert 'ControlNet 0: "Module: invert (from white bg & black line), Model: tiny-cn [' in info
    assert "Hires upscale: 2" in info and "Hires upscaler: Latent" in info
    calls.clear()  # a pixel upscaler to another aspect: the map is fitted (Crop and Resize) to 96x128
    hires = HiresFix(hr_upscaler="Lanczos", hr_resize_x=96, hr_resize_y=128, hr_second_pass_steps=2, denoising_strength=0.6)
    r = service.txt2img(Txt2ImgRequest(prompt="a triangle", seed=1, controlnet_units=(unit,), hires=hires, **FAST))
    (_, kwargs), = calls
    assert r.images[0].size == (96, 128) and kwargs["control_image"][0].size == (96, 128)
    assert kwargs["image"][0].size == (96, 128)  # the upscaled first pass, in pixels


def test_hires_pass_forces_soft_injection_for_canny_units(service, cn_models_dir):
    from webui.controlnet.run import for_second_pass, prepare

    _, net = cn_models_dir
    components = service._pipes(service.current_model(), None).txt2img.components
    units = [ControlNetUnit(module="canny", model="a", image=sketch()), ControlNetUnit(module="invert", model="b", image=sketch()),
             ControlNetUnit(module="invert", model="c", image=sketch(), control_mode="ControlNet is more important")]
    call = prepare("txt2img", components, units, [net] * 3, ["a", "b", "c"], SIZE, SIZE, 7.0)
    hr = for_second_pass(call, components, 2 * SIZE, 2 * SIZE)
    assert [m.soft for m in call.controlnet.nets] == [False, False, True]
    assert [m.soft for m in hr.controlnet.nets] == [True, False, True]  # canny: soft weights in the hires pass
    assert [m.mode for m in hr.controlnet.nets] == [u.control_mode for u in units]
    assert all(m.net is net for m in hr.controlnet.nets) and hr.pipe.unet is call.pipe.unet  # nothing copied
    assert [im.size for im in hr.kwargs["control_image"]] == [(2 * SIZE, 2 * SIZE)] * 3


def test_only_masked_inpainting_crops_the_control_map_like_the_picture(service, monkeypatch):
    from diffusers import StableDiffusionControlNetInpaintPipeline

    from webui.diffusion.images import RESAMPLE

    calls = []
    original_call = StableDiffusionControlNetInpaintPipeline.__call__

    def spy_call(self, *args, **kwargs):
        calls.append(kwargs)
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionControlNetInpaintPipeline, "__call__", spy_call)
    rng = np.random.default_rng(0)
    src = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    control = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    mask = Image.new("L", (128, 128), 0)
    ImageDraw.Draw(mask).rectangle([40, 44, 71, 67], fill=255)  # 32x24, padded by 8 -> 48x40, widened to 48x48
    units = (ControlNetUnit(model="tiny-cn", image=control), ControlNetUnit(model="tiny-cn-b"))
    service.inpaint(InpaintRequest(prompt="x", seed=2, image=src, mask=mask, mask_blur=0, inpaint_full_res=True,
                                   inpaint_full_res_padding=8, controlnet_units=units, **FAST))
    kwargs, = calls
    box = (32, 32, 80, 80)
    own, fallback = (arr(m) for m in kwargs["control_image"])
    assert np.abs(own - arr(control.crop(box).resize((SIZE, SIZE), RESAMPLE))).max() <= 1  # the unit's image, cut
    assert np.abs(fallback - arr(src.crop(box).resize((SIZE, SIZE), RESAMPLE))).max() <= 1  # the cropped init image
    assert np.abs(own - arr(control.resize((SIZE, SIZE), RESAMPLE))).mean() > 20  # not the whole map shrunk


def tiny_adapter(folder: Path, adapter_type: str = "full_adapter", seed: int = 0):
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    adapter = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=8, adapter_type=adapter_type)
    adapter.save_pretrained(folder)
    return adapter


def test_t2i_adapter_units_feed_the_unet_inside_their_guidance_range(service, cn_models_dir, monkeypatch):
    from diffusers import UNet2DConditionModel

    models, _ = cn_models_dir
    adapter = tiny_adapter(models / "ControlNet" / "tiny-adapter")
    try:
        found = {m.name: m for m in service.controlnet.list_models()}
        assert found["tiny-adapter"].kind == "t2i-adapter" and found["tiny-cn"].kind == "diffusers"
        seen = []
        original = UNet2DConditionModel.forward

        def spy(self, sample, *args, **kwargs):
            intra = kwargs.get("down_intrablock_additional_residuals")
            seen.append(([t.clone() for t in intra] if intra is not None else None,
                         kwargs.get("down_block_additional_residuals") is not None))
            return original(self, sample, *args, **kwargs)

        monkeypatch.setattr(UNet2DConditionModel, "forward", spy)
        unit = ControlNetUnit(module="invert", model="tiny-adapter", weight=0.5, image=sketch(), guidance_end=0.5)
        plain = service.txt2img(Txt2ImgRequest(prompt="x", seed=2, **FAST))
        seen.clear()
        r = service.txt2img(Txt2ImgRequest(prompt="x", seed=2, controlnet_units=(unit,), **FAST))
        assert [s[0] is not None for s in seen] == [True, True, False, False]  # steps 1-2 of 4: guidance_end 0.5
        assert not any(s[1] for s in seen)  # an adapter alone adds no ControlNet residuals
        control = torch.from_numpy(255 - arr(sketch())).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            want = [f * 0.5 for f in adapter(control)]
        got = seen[0][0]
        assert [tuple(t.shape) for t in got] == [(2, 32, 8, 8), (2, 64, 4, 4)]  # both CFG halves, the UNet's blocks
        assert all(torch.allclose(g[1:], w, atol=1e-5) and torch.allclose(g[:1], w, atol=1e-5) for g, w in zip(got, want))
        assert np.abs(arr(plain.images[0]) - arr(r.images[0])).mean() > 0.5
        assert 'ControlNet 0: "Module: invert (from white bg & black line), Model: tiny-adapter [' in r.infotexts[0]

        # img2img: an adapter beside a ControlNet; "ControlNet is more important" keeps the adapter off the uncond half
        seen.clear()
        both = (ControlNetUnit(module="canny", model="tiny-cn"),
                ControlNetUnit(module="invert", model="tiny-adapter", image=sketch(), control_mode="ControlNet is more important"))
        src = Image.new("RGB", (SIZE, SIZE), (30, 160, 60))
        r = service.img2img(Img2ImgRequest(prompt="x", seed=2, image=src, denoising_strength=1.0, controlnet_units=both, **FAST))
        assert r.images[0].size == (SIZE, SIZE) and len(seen) == 4
        assert all(s[0] is not None and s[1] for s in seen)  # both kinds of control reach the UNet
        intra = seen[0][0]
        assert all(t[0].abs().max() == 0 and t[1].abs().max() > 0 for t in intra)
        assert torch.allclose(intra[1][1], want[1] * 2, atol=1e-5)
        assert torch.allclose(intra[0][1], want[0] * 2 * 0.825, atol=1e-5)  # soft injection, the deepest feature at 1
    finally:
        import shutil

        shutil.rmtree(models / "ControlNet" / "tiny-adapter")


def test_original_layout_adapter_file_loads_as_a_t2i_adapter(tmp_path):
    from diffusers import T2IAdapter

    torch.manual_seed(3)
    ref = T2IAdapter(in_channels=1, channels=[32, 64], num_res_blocks=2, downscale_factor=8)  # a grey (sketch) adapter
    sd = ref.state_dict()
    original = {"conv_in.weight": sd["adapter.conv_in.weight"], "conv_in.bias": sd["adapter.conv_in.bias"]}
    for level in range(2):  # TencentARC's flat body list: body.<level * 2 + j>
        for j in range(2):
            for part in ("block1", "block2"):
                for p in ("weight", "bias"):
                    original[f"body.{level * 2 + j}.{part}.{p}"] = sd[f"adapter.body.{level}.resnets.{j}.{part}.{p}"]
    for p in ("weight", "bias"):
        original[f"body.2.in_conv.{p}"] = sd[f"adapter.body.1.in_conv.{p}"]
    (tmp_path / "ControlNet").mkdir()
    torch.save(original, tmp_path / "ControlNet" / "t2iadapter_tiny_sd14v1.pth")
    info, = cn_models.scan_controlnets(tmp_path)
    assert info.kind == "single-file"
    unet_config = type("C", (), {"cross_attention_dim": 32, "block_out_channels": (32, 64)})
    model = cn_models.load_controlnet(info, torch.float32, torch.device("cpu"), unet_config, "tiny-sd")
    assert isinstance(model, T2IAdapter) and model.config.in_channels == 1 and list(model.config.channels) == [32, 64]
    got = model.state_dict()
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    sd15 = type("C", (), {"cross_attention_dim": 768, "block_out_channels": (320, 640, 1280, 1280)})
    with pytest.raises(ValueError, match=r"t2iadapter_tiny_sd14v1.*channels \[32, 64\]"):
        cn_models.load_controlnet(info, torch.float32, torch.device("cpu"), sd15, "realistic")


def test_sdxl_adapter_on_sd15_is_refused_naming_both(service, cn_models_dir):
    models, _ = cn_models_dir
    sd15 = type("C", (), {"cross_attention_dim": 768, "block_out_channels": (320, 640, 1280, 1280)})
    with pytest.raises(ValueError, match=r"t2i_xl.*full_adapter_xl.*SDXL.*realistic.*SD1\.x"):
        cn_models.check_adapter_pairing("t2i_xl", {"adapter_type": "full_adapter_xl", "channels": [320, 640, 1280]}, sd15, "realistic")
    with pytest.raises(ValueError, match=r"t2i_small.*\[32, 64\].*\[320, 640, 1280, 1280\]"):
        cn_models.check_adapter_pairing("t2i_small", {"adapter_type": "full_adapter", "channels": [32, 64]}, sd15, "realistic")
    cn_models.check_adapter_pairing("t2i_sd15", {"adapter_type": "full_adapter", "channels": [320, 640, 1280, 1280]}, sd15, "m")
    tiny_adapter(models / "ControlNet" / "tiny-adapter-xl", adapter_type="full_adapter_xl")
    try:
        unit = ControlNetUnit(model="tiny-adapter-xl", image=sketch())
        with pytest.raises(ValueError, match=r"tiny-adapter-xl.*SDXL.*tiny-sd"):
            service.txt2img(Txt2ImgRequest(prompt="x", controlnet_units=(unit,), **FAST))
    finally:
        import shutil

        shutil.rmtree(models / "ControlNet" / "tiny-adapter-xl")


# ------------------------------------------------------------------ the embedded ControlNet


def test_embedded_controlnet_puts_the_shape_where_the_sketch_is():
    """Cheap: two held-out sketches (a filled and an outlined shape at opposite sides), 12 steps at 128 px."""
    from webui.diffusion.service import ImageService
    from webui.train.evaluate import analyse

    repo = Path(__file__).resolve().parent.parent
    if not (repo / "models/ControlNet/demo-shapes-sketch/config.json").is_file():
        pytest.fail("the embedded ControlNet models/ControlNet/demo-shapes-sketch is missing")
    service = ImageService(AppConfig(paths=PathsConfig(models_dir=repo / "models", outputs_dir=repo / "outputs")))
    for box, outline, want in (((8, 34, 56, 90), False, "left"), ((72, 30, 120, 86), True, "right")):
        img = Image.new("RGB", (128, 128), "white")
        pts = [((box[0] + box[2]) / 2, box[1]), (box[2], box[3]), (box[0], box[3])]
        if outline:
            ImageDraw.Draw(img).polygon(pts, outline="black", width=4)
        else:
            ImageDraw.Draw(img).polygon(pts, fill="black")
        unit = ControlNetUnit(module="scribble_drawing", model="demo-shapes-sketch", image=img)
        r = service.txt2img(Txt2ImgRequest(prompt="a blue triangle, yellow background", seed=3, steps=12, cfg_scale=5.0,
                                           width=128, height=128, save=False, sampler="DPM++ 2M", model="demo-shapes",
                                           controlnet_units=(unit,)))
        a = analyse(r.images[0])
        assert (a.position, a.colour, a.background) == (want, "blue", "yellow"), a


# ------------------------------------------------------------------ the extension's API, from webuiapi


def test_webuiapi_controlnet_round_trip(live_server):
    import webuiapi

    from tests.app_fixtures import LOGIN

    url, services = live_server
    models = Path(services.config.paths.models_dir)
    net, _ = tiny_controlnet(models / "Stable-diffusion" / "tiny-sd")
    (models / "ControlNet").mkdir(exist_ok=True)
    net.save_pretrained(models / "ControlNet" / "api-cn")
    host, port = url.rsplit(":", 1)
    api = webuiapi.WebUIApi(host=host.split("//")[1], port=int(port))
    api.set_auth(*LOGIN)
    assert api.controlnet_version() == 3
    titles = api.controlnet_model_list()
    assert any(t.startswith("api-cn [") for t in titles)
    assert {"none", "canny", "scribble_xdog", "openpose", "invert (from white bg & black line)"} <= set(api.controlnet_module_list())
    detected = api.controlnet_detect([sketch()], module="invert (from white bg & black line)")
    inverted = arr(detected.images[0])  # webuiapi decodes the returned base64 PNGs
    assert np.array_equal(inverted, 255 - arr(sketch()))
    unit = webuiapi.ControlNetUnit(image=sketch(), module="invert (from white bg & black line)", model=titles[0],
                                   weight=0.9, guidance_end=0.8, control_mode=1)
    # alwayson_scripts={} explicitly: webuiapi's default is one shared dict that it writes the units into,
    # so later calls in this process (other test modules) would keep sending this unit
    r = api.txt2img(prompt="a triangle", seed=4, steps=3, width=SIZE, height=SIZE, cfg_scale=5, sampler_name="Euler",
                    controlnet_units=[unit], alwayson_scripts={})
    info = r.info["infotexts"][0]
    assert f'ControlNet 0: "Module: invert (from white bg & black line), Model: {titles[0]}, Weight: 0.9' in info
    assert "Guidance End: 0.8" in info and "Control Mode: My prompt is more important" in info
    r = api.img2img(images=[Image.new("RGB", (SIZE, SIZE), "gray")], prompt="x", seed=4, steps=3, width=SIZE, height=SIZE,
                    denoising_strength=0.6, controlnet_units=[webuiapi.ControlNetUnit(module="canny", model=titles[0])],
                    alwayson_scripts={})
    assert 'ControlNet 0: "Module: canny' in r.info["infotexts"][0]
    import requests

    bad = requests.post(f"{url}/sdapi/v1/txt2img", auth=LOGIN, timeout=60, json={
        "prompt": "x", "steps": 2, "width": SIZE, "height": SIZE,
        "alwayson_scripts": {"controlnet": {"args": [{**unit.to_dict(), "image": "", "model": "missing-cn"}]}}})
    assert bad.status_code == 422 and "missing-cn" in bad.json()["detail"]
