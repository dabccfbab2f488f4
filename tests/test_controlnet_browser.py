"""The ControlNet accordion in a real headless browser: draw on the sketchpad, preview, generate."""

from __future__ import annotations

import re
import time

import pytest

from tests.browser_helpers import launched_browser, logged_in_page, shot
from tests.test_controlnet import tiny_controlnet


COUNT_WHITE = """img => {
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data; let left = 0, right = 0;
  for (let i = 0; i < d.length; i += 4) {
    const x = (i / 4) % c.width;
    if (d[i] > 127) { if (x < c.width / 2) left++; else if (x > c.width * 0.6) right++; }
  }
  return [left, right, c.width * c.height];
}"""


@pytest.fixture(scope="module")
def cn_page(live_server):
    from pathlib import Path

    url, services = live_server
    models = Path(services.config.paths.models_dir)
    if not (models / "ControlNet" / "ui-cn").exists():
        net, _ = tiny_controlnet(models / "Stable-diffusion" / "tiny-sd")
        net.save_pretrained(models / "ControlNet" / "ui-cn")
    with launched_browser() as browser:
        yield logged_in_page(browser, url, viewport=(1400, 1300))


def test_draw_preview_and_generate_with_controlnet(cn_page):
    page = cn_page
    page.locator("#txt2img_prompt textarea").fill("a blue triangle, yellow background")
    page.locator("#txt2img_controlnet").get_by_text("ControlNet").first.click()
    page.locator("#txt2img_controlnet_refresh0").click()
    model = page.locator("#txt2img_controlnet_model0 input")
    model.fill("ui-cn")
    page.get_by_role("option", name=re.compile(r"^ui-cn \[")).click()
    canvas = page.locator("#txt2img_controlnet_image0 canvas").first
    canvas.wait_for(state="visible")
    ebox = canvas.bounding_box()
    zoom = float(re.search(r"(\d+)%", page.locator("#txt2img_controlnet_image0").inner_text()).group(1)) / 100
    side = 512 * zoom  # the 512 px canvas is shown centred at this zoom
    x0, y0 = ebox["x"] + (ebox["width"] - side) / 2, ebox["y"] + (ebox["height"] - side) / 2
    pts = [(0.25, 0.25), (0.43, 0.72), (0.07, 0.72), (0.25, 0.25)]  # a triangle on the left
    page.mouse.move(x0 + pts[0][0] * side, y0 + pts[0][1] * side)
    page.mouse.down()
    for x, y in pts[1:]:
        page.mouse.move(x0 + x * side, y0 + y * side, steps=20)
    page.mouse.up()
    time.sleep(0.5)
    page.locator("#txt2img_controlnet_enable0 input").check()
    page.locator("#txt2img_controlnet_annotate0").click()
    preview = page.locator("#txt2img_controlnet_preview0 img")
    preview.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=preview.element_handle())
    left, right, total = page.evaluate(COUNT_WHITE, preview.element_handle())
    assert left > 100 and right < 0.01 * total  # the annotator made white strokes on black, on the left only
    page.locator("#txt2img_generate").click()
    info = page.locator("#txt2img_info textarea")
    page.wait_for_function("el => el.value.includes('ControlNet 0:')", arg=info.element_handle())
    text = info.input_value()
    assert 'ControlNet 0: "Module: scribble_drawing, Model: ui-cn [' in text and "Weight: 1.0" in text
    shot(page, "txt2img_controlnet")
