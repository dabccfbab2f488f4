"""ImageService on a tiny seeded SD model: shapes, seeds, img2img, inpaint, samplers, interrupt, LoRA, offline."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_engine_helpers import SIZE, make_models, tiny_dir
from webui.config import LimitsConfig
from webui.diffusion.infotext import parse_infotext, read_png_parameters
from webui.diffusion.samplers import SAMPLER_NAMES
from webui.diffusion.service import ImageService
from webui.diffusion.types import Img2ImgRequest, InpaintRequest, Txt2ImgRequest
from webui.jobs import JobControl

FAST = dict(width=SIZE, height=SIZE, steps=2, save=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return ImageService(make_models(tmp_path_factory.mktemp("svc")))


def arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB")).astype(int)


def square_mask() -> Image.Image:
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    return mask


def test_txt2img_shapes_seeds_and_saving(service):
    r = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=10, batch_size=2, batch_count=2, **{**FAST, "save": True}))
    assert [im.size for im in r.images] == [(SIZE, SIZE)] * 4
    assert r.seeds == [10, 11, 12, 13] and not r.interrupted
    assert len(r.paths) == 4 and r.paths[0].parent.parent.name == "txt2img-images"
    assert r.paths[0].name == "00000-10.png" and r.paths[3].name == "00003-13.png"
    with Image.open(r.paths[1]) as saved:
        info = parse_infotext(read_png_parameters(saved))
    assert info["Seed"] == "11" and info["Model"] == "demo-shapes" and len(info["Model hash"]) == 10
    assert service.current_model().name == "demo-shapes"
    assert service._manager.load_count == 1


def test_fixed_seed_is_deterministic(service):
    a = service.txt2img(Txt2ImgRequest(prompt="a blue square", seed=7, **FAST))
    b = service.txt2img(Txt2ImgRequest(prompt="a blue square", seed=7, **FAST))
    c = service.txt2img(Txt2ImgRequest(prompt="a blue square", seed=8, **FAST))
    assert np.array_equal(arr(a.images[0]), arr(b.images[0]))
    assert not np.array_equal(arr(a.images[0]), arr(c.images[0]))
    rnd = service.txt2img(Txt2ImgRequest(prompt="x", seed=-1, **FAST))
    assert 0 <= rnd.seeds[0] < 2**32


def test_img2img_shape_and_strength_zero(service):
    src = Image.fromarray(np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    r = service.img2img(Img2ImgRequest(prompt="x", seed=1, image=src, denoising_strength=0.6, **FAST))
    assert r.images[0].size == (SIZE, SIZE)
    assert "Denoising strength: 0.6" in r.infotexts[0]
    same = service.img2img(Img2ImgRequest(prompt="x", seed=1, image=src, denoising_strength=0.0, **FAST))
    assert np.array_equal(arr(same.images[0]), arr(src))
    wide = service.img2img(Img2ImgRequest(prompt="x", image=src.resize((96, 48)), resize_mode=1, denoising_strength=0.5, **FAST))
    assert wide.images[0].size == (SIZE, SIZE)


@pytest.mark.parametrize("full_res,fill", [(False, "original"), (True, "fill"), (False, "latent noise")])
def test_inpaint_keeps_unmasked_pixels_4ch(service, full_res, fill):
    src = Image.new("RGB", (SIZE, SIZE), (30, 160, 60))
    r = service.inpaint(
        InpaintRequest(prompt="a red circle", seed=3, image=src, mask=square_mask(), mask_blur=2, inpaint_full_res=full_res,
                       inpaint_full_res_padding=4, inpainting_fill=fill, denoising_strength=1.0, **FAST)
    )
    out, orig = arr(r.images[0]), arr(src)
    assert r.images[0].size == (SIZE, SIZE)
    assert np.abs(out[:10] - orig[:10]).max() <= 1 and np.abs(out[:, 54:] - orig[:, 54:]).max() <= 1
    assert np.abs(out[24:40, 24:40] - orig[24:40, 24:40]).mean() > 5  # the masked square was repainted
    if full_res:
        assert "Inpaint area: Only masked" in r.infotexts[0]


def test_inpaint_invert_mask(service):
    src = Image.new("RGB", (SIZE, SIZE), (30, 160, 60))
    r = service.inpaint(InpaintRequest(prompt="x", seed=3, image=src, mask=square_mask(), invert_mask=True, mask_blur=0, **FAST))
    out, orig = arr(r.images[0]), arr(src)
    assert np.abs(out[20:44, 20:44] - orig[20:44, 20:44]).max() <= 1  # the (inverted) centre is kept


def test_every_sampler_runs_two_steps(service):
    for name in SAMPLER_NAMES:
        r = service.txt2img(Txt2ImgRequest(prompt="x", sampler=name, seed=1, cfg_scale=1.0, **FAST))
        assert r.images[0].size == (SIZE, SIZE), name
    assert "Schedule type: Karras" in service.txt2img(Txt2ImgRequest(prompt="x", sampler="DPM++ 2M Karras", **FAST)).infotexts[0]


class RecordingControl(JobControl):
    """A job control that records reports and cancels (or skips) at a chosen (batch, step)."""

    def __init__(self, cancel_at=None, skip_at=None):
        self.reports, self.outputs = [], []
        self.cancel_at, self.skip_at = cancel_at, skip_at
        self._cancelled = self._skip = False

    def report(self, step, steps, *, batch=0, batches=1, preview=None, text=None):
        self.reports.append((batch, step, steps, batches, preview))
        if (batch, step) == self.cancel_at:
            self._cancelled = True
        if (batch, step) == self.skip_at:
            self._skip = True

    def cancelled(self):
        return self._cancelled

    def take_skip(self):
        skip, self._skip = self._skip, False
        return skip

    def preview_due(self):
        return True

    def add_output(self, path, infotext=""):
        self.outputs.append((path, path.exists()))


def test_cancel_stops_within_one_step(service):
    control = RecordingControl(cancel_at=(0, 1))
    r = service.txt2img(Txt2ImgRequest(prompt="x", steps=6, batch_count=3, width=SIZE, height=SIZE, save=False),
                        control)
    assert r.interrupted and len(r.images) == 1
    steps = [(b, s) for b, s, *_ in control.reports if s > 0]
    assert steps == [(0, 1)]  # no second step was sampled
    # the next job runs normally
    assert not service.txt2img(Txt2ImgRequest(prompt="x", **FAST)).interrupted


def test_skip_ends_the_current_batch_only(service):
    control = RecordingControl(skip_at=(0, 1))
    r = service.txt2img(Txt2ImgRequest(prompt="x", steps=3, batch_count=2, width=SIZE, height=SIZE, save=False),
                        control)
    assert not r.interrupted and len(r.images) == 2
    assert [s for b, s, *_ in control.reports if b == 1 and s > 0] == [1, 2, 3]


def test_progress_reports_and_preview(service):
    control = RecordingControl()
    service.txt2img(Txt2ImgRequest(prompt="x", steps=3, batch_count=2, width=SIZE, height=SIZE, save=False), control)
    steps = [(b, s, n, bs) for b, s, n, bs, _ in control.reports if s > 0]
    assert steps == [(0, 1, 3, 2), (0, 2, 3, 2), (0, 3, 3, 2), (1, 1, 3, 2), (1, 2, 3, 2), (1, 3, 3, 2)]
    previews = [p for *_, p in control.reports if p is not None]
    assert previews and all(isinstance(p, Image.Image) for p in previews)


def test_live_preview_is_a_grid_of_the_whole_batch(service):
    """Batch of 3: every step's preview is a 2x2 grid (A1111's shape), 3 different tiles and an empty 4th;
    a tiny VAE decodes the latents at half size (cheap), the finished batch comes as the same grid."""
    control = RecordingControl()
    r = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=5, batch_size=3, width=SIZE, height=SIZE,
                                       steps=2, save=False), control)
    live = [p for _, s, *_, p in control.reports if p is not None and s > 0]
    assert live
    grid = arr(live[-1])
    tile = SIZE // 2
    assert grid.shape == (2 * tile, 2 * tile, 3)
    tiles = [grid[y:y + tile, x:x + tile] for y in (0, tile) for x in (0, tile)]
    assert all(t.std() > 1 for t in tiles[:3]) and tiles[3].max() == 0  # 3 images, then the empty cell
    assert np.abs(tiles[0] - tiles[1]).mean() > 1  # different seeds: different tiles
    final = arr(control.reports[-1][-1])
    assert final.shape == (2 * SIZE, 2 * SIZE, 3)
    assert np.array_equal(final[:SIZE, SIZE:], arr(r.images[1]))


def test_outputs_are_announced_before_they_are_written(service):
    control = RecordingControl()
    r = service.txt2img(Txt2ImgRequest(prompt="x", seed=3, batch_count=2, **{**FAST, "save": True}), control)
    assert [p for p, _ in control.outputs] == r.paths and len(r.paths) == 2
    assert not any(existed for _, existed in control.outputs)  # announced first, then written
    assert all(p.is_file() and not p.with_name(f".{p.name}.part").exists() for p in r.paths)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(width=65), "multiple of 8"),
        (dict(width=32), "width"),
        (dict(height=4096), "height"),
        (dict(steps=0), "steps"),
        (dict(cfg_scale=0.5), "cfg_scale"),
        (dict(batch_size=99), "batch_size"),
        (dict(sampler="Nope"), "Nope"),
        (dict(model="missing-model"), "missing-model"),
        (dict(vae="nope.safetensors"), "models/VAE"),
        (dict(prompt="<lora:nope:1>"), "models/Lora"),
    ],
)
def test_invalid_txt2img_inputs(service, kwargs, match):
    req = Txt2ImgRequest(**{**FAST, "prompt": "x", **kwargs})
    with pytest.raises(ValueError, match=match):
        service.txt2img(req)


def test_invalid_image_inputs(service):
    src = Image.new("RGB", (SIZE, SIZE))
    with pytest.raises(ValueError, match="image"):
        service.img2img(Img2ImgRequest(prompt="x", image=None, **FAST))
    with pytest.raises(ValueError, match="denoising_strength"):
        service.img2img(Img2ImgRequest(prompt="x", image=src, denoising_strength=1.5, **FAST))
    with pytest.raises(ValueError, match="64x64.*32x32|32x32.*64x64"):
        service.inpaint(InpaintRequest(prompt="x", image=src, mask=Image.new("L", (32, 32)), **FAST))
    with pytest.raises(ValueError, match="empty"):
        service.inpaint(InpaintRequest(prompt="x", image=src, mask=Image.new("L", (SIZE, SIZE)), **FAST))
    with pytest.raises(ValueError, match="inpainting_fill"):
        service.inpaint(InpaintRequest(prompt="x", image=src, mask=square_mask(), inpainting_fill="bogus", **FAST))
    small = ImageService(service.config.__class__(paths=service.config.paths, limits=LimitsConfig(max_image_pixels=1000)))
    with pytest.raises(ValueError, match="pixels"):
        small.img2img(Img2ImgRequest(prompt="x", image=src, **FAST))
    with pytest.raises(ValueError, match="Unknown model"):
        service.load_model("nope [0123456789]")


def test_lora_tag_changes_output(service):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(str(tiny_dir() / "unet"), local_files_only=True)
    torch.manual_seed(0)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(
        service.config.paths.lora_dir, unet_lora_layers=layers, weight_name="tiny-style.safetensors", safe_serialization=True
    )
    assert service.list_loras() == ["tiny-style"]
    plain = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=5, **FAST))
    styled = service.txt2img(Txt2ImgRequest(prompt="a red circle <lora:tiny-style:1.0>", seed=5, **FAST))
    again = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=5, **FAST))
    assert not np.array_equal(arr(plain.images[0]), arr(styled.images[0]))
    assert np.array_equal(arr(plain.images[0]), arr(again.images[0]))  # LoRA switched off again
    assert 'Lora hashes: "tiny-style: ' in styled.infotexts[0]


def test_generation_is_offline(tmp_path, monkeypatch):
    """Load + generate with every socket refused."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    svc = ImageService(make_models(tmp_path))
    r = svc.txt2img(Txt2ImgRequest(prompt="a red circle", seed=1, **FAST))
    assert r.images[0].size == (SIZE, SIZE)
