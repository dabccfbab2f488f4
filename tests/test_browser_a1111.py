"""Browser: the A1111 conveniences — whole images in the gallery, seed buttons, send-to, plain upload errors."""

from __future__ import annotations

import pytest

from tests.browser_helpers import launched_browser, logged_in_page, shot


@pytest.fixture(scope="module")
def page(live_server):
    url, _ = live_server
    with launched_browser() as browser:
        yield logged_in_page(browser, url)


def test_gallery_seed_buttons_and_send_to(page, tmp_path):
    page.locator("#txt2img_prompt textarea").fill("a red circle on the left")
    page.locator("#txt2img_generate").click()
    image = page.locator("#txt2img_gallery img").first
    image.wait_for(state="visible")
    info = page.locator("#txt2img_info textarea")
    page.wait_for_function("el => el.value.includes('Seed:')", arg=info.element_handle())
    # the whole (square) image is shown: contain, not cover
    assert image.evaluate("el => getComputedStyle(el).objectFit") == "contain"
    box = image.bounding_box()
    assert abs(box["width"] - box["height"]) <= 2, box
    shot(page, "a1111_txt2img")

    seed = info.input_value().split("Seed: ")[1].split(",")[0]
    page.locator("#txt2img_advanced").get_by_text("Advanced").click()
    page.locator("#txt2img_reuse_seed").click()
    page.wait_for_function(f"el => el.value === '{seed}'", arg=page.locator("#txt2img_seed input").element_handle())
    page.locator("#txt2img_random_seed").click()
    page.wait_for_function("el => el.value === '-1'", arg=page.locator("#txt2img_seed input").element_handle())

    page.locator("#txt2img_send_to_img2img").click()
    page.locator("#img2img_image img").first.wait_for(state="visible")
    assert page.locator("#img2img_prompt textarea").input_value() == "a red circle on the left"
    shot(page, "a1111_sent_to_img2img")

    page.get_by_role("tab", name="txt2img").click()
    page.locator("#txt2img_send_to_inpaint").click()
    page.locator("#inpaint_editor canvas").first.wait_for(state="visible")
    page.wait_for_function("el => el.value === 'a red circle on the left'",
                           arg=page.locator("#inpaint_prompt textarea").element_handle())
    shot(page, "a1111_sent_to_inpaint")

    page.get_by_role("tab", name="txt2img").click()
    page.locator("#txt2img_send_to_talking_head").click()
    page.locator("#talk_image img").first.wait_for(state="visible")
    shot(page, "a1111_sent_to_talking_head")

    # PNG Info -> img2img / inpaint: the image and its prompt and parameters, as PNG Info -> txt2img
    from PIL import Image

    from webui.diffusion.infotext import save_png

    png = save_png(Image.new("RGB", (96, 80), (200, 40, 40)), tmp_path / "made-elsewhere.png",
                   "a blue square at the top\nNegative prompt: blurry\nSteps: 13, Sampler: DPM++ 2M, "
                   "Schedule type: Karras, CFG scale: 5.5, Seed: 4242, Size: 96x80, Model: demo-shapes")
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png))
    page.wait_for_function("el => el.value.includes('Seed: 4242')", arg=page.locator("#pnginfo_text textarea").element_handle())
    for tab in ("img2img", "inpaint"):
        if tab == "inpaint":
            page.get_by_role("tab", name="PNG Info").click()
        page.locator(f"#pnginfo_send_to_{tab}").click()
        page.wait_for_function("el => el.value === 'a blue square at the top'",
                               arg=page.locator(f"#{tab}_prompt textarea").element_handle())
        assert page.locator(f"#{tab}_negative_prompt textarea").input_value() == "blurry"
        page.locator(f"#{tab}_advanced").get_by_text("Advanced").click()  # a closed accordion is not rendered
        page.wait_for_function("el => el.value === '4242'", arg=page.locator(f"#{tab}_seed input").element_handle())
        assert page.locator(f"#{tab}_steps input[type=number]").input_value() == "13"
        assert float(page.locator(f"#{tab}_cfg_scale input[type=number]").input_value()) == 5.5
        assert page.locator(f"#{tab}_width input[type=number]").input_value() == "96"
        assert page.locator(f"#{tab}_height input[type=number]").input_value() == "80"
        assert page.locator(f"#{tab}_sampler input").input_value() == "DPM++ 2M Karras"
    page.locator("#inpaint_editor canvas").first.wait_for(state="visible")
    shot(page, "a1111_pnginfo_sent_to_inpaint")


def test_non_image_upload_is_a_plain_message(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is a text file, not a picture")
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(bad))
    message = page.get_by_text("this file is not an image", exact=False).first
    message.wait_for(state="visible")
    shot(page, "a1111_non_image_upload")
    assert page.get_by_text("Could not preprocess", exact=False).count() == 0


def test_settings_refuse_bf16_on_cpu(page):
    page.get_by_role("tab", name="Settings").click()
    page.locator("#settings_precision").get_by_text("bf16").click()
    page.locator("#settings_apply").click()
    page.get_by_text("slower than fp32", exact=False).first.wait_for(state="visible")
    page.locator("#settings_precision").get_by_text("fp32").click()
    page.locator("#settings_apply").click()
    page.locator("#settings_status").get_by_text("Applied: device", exact=False).wait_for(state="visible")
    assert "PerfConfig" not in page.locator("#settings_status").inner_text()
    shot(page, "a1111_settings")


def test_language_switch(page):
    page.locator("#language_switch").get_by_text("简体中文").click()
    page.locator("#txt2img_generate").get_by_text("生成").wait_for(state="visible")
    assert page.get_by_role("tab", name="文生图").count() == 1
    assert page.get_by_text("提示词", exact=True).first.is_visible()
    shot(page, "a1111_chinese")
    # an error of the core (ValueError, English) reaches this page in Chinese
    page.locator("#txt2img_prompt textarea").fill("<lora:nope:1> a red circle")
    page.locator("#txt2img_generate").click()
    page.get_by_text("未知的 LoRA", exact=False).first.wait_for(state="visible")
    shot(page, "a1111_chinese_error")
    page.locator("#txt2img_prompt textarea").fill("a red circle")
    page.locator("#language_switch").get_by_text("English").click()
    page.locator("#txt2img_generate").get_by_text("Generate").wait_for(state="visible")
    assert page.get_by_role("tab", name="txt2img").count() == 1
