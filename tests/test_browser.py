"""A real headless browser (Debian chromium via Playwright) clicking through the UI behind the login."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from tests.app_fixtures import LOGIN
from tests.browser_helpers import launched_browser, log_in, new_page, shot


@pytest.fixture(scope="module")
def page(live_server):
    url, _ = live_server
    with launched_browser() as browser:
        yield new_page(browser, url)


def test_login_then_txt2img(page):
    # The login form comes first: nothing of the app is visible without it.
    page.get_by_label("username").fill("alice")
    page.get_by_label("password").fill("bad-password")
    page.get_by_role("button", name="Login").click()
    page.get_by_text("Incorrect", exact=False).wait_for()
    log_in(page, LOGIN)

    page.locator("#txt2img_prompt textarea").fill("a large red circle in the center, white background")
    page.locator("#txt2img_generate").click()
    image = page.locator("#txt2img_gallery img").first
    image.wait_for(state="visible")
    info = page.locator("#txt2img_info textarea")
    page.wait_for_function("el => el.value.includes('Steps:')", arg=info.element_handle())
    assert "Seed:" in info.input_value()
    shot(page, "txt2img")


def test_inpaint_with_drawn_mask(page, tmp_path):
    page.get_by_role("tab", name="Inpaint").click()
    source = tmp_path / "source.png"
    Image.fromarray(np.full((64, 64, 3), (40, 120, 200), np.uint8)).save(source)
    page.locator("#inpaint_prompt textarea").fill("a green square")
    result = page.locator("#inpaint_gallery img").first
    not_ready = page.get_by_text("Inpaint needs an image").first
    # On a loaded machine the editor may still be sending the upload when Generate is clicked, or
    # (right after the tab is first shown) drop it; the app then says "Inpaint needs an image" and
    # a user uploads and draws again, as this test does.
    for _ in range(4):
        page.locator("#inpaint_editor input[type=file]").set_input_files(str(source))
        canvas = page.locator("#inpaint_editor canvas").first
        canvas.wait_for(state="visible")
        page.wait_for_timeout(500)
        box = canvas.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 20, cy)
        page.mouse.down()
        for dx in range(-20, 21, 4):
            page.mouse.move(cx + dx, cy + dx / 4)
        page.mouse.up()
        page.locator("#inpaint_generate").click()
        result.or_(not_ready).wait_for(state="visible")
        if result.is_visible():
            break
        shot(page, "inpaint_not_ready")
        not_ready.wait_for(state="hidden", timeout=15000)
    result.wait_for(state="visible")
    info = page.locator("#inpaint_info textarea")
    page.wait_for_function("el => el.value.includes('Denoising strength')", arg=info.element_handle())
    shot(page, "inpaint")
    # the painted (centre) area changed with the tab's defaults; the corners kept the source colour
    import io

    out = np.asarray(Image.open(io.BytesIO(page.request.get(result.get_attribute("src")).body())).convert("RGB"))
    src = np.asarray(Image.open(source).resize(out.shape[1::-1]).convert("RGB")).astype(int)
    h, w = out.shape[:2]
    centre = np.abs(out[h // 2 - 3:h // 2 + 3, w // 2 - 8:w // 2 + 8].astype(int) - src[h // 2 - 3:h // 2 + 3, w // 2 - 8:w // 2 + 8])
    corner = np.abs(out[:6, :6].astype(int) - src[:6, :6])
    assert centre.mean() > 10 and corner.max() <= 3, (centre.mean(), corner.max())


def test_other_tabs_render(page):
    for tab, element in (("img2img", "#img2img_strength"), ("Talking head", "#talk_generate"),
                         ("PNG Info", "#pnginfo_text"), ("Settings", "#settings_apply")):
        page.get_by_role("tab", name=tab).click()
        page.locator(element).wait_for(state="visible")
        shot(page, tab.lower().replace(" ", "_"))


def test_talking_head_in_browser(page, tmp_path):
    import subprocess

    from skimage.data import astronaut

    face = tmp_path / "face.png"
    Image.fromarray(astronaut()).save(face)
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Good morning, team."], check=True)
    page.get_by_role("tab", name="Talking head").click()
    page.locator("#talk_image input[type=file]").set_input_files(str(face))
    page.locator("#talk_audio input[type=file]").set_input_files(str(speech))
    page.locator("#talk_image img").first.wait_for(state="visible")
    page.wait_for_timeout(500)
    page.locator("#talk_generate").click()
    page.locator("#talk_video video").wait_for(state="visible")
    page.get_by_text("frames,", exact=False).wait_for()
    shot(page, "talking_head_result")


def test_talking_head_batch_and_reference_in_browser(page, live_server, tmp_path):
    """Batch uploads (two portraits, one without a face) and a reference video for head motion."""
    import subprocess

    from skimage.data import astronaut

    from talking_head.pipeline import TalkingHeadRequest

    _, services = live_server
    face = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(face)
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((160, 160, 3), 128, np.uint8)).save(wall)
    speech = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello there."], check=True)
    ref = tmp_path / "ref.mp4"
    services.talking_head(TalkingHeadRequest(image=face, audio=speech, output=ref, engine="default", pose_style=5))
    page.reload()
    page.get_by_role("tab", name="Talking head").click()
    page.get_by_text("Reference videos (optional)").click()
    page.locator("#talk_ref_pose input[type=file]").set_input_files(str(ref))
    page.get_by_text("Batch (several portraits and/or speech files)").click()
    page.locator("#talk_batch_images input[type=file]").set_input_files([str(face), str(wall)])
    page.locator("#talk_audio input[type=file]").set_input_files(str(speech))
    page.locator("#talk_ref_pose video").first.wait_for(state="visible")
    page.wait_for_timeout(1500)
    shot(page, "talking_head_batch_inputs")
    page.locator("#talk_generate").click()
    page.get_by_text("of 2 videos", exact=False).wait_for()
    page.locator("#talk_video video").wait_for(state="visible")
    report = page.locator("#talk_timings").inner_text()
    assert "1 of 2 videos" in report and "no face found" in report and "astronaut.png + hello.wav" in report
    shot(page, "talking_head_batch")


def test_talking_head_typed_text_in_browser(page, tmp_path):
    """No speech file: a typed script is spoken (espeak-ng), the video and the WAV come back."""
    from skimage.data import astronaut

    face = tmp_path / "face.png"
    Image.fromarray(astronaut()).save(face)
    page.reload()
    page.get_by_role("tab", name="Talking head").click()
    page.locator("#talk_image input[type=file]").set_input_files(str(face))
    page.locator("#talk_image img").first.wait_for(state="visible")
    page.get_by_text("Or type the speech", exact=False).click()
    typed = page.locator("#talk_text textarea")
    typed.fill("Good morning, team. This is typed text.")
    typed.press("Tab")  # blur: the textbox's value reaches gradio's state before Generate reads it
    page.wait_for_timeout(500)
    page.locator("#talk_generate").click()
    page.locator("#talk_video video").wait_for(state="visible")
    page.locator("#talk_speech").get_by_text(".wav", exact=False).first.wait_for()
    shot(page, "talking_head_typed_text")
