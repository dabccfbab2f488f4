"""The Extras tab and the txt2img "Hires. fix" accordion in a real headless browser (chromium via Playwright)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.browser_helpers import launched_browser, logged_in_page, shot


def test_extras_tab_upscales_and_hires_accordion(live_server, tmp_path):
    url, _ = live_server
    source = tmp_path / "source.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(source)
    with launched_browser() as browser:
        page = logged_in_page(browser, url)

        page.locator("#txt2img_hires_fix").click()  # opens the accordion
        page.locator("#txt2img_enable_hr").wait_for(state="visible")
        page.locator("#txt2img_hr_upscaler").wait_for(state="visible")
        shot(page, "txt2img-hires-fix")

        page.get_by_role("tab", name="Extras").click()
        page.locator("#extras_image input[type=file]").set_input_files(str(source))
        page.locator("#extras_image img").first.wait_for(state="visible")
        page.locator("#extras_scale_by input[type=number]").fill("2")
        page.locator("#extras_scale_by input[type=number]").press("Enter")
        upscaler = page.locator("#extras_upscaler_1 input")
        upscaler.click()
        upscaler.fill("Lanczos")
        page.get_by_role("option", name="Lanczos").first.click()
        gfpgan_info = page.locator("#extras_gfpgan_visibility").inner_text()
        assert "GFPGANv1.4.pth" in gfpgan_info  # the "put the file here" text, as on the talking-head tab
        page.locator("#extras_generate").click()
        page.locator("#extras_gallery img").first.wait_for(state="visible")
        info = page.locator("#extras_info textarea")
        page.wait_for_function("el => el.value.includes('128x96')", arg=info.element_handle())
        assert "Postprocess upscaler: Lanczos" in info.input_value()
        shot(page, "extras")

        page.locator("#extras_source").get_by_text("Batch from directory").click()
        page.locator("#extras_folder textarea, #extras_folder input").first.fill(str(tmp_path))
        page.locator("#extras_generate").click()
        page.wait_for_function("el => el.value.includes('1 image(s), 128x96') && el.value.includes('Saved')",
                               arg=info.element_handle())
