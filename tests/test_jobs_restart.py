"""kill -9 during a batch, then a restart: the history and the files on disk agree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from PIL import Image

from tests.app_fixtures import LOGIN, free_port

REPO = Path(__file__).resolve().parent.parent


def start_server(models: Path, outputs: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "app.py"), "serve", "--port", str(port), "--models-dir", str(models),
           "--outputs-dir", str(outputs), "--auth", ":".join(LOGIN), "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/sdapi/v1/progress", auth=LOGIN, timeout=5).ok:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


def test_kill_during_a_batch_then_restart(tiny_models_dir, tmp_path):
    outputs = tmp_path / "outputs"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(tiny_models_dir, outputs, port)
    try:
        body = {"prompt": "a red circle", "steps": 3, "n_iter": 16, "width": 64, "height": 64, "seed": 9,
                "save_images": True}
        def post():
            try:
                requests.post(f"{url}/sdapi/v1/txt2img", json=body, auth=LOGIN, timeout=600)
            except requests.ConnectionError:  # the kill below ends this request
                pass

        threading.Thread(target=post, daemon=True).start()
        deadline = time.time() + 300
        while requests.get(f"{url}/sdapi/v1/progress", auth=LOGIN, timeout=30).json()["state"]["job_no"] < 2:
            assert time.time() < deadline, "the batch did not progress"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

    on_disk = sorted(str(p) for p in outputs.rglob("*.png"))
    assert len(on_disk) >= 2

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(tiny_models_dir, outputs, port)
    try:
        jobs = requests.get(f"{url}/sdapi/v1/history", auth=LOGIN, timeout=60).json()["jobs"]
        # this server's login form (Gradio's own) is rate-limited per address: 10 failures, then 429
        form = lambda password: requests.post(f"{url}/login", data={"username": LOGIN[0], "password": password},  # noqa: E731
                                              timeout=30, allow_redirects=False)
        assert form(LOGIN[1]).status_code == 200  # the right password logs in
        assert [form(f"wrong{i}").status_code for i in range(10)] == [400] * 10
        blocked = form(LOGIN[1])
        assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 60
    finally:
        proc.terminate()
        proc.wait(60)
    assert len(jobs) == 1
    job = jobs[0]
    assert job["status"] == "interrupted" and job["owner"] == "alice" and job["params"]["batch_count"] == 16
    # every file on disk is in the history and every path in the history is a whole PNG on disk
    assert sorted(job["paths"]) == on_disk == sorted(str(p) for p in outputs.rglob("*.png"))
    assert 2 <= len(job["paths"]) < 16
    for path, infotext in zip(job["paths"], job["infotexts"]):
        with Image.open(path) as image:
            image.load()
            assert image.info["parameters"] == infotext and infotext.startswith("a red circle\nSteps: 3")
    leftovers = [p.name for p in outputs.rglob("*") if p.is_file() and ".part" in p.name]
    assert leftovers == []
