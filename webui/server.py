"""Builds the FastAPI app (A1111 API + Gradio UI behind one login) and serves it with uvicorn."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from webui.services import Services

log = logging.getLogger(__name__)


def build_app(services: Services) -> FastAPI:
    import gradio as gr

    from webui.api import mount_api
    from webui.ui.layout import build_ui

    config = services.config
    app = FastAPI(title="SD Talking Studio", docs_url="/docs" if config.server.api else None)
    if config.server.api:
        mount_api(app, services)
    blocks = build_ui(services).queue(default_concurrency_limit=1)
    auth = list(config.server.auth) or None
    outputs = config.paths.outputs_dir
    outputs.mkdir(parents=True, exist_ok=True)
    return gr.mount_gradio_app(app, blocks, path="/", auth=auth, allowed_paths=[str(outputs)],
                               auth_message="SD Talking Studio — log in" if auth else None, show_error=True)


def serve(services: Services) -> None:
    import uvicorn

    config = services.config.server
    app = build_app(services)
    where = "on the LAN (all interfaces)" if config.host == "0.0.0.0" else "locally"
    print(f"Serving {where} at http://{config.host}:{config.port}" + (" (login required)" if config.auth else ""),
          flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
