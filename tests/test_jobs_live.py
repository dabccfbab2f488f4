"""Two logged-in users and a REST client on the live server: per-user progress, interrupt and history,
fair turns between users, a Gradio cancel that frees the engine, and every route behind the login."""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from tests.app_fixtures import ADMIN, APPS, BOB, LOGIN, slowed_unet

LONG = {"prompt": "a red circle", "steps": 4, "n_iter": 16, "width": 64, "height": 64, "seed": 1,
        "save_images": True}
SHORT = {"prompt": "a blue square", "steps": 1, "width": 64, "height": 64, "seed": 2, "save_images": True}


def progress(url, auth):
    return requests.get(f"{url}/sdapi/v1/progress", auth=auth, timeout=60).json()


def wait_for(predicate, timeout=300.0, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def start(url, body, auth) -> dict:
    """POST txt2img in a thread; the returned dict gets 'response' and 'done_at' when it answers."""
    out: dict = {}

    def go():
        out["response"] = requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=auth, timeout=900)
        out["done_at"] = time.time()

    out["thread"] = threading.Thread(target=go, daemon=True)
    out["thread"].start()
    return out


def running_job(services, owner):
    return wait_for(lambda: (j := services.jobs.current(owner)) is not None and j.status.value == "running"
                    and j.progress()["step"] > 0 and j)


def test_progress_interrupt_and_turns_are_per_user(live_server):
    url, services = live_server
    with slowed_unet(services):
        _per_user_progress_interrupt_and_turns(url, services)


def _per_user_progress_interrupt_and_turns(url, services):
    a = start(url, LONG, LOGIN)
    a_job = running_job(services, LOGIN[0])

    # each sees only their own job: bob is idle (no image, no text) while alice's preview shows
    mine = wait_for(lambda: (p := progress(url, LOGIN))["current_image"] and p)
    assert mine["state"]["job"] == "txt2img" and mine["state"]["job_count"] == 16 and 0 < mine["progress"] < 1
    theirs = progress(url, BOB)
    assert theirs["current_image"] is None and theirs["textinfo"] is None and theirs["progress"] == 0
    assert theirs["state"]["job"] == ""

    # bob's single image runs between two of alice's batches and answers while her job goes on
    b = start(url, SHORT, BOB)
    b["thread"].join(600)
    assert b["response"].status_code == 200, b["response"].text
    assert a["thread"].is_alive() and a_job.status.value == "running"
    assert a_job.progress()["batch"] < 15

    # bob's Interrupt does not touch alice's job; hers stops it within one step
    assert requests.post(f"{url}/sdapi/v1/interrupt", auth=BOB, timeout=60).json() == {}
    batch_before = a_job.progress()["batch"]
    time.sleep(0.5)
    assert not a_job.cancel_event.is_set() and a_job.status.value == "running"
    assert requests.post(f"{url}/sdapi/v1/interrupt", auth=LOGIN, timeout=60).json() == {}
    a["thread"].join(600)
    info = __import__("json").loads(a["response"].json()["info"])
    assert info["interrupted"] is True
    assert batch_before <= len(info["all_seeds"]) < 16
    assert a_job.status.value == "interrupted"

    # history: each sees their own; the admin sees both
    mine = requests.get(f"{url}/sdapi/v1/history", auth=LOGIN, timeout=60).json()["jobs"]
    assert {j["owner"] for j in mine} == {"alice"}
    entry = next(j for j in mine if j["id"] == a_job.id)
    assert entry["status"] == "interrupted" and len(entry["paths"]) == len(info["all_seeds"])
    assert entry["params"]["batch_count"] == 16
    bobs = requests.get(f"{url}/sdapi/v1/history", params={"kind": "txt2img"}, auth=BOB, timeout=60).json()["jobs"]
    assert {j["owner"] for j in bobs} == {"bob"} and bobs[0]["status"] == "done" and len(bobs[0]["paths"]) == 1
    everyone = requests.get(f"{url}/sdapi/v1/history", auth=ADMIN, timeout=60).json()["jobs"]
    assert {"alice", "bob"} <= {j["owner"] for j in everyone}
    r = requests.get(f"{url}/sdapi/v1/history", params={"since": "yesterday"}, auth=LOGIN, timeout=60)
    assert r.status_code == 422 and "since" in r.json()["detail"]
    # a history file is served to its user (and admins), not to others
    assert requests.get(url + entry["urls"][0], auth=LOGIN, timeout=60).content[:4] == b"\x89PNG"
    assert requests.get(url + entry["urls"][0], auth=ADMIN, timeout=60).status_code == 200
    assert requests.get(url + entry["urls"][0], auth=BOB, timeout=60).status_code == 404
    # ... and Gradio's file route does not hand one user's outputs to another either
    assert requests.get(f"{url}/gradio_api/file={entry['paths'][0]}", auth=BOB, timeout=60).status_code == 404


def test_gradio_cancel_frees_the_engine_within_one_step(live_server):
    from gradio_client import Client

    url, services = live_server
    client = Client(url + "/", auth=LOGIN, verbose=False)
    submitted = client.submit(prompt="a green triangle", negative_prompt="", sampler="Euler a", steps=4,
                              cfg_scale=7, width=64, height=64, seed=5, batch_count=16, batch_size=1,
                              api_name="/txt2img")
    job = running_job(services, LOGIN[0])
    unet = services.image._manager.loaded()[0].txt2img.unet
    calls: list[float] = []
    hook = unet.register_forward_hook(lambda *args: calls.append(time.time()))
    try:
        submitted.cancel()  # POST /gradio_api/cancel
        cancelled_at = time.time()
        job.wait(120)
    finally:
        hook.remove()
    assert job.status.value == "cancelled"
    assert len([t for t in calls if t > cancelled_at]) <= 1  # at most the step in flight: stopped within one step
    t = time.time()
    r = requests.post(f"{url}/sdapi/v1/txt2img", json={**SHORT, "save_images": False}, auth=BOB, timeout=300)
    assert r.status_code == 200 and time.time() - t < 120
    entry = services.history.get(job.id)
    assert entry.status == "cancelled" and all(__import__("os").path.isfile(p) for p in entry.paths)


# ------------------------------------------------------------------ every route behind the login
def iter_routes(routes, prefix=""):
    """(path, methods) of every route of an app, into mounts and included routers."""
    from starlette.routing import Mount

    for route in routes:
        if isinstance(route, Mount):
            yield from iter_routes(route.app.routes if hasattr(route.app, "routes") else [], prefix + route.path)
        elif hasattr(route, "original_router"):  # FastAPI's included router
            yield from iter_routes(route.original_router.routes, prefix)
        elif hasattr(route, "path"):
            yield prefix + route.path, sorted(getattr(route, "methods", None) or {"GET"})


def test_every_route_needs_the_login(live_server):
    from webui.auth import is_public

    url, _ = live_server
    routes = sorted(set((p, m) for p, ms in iter_routes(APPS[url].routes) for m in ms if m != "HEAD"))
    paths = {p for p, _ in routes}
    for must in ("/openapi.json", "/docs", "/redoc", "/gradio_api/cancel", "/gradio_api/heartbeat/{session_hash}",
                 "/sdapi/v1/txt2img", "/sdapi/v1/history", "/gradio_api/queue/join", "/gradio_api/upload",
                 "/config", "/gradio_api/file={path_or_url:path}"):
        assert must in paths, must
    public, checked = [], 0
    for path, method in routes:
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        r = requests.request(method, url + concrete, json={}, timeout=60, allow_redirects=False)
        if is_public(path):
            public.append(path)
            assert b"txt2img_prompt" not in r.content and b"wonderland" not in r.content, path
            continue
        checked += 1
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        if path.startswith(("/sdapi/", "/docs", "/redoc", "/openapi.json")):
            assert r.headers.get("WWW-Authenticate") == "Basic", path
    assert checked > 60
    assert set(public) <= {"/", "/login", "/login/", "/gradio_api/login_check", "/gradio_api/login_check/",
                           "/assets/{path:path}", "/static/{path:path}", "/svelte/{path:path}", "/favicon.ico",
                           "/theme.css", "/robots.txt", "/manifest.json", "/gradio_api/theme.css", "/pwa_icon",
                           "/pwa_icon/{size}"}
    # with the login they answer
    for path in ("/openapi.json", "/docs", "/redoc", "/sdapi/v1/history"):
        assert requests.get(url + path, auth=BOB, timeout=60).status_code == 200, path
    # a wrong password is refused; the body limit holds
    assert requests.get(url + "/docs", auth=("bob", "wrong"), timeout=60).status_code == 401


@pytest.mark.parametrize("size_mb", [65])
def test_body_over_the_limit_is_413(live_server, size_mb):
    url, _ = live_server
    r = requests.post(f"{url}/sdapi/v1/png-info", data=b"0" * (size_mb * 2**20), auth=LOGIN, timeout=120,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413
