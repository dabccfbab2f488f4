"""JobQueue: submit jobs by kind, run them one at a time on the engine, fairly between owners.

Each kind registers a runner ``run(request, control) -> JobResult``; ``submit`` validates the request
(the kind's ``check``, ValueError naming the bad value) in the caller's thread, records the job in
history and starts a thread that waits for the engine slot (:class:`FairScheduler`) and runs it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from webui.jobs.job import CancelReason, Job, JobCancelled, JobControl, JobResult, JobStatus, QueuedJobControl
from webui.jobs.scheduler import Cancelled, FairScheduler

log = logging.getLogger(__name__)

Runner = Callable[[Any, JobControl], JobResult]
KEEP_FINISHED = 200  # finished jobs kept in memory (history keeps them all)


def request_params(request: Any) -> dict[str, Any]:
    """A request dataclass -> JSON-able parameters for history (images become "<image WxH>")."""
    if not dataclasses.is_dataclass(request):
        return {"request": repr(request)}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        if hasattr(value, "size") and hasattr(value, "mode"):  # PIL image
            value = f"<image {value.size[0]}x{value.size[1]}>"
        elif hasattr(value, "shape"):  # numpy array
            value = f"<array {'x'.join(str(s) for s in value.shape)}>"
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, (tuple, list)):
            value = [v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for v in value]
        elif not isinstance(value, (int, float, str, bool)) and value is not None:
            value = str(value)
        out[f.name] = value
    return out


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Runner  # does the work; reports to and checks the control it gets
    check: Optional[Callable[[Any], None]] = None  # validates a request before it is queued (ValueError)
    params: Callable[[Any], dict] = request_params  # request -> parameters stored in history


class JobQueue:
    def __init__(self, history=None):
        self.history = history  # webui.jobs.history.History or None (not recorded)
        self._kinds: dict[str, JobKind] = {}
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._scheduler = FairScheduler()

    # ---------------------------------------------------------------- kinds
    def register(self, name: str, run: Runner, *, check: Optional[Callable[[Any], None]] = None,
                 params: Callable[[Any], dict] = request_params) -> None:
        """Add a job kind (``"txt2img"``, ``"talking_head"``, ``"extras"`` ...)."""
        self._kinds[name] = JobKind(name, run, check, params)

    def set_slots(self, slots: int) -> None:
        """How many jobs run at once (1: one engine; a farm: one per worker)."""
        self._scheduler.set_slots(slots)

    def kinds(self) -> list[str]:
        return list(self._kinds)

    # ---------------------------------------------------------------- submitting
    def submit(self, kind: str, request: Any, *, owner: str, session: Optional[str] = None) -> Job:
        """Validate ``request`` (ValueError) and queue it; returns at once with the queued Job."""
        if kind not in self._kinds:
            raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(self._kinds)}")
        spec = self._kinds[kind]
        if spec.check is not None:
            spec.check(request)
        job = Job(owner, kind, request, session=session, params=spec.params(request))
        with self._lock:
            self._jobs[job.id] = job
            self._prune()
        self._record(job, new=True)
        threading.Thread(target=self._work, args=(job, spec), name=f"job-{kind}-{job.id[:8]}", daemon=True).start()
        return job

    def run(self, kind: str, request: Any, *, owner: str, session: Optional[str] = None) -> Job:
        """Submit and wait until finished; re-raises the runner's error (ValueError stays ValueError)."""
        job = self.submit(kind, request, owner=owner, session=session)
        job.wait()
        if job.status is JobStatus.FAILED and job.exception is not None:
            raise job.exception
        return job

    # ---------------------------------------------------------------- reading
    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, owner: Optional[str] = None) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if owner is None or j.owner == owner]

    def active(self, owner: Optional[str] = None) -> list[Job]:
        """Queued and running jobs (of ``owner``), oldest first."""
        return sorted((j for j in self.jobs(owner) if not j.status.finished), key=lambda j: j.created)

    def current(self, owner: str) -> Optional[Job]:
        """The owner's running job, else its oldest queued one, else None (idle)."""
        active = self.active(owner)
        running = [j for j in active if j.status is JobStatus.RUNNING]
        return (running or active or [None])[0]

    def position(self, job: Job) -> int:
        """Jobs that get the engine before this one (0 when it runs or has finished)."""
        return 0 if job.status.finished else self._scheduler.ahead_of(job)

    # ---------------------------------------------------------------- stopping
    def interrupt(self, owner: str) -> int:
        """A1111 Interrupt for ``owner``: stop its running job (it keeps what finished). Returns how many."""
        jobs = [j for j in self.active(owner) if j.status is JobStatus.RUNNING]
        for job in jobs:
            job.cancel(CancelReason.INTERRUPT)
        self._scheduler.wake()
        return len(jobs)

    def skip(self, owner: str) -> int:
        """A1111 Skip: end the current image of the owner's running job, go on with the next batch."""
        jobs = [j for j in self.active(owner) if j.status is JobStatus.RUNNING]
        for job in jobs:
            job.skip_event.set()
        return len(jobs)

    def cancel(self, job: Job, reason: CancelReason = CancelReason.CANCEL) -> None:
        job.cancel(reason)
        self._scheduler.wake()

    def cancel_session(self, session: str) -> int:
        """A closed browser tab: cancel every unfinished job it submitted."""
        jobs = [j for j in self.active() if j.session == session]
        for job in jobs:
            job.cancel(CancelReason.CANCEL)
        self._scheduler.wake()
        return len(jobs)

    def recover(self) -> list[str]:
        """At server start: jobs a previous process left unfinished are marked interrupted in history."""
        return self.history.recover() if self.history is not None else []

    # ---------------------------------------------------------------- internals
    def _record(self, job: Job, new: bool = False) -> None:
        if self.history is None:
            return
        try:
            (self.history.add if new else self.history.update)(job)
        except Exception:  # history must never take a job down with it
            log.exception("could not record %r in history", job)

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.status.finished), key=lambda j: j.finished or 0)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def _stopped_status(self, job: Job) -> JobStatus:
        return JobStatus.INTERRUPTED if job.cancel_reason is CancelReason.INTERRUPT else JobStatus.CANCELLED

    def _work(self, job: Job, spec: JobKind) -> None:
        try:
            self._scheduler.acquire(job)
        except Cancelled:
            job.finish(JobStatus.CANCELLED)
            self._record(job)
            return
        job.status = JobStatus.RUNNING
        job.started = time.time()
        self._record(job)
        control = QueuedJobControl(job, self._scheduler.yield_turn, self._record)
        status, result, error = JobStatus.DONE, None, None
        try:
            result = spec.run(job.request, control)
            for path, info in zip(result.paths, result.infotexts + [""] * len(result.paths)):
                if Path(path) not in job.paths:  # runners that did not announce their outputs
                    job.paths.append(Path(path))
                    job.infotexts.append(info)
            if result.interrupted or job.cancel_event.is_set():
                status = self._stopped_status(job)
        except JobCancelled:
            status = self._stopped_status(job)
            result = JobResult(None, list(job.paths), list(job.infotexts), interrupted=True)
        except BaseException as e:  # noqa: BLE001 - recorded, re-raised by run() in the caller's thread
            status, error = JobStatus.FAILED, str(e) or type(e).__name__
            job.exception = e
            if not isinstance(e, (ValueError, FileNotFoundError)):
                log.exception("job %r failed", job)
        finally:
            self._scheduler.release(job)
        job.finish(status, result=result, error=error)
        self._record(job)
