"""The engine slot(s), granted round-robin between owners.

One job holds the slot at a time (a farm has one slot per worker: ``set_slots``). When it is free, the next owner after the one served last (in the
order owners first queued) gets it, for that owner's oldest waiting job. A running job re-queues itself
at each batch boundary (``yield_turn``), so a 16-batch job lets another owner's job run between its
batches, and then continues.
"""

from __future__ import annotations

import itertools
import threading
from typing import Callable, Optional, Protocol


class _Waiter(Protocol):
    owner: str
    cancel_event: threading.Event


class Cancelled(Exception):
    """The waiting job was cancelled before it got the slot."""


class FairScheduler:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holders: list[_Waiter] = []
        self._slots = 1  # jobs that may hold a slot at once (the farm: its number of workers)
        self._waiting: list[tuple[int, _Waiter]] = []  # (arrival number, job); a yielding job keeps its number
        self._numbers: dict[int, int] = {}  # id(job) -> arrival number
        self._owners: list[str] = []  # owners in the order they first queued
        self._last_owner: Optional[str] = None
        self._counter = itertools.count()

    # ---------------------------------------------------------------- choosing
    @staticmethod
    def _pick(waiting: list[tuple[int, _Waiter]], owners: list[str], last: Optional[str]) -> Optional[_Waiter]:
        if not waiting:
            return None
        present = {job.owner for _, job in waiting}
        start = owners.index(last) + 1 if last in owners else 0
        for owner in owners[start:] + owners[:start]:
            if owner in present:
                return min((n, job) for n, job in waiting if job.owner == owner)[1]
        return None

    def _next(self) -> Optional[_Waiter]:
        return self._pick(self._waiting, self._owners, self._last_owner)

    # ---------------------------------------------------------------- slot
    def set_slots(self, slots: int) -> None:
        """How many jobs may run at once (the farm sets its live worker count; at least 1)."""
        with self._cond:
            self._slots = max(1, int(slots))
            self._cond.notify_all()

    def _free(self) -> bool:
        return len(self._holders) < self._slots

    def acquire(self, job: _Waiter, on_wait: Optional[Callable[[], None]] = None) -> None:
        """Block until ``job`` holds the slot; raise Cancelled if its cancel event is set while waiting."""
        with self._cond:
            number = self._numbers.setdefault(id(job), next(self._counter))
            self._waiting.append((number, job))
            if job.owner not in self._owners:
                self._owners.append(job.owner)
            try:
                while not (self._free() and self._next() is job):
                    if job.cancel_event.is_set():
                        raise Cancelled()
                    self._cond.wait(timeout=0.25)
            except BaseException:
                self._waiting.remove((number, job))
                self._numbers.pop(id(job), None)
                self._cond.notify_all()
                raise
            self._waiting.remove((number, job))
            self._holders.append(job)
            self._last_owner = job.owner

    def release(self, job: _Waiter, *, final: bool = True) -> None:
        with self._cond:
            if job in self._holders:
                self._holders.remove(job)
            if final:
                self._numbers.pop(id(job), None)
            self._cond.notify_all()

    def yield_turn(self, job: _Waiter) -> None:
        """At a batch boundary: if another owner waits, let it go first, then take the slot back."""
        with self._cond:
            if not any(j.owner != job.owner for _, j in self._waiting):
                return
            self.release(job, final=False)
        self.acquire(job)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ---------------------------------------------------------------- introspection
    def ahead_of(self, job: _Waiter) -> int:
        """How many jobs get the slot before ``job`` (the running one included); 0 when it holds it."""
        with self._cond:
            if job in self._holders:
                return 0
            waiting = list(self._waiting)
            if not any(j is job for _, j in waiting):
                return 0
            owners, last = list(self._owners), self._last_owner
            count = len(self._holders) - self._slots + 1 if not self._free() else 0
        while waiting:
            nxt = self._pick(waiting, owners, last)
            if nxt is job or nxt is None:
                break
            count += 1
            last = nxt.owner
            waiting = [(n, j) for n, j in waiting if j is not nxt]
        return count

    def holder(self) -> Optional[_Waiter]:
        with self._cond:
            return self._holders[0] if self._holders else None
