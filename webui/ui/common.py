"""Shared UI pieces: the generation-parameter widgets and the job runner with progress + live preview.

Widgets are read by name (inputs given as a set -> the handler receives {component: value}); nothing is
positional. Engine errors (ValueError, FileNotFoundError) become ``gr.Error`` here and only here.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import gradio as gr

from webui.diffusion.types import ImageResult, ProgressInfo

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

    def fields(self) -> dict[str, gr.components.Component]:
        """The shared inputs by name, in a fixed order (the order of the API endpoint's parameters)."""
        return {
            "prompt": self.prompt, "negative_prompt": self.negative_prompt, "sampler": self.sampler,
            "steps": self.steps, "cfg_scale": self.cfg_scale, "width": self.width, "height": self.height,
            "seed": self.seed, "batch_count": self.batch_count, "batch_size": self.batch_size,
        }

    @staticmethod
    def request_kwargs(values: dict) -> dict[str, Any]:
        """Named widget values -> keyword arguments shared by every image request."""
        seed = values["seed"]
        return dict(
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


def generation_widgets(tab: str, samplers: list[str], native: int, *, extra: Callable[[], None] | None = None
                       ) -> GenerationWidgets:
    """Builds the whole parameter + output layout of an image tab. ``extra`` adds tab-specific inputs."""
    prompt, negative, generate, interrupt = prompt_row(tab)
    with gr.Row():
        with gr.Column(scale=1):
            if extra is not None:
                extra()
            with gr.Accordion("Advanced", open=False):
                sampler = gr.Dropdown(samplers, value="Euler a", label="Sampling method", elem_id=f"{tab}_sampler")
                steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}_steps")
                cfg = gr.Slider(1, 30, value=7, step=0.5, label="CFG scale", elem_id=f"{tab}_cfg_scale")
                with gr.Row():
                    width = gr.Slider(64, 2048, value=native, step=8, label="Width", elem_id=f"{tab}_width")
                    height = gr.Slider(64, 2048, value=native, step=8, label="Height", elem_id=f"{tab}_height")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id=f"{tab}_seed")
                with gr.Row():
                    batch_count = gr.Slider(1, 16, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
                    batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
        with gr.Column(scale=1):
            gallery = gr.Gallery(label="Results", columns=2, height=420, format="png", elem_id=f"{tab}_gallery")
            preview = gr.Image(label="Live preview", height=160, interactive=False, elem_id=f"{tab}_preview")
            info = gr.Textbox(label="Generation info", lines=4, interactive=False, elem_id=f"{tab}_info")
    return GenerationWidgets(prompt, negative, sampler, steps, cfg, width, height, seed, batch_count, batch_size,
                             generate, interrupt, gallery, preview, info)


def result_info(result: ImageResult) -> str:
    lines = [result.infotexts[0] if result.infotexts else ""]
    if len(result.seeds) > 1:
        lines.append(f"Seeds: {', '.join(str(s) for s in result.seeds)}")
    if result.paths:
        lines.append(f"Saved: {result.paths[0].parent}")
    if result.interrupted:
        lines.append("Interrupted.")
    return "\n".join(lines)


def run_with_progress(job: Callable[[Callable[[ProgressInfo], None]], ImageResult], progress: gr.Progress
                      ) -> Iterator[tuple]:
    """Runs ``job(progress_callback)`` in a thread; yields (gallery, preview, info) updates as it goes."""
    updates: "queue.Queue[ProgressInfo]" = queue.Queue()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = job(updates.put)
        except BaseException as e:  # re-raised in the handler's thread below
            outcome["error"] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    progress(0, desc="Loading model…")
    while worker.is_alive() or not updates.empty():
        latest = None
        try:
            latest = updates.get(timeout=PREVIEW_INTERVAL_S)
            while True:
                latest = updates.get_nowait()
        except queue.Empty:
            pass
        if latest is not None:
            progress((latest.step, latest.steps), desc=f"Batch {latest.job + 1}/{latest.job_count}", unit="steps")
            if latest.preview is not None:
                yield gr.skip(), latest.preview, gr.skip()
    worker.join()
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, (ValueError, FileNotFoundError)):
            raise gr.Error(str(error))
        raise error
    result: ImageResult = outcome["result"]
    # The saved PNGs carry the A1111 "parameters" text; PIL images would be re-encoded without it.
    shown = [str(p) for p in result.paths] if len(result.paths) == len(result.images) else result.images
    yield [(img, f"seed {seed}") for img, seed in zip(shown, result.seeds)], gr.skip(), result_info(result)
    time.sleep(0)  # let the last update flush before the event ends


def named_handler(fn: Callable, names: list[str], *, progress: bool = False, optional: tuple[str, ...] = ()) -> Callable:
    """Wraps ``fn(values: dict[name, value][, progress])`` as a handler whose signature lists ``names``.

    Gradio reads the signature, so API clients (gradio_client) see named parameters in a fixed order and
    the handler itself never depends on positions. Generator functions stay generators (streaming).
    ``optional`` names (trailing ones) default to None, so API clients may leave them out.
    """
    if optional and list(names[len(names) - len(optional):]) != list(optional):
        raise ValueError(f"optional parameters {optional} must be the last of {names}")
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) if n in optional
              else inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    if progress:
        params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))

    def split(args: tuple, kwargs: dict) -> tuple[dict, tuple]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = {n: bound.arguments[n] for n in names}
        return values, ((bound.arguments["progress"],) if progress else ())

    if inspect.isgeneratorfunction(fn):
        def wrapper(*args, **kwargs):
            values, extra = split(args, kwargs)
            yield from fn(values, *extra)
    else:
        def wrapper(*args, **kwargs):
            values, extra = split(args, kwargs)
            return fn(values, *extra)

    signature = inspect.Signature(params)
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(fn, "__name__", "handler")
    return wrapper


def bind(event: Callable, fn: Callable, fields: dict, outputs, api_name, *, progress: bool = False,
         optional: tuple[str, ...] = (), **kwargs):
    """``event(named handler, inputs=fields in order, outputs)`` — the one way tabs wire widgets to handlers."""
    return event(named_handler(fn, list(fields), progress=progress, optional=optional), inputs=list(fields.values()),
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
