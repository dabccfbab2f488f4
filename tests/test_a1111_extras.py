"""A1111's "Extra" seed options: variation seed + strength (slerp of two noises), seed resize; infotext."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_engine_helpers import SIZE, make_models
from webui.diffusion.infotext import parse_infotext
from webui.diffusion.noise import VariationSpec, image_noise, slerp
from webui.diffusion.service import ImageService
from webui.diffusion.types import Img2ImgRequest, InpaintRequest, Txt2ImgRequest

FAST = dict(width=SIZE, height=SIZE, steps=2, save=False, sampler="Euler")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return ImageService(make_models(tmp_path_factory.mktemp("var")))


def arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB")).astype(int)


def test_slerp_ends_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 8, 8, generator=g), torch.randn(4, 8, 8, generator=g)
    assert torch.allclose(slerp(0.0, a, b), a, atol=1e-5) and torch.allclose(slerp(1.0, a, b), b, atol=1e-5)
    mid = slerp(0.5, a, b)
    # spherical: the midpoint keeps the noise's norm; a plain average would shrink it by about 1/sqrt(2)
    lo, hi = sorted([a.norm(), b.norm()])
    assert 0.99 * lo <= mid.norm() <= 1.01 * hi and (0.5 * (a + b)).norm() < 0.8 * lo


def test_noise_matches_diffusers_draw_and_resize_keeps_centre():
    plain = image_noise(5, 9, VariationSpec(), 64, 64)
    assert torch.equal(plain, torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(5))[0])
    resized = image_noise(5, 9, VariationSpec(seed_resize_from_w=32, seed_resize_from_h=32), 64, 64)
    small = torch.randn((1, 4, 4, 4), generator=torch.Generator("cpu").manual_seed(5))[0]
    assert torch.equal(resized[:, 2:6, 2:6], small)  # the 32x32 seed's noise sits in the centre
    assert torch.equal(resized[:, :2], plain[:, :2])  # the border is the full-size seed's noise


def test_variation_strength_in_txt2img_and_img2img(service):
    base = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=1, **FAST))
    other = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=2, **FAST))
    full = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=1, subseed=2, subseed_strength=1.0, **FAST))
    half = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=1, subseed=2, subseed_strength=0.5, **FAST))
    # strength 1 = the variation seed's own noise (ancestral noise aside: Euler is deterministic)
    assert np.abs(arr(full.images[0]) - arr(other.images[0])).max() <= 2
    d_base, d_other = np.abs(arr(half.images[0]) - arr(base.images[0])).mean(), np.abs(arr(half.images[0]) - arr(other.images[0])).mean()
    assert d_base > 1 and d_other > 1
    info = parse_infotext(half.infotexts[0])
    assert info["Variation seed"] == "2" and info["Variation seed strength"] == "0.5"
    assert half.subseeds == [2] and "Variation seed" not in base.infotexts[0]

    # img2img / inpaint: the VAE encoder also samples from the seed's generator, so compare runs that share
    # the seed: strength 0 is the plain image, strength 1 changes with the variation seed
    src = Image.fromarray(np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    for cls, extra in ((Img2ImgRequest, {}), (InpaintRequest, {"mask": mask})):
        def run(**kw):
            req = cls(prompt="x", seed=1, image=src, denoising_strength=0.8, **extra, **FAST, **kw)
            return arr((service.img2img if cls is Img2ImgRequest else service.inpaint)(req).images[0])

        plain, zero = run(), run(subseed=2, subseed_strength=0.0)
        two, three = run(subseed=2, subseed_strength=1.0), run(subseed=3, subseed_strength=1.0)
        assert np.array_equal(plain, zero)
        assert np.abs(two - three).mean() > 1 and np.abs(two - plain).mean() > 1, cls.__name__


def test_seed_resize_and_bad_values(service):
    r = service.txt2img(Txt2ImgRequest(prompt="x", seed=1, seed_resize_from_w=32, seed_resize_from_h=32, **FAST))
    assert "Seed resize from: 32x32" in r.infotexts[0]
    for bad in (dict(subseed_strength=1.5), dict(subseed=-2), dict(seed_resize_from_w=33, seed_resize_from_h=32)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            service.txt2img(Txt2ImgRequest(prompt="x", **{**FAST, **bad}))


def test_img2img_latent_upscale_resize_mode(service):
    """Resize mode 3: the 32x32 input is encoded at its size and its latents resized to 64x64."""
    small = Image.new("RGB", (32, 32), (200, 30, 30))
    small.paste((30, 30, 200), (16, 0, 32, 32))
    r = service.img2img(Img2ImgRequest(prompt="x", seed=1, image=small, resize_mode=3, denoising_strength=0.3, **FAST))
    pixel = service.img2img(Img2ImgRequest(prompt="x", seed=1, image=small, resize_mode=0, denoising_strength=0.3, **FAST))
    assert r.images[0].size == (SIZE, SIZE) and pixel.images[0].size == (SIZE, SIZE)
    assert not np.array_equal(arr(r.images[0]), arr(pixel.images[0]))  # a different path than pixel resizing
    zero = service.img2img(Img2ImgRequest(prompt="x", image=small, resize_mode=3, denoising_strength=0.0, **FAST))
    assert zero.images[0].size == (SIZE, SIZE)
    with pytest.raises(ValueError, match="resize_mode"):
        service.img2img(Img2ImgRequest(prompt="x", image=small, resize_mode=4, **FAST))


def test_styles_csv_apply_and_save(tmp_path):
    from webui.styles import PromptStyle, StyleStore, merge_prompt

    assert merge_prompt("masterpiece, {prompt}, 8k", "a cat") == "masterpiece, a cat, 8k"
    assert merge_prompt("oil painting", "a cat") == "a cat, oil painting"
    assert merge_prompt("oil painting", "") == "oil painting"
    f = tmp_path / "styles.csv"
    f.write_text('name,prompt,negative_prompt\n"Frame","best, {prompt}, framed","blurry"\nBlue,blue background,\n',
                 encoding="utf-8")
    store = StyleStore(f)
    assert store.names() == ["Frame", "Blue"]
    assert store.apply(["Frame", "Blue"], "a cat", "ugly") == ("best, a cat, framed, blue background", "ugly, blurry")
    with pytest.raises(ValueError, match="Nope"):
        store.apply(["Nope"], "a", "")
    store.save(PromptStyle("Mine", "my, {prompt}", "bad, hands"))
    again = StyleStore(f)
    assert again.names() == ["Frame", "Blue", "Mine"] and again.get("Mine").negative_prompt == "bad, hands"


def test_service_applies_styles(service, tmp_path):
    from dataclasses import replace

    from webui.styles import PromptStyle, StyleStore

    service.styles = StyleStore(tmp_path / "styles.csv")
    service.styles.save(PromptStyle("Red", "a red circle, {prompt}", "blurry"))
    r = service.txt2img(Txt2ImgRequest(prompt="on the left", styles=("Red",), seed=3, **FAST))
    info = parse_infotext(r.infotexts[0])
    assert info["Prompt"] == "a red circle, on the left" and info["Negative prompt"] == "blurry"
    direct = service.txt2img(Txt2ImgRequest(prompt="a red circle, on the left", negative_prompt="blurry", seed=3, **FAST))
    assert np.array_equal(arr(r.images[0]), arr(direct.images[0]))
    with pytest.raises(ValueError, match="unknown style"):
        service.txt2img(replace(Txt2ImgRequest(prompt="x", **FAST), styles=("Missing",)))


def test_xyz_values_and_axes():
    from webui.diffusion.xyz import XYZArgs, axes_for, axis_values, expand_numbers, resolve_axis

    assert expand_numbers("1-5", int) == [1, 2, 3, 4, 5] and expand_numbers("1-9 (+3)", int) == [1, 4, 7]
    assert expand_numbers("0-10 [3]", int) == [0, 5, 10] and expand_numbers("-1", int) == [-1]
    assert expand_numbers("0.25-0.75 (+0.25)", float) == [0.25, 0.5, 0.75]
    # A1111's indices: txt2img 4 = Steps, 6 = CFG Scale, 9 = Sampler; img2img 9 = Sampler, 22 = Denoising
    assert [axes_for("txt2img")[i].label for i in (1, 4, 6, 7, 9, 11, 23)] == [
        "Seed", "Steps", "CFG Scale", "Prompt S/R", "Sampler", "Checkpoint name", "Denoising"]
    assert [axes_for("img2img")[i].label for i in (5, 9, 10, 22)] == ["CFG Scale", "Sampler", "Checkpoint name",
                                                                        "Denoising"]
    assert resolve_axis("txt2img", "cfg scale").field == "cfg_scale"
    with pytest.raises(ValueError, match="not supported"):
        resolve_axis("txt2img", 13)  # Sigma Churn (a k-diffusion option)
    assert axis_values(resolve_axis("txt2img", 9), "", ["Euler", "DDIM"], False, False) == ["Euler", "DDIM"]
    args = XYZArgs.from_script_args([4, "1, 2", [], 0, "", [], 0, "", [], True, False, False, False, 0, False, False])
    assert args.x_type == 4 and args.x_values == "1, 2" and args.draw_legend


def test_xyz_plot_grid(service, tmp_path):
    from webui.diffusion.xyz import XYZArgs, run_xyz

    base = Txt2ImgRequest(prompt="a red circle", seed=4, **FAST)
    args = XYZArgs(x_type="Steps", x_values="1-2", y_type="Prompt S/R", y_values="red, blue, green")
    out = run_xyz("txt2img", base, args, service.txt2img, save_grid=lambda im, info: tmp_path / "g.png")
    assert len(out.cells) == 6 and [c.images[0].size for c in out.cells] == [(SIZE, SIZE)] * 6
    grid = out.result.images[0]
    assert grid.width > 2 * SIZE and grid.height > 3 * SIZE  # cells plus the legend margins
    # the cells sit in the grid's lower-right block, x across, y down
    legend_w, legend_h = grid.width - 2 * SIZE, grid.height - 3 * SIZE
    bottom_right = grid.crop((legend_w + SIZE, legend_h + 2 * SIZE, grid.width, grid.height))
    assert np.array_equal(arr(bottom_right), arr(out.cells[5].images[0]))
    assert "a green circle" in out.cells[5].infotexts[0] and "Steps: 2" in out.cells[5].infotexts[0]
    info = parse_infotext(out.result.infotexts[0])
    assert info["Script"] == "X/Y/Z plot" and info["X Type"] == "Steps" and info["Y Values"] == "red, blue, green"
    legend = arr(grid.crop((0, 0, legend_w, grid.height)))
    assert (legend < 128).any()  # row labels were drawn
    with pytest.raises(ValueError, match="did not find"):
        run_xyz("txt2img", base, XYZArgs(x_type="Prompt S/R", x_values="purple, red"), service.txt2img)


def test_xyz_more_axes_clip_skip_size_hires_face_restore(service):
    from webui.diffusion.types import HiresFix
    from webui.diffusion.xyz import XYZArgs, apply_axis, resolve_axis, run_xyz, supported_labels

    for label in ("Hires steps", "Hires sampler", "Hires upscaler", "Clip skip", "Face restore", "Width", "Height",
                  "Size", "Styles", "Var. seed", "Var. strength", "Token merging ratio"):
        assert label in supported_labels("txt2img"), label
    assert "Hires steps" not in supported_labels("img2img")
    base = Txt2ImgRequest(prompt="a red circle", seed=4, **FAST)
    out = run_xyz("txt2img", base, XYZArgs(x_type="Clip skip", x_values="1, 2", y_type="Size", y_values="64x64, 96x64"),
                  service.txt2img)
    cells = out.cells
    assert [c.images[0].size for c in cells] == [(64, 64), (64, 64), (96, 64), (96, 64)]
    assert "Clip skip" not in cells[0].infotexts[0] and "Clip skip: 2" in cells[1].infotexts[0]
    assert np.abs(arr(cells[0].images[0]) - arr(cells[1].images[0])).mean() > 0.5  # another text-encoder layer
    hires = resolve_axis("txt2img", "Hires steps")
    with pytest.raises(ValueError, match="needs hires fix"):
        apply_axis(hires, base, 3, [3])
    with_hr = dataclasses.replace(base, hires=HiresFix(hr_upscaler="Latent"))
    assert apply_axis(hires, with_hr, 3, [3]).hires.hr_second_pass_steps == 3
    assert apply_axis(resolve_axis("txt2img", "Hires upscaler"), with_hr, "Lanczos", []).hires.hr_upscaler == "Lanczos"
    assert apply_axis(resolve_axis("txt2img", "Face restore"), base, "True", []).restore_faces is True
    tome = apply_axis(resolve_axis("txt2img", "Token merging ratio"), base, 0.5, [])
    assert dict(tome.speed_overrides)["token_merging_ratio"] == 0.5
    with pytest.raises(ValueError, match="512x768"):
        apply_axis(resolve_axis("txt2img", "Size"), base, "big", [])
    with pytest.raises(ValueError, match="clip_skip"):
        service.txt2img(dataclasses.replace(base, clip_skip=0))


def test_png_info_reads_back_variation_seed():
    """The infotext keys "Variation seed" / "Variation seed strength" go back into the Extra seed widgets."""
    from types import SimpleNamespace

    from webui.diffusion.infotext import build_infotext
    from webui.ui.pnginfo import fields_for_txt2img

    names = ("prompt", "negative_prompt", "sampler", "steps", "cfg_scale", "seed", "width", "height")
    seeds = SimpleNamespace(**{n: object() for n in ("subseed", "subseed_strength", "resize_w", "resize_h", "extra")})
    w = SimpleNamespace(**{n: object() for n in names}, seeds=seeds)
    text = build_infotext("a cat", "", {"Steps": 20, "Sampler": "Euler a", "Seed": 5, "Size": "128x128",
                                        "Variation seed": 77, "Variation seed strength": 0.3})
    updates = fields_for_txt2img(parse_infotext(text), w)
    assert updates[seeds.subseed] == 77 and updates[seeds.subseed_strength] == 0.3 and updates[seeds.extra] is True
    assert updates[w.seed] == 5


def test_core_errors_reach_a_chinese_page_in_chinese(service):
    """ValueErrors of the core become gr.Error in the page's language (the switch's cookie, else the browser's)."""
    import asyncio
    from types import SimpleNamespace

    import gradio as gr

    from webui.jobs import JobQueue, JobResult
    from webui.ui.common import submit_job
    from webui.ui.i18n import LANGUAGE_COOKIE, request_language, translate_error

    def page(lang=None, accept=""):
        return SimpleNamespace(cookies={LANGUAGE_COOKIE: lang} if lang else {}, headers={"accept-language": accept},
                               username=None, session_hash="s1")

    assert request_language(page("zh-CN")) == "zh-CN" and request_language(page(accept="zh-CN,zh;q=0.9")) == "zh-CN"
    assert request_language(page(accept="en-US,en")) == "en-US" and request_language(None) is None
    queue = JobQueue()
    queue.register("txt2img", lambda r, c: JobResult(None), check=lambda r: service.check("txt2img", r))
    services = SimpleNamespace(jobs=queue)

    def error_of(request, **fields):
        with pytest.raises(gr.Error) as e:
            asyncio.run(submit_job(services, "txt2img", Txt2ImgRequest(prompt="x", **{**FAST, **fields}), request))
        return e.value.message

    assert error_of(page("zh-CN"), width=65) == "宽度（width） 必须是 8 的倍数，当前为 65"
    assert error_of(page("en"), width=65) == "width must be a multiple of 8, got 65"
    assert error_of(page(accept="zh-CN"), steps=0).startswith("采样步数（steps） 必须介于 1 和")
    assert error_of(page("zh-CN"), sampler="Nope").startswith("未知的采样器 'Nope'；可用的采样器：")
    assert translate_error("something new went wrong", "zh-CN") == "something new went wrong"  # unknown: as is


def test_xyz_axis_value_dropdowns(service):
    """Axes with fixed choices get A1111's value dropdown; the dropdown's values run the plot."""
    from types import SimpleNamespace

    from webui.diffusion.samplers import SAMPLER_NAMES
    from webui.diffusion.xyz import XYZArgs
    from webui.ui.a1111 import axis_choices, script_request_fields

    services = SimpleNamespace(image=service, upscalers=service.upscalers)
    assert axis_choices(services, "Sampler") == list(SAMPLER_NAMES)
    assert axis_choices(services, "Checkpoint name") == [m.title for m in service.list_models()]
    assert axis_choices(services, "Hires upscaler")[0] == "Latent" and "Lanczos" in axis_choices(services, "Hires upscaler")
    assert axis_choices(services, "Face restore") == ["True", "False"] and axis_choices(services, "Steps") is None
    fields = script_request_fields({"script": "X/Y/Z plot", "xyz_x_type": "Sampler", "xyz_x_values": "",
                                    "xyz_x_values_dropdown": ["Euler", "DDIM"], "xyz_y_type": "Nothing",
                                    "xyz_y_values": "", "xyz_z_type": "Nothing", "xyz_z_values": "",
                                    "xyz_draw_legend": True, "xyz_include_lone_images": False,
                                    "xyz_no_fixed_seeds": False})
    args = fields["script"]
    assert isinstance(args, XYZArgs) and args.x_values_dropdown == ("Euler", "DDIM") and not args.csv_mode
    r = service.txt2img(Txt2ImgRequest(prompt="a red circle", seed=2, script=args, **FAST))
    assert "X Type: Sampler" in r.infotexts[0] and "Euler, DDIM" in r.infotexts[0]
