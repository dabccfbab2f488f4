"""Builds the FastAPI app (A1111 API + Gradio UI behind one gate) and serves it with uvicorn."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from webui.services import Services

log = logging.getLogger(__name__)


# Gradio's queue polls for new events every 1 ms and for progress every 10 ms, even when idle: about 5 %
# of a core here with nobody connected. 50 ms / 100 ms (its own Windows values) cost ~0 % and add at most
# 50 ms before a job starts.
QUEUE_POLL_S = 0.05
PROGRESS_POLL_S = 0.1


def quiet_idle_queue(blocks) -> None:
    queue = getattr(blocks, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_POLL_S)
        queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, PROGRESS_POLL_S)


def inject_first_in_head(app: FastAPI, snippet: str) -> None:
    """Puts ``snippet`` at the very start of <head> of the page itself (Gradio's own ``head`` option is added
    by its JavaScript, after the frontend has read the browser's language: too late for the language switch)."""
    from starlette.responses import Response

    marker = b"<head>"
    payload = snippet.encode("utf-8")

    @app.middleware("http")
    async def add_snippet(request, call_next):
        response = await call_next(request)
        is_page = request.method == "GET" and request.url.path in ("/", "") and \
            response.headers.get("content-type", "").startswith("text/html") and \
            not response.headers.get("content-encoding")
        if not is_page:
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        body = body.replace(marker, marker + payload, 1)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(body, status_code=response.status_code, headers=headers)


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
    quiet_idle_queue(blocks)
    logins = Logins(config.server.auth)
    from webui.ui.i18n import I18N, LANGUAGE_HEAD

    inject_first_in_head(app, LANGUAGE_HEAD)
    outputs = config.paths.outputs_dir
    outputs.mkdir(parents=True, exist_ok=True)
    app = gr.mount_gradio_app(app, blocks, path="/", auth=logins.verify if logins else None,
                              allowed_paths=[str(outputs)], show_error=True, i18n=I18N,
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
