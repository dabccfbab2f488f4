"""Shared fixtures for the app-level tests: a tiny model folder and a live server behind a login."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from webui.config import AppConfig, PathsConfig, ServerConfig

LOGIN = ("alice", "wonderland")
BOB = ("bob", "builder")  # a second user of the same server
ADMIN = ("carol", "admin-pass")  # started with --admin carol: sees everyone's history
APPS: dict = {}  # live server url -> the FastAPI app it serves (for tests that enumerate routes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """models/ with one tiny random-weight SD model (diffusers folder) in Stable-diffusion/."""
    from webui.diffusion.tiny import save_tiny_model

    models = tmp_path_factory.mktemp("models")
    for sub in ("Stable-diffusion", "VAE", "Lora", "GFPGAN"):
        (models / sub).mkdir()
    save_tiny_model(models / "Stable-diffusion" / "tiny-sd", seed=0)
    return models


def app_config(models: Path, tmp: Path, port: int = 7860, auth=(), admins=()) -> AppConfig:
    styles = tmp / "styles.csv"  # A1111 layout; one style with the {prompt} placeholder
    styles.write_text('name,prompt,negative_prompt\nCircle,"a red circle, {prompt}",blurry\n', encoding="utf-8")
    paths = PathsConfig(models_dir=models, checkpoints_dir=tmp / "checkpoints", outputs_dir=tmp / "outputs",
                        styles_file=styles)
    return AppConfig(server=ServerConfig(host="127.0.0.1", port=port, auth=tuple(auth), admins=tuple(admins)),
                     paths=paths)


@pytest.fixture(scope="session")
def live_server(tiny_models_dir, tmp_path_factory):
    """The real app (API + UI) served by uvicorn on a free loopback port, with three logins (one admin)."""
    import uvicorn

    from webui.server import build_app
    from webui.services import Services

    port = free_port()
    config = app_config(tiny_models_dir, tmp_path_factory.mktemp("server"), port=port, auth=[LOGIN, BOB, ADMIN],
                        admins=[ADMIN[0]])
    services = Services(config)
    app = build_app(services)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.1)
    APPS[f"http://127.0.0.1:{port}"] = app
    yield f"http://127.0.0.1:{port}", services
    server.should_exit = True
    thread.join(timeout=10)


@contextlib.contextmanager
def slowed_unet(services, seconds: float = 0.05):
    """Every UNet call of the loaded model also sleeps ``seconds``: a "long" job of the tiny test model
    would otherwise end, on a fast or idle machine, before a test can look at it while it runs."""
    image = services.image
    image.load_model(image.current_model().title)

    def pause(*_args):
        time.sleep(seconds)

    handles = [pipes.txt2img.unet.register_forward_pre_hook(pause) for pipes in image._manager.loaded()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
