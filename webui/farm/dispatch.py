"""The farm's job runners: the head's JobQueue kinds, run on the workers instead of in this process.

An image job is split into pieces, one per batch (``batch_size`` images with their own consecutive seeds,
exactly the batches one machine would run, so the images are identical); a piece goes to a free worker
(one with the model loaded first), more pieces go to other free workers at the same time. The PNG bytes
come back and are saved here with ``save_png`` and recorded in history, like single-machine results.
A piece whose worker dies is retried on another worker at most ``max_retries`` times, noted in history
("batch 2/8 retried on node X"); a worker that lacks the model says so and the piece goes elsewhere.
"""

from __future__ import annotations

import dataclasses
import io
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from webui.atomic import atomic_file
from webui.farm.pool import Farm, NoWorker, WorkerRecord
from webui.farm.worker import TALK_FILE_FIELDS
from webui.jobs.job import JobCancelled, JobControl, JobResult
from webui.jobs.queue import JobQueue

WAIT_S = 0.25
PROGRESS_EVERY_S = 1.0  # how often a running piece's step is read from its worker
STOP_WAIT_S = 30.0  # how long a failed job waits for its other pieces to stop


class FarmJobFailed(RuntimeError):
    """A piece failed on every worker it was tried on."""


@dataclass(eq=False)
class Piece:
    """One unit of work sent to one worker."""

    label: str  # "batch 2/8"
    model: Optional[str]  # the worker must have it (None: any worker)
    submit: Callable[[Any, str], Any]  # (actor handle, piece id) -> ObjectRef
    attempts: int = 0  # workers that died under it
    failed_on: list[str] = field(default_factory=list)
    exclude: set = field(default_factory=set)


def _died(error: BaseException) -> bool:
    import ray.exceptions as rex

    kinds = tuple(k for k in (getattr(rex, "RayActorError", None), getattr(rex, "ActorUnavailableError", None),
                              getattr(rex, "NodeDiedError", None), getattr(rex, "WorkerCrashedError", None),
                              getattr(rex, "ObjectLostError", None)) if k is not None)
    return isinstance(error, kinds)


def run_pieces(farm: Farm, pieces: list[Piece], control: JobControl,
               on_done: Callable[[Piece, WorkerRecord, dict], None],
               on_step: Optional[Callable[[int, int], None]] = None) -> bool:
    """Run every piece on the farm (several at once when workers are free). Returns False if cancelled.

    ``on_done(piece, worker, answer)`` is called in this thread as each piece finishes; ``on_step(step,
    steps)`` about every second with the denoising step of the oldest running piece (read from its worker)."""
    import ray

    poll: list = []  # [ObjectRef of a worker's info()] while one is asked
    last_poll = 0.0

    def poll_progress() -> None:
        nonlocal last_poll
        if poll and ray.wait(poll, timeout=0)[0]:
            try:
                current = ray.get(poll.pop()).get("current") or {}
                if current.get("steps"):
                    on_step(int(current["step"]), int(current["steps"]))
            except Exception:  # noqa: BLE001 - the worker died: the piece's own result says so
                pass
        if not poll and active and time.monotonic() - last_poll >= PROGRESS_EVERY_S:
            last_poll = time.monotonic()
            poll.append(next(iter(active.values()))[1].handle.info.remote())

    pending = list(pieces)
    active: dict[Any, tuple[Piece, WorkerRecord, str]] = {}  # ObjectRef -> (piece, worker, piece id)
    retried: dict[int, str] = {}  # id(piece) -> why its last worker failed
    cancelled_sent = False

    def dispatch(piece: Piece, worker: WorkerRecord) -> None:
        piece_id = uuid.uuid4().hex
        active[piece.submit(worker.handle, piece_id)] = (piece, worker, piece_id)
        if id(piece) in retried:
            control.note(f"{piece.label} retried on node {worker.host} (worker {worker.name}; {retried.pop(id(piece))})")
        else:
            control.report(0, 1, text=f"{piece.label} on node {worker.host} (worker {worker.name})")

    try:
        while pending or active:
            if control.cancelled():
                pending.clear()
                if not cancelled_sent:
                    for _, worker, piece_id in active.values():
                        worker.handle.cancel.remote(piece_id)
                    cancelled_sent = True
            while pending:  # hand out pieces: wait for a worker only when none of ours is running
                piece = pending[0]
                worker = farm.acquire(piece.model, exclude=piece.exclude, cancelled=control.cancelled,
                                      blocking=not active, what=piece.label)
                if worker is None:
                    break
                pending.pop(0)
                dispatch(piece, worker)
            if not active:
                continue
            done, _ = ray.wait(list(active), num_returns=1, timeout=WAIT_S)
            if on_step is not None:
                poll_progress()
            for ref in done:
                piece, worker, _ = active.pop(ref)
                try:
                    answer = ray.get(ref)
                except Exception as e:  # noqa: BLE001
                    if isinstance(e, JobCancelled) or (control.cancelled() and not _died(e)):
                        farm.release(worker, None)
                        continue
                    if not _died(e):
                        farm.release(worker, None)
                        raise _cause(e)
                    farm.mark_dead(worker, f"died while running {piece.label}: {type(e).__name__}")
                    piece.attempts += 1
                    piece.failed_on.append(worker.label())
                    piece.exclude.add(worker)
                    if piece.attempts > farm.cluster.max_retries:
                        raise FarmJobFailed(f"{piece.label} failed on {piece.attempts} workers "
                                            f"({'; '.join(piece.failed_on)}): each died while running it")
                    retried[id(piece)] = f"{worker.name} on node {worker.host} died"
                    if not control.cancelled():
                        pending.insert(0, piece)
                    continue
                if "missing" in answer:  # this node lacks the model: not offered it again, the piece goes elsewhere
                    farm.lacks_model(worker, piece.model)
                    control.note(answer["missing"] + f"; {piece.label} sent to another worker")
                    pending.insert(0, piece)
                    continue
                farm.release(worker, piece.model)
                on_done(piece, worker, answer)
    finally:  # a piece failed for good: stop the others (their workers stay busy until they return)
        if active:
            for _, worker, piece_id in active.values():
                worker.handle.cancel.remote(piece_id)
            ray.wait(list(active), num_returns=len(active), timeout=STOP_WAIT_S)
            for _, worker, _ in active.values():
                farm.release(worker, None)
    return not control.cancelled()


def _cause(error: BaseException) -> BaseException:
    """A worker's own exception (ValueError naming a bad value ...) rather than Ray's wrapper."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


# -------------------------------------------------------------------- images
def run_images(farm: Farm, services: Any, kind: str, request: Any, control: JobControl) -> JobResult:
    from PIL import Image

    from webui.diffusion.infotext import save_png
    from webui.diffusion.service import ImageService
    from webui.diffusion.types import ImageResult

    image_service = services.image
    model = request.model or image_service.current_model().name
    seeds = ImageService._seeds(request)  # seed -1 resolved here, once: every piece gets its own seeds
    subseeds = ImageService._seeds(request, request.subseed)  # variation seeds likewise
    size, count = request.batch_size, request.batch_count
    results: dict[int, tuple[list, list, list, list, list, dict]] = {}  # batch -> images, seeds, infos, paths, ...
    interrupted = False
    pieces = []
    for b in range(count):
        piece_request = dataclasses.replace(request, seed=seeds[b * size], subseed=subseeds[b * size], batch_count=1,
                                            model=model, save=False)
        pieces.append(Piece(f"batch {b + 1}/{count}", model,
                            lambda handle, pid, r=piece_request: handle.run_images.remote(pid, kind, r)))
    index = {id(p): b for b, p in enumerate(pieces)}
    control.report(0, request.steps, batch=0, batches=count,
                   text=f"{kind}: {len(seeds)} image(s), model {model}, on the farm")

    def on_done(piece: Piece, worker: WorkerRecord, answer: dict) -> None:
        nonlocal interrupted
        b = index[id(piece)]
        images, paths = [], []
        for png, seed, info in zip(answer["pngs"], answer["seeds"], answer["infotexts"]):
            image = Image.open(io.BytesIO(png))
            image.load()
            if request.save:
                path = image_service._next_path(kind, seed)
                control.add_output(path, info)
                paths.append(save_png(image, path, info))
            images.append(image)
        interrupted = interrupted or answer["interrupted"]
        results[b] = (images, answer["seeds"], answer["infotexts"], paths, answer.get("subseeds", []),
                      answer.get("extra_params", {}))
        control.note(f"{piece.label} (seeds {', '.join(map(str, answer['seeds']))}) made by worker {worker.name} "
                     f"on node {worker.host}")
        control.report(0, request.steps, batch=len(results), batches=count, preview=images[0] if images else None)

    def on_step(step: int, steps: int) -> None:
        control.report(step, steps, batch=len(results), batches=count)

    finished = run_pieces(farm, pieces, control, on_done, on_step)
    out = ImageResult(images=[], seeds=[], infotexts=[], paths=[], interrupted=interrupted or not finished)
    for b in sorted(results):
        images, piece_seeds, infos, paths, piece_subseeds, extra = results[b]
        out.images += images
        out.seeds += piece_seeds
        out.infotexts += infos
        out.paths += paths
        out.subseeds += piece_subseeds
        out.extra_params = out.extra_params or dict(extra)
    return JobResult(out, list(out.paths), list(out.infotexts) if out.paths else [], interrupted=out.interrupted)


# -------------------------------------------------------------------- talking head
def _talk_files(request: Any) -> tuple[Any, dict[str, tuple[str, bytes]]]:
    """The request's input files as bytes (a worker on another PC cannot read the head's disk)."""
    files = {}
    for name in TALK_FILE_FIELDS:
        value = getattr(request, name, None)
        if isinstance(value, (str, Path)) and Path(value).is_file():
            files[name] = (Path(value).name, Path(value).read_bytes())
    return dataclasses.replace(request, output=None), files


def run_talking_head(farm: Farm, services: Any, request: Any, control: JobControl) -> JobResult:
    from talking_head.pipeline import TalkingHeadResult

    output = Path(services.talking_head.output_path(request))
    output.parent.mkdir(parents=True, exist_ok=True)
    sent, files = _talk_files(request)
    answers: list[tuple[WorkerRecord, dict]] = []
    piece = Piece("talking head", None, lambda handle, pid: handle.run_talking_head.remote(pid, sent, files))
    control.add_output(output)
    if not run_pieces(farm, [piece], control, lambda p, w, a: answers.append((w, a))):
        raise JobCancelled("cancelled")
    worker, answer = answers[0]
    _write_atomic(output, output.with_name(output.stem + ".partial.mp4"), answer["mp4"])
    speech = None
    if answer.get("speech"):
        speech = output.with_suffix(".wav")
        _write_atomic(speech, speech.with_name(f".{speech.name}.part"), answer["speech"])
    control.note(f"talking head made by worker {worker.name} on node {worker.host}")
    result = TalkingHeadResult(video_path=output, coeffs=None, timings=answer["timings"], frames=answer["frames"],
                               duration=answer["duration"], engine=answer["engine"], speech_path=speech)
    return JobResult(result, [output], [""])


def _write_atomic(path: Path, temp: Path, data: bytes) -> None:
    with atomic_file(path, temp) as f:
        f.write(data)


def register_farm_kinds(queue: JobQueue, services: Any, farm: Farm) -> None:
    """Replace the image and talking-head runners by farm ones (same kinds, same checks)."""
    from webui.jobs.runners import IMAGE_KINDS, check_talking_head

    for kind in IMAGE_KINDS:
        queue.register(kind, lambda req, control, k=kind: run_images(farm, services, k, req, control),
                       check=lambda req, k=kind: services.image.check(k, req))
    queue.register("talking_head", lambda req, control: run_talking_head(farm, services, req, control),
                   check=lambda req: check_talking_head(services, req))


__all__ = ["FarmJobFailed", "NoWorker", "Piece", "register_farm_kinds", "run_images", "run_pieces",
           "run_talking_head"]
