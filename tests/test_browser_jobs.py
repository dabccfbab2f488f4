"""Two users logged in at once in real browsers (two Playwright contexts) on the same server: each sees only
their own progress and preview, one's Interrupt leaves the other's job running, a short job finishes between
the batches of a long one, the History tab lists one's own results and sends them back, and a closed tab
cancels its job in the engine."""

from __future__ import annotations

import time

import pytest

from tests.app_fixtures import BOB, LOGIN, slowed_unet
from tests.browser_helpers import launched_browser, logged_in_page, shot
from tests.test_jobs_live import running_job


@pytest.fixture(scope="module")
def browser(live_server):
    with launched_browser() as browser:
        yield browser


def login(browser, url: str, user: tuple[str, str]):
    return logged_in_page(browser, url, user)


def set_slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def generate(page, prompt: str, steps: int, batch_count: int) -> None:
    advanced = page.locator("#txt2img_steps")
    if not advanced.is_visible():
        page.get_by_text("Advanced").first.click()
        advanced.wait_for(state="visible")
    set_slider(page, "txt2img_steps", steps)
    set_slider(page, "txt2img_batch_count", batch_count)
    page.locator("#txt2img_prompt textarea").fill(prompt)
    page.locator("#txt2img_generate").click()


def test_two_users_at_once(browser, live_server):
    url, services = live_server
    with slowed_unet(services, 0.1):
        _two_users_at_once(browser, url, services)


def _two_users_at_once(browser, url, services):
    alice, bob = login(browser, url, LOGIN), login(browser, url, BOB)

    # alice starts a long batch; her live preview shows, bob's page shows nothing of it
    generate(alice, "a red circle on the left", steps=6, batch_count=16)
    a_job = running_job(services, LOGIN[0])
    alice.locator("#txt2img_preview img").wait_for(state="visible")
    assert bob.locator("#txt2img_preview img").count() == 0
    assert a_job.request.batch_count == 16 and a_job.request.steps == 6

    # bob's one image is done between two of alice's batches, while hers goes on
    generate(bob, "a blue square", steps=1, batch_count=1)
    bob.locator("#txt2img_gallery img").first.wait_for(state="visible")
    assert a_job.status.value == "running" and a_job.progress()["batch"] < 15
    assert alice.locator("#txt2img_gallery img").count() == 0
    bob_job = services.jobs.jobs(BOB[0])[-1]
    assert bob_job.finished < time.time() and bob_job.status.value == "done"
    shot(alice, "jobs_alice_running")
    shot(bob, "jobs_bob_done")

    # bob's Interrupt leaves alice's job running; hers stops it and keeps the finished images
    bob.locator("#txt2img_interrupt").click()
    time.sleep(1.0)
    assert not a_job.cancel_event.is_set() and a_job.status.value == "running"
    alice.locator("#txt2img_interrupt").click()
    info = alice.locator("#txt2img_info textarea")
    alice.wait_for_function("el => el.value.includes('Interrupted.')", arg=info.element_handle())
    assert a_job.status.value == "interrupted"
    kept = len(a_job.paths)
    assert 1 <= kept < 16
    shot(alice, "jobs_alice_interrupted")

    # History: alice's own results (bob's are not there); send one back to txt2img
    alice.locator("#txt2img_prompt textarea").fill("")
    alice.get_by_role("tab", name="History").click()
    alice.locator("#history_gallery img").first.wait_for(state="visible")
    table = alice.locator("#history_jobs").inner_text()
    assert "interrupted" in table and "bob" not in table
    alice.locator("#history_gallery img").first.click()
    params = alice.locator("#history_params textarea")
    alice.wait_for_function("el => el.value.includes('a red circle on the left')", arg=params.element_handle())
    shot(alice, "jobs_history")
    alice.locator("#history_send_txt2img").click()
    prompt = alice.locator("#txt2img_prompt textarea")
    alice.wait_for_function("el => el.value === 'a red circle on the left'", arg=prompt.element_handle())

    # bob closes his tab mid-job: the job is cancelled in the engine
    generate(bob, "a green triangle", steps=6, batch_count=16)
    b_job = running_job(services, BOB[0])
    bob.context.close()
    assert b_job.wait(120) and b_job.status.value == "cancelled"
    assert b_job.progress()["batch"] < 15
    alice.context.close()
