"""The built-in job kinds: txt2img, img2img, inpaint (ImageService) and talking_head (TalkingHeadPipeline).

Each runner adapts one engine to ``run(request, control) -> JobResult``. Engines load lazily, on the
first job of their kind.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from webui.jobs.job import JobControl, JobResult
from webui.jobs.queue import JobQueue

IMAGE_KINDS = ("txt2img", "img2img", "inpaint")
TALK_STEPS = 1000  # talking-head progress is a fraction; reported as steps of this many


def register_builtin_kinds(queue: JobQueue, services: Any) -> None:
    for kind in IMAGE_KINDS:
        _register_image_kind(queue, services, kind)
    queue.register("talking_head", lambda req, control: run_talking_head(services, req, control),
                   check=lambda req: check_talking_head(services, req))
    register_batch_kind(queue, services)
    queue.register("extras", lambda req, control: run_extras(services, req, control),
                   check=lambda req: services.extras.check_inputs(req))


def run_extras(services: Any, request: Any, control: JobControl) -> JobResult:
    """Extras (upscalers, face restore): one image at a time, other users' jobs between images."""
    result = services.extras.run(request, control)
    return JobResult(result, list(result.paths), list(result.infotexts) if result.paths else [],
                     interrupted=control.cancelled())


def _register_image_kind(queue: JobQueue, services: Any, kind: str) -> None:
    def run(request, control: JobControl) -> JobResult:
        result = getattr(services.image, kind)(request, control)
        return JobResult(result, list(result.paths), list(result.infotexts) if result.paths else [],
                         interrupted=result.interrupted)

    queue.register(kind, run, check=lambda request: services.image.check(kind, request))


def check_talking_head(services: Any, request: Any) -> None:
    from talking_head.pipeline import check_inputs

    check_inputs(request, services.talking_head.max_image_pixels)


def run_talking_head(services: Any, request: Any, control: JobControl) -> JobResult:
    """The pipeline reports (stage, fraction) every few frames; a cancelled job stops at the next report."""
    pipeline = services.talking_head
    output = Path(pipeline.output_path(request))
    request = dataclasses.replace(request, output=output)
    control.add_output(output)  # the mp4 appears by rename (talking_head.video writes <stem>.partial.mp4)

    def progress(stage: str, fraction: float) -> None:
        control.check()  # raises JobCancelled: the pipeline stops and deletes its partial file
        control.report(int(round(fraction * TALK_STEPS)), TALK_STEPS, text=stage)

    result = pipeline(request, progress=progress)
    return JobResult(result, [result.video_path], [""])


@dataclasses.dataclass(frozen=True)
class TalkingHeadBatch:
    """A batch job: the options of ``template`` for every (portrait, audio | None = typed text) pair."""

    template: Any                           # TalkingHeadRequest (its image/audio/output are replaced)
    pairs: tuple[tuple[Path, Optional[Path]], ...]
    out_dir: Path


def run_talking_head_batch(services: Any, batch: TalkingHeadBatch, control: JobControl) -> JobResult:
    """One video per pair; other users' jobs may run between videos; a failing pair is reported and
    the others go on; a cancel stops before the next video (and inside the current one)."""
    from talking_head.batch import run_batch

    pipeline = services.talking_head

    def one(request, progress):
        control.add_output(Path(request.output))
        return pipeline(request, progress=progress)

    def progress(i: int, total: int, stage: str, fraction: float) -> None:
        control.check()
        if stage == "start" and i:
            control.batch_boundary()
        control.report(int(round(fraction * TALK_STEPS)), TALK_STEPS, batch=i + 1, batches=total, text=stage)

    result = run_batch(one, batch.template, list(batch.pairs), batch.out_dir, progress=progress,
                       should_stop=control.cancelled)
    paths = [item.result.video_path for item in result.done]
    return JobResult(result, paths, [""] * len(paths), interrupted=control.cancelled())


def register_batch_kind(queue: JobQueue, services: Any) -> None:
    queue.register("talking_head_batch", lambda req, control: run_talking_head_batch(services, req, control))
