"""One unit of work in the queue: a ``Job`` (id, owner, kind, request, status, progress, cancel, result).

Engines never see a ``Job``; they see its :class:`JobControl`: report progress, check the cancel flag
every step or frame, yield the engine at batch boundaries, announce each output before writing it.
A bare ``JobControl()`` (never cancelled, reports nowhere) lets engines run outside the queue.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from webui.jobs.scheduler import Cancelled

log = logging.getLogger(__name__)

PREVIEW_MIN_INTERVAL_S = 0.5  # engines compute a live preview at most this often
PREVIEW_FIRST_S = 0.25  # ... the first one this long after the first step (the first steps show only noise)
PREVIEW_BUDGET = 0.03  # ... and previews take at most this share of the time (a big batch's grid comes less often)


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # a Gradio cancel / closed tab / cancel before it started
    INTERRUPTED = "interrupted"  # the owner's Interrupt, or the server stopped while it ran

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class CancelReason(str, enum.Enum):
    INTERRUPT = "interrupt"  # A1111 Interrupt: keep what finished, status "interrupted"
    CANCEL = "cancel"  # Gradio cancel / tab closed: status "cancelled"


class JobCancelled(Exception):
    """Raised by runners (or ``JobControl.check``) when the job was cancelled mid-way."""


@dataclass
class JobResult:
    """What a runner returns: the engine's own result plus what history records."""

    value: Any  # the engine result (ImageResult, TalkingHeadResult, ...) for the caller
    paths: list[Path] = field(default_factory=list)  # files written
    infotexts: list[str] = field(default_factory=list)  # one per path (may be empty)
    interrupted: bool = False  # stopped early; ``paths`` holds what finished


class JobControl:
    """The engine-facing side of a job. This base class is the "no queue" control: it never cancels."""

    def report(self, step: int, steps: int, *, batch: int = 0, batches: int = 1, preview: Any = None,
               text: Optional[str] = None) -> None:
        """Progress of the running job: ``step`` of ``steps`` in batch ``batch`` (0-based) of ``batches``."""

    def cancelled(self) -> bool:
        """True once the job should stop (check it every step or frame)."""
        return False

    def check(self) -> None:
        """Raise JobCancelled when the job was cancelled (for engines that stop by exception)."""
        if self.cancelled():
            raise JobCancelled("cancelled")

    def take_skip(self) -> bool:
        """A1111 "skip": True once per request; the engine ends the current image and goes on."""
        return False

    def preview_due(self) -> bool:
        """Whether a live preview is wanted now (rate-limited so previews stay cheap)."""
        return False

    def batch_boundary(self) -> None:
        """Between batches: lets another owner's queued job use the engine first (fair scheduling).
        It may return cancelled (the job was cancelled while it waited): check ``cancelled()`` after it."""

    def add_output(self, path: Path, infotext: str = "") -> None:
        """Record ``path`` as an output of this job. Call it just before writing the file atomically."""

    def note(self, text: str) -> None:
        """Record an event of this job in its history (e.g. "batch 2 retried on node X"); shown as progress text."""


class Job:
    """State of one submitted job. Thread-safe: the runner thread writes, any thread reads."""

    def __init__(self, owner: str, kind: str, request: Any, *, session: Optional[str] = None,
                 params: Optional[dict] = None):
        self.id = uuid.uuid4().hex
        self.owner = owner
        self.session = session  # the Gradio session that submitted it (closing the tab cancels it)
        self.kind = kind
        self.request = request
        self.params = params or {}
        self.created = time.time()
        self.started: Optional[float] = None
        self.finished: Optional[float] = None
        self.status = JobStatus.QUEUED
        self.error: Optional[str] = None
        self.result: Optional[JobResult] = None
        self.exception: Optional[BaseException] = None  # a failed runner's error, re-raised by JobQueue.run
        self.paths: list[Path] = []
        self.infotexts: list[str] = []
        self.notes: list[str] = []  # events recorded in history (JobControl.note)
        self.cancel_event = threading.Event()
        self.cancel_reason: Optional[CancelReason] = None
        self.skip_event = threading.Event()
        self.waiting_turn = False  # running, but paused at a batch boundary for another owner's job
        self._done = threading.Event()
        self._done_callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._progress: dict[str, Any] = {"step": 0, "steps": 0, "batch": 0, "batches": 1, "text": ""}
        self._preview: Any = None
        self._next_preview: Optional[float] = None  # monotonic time from which the next preview is due
        self._preview_asked: Optional[float] = None  # when the engine was told to make the preview it is making

    # ---------------------------------------------------------------- commands
    def cancel(self, reason: CancelReason = CancelReason.CANCEL) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = CancelReason(reason)
        self.cancel_event.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the job has finished (at once if it has). It runs in the runner's
        thread: keep it short (e.g. ``loop.call_soon_threadsafe(event.set)``)."""
        with self._lock:
            if not self._done.is_set():
                self._done_callbacks.append(callback)
                return
        callback()

    # ---------------------------------------------------------------- progress
    def set_progress(self, *, preview: Any = None, **fields: Any) -> None:
        with self._lock:
            self._progress.update(fields)
            if preview is not None:
                self._preview = preview
                if self._preview_asked is not None:  # the preview mark_preview asked for: it cost this long
                    cost = time.monotonic() - self._preview_asked
                    self._next_preview = self._preview_asked + max(PREVIEW_MIN_INTERVAL_S, cost / PREVIEW_BUDGET)
                    self._preview_asked = None

    def progress(self) -> dict[str, Any]:
        """Snapshot: step, steps, batch, batches, text, fraction 0-1, elapsed and eta in seconds."""
        with self._lock:
            p = dict(self._progress)
            preview = self._preview
        fraction = 0.0
        if self.status.finished:
            fraction = 1.0
        elif p["batches"]:
            fraction = p["batch"] / p["batches"]
            if p["steps"]:
                fraction += p["step"] / p["steps"] / p["batches"]
        fraction = min(max(fraction, 0.0), 1.0)
        elapsed = (self.finished or time.time()) - self.started if self.started else 0.0
        eta = elapsed / fraction - elapsed if fraction > 0 and not self.status.finished else 0.0
        return {**p, "fraction": fraction, "elapsed": elapsed, "eta": eta, "preview": preview}

    def finish(self, status: JobStatus, *, result: Optional[JobResult] = None, error: Optional[str] = None) -> None:
        self.status = status
        self.result = result
        self.error = error
        self.finished = time.time()
        with self._lock:
            self._done.set()
            callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # e.g. the event loop of a watcher that has gone: the job is done regardless
                log.debug("a done callback of %r failed", self, exc_info=True)

    def mark_preview(self) -> bool:
        """Whether the engine should make a live preview now: PREVIEW_FIRST_S after the first ask, then at most
        every PREVIEW_MIN_INTERVAL_S, and rarer when a preview costs more than PREVIEW_BUDGET of the time."""
        now = time.monotonic()
        with self._lock:
            if self._next_preview is None:
                self._next_preview = now + PREVIEW_FIRST_S
                return False
            if now < self._next_preview:
                return False
            self._next_preview = now + PREVIEW_MIN_INTERVAL_S
            self._preview_asked = now
            return True

    def __repr__(self) -> str:
        return f"Job({self.id[:8]} {self.kind} owner={self.owner!r} {self.status.value})"


class QueuedJobControl(JobControl):
    """The control a queued job's runner gets; wired to the job and the queue's scheduler."""

    def __init__(self, job: Job, yield_turn: Callable[[Job], None], on_output: Callable[[Job], None]):
        self._job = job
        self._yield_turn = yield_turn
        self._on_output = on_output

    def report(self, step, steps, *, batch=0, batches=1, preview=None, text=None) -> None:
        fields = dict(step=int(step), steps=int(steps), batch=int(batch), batches=int(batches))
        if text is not None:
            fields["text"] = text
        self._job.set_progress(preview=preview, **fields)

    def cancelled(self) -> bool:
        return self._job.cancel_event.is_set()

    def take_skip(self) -> bool:
        if self._job.skip_event.is_set():
            self._job.skip_event.clear()
            return True
        return False

    def preview_due(self) -> bool:
        return self._job.mark_preview()

    def batch_boundary(self) -> None:
        if not self.cancelled():
            self._job.waiting_turn = True
            try:
                self._yield_turn(self._job)
            except Cancelled:  # cancelled while waiting for its turn: the runner sees cancelled() and stops
                pass
            finally:
                self._job.waiting_turn = False

    def add_output(self, path: Path, infotext: str = "") -> None:
        self._job.paths.append(Path(path))
        self._job.infotexts.append(infotext)
        self._on_output(self._job)

    def note(self, text: str) -> None:
        self._job.notes.append(str(text))
        self._job.set_progress(text=str(text))
        self._on_output(self._job)
