"""Builds the FastAPI app (A1111 API + Gradio UI behind one gate) and serves it with uvicorn."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from webui.services import Services

log = logging.getLogger(__name__)


def build_app(services: Services) -> FastAPI:
    import gradio as gr
    from starlette.routing import Mount

    from webui.api import mount_api
    from webui.auth import FailedLogins, Gate, Logins, gradio_cookie_user, output_reader_check
    from webui.ui.layout import build_ui

    config = services.config
    recovered = services.jobs.recover()  # jobs a previous process left running -> "interrupted"
    if recovered:
        log.warning("%d job(s) were unfinished when the server last stopped: marked interrupted", len(recovered))
    app = FastAPI(title="SD Talking Studio", docs_url="/docs" if config.server.api else None,
                  redoc_url="/redoc" if config.server.api else None)
    if config.server.api:
        mount_api(app, services)
    blocks = build_ui(services).queue(default_concurrency_limit=None)  # the job queue does the scheduling
    logins = Logins(config.server.auth)
    outputs = config.paths.outputs_dir
    outputs.mkdir(parents=True, exist_ok=True)
    app = gr.mount_gradio_app(app, blocks, path="/", auth=logins.verify if logins else None,
                              allowed_paths=[str(outputs)], show_error=True,
                              auth_message="SD Talking Studio — log in" if logins else None)
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and hasattr(r.app, "tokens"))
    app.add_middleware(Gate, logins=logins, max_body_bytes=config.server.max_body_bytes,
                       failures=FailedLogins(config.server.login_failures_per_minute),
                       cookie_user=gradio_cookie_user(gradio_app),
                       may_read=output_reader_check(outputs, services.history, config.server.admins))
    return app


def serve(services: Services) -> None:
    import uvicorn

    config = services.config.server
    app = build_app(services)
    where = "on the LAN (all interfaces)" if config.host == "0.0.0.0" else "locally"
    print(f"Serving {where} at http://{config.host}:{config.port}" + (" (login required)" if config.auth else ""),
          flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
