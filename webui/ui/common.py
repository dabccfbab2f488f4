"""Shared UI pieces: the generation-parameter widgets and the caller's job with progress + live preview.

Widgets are read by name (inputs given as a set -> the handler receives {component: value}); nothing is
positional. Engine errors (ValueError, FileNotFoundError) become ``gr.Error`` here and only here.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import gradio as gr

from webui.diffusion.types import ImageResult
from webui.jobs import Job, JobStatus
from webui.ui.a1111 import (ScriptWidgets, SeedWidgets, script_panel, script_request_fields, seed_request_fields,
                            seed_row, styles_row, wire_reuse_seed)
from webui.ui.i18n import request_language, translate_error
from webui.ui.sendto import send_to_buttons

PREVIEW_INTERVAL_S = 0.3  # how often the live preview / progress bar refresh


@dataclass
class GenerationWidgets:
    """The parameters shared by txt2img, img2img and inpaint, plus the outputs and buttons of a tab."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    sampler: gr.Dropdown
    steps: gr.Slider
    cfg_scale: gr.Slider
    width: gr.Slider
    height: gr.Slider
    seed: gr.Number
    batch_count: gr.Slider
    batch_size: gr.Slider
    generate: gr.Button
    interrupt: gr.Button
    gallery: gr.Gallery
    preview: gr.Image
    info: gr.Textbox
    seeds: SeedWidgets  # 🎲 / ♻ / "Extra" variation seed
    styles: gr.Dropdown
    script: ScriptWidgets
    send_to: dict[str, gr.Button]  # target tab id -> "Send to" button under the results

    def fields(self) -> dict[str, gr.components.Component]:
        """The shared inputs by name, in a fixed order (the order of the API endpoint's parameters)."""
        return {
            "prompt": self.prompt, "negative_prompt": self.negative_prompt, "sampler": self.sampler,
            "steps": self.steps, "cfg_scale": self.cfg_scale, "width": self.width, "height": self.height,
            "seed": self.seed, "batch_count": self.batch_count, "batch_size": self.batch_size,
            **self.seeds.fields(), "styles": self.styles, **self.script.fields(),
        }

    @staticmethod
    def request_kwargs(values: dict) -> dict[str, Any]:
        """Named widget values -> keyword arguments shared by every image request."""
        seed = values["seed"]
        return dict(
            **seed_request_fields(values),
            **script_request_fields(values),
            styles=tuple(values.get("styles") or ()),
            prompt=values["prompt"] or "",
            negative_prompt=values["negative_prompt"] or "",
            sampler=values["sampler"],
            steps=int(values["steps"]),
            cfg_scale=float(values["cfg_scale"]),
            width=int(values["width"]),
            height=int(values["height"]),
            seed=-1 if seed is None else int(seed),
            batch_count=int(values["batch_count"]),
            batch_size=int(values["batch_size"]),
        )

    def outputs(self) -> list:
        return [self.gallery, self.preview, self.info]


def prompt_row(tab: str) -> tuple[gr.Textbox, gr.Textbox, gr.Button, gr.Button]:
    """The first screen: prompt + Generate (Fooocus-simple); the negative prompt sits right below."""
    with gr.Row():
        with gr.Column(scale=5):
            prompt = gr.Textbox(label="Prompt", lines=2, placeholder="a large red circle on the left, blue background",
                                elem_id=f"{tab}_prompt")
            negative = gr.Textbox(label="Negative prompt", lines=1, elem_id=f"{tab}_negative_prompt")
        with gr.Column(scale=1, min_width=140):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
            interrupt = gr.Button("Interrupt", variant="stop", elem_id=f"{tab}_interrupt")
    return prompt, negative, generate, interrupt


def generation_widgets(tab: str, samplers: list[str], native: int, *, extra: Callable[[], None] | None = None,
                       services=None) -> GenerationWidgets:
    """Builds the whole parameter + output layout of an image tab. ``extra`` adds tab-specific inputs."""
    prompt, negative, generate, interrupt = prompt_row(tab)
    with gr.Row():
        with gr.Column(scale=1):
            if extra is not None:
                extra()
            styles = styles_row(tab, services, prompt, negative)
            with gr.Accordion("Advanced", open=False, elem_id=f"{tab}_advanced"):
                sampler = gr.Dropdown(samplers, value="Euler a", label="Sampling method", elem_id=f"{tab}_sampler")
                steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}_steps")
                cfg = gr.Slider(1, 30, value=7, step=0.5, label="CFG scale", elem_id=f"{tab}_cfg_scale")
                with gr.Row():
                    width = gr.Slider(64, 2048, value=native, step=8, label="Width", elem_id=f"{tab}_width")
                    height = gr.Slider(64, 2048, value=native, step=8, label="Height", elem_id=f"{tab}_height")
                seeds = seed_row(tab)
                with gr.Row():
                    batch_count = gr.Slider(1, 16, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
                    batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
            script = script_panel(tab, services)
        with gr.Column(scale=1):
            # object_fit contain + auto height: a square image is shown whole, never cropped to the frame
            gallery = gr.Gallery(label="Results", columns=2, height="auto", object_fit="contain", format="png", type="filepath",
                                 elem_id=f"{tab}_gallery")
            send_to = send_to_buttons(tab)
            preview = gr.Image(label="Live preview", height=160, interactive=False, elem_id=f"{tab}_preview")
            info = gr.Textbox(label="Generation info", lines=4, interactive=False, elem_id=f"{tab}_info")
    wire_reuse_seed(seeds, info)
    return GenerationWidgets(prompt, negative, sampler, steps, cfg, width, height, seeds.seed, batch_count, batch_size,
                             generate, interrupt, gallery, preview, info, seeds, styles, script, send_to)


def result_info(result: ImageResult) -> str:
    lines = [result.infotexts[0] if result.infotexts else ""]
    if len(result.seeds) > 1:
        lines.append(f"Seeds: {', '.join(str(s) for s in result.seeds)}")
    if result.paths:
        lines.append(f"Saved: {result.paths[0].parent}")
    if result.interrupted:
        lines.append("Interrupted.")
    return "\n".join(lines)


def job_owner(request: gr.Request | None) -> tuple[str, str | None]:
    """(owner, session) of a Gradio event: the login user, or the browser session without a login."""
    if request is None:
        return "local", None
    session = getattr(request, "session_hash", None)
    return (getattr(request, "username", None) or f"session:{session}"), session


async def submit_job(services, kind: str, job_request: Any, request: gr.Request | None) -> Job:
    """Queue ``job_request`` as the caller's job; bad input -> gr.Error (the toast), nothing queued.
    (Validation may read files, so it runs in a worker thread, not on the server's event loop.)"""
    owner, session = job_owner(request)
    try:
        return await asyncio.to_thread(services.jobs.submit, kind, job_request, owner=owner, session=session)
    except (ValueError, FileNotFoundError) as e:
        raise gr.Error(translate_error(str(e), request_language(request))) from e


def progress_text(jobs, job: Job) -> tuple[Any, str]:
    """(gr.Progress value, description) of the caller's job: queue position, or batch, step, time, ETA."""
    p = job.progress()
    if job.status is JobStatus.QUEUED or job.waiting_turn:
        ahead = jobs.position(job)
        return 0 if job.status is JobStatus.QUEUED else p["fraction"], (
            f"Queued: {ahead} job{'s' if ahead != 1 else ''} ahead of you")
    parts = []
    if p["batches"] > 1:
        parts.append(f"Batch {min(p['batch'] + 1, p['batches'])}/{p['batches']}")
    if p["text"] and p["batches"] <= 1:
        parts.append(p["text"])
    if p["steps"]:
        parts.append(f"step {p['step']}/{p['steps']}")
    parts.append(f"{p['elapsed']:.1f} s")
    if p["eta"] > 0:
        parts.append(f"ETA {p['eta']:.0f} s")
    return p["fraction"], " · ".join(parts)


async def watch_job(jobs, job: Job, progress: gr.Progress | None) -> AsyncIterator[dict]:
    """Follows ``job`` until it ends, updating ``progress``; yields each new live preview.

    If the Gradio event is cancelled (``/gradio_api/cancel``, or its stream closed), the job is cancelled
    in the engine too: it stops within one step. A closed tab is handled by ``JobQueue.cancel_session``.
    """
    last_preview = None
    finished = asyncio.Event()  # set the moment the job ends: its result is not held back a whole interval
    loop = asyncio.get_running_loop()
    job.on_done(lambda: loop.call_soon_threadsafe(finished.set))
    try:
        while not job.done:
            if progress is not None:
                value, desc = progress_text(jobs, job)
                progress(value, desc=desc)
            preview = job.progress()["preview"]
            if preview is not None and preview is not last_preview:
                last_preview = preview
                yield {"preview": preview}
            try:
                await asyncio.wait_for(finished.wait(), PREVIEW_INTERVAL_S)
            except asyncio.TimeoutError:
                pass
    except BaseException:  # asyncio.CancelledError / GeneratorExit: the browser no longer waits
        if not job.done:
            jobs.cancel(job)
        raise


def job_value(job: Job, request: gr.Request | None = None) -> Any:
    """The finished job's engine result; its error as gr.Error (input errors, in the page's language) or re-raised."""
    if job.status is JobStatus.FAILED:
        if isinstance(job.exception, (ValueError, FileNotFoundError, RuntimeError)):
            raise gr.Error(translate_error(str(job.exception), request_language(request)))
        raise job.exception or gr.Error(job.error or "the job failed")
    if job.result is None or job.result.value is None:
        raise gr.Error(f"The job was {job.status.value} before it produced anything.")
    return job.result.value


async def wait_for_job(jobs, job: Job, progress: gr.Progress | None, request: gr.Request | None = None) -> Any:
    async for _ in watch_job(jobs, job, progress):
        pass
    return job_value(job, request)


async def stream_image_job(services, kind: str, job_request: Any, request: gr.Request | None,
                           progress: gr.Progress) -> AsyncIterator[tuple]:
    """Submits an image job and yields (gallery, preview, info) updates: live previews, then the result."""
    job = await submit_job(services, kind, job_request, request)
    progress(0, desc="Queued")
    async for update in watch_job(services.jobs, job, progress):
        yield gr.skip(), update["preview"], gr.skip()
    result: ImageResult = job_value(job, request)
    # The saved PNGs carry the A1111 "parameters" text; PIL images would be re-encoded without it.
    shown = [str(p) for p in result.paths] if len(result.paths) == len(result.images) else result.images
    yield [(img, f"seed {seed}") for img, seed in zip(shown, result.seeds)], gr.skip(), result_info(result)


def interrupt_handler(services) -> Callable:
    """The Interrupt button: stops the caller's own running job (other users' jobs go on)."""

    def interrupt(request: gr.Request) -> None:
        services.jobs.interrupt(job_owner(request)[0])

    return interrupt


def named_handler(fn: Callable, names: list[str], *, progress: bool = False, request: bool = False,
                  optional: tuple[str, ...] = ()) -> Callable:
    """Wraps ``fn(values: dict[name, value][, progress][, request])`` as a handler whose signature lists ``names``.

    Gradio reads the signature, so API clients (gradio_client) see named parameters in a fixed order and
    the handler itself never depends on positions. Generator functions stay generators (streaming), async
    ones stay async (so a cancelled event reaches them). ``request`` passes the ``gr.Request`` (who calls).
    ``optional`` names (trailing ones) default to None, so API clients may leave them out.
    """
    if optional and list(names[len(names) - len(optional):]) != list(optional):
        raise ValueError(f"optional parameters {optional} must be the last of {names}")
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) if n in optional
              else inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    if progress:
        params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
    if request:
        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=gr.Request))

    def split(args: tuple, kwargs: dict) -> tuple[dict, tuple]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = {n: bound.arguments[n] for n in names}
        extra = ((bound.arguments["progress"],) if progress else ()) + ((bound.arguments["request"],) if request else ())
        return values, extra

    if inspect.isasyncgenfunction(fn):
        async def wrapper(*args, **kwargs):
            values, extra = split(args, kwargs)
            async for item in fn(values, *extra):
                yield item
    elif inspect.iscoroutinefunction(fn):
        async def wrapper(*args, **kwargs):
            values, extra = split(args, kwargs)
            return await fn(values, *extra)
    elif inspect.isgeneratorfunction(fn):
        def wrapper(*args, **kwargs):
            values, extra = split(args, kwargs)
            yield from fn(values, *extra)
    else:
        def wrapper(*args, **kwargs):
            values, extra = split(args, kwargs)
            return fn(values, *extra)

    signature = inspect.Signature(params)
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {"request": gr.Request} if request else {}  # Gradio injects gr.Request by type hint
    wrapper.__name__ = getattr(fn, "__name__", "handler")
    return wrapper


def bind(event: Callable, fn: Callable, fields: dict, outputs, api_name, *, progress: bool = False,
         request: bool = False, optional: tuple[str, ...] = (), **kwargs):
    """``event(named handler, inputs=fields in order, outputs)`` — the one way tabs wire widgets to handlers."""
    return event(named_handler(fn, list(fields), progress=progress, request=request, optional=optional),
                 inputs=list(fields.values()),
                 outputs=outputs, api_name=api_name, **kwargs)


def guard(fn: Callable) -> Callable:
    """Wraps a non-generator handler: engine input errors -> gr.Error (a toast, the server keeps running)."""

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from e

    wrapped.__name__ = getattr(fn, "__name__", "handler")
    return wrapped
