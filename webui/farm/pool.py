"""The farm's workers: one Ray actor per GPU of every node (or N CPU workers per GPU-less node).

``Farm.start`` joins the Ray cluster (``ray.init(address=...)``, or uses the one already initialised),
creates the workers and starts a monitor thread that reads ``ray.nodes()`` every ``poll_s``: a node that
joined gets workers, a dead node's workers are marked dead, a dead worker on a live node is replaced.
Dispatch (``webui.farm.dispatch``) takes a free worker with ``acquire`` (waiting jobs first, in order)
and hands it back with ``release``; a worker that already has the job's model loaded is preferred.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from webui.config import AppConfig

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 600.0  # a worker that has not come up by then is marked dead
MAX_START_FAILURES = 3  # a node whose workers failed to start this often gets no more (see the panel's error)
INFO_TIMEOUT_S = 2.0
NO_WORKER_GRACE_S = 15.0  # with no worker able to run a job, wait this long (a replacement may start) before failing


class NoWorker(ValueError):
    """No live worker can run this job (e.g. no node has its model)."""


@dataclass(eq=False)
class WorkerRecord:
    """The head's view of one worker actor."""

    name: str
    handle: Any  # the Ray actor handle
    node_id: str
    host: str
    device: str  # "cuda" (its one GPU) | "cpu"
    state: str = "starting"  # starting | idle | busy | dead
    models: tuple[str, ...] = ()  # SD models under its node's models/Stable-diffusion/
    loaded: Optional[str] = None  # the model its last job used (it keeps it loaded)
    current: Optional[str] = None  # what it runs now ("job 1a2b3c4d: txt2img batch 2/8")
    jobs_done: int = 0
    error: Optional[str] = None  # why it died / failed to start
    pid: Optional[int] = None
    info: dict = field(default_factory=dict)  # the last info() it answered
    created: float = field(default_factory=time.time)
    ready_ref: Any = None

    @property
    def live(self) -> bool:
        return self.state in ("idle", "busy")

    def label(self) -> str:
        return f"{self.name} on node {self.host}"


class Farm:
    def __init__(self, config: AppConfig, on_slots: Optional[Callable[[int], None]] = None):
        self.config = config
        self.cluster = config.cluster
        self.on_slots = on_slots  # told the number of live workers when it changes (JobQueue.set_slots)
        self._cond = threading.Condition()
        self._workers: list[WorkerRecord] = []
        self._numbers = itertools.count()
        self._tickets = itertools.count()
        self._waiting: list[tuple[int, Optional[str], frozenset]] = []  # blocked acquire() calls, oldest first
        self._stop = threading.Event()
        self._resync = threading.Event()  # a worker died: read the nodes at the next tick (its replacement)
        self._thread: Optional[threading.Thread] = None
        self._slots = 0

    # ---------------------------------------------------------------- life cycle
    def start(self) -> "Farm":
        import ray

        if not ray.is_initialized():
            address = None if self.cluster.address in (None, "local") else self.cluster.address
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.sync_nodes()
        self._thread = threading.Thread(target=self._monitor, name="farm-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the monitor and end this farm's workers (the Ray cluster itself stays up)."""
        import ray

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._cond:
            workers, self._workers = list(self._workers), []
        for w in workers:
            if w.state != "dead":
                try:
                    ray.kill(w.handle)
                except Exception:  # already gone
                    pass

    def _monitor(self) -> None:
        last_nodes = time.monotonic()
        while not self._stop.wait(0.25):
            try:
                self._check_starting()
                if time.monotonic() - last_nodes >= self.cluster.poll_s or self._resync.is_set():
                    self._resync.clear()
                    last_nodes = time.monotonic()
                    self.sync_nodes()
            except Exception:  # the monitor must survive a hiccup of the cluster
                log.exception("farm monitor")

    # ---------------------------------------------------------------- workers
    def sync_nodes(self) -> None:
        """Give every alive node its workers; mark the workers of dead nodes dead."""
        import ray

        nodes = ray.nodes()
        alive = {n["NodeID"]: n for n in nodes if n.get("Alive")}
        for w in self.workers_list():
            if w.state != "dead" and w.node_id not in alive:
                self.mark_dead(w, "its node left the cluster")
        for node_id, node in alive.items():
            gpus = int(node.get("Resources", {}).get("GPU", 0))
            want = gpus if gpus else self.cluster.cpu_workers
            mine = [w for w in self.workers_list() if w.node_id == node_id]
            have = sum(1 for w in mine if w.state != "dead")
            if sum(1 for w in mine if (w.error or "").startswith(("failed to start", "did not start"))) >= MAX_START_FAILURES:
                continue  # e.g. no CUDA torch on that node: not retried forever
            host = node.get("NodeManagerHostname") or node.get("NodeManagerAddress") or node_id[:8]
            for _ in range(max(0, want - have)):
                self.add_worker(node_id, host, "cuda" if gpus else "cpu")
        self._check_starting()

    def add_worker(self, node_id: str, host: str, device: str, *, models_dir=None) -> WorkerRecord:
        """Start one worker actor pinned to ``node_id``. ``models_dir`` overrides the models/ path (tests)."""
        import dataclasses

        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from webui.farm.worker import FarmWorker

        name = f"w{next(self._numbers)}"
        config = self.config
        if models_dir is not None:
            config = dataclasses.replace(config, paths=dataclasses.replace(config.paths, models_dir=models_dir))
        resources = {"num_gpus": 1} if device == "cuda" else {"num_cpus": 1}
        actor = ray.remote(FarmWorker).options(
            max_concurrency=4,  # info() and cancel() answer while a job runs (one job at a time: its lock)
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            **resources,
        ).remote(name, config, device)
        record = WorkerRecord(name, actor, node_id, host, device)
        record.ready_ref = actor.info.remote()
        with self._cond:
            self._workers.append(record)
        log.info("farm: starting %s (%s)", record.label(), device)
        return record

    def _check_starting(self) -> None:
        import ray

        for w in self.workers_list():
            if w.state != "starting":
                continue
            ready, _ = ray.wait([w.ready_ref], timeout=0)
            if not ready:
                if time.time() - w.created > READY_TIMEOUT_S:
                    self.mark_dead(w, f"did not start within {READY_TIMEOUT_S:.0f} s")
                continue
            try:
                info = ray.get(w.ready_ref)
                models = tuple(ray.get(w.handle.models.remote(), timeout=60))
            except Exception as e:  # noqa: BLE001 - the actor failed to start (import error, no GPU ...)
                self.mark_dead(w, f"failed to start: {e}")
                continue
            with self._cond:
                w.info, w.pid, w.models, w.host = info, info.get("pid"), models, info.get("host", w.host)
                w.state = "idle"
                self._cond.notify_all()
            log.info("farm: %s ready (models: %s)", w.label(), ", ".join(models) or "none")
            self._update_slots()

    def remove_worker(self, record: WorkerRecord) -> None:
        import ray

        with self._cond:
            if record in self._workers:
                self._workers.remove(record)
            self._cond.notify_all()
        try:
            ray.kill(record.handle)
        except Exception:
            pass
        self._update_slots()

    def mark_dead(self, record: WorkerRecord, why: str) -> None:
        with self._cond:
            if record.state == "dead":
                return
            record.state, record.error, record.current = "dead", why, None
            self._cond.notify_all()
        self._resync.set()
        log.warning("farm: %s is dead: %s", record.label(), why)
        self._update_slots()

    def _update_slots(self) -> None:
        with self._cond:
            live = sum(1 for w in self._workers if w.live)
            changed, self._slots = live != self._slots, live
        if changed and self.on_slots is not None:
            self.on_slots(max(1, live))

    def workers_list(self) -> list[WorkerRecord]:
        with self._cond:
            return list(self._workers)

    # ---------------------------------------------------------------- dispatch
    def _candidates(self, model: Optional[str], exclude: set) -> list[WorkerRecord]:
        return [w for w in self._workers if w.live and w not in exclude and (model is None or model in w.models)]

    def _pick_idle(self, model: Optional[str], exclude: set) -> Optional[WorkerRecord]:
        idle = [w for w in self._candidates(model, exclude) if w.state == "idle"]
        if not idle:
            return None
        # SwarmUI's rule: a worker that already has the model loaded first; then the least used
        return min(idle, key=lambda w: (model is not None and w.loaded != model, w.jobs_done, w.created))

    def acquire(self, model: Optional[str], *, exclude: set = frozenset(), cancelled: Callable[[], bool] = lambda: False,
                blocking: bool = True, what: str = "") -> Optional[WorkerRecord]:
        """A free worker that has ``model`` (None: any), marked busy; blocked callers are served in order.

        Non-blocking: None unless a worker is free and nobody waits. Raises NoWorker when no live or
        starting worker has the model, None when ``cancelled()`` turns true while waiting."""
        with self._cond:
            if not blocking:
                if self._first_servable() is not None:  # a blocked caller can use a free worker: it goes first
                    return None
                w = self._pick_idle(model, exclude)
                if w is not None:
                    w.state, w.current = "busy", what
                return w
            ticket = next(self._tickets)
            entry = (ticket, model, frozenset(exclude))
            self._waiting.append(entry)
            hopeless_since: Optional[float] = None
            try:
                while True:
                    if cancelled():
                        return None
                    if self._first_servable() == ticket:
                        w = self._pick_idle(model, exclude)
                        w.state, w.current = "busy", what
                        return w
                    hopeless = not self._candidates(model, exclude) and not any(x.state == "starting"
                                                                                  for x in self._workers)
                    hopeless_since = (hopeless_since or time.monotonic()) if hopeless else None
                    if hopeless and time.monotonic() - hopeless_since >= NO_WORKER_GRACE_S:
                        known = sorted({m for x in self._workers if x.live for m in x.models})
                        raise NoWorker(f"no farm worker can run this job: none has model {model!r} "
                                       f"(each node needs it in its models/Stable-diffusion/; the workers have: "
                                       f"{', '.join(known) or 'no models'})" if model else
                                       "no farm worker is alive (see the Workers panel in Settings)")
                    self._cond.wait(timeout=0.25)
            finally:
                self._waiting.remove(entry)
                self._cond.notify_all()

    def _first_servable(self) -> Optional[int]:
        """The oldest blocked caller that a free worker can serve now (an older one that none fits does
        not hold up the others)."""
        for ticket, model, exclude in self._waiting:
            if self._pick_idle(model, exclude) is not None:
                return ticket
        return None

    def release(self, record: WorkerRecord, model: Optional[str]) -> None:
        with self._cond:
            if record.state == "busy":
                record.state = "idle"
            record.current = None
            record.jobs_done += 1
            if model is not None:
                record.loaded = model
            self._cond.notify_all()

    def lacks_model(self, record: WorkerRecord, model: str) -> None:
        """The worker said it has no ``model`` (removed from its node since it started): not offered again."""
        with self._cond:
            record.models = tuple(m for m in record.models if m != model)
            if record.state == "busy":
                record.state = "idle"
            record.current = None
            self._cond.notify_all()

    # ---------------------------------------------------------------- status (Workers panel, /sdapi/v1/workers)
    def status(self) -> list[dict[str, Any]]:
        import ray

        workers = self.workers_list()
        asked = [(w, w.handle.info.remote()) for w in workers if w.live]
        if asked:
            ray.wait([ref for _, ref in asked], num_returns=len(asked), timeout=INFO_TIMEOUT_S)
        for w, ref in asked:
            try:
                w.info = ray.get(ref, timeout=0)
            except Exception:  # busy past the timeout or just died: keep the last answer
                pass
        rows = []
        for w in workers:
            info = w.info or {}
            rows.append({"name": w.name, "node": w.host, "node_id": w.node_id, "device": w.device,
                         "pid": w.pid, "vram": info.get("vram"), "ram": info.get("ram"),
                         "loaded_model": w.loaded or (info.get("loaded_models") or [None])[0],
                         "models": list(w.models), "current_job": w.current, "progress": (info.get("current") or None),
                         "jobs_done": w.jobs_done, "state": w.state, "error": w.error})
        return rows
