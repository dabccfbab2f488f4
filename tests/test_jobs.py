"""The job layer without models: fair round-robin scheduling, queue positions, per-owner interrupt,
cancel, history in SQLite that survives a restart, and the auth gate's pieces."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi import Request

from webui.jobs import CancelReason, History, JobControl, JobQueue, JobResult, JobStatus


def batch_runner(log: list, gate: dict):
    """A runner of ``request = (name, batches)``: each batch waits for its gate event, logs itself."""

    def run(request, control: JobControl) -> JobResult:
        name, batches = request
        for b in range(batches):
            if b:
                control.batch_boundary()
            if control.cancelled():
                return JobResult(None, interrupted=True)
            gate.get(name, threading.Event()).wait(5)
            control.report(1, 1, batch=b, batches=batches)
            log.append(f"{name}{b}")
        return JobResult(name)

    return run


def wait_until(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_round_robin_between_owners_at_batch_boundaries():
    log: list = []
    a_gate = threading.Event()
    queue = JobQueue()
    queue.register("fake", batch_runner(log, {"A": a_gate}))
    open_gate = {"B": threading.Event(), "C": threading.Event()}
    for e in open_gate.values():
        e.set()
    queue.register("quick", batch_runner(log, open_gate))
    a = queue.submit("fake", ("A", 4), owner="alice")
    assert wait_until(lambda: a.status is JobStatus.RUNNING)
    b = queue.submit("quick", ("B", 1), owner="bob")
    c = queue.submit("quick", ("C", 1), owner="carol")
    assert queue.position(b) == 1 and queue.position(c) == 2  # the running job, then bob's
    a_gate.set()
    assert a.wait(10) and b.wait(10) and c.wait(10)
    # alice's 4-batch job let bob and carol in after its first batch, not after its last
    assert log == ["A0", "B0", "C0", "A1", "A2", "A3"]
    assert b.finished < a.finished and a.status is JobStatus.DONE


def test_same_owner_jobs_keep_their_order():
    log: list = []
    gates = {n: threading.Event() for n in "XY"}
    queue = JobQueue()
    queue.register("fake", batch_runner(log, gates))
    x = queue.submit("fake", ("X", 2), owner="alice")
    y = queue.submit("fake", ("Y", 1), owner="alice")
    assert wait_until(lambda: x.status is JobStatus.RUNNING)
    assert queue.position(y) == 1
    for g in gates.values():
        g.set()
    assert y.wait(10)
    assert log == ["X0", "X1", "Y0"]  # no yielding to oneself


def test_interrupt_is_per_owner_and_cancel_of_a_queued_job():
    gates = {"A": threading.Event(), "B": threading.Event()}
    queue = JobQueue()
    queue.register("fake", batch_runner([], gates))
    a = queue.submit("fake", ("A", 3), owner="alice")
    assert wait_until(lambda: a.status is JobStatus.RUNNING)
    b = queue.submit("fake", ("B", 1), owner="bob")
    assert queue.interrupt("bob") == 0  # bob has nothing running: alice's job is untouched
    assert not a.cancel_event.is_set()
    queue.cancel(b)
    assert b.wait(5) and b.status is JobStatus.CANCELLED and b.started is None
    assert queue.interrupt("alice") == 1
    gates["A"].set()
    assert a.wait(5) and a.status is JobStatus.INTERRUPTED


def test_cancel_session_and_current_job():
    gate = threading.Event()
    queue = JobQueue()
    queue.register("fake", batch_runner([], {"A": gate}))
    a = queue.submit("fake", ("A", 1), owner="alice", session="tab-1")
    assert queue.current("alice") is a and queue.current("bob") is None
    assert queue.cancel_session("tab-2") == 0
    assert queue.cancel_session("tab-1") == 1
    gate.set()
    assert a.wait(5) and a.status is JobStatus.CANCELLED
    assert queue.current("alice") is None  # idle again


def test_validation_errors_are_raised_before_queueing():
    queue = JobQueue()

    def check(request):
        if request < 0:
            raise ValueError(f"n must be >= 0, got {request}")

    queue.register("count", lambda req, control: JobResult(req), check=check)
    with pytest.raises(ValueError, match="got -1"):
        queue.submit("count", -1, owner="alice")
    assert queue.jobs() == []
    with pytest.raises(ValueError, match="unknown job kind"):
        queue.submit("nope", 1, owner="alice")
    assert queue.run("count", 3, owner="alice").result.value == 3


def test_runner_errors_fail_the_job_and_reach_the_caller():
    queue = JobQueue()

    def broken(request, control):
        raise ValueError("bad seed 7")

    queue.register("broken", broken)
    with pytest.raises(ValueError, match="bad seed 7"):
        queue.run("broken", None, owner="alice")
    assert queue.jobs("alice")[0].status is JobStatus.FAILED


def test_progress_fraction_and_eta():
    gate, reported = threading.Event(), threading.Event()

    def run(request, control):
        control.report(2, 4, batch=1, batches=2, text="halfway")
        reported.set()
        gate.wait(5)
        return JobResult(None)

    queue = JobQueue()
    queue.register("p", run)
    job = queue.submit("p", None, owner="a")
    assert reported.wait(5)
    time.sleep(0.05)
    p = job.progress()
    assert p["fraction"] == pytest.approx(0.75) and p["text"] == "halfway"
    assert p["eta"] == pytest.approx(p["elapsed"] / 3, rel=0.2)
    gate.set()
    job.wait(5)
    assert job.progress()["fraction"] == 1.0


def test_history_records_jobs_and_survives_a_restart(tmp_path):
    db = tmp_path / "history.sqlite3"
    queue = JobQueue(history=History(db))
    out = tmp_path / "out"
    out.mkdir()

    def run(request, control):
        path = out / f"{request}.png"
        control.add_output(path, f"info {request}")
        path.write_bytes(b"png")
        return JobResult(request, [path], [f"info {request}"])

    queue.register("write", run)
    queue.run("write", "one", owner="alice")
    queue.run("write", "two", owner="bob")
    history = History(db)  # a new process reading the same file
    alice = history.list("alice")
    assert [e.status for e in alice] == ["done"] and alice[0].paths == (str(out / "one.png"),)
    assert alice[0].infotexts == ("info one",) and alice[0].params == {"request": "'one'"}
    assert {e.owner for e in history.list(None)} == {"alice", "bob"}
    assert history.list("alice", kind="other") == []
    assert history.list("alice", since=time.time() + 60) == []


def test_recover_marks_unfinished_jobs_interrupted_and_agrees_with_disk(tmp_path):
    from webui.jobs import Job

    history = History(tmp_path / "h.sqlite3")
    out = tmp_path / "out"
    out.mkdir()
    job = Job("alice", "txt2img", None, params={"steps": 3})
    job.status = JobStatus.RUNNING
    history.add(job)
    written, announced = out / "00000-1.png", out / "00001-2.png"
    written.write_bytes(b"png")
    (out / f".{announced.name}.part").write_bytes(b"half")  # killed while writing the second
    job.paths, job.infotexts = [written, announced], ["a", "b"]
    history.update(job)
    done = Job("bob", "txt2img", None)
    done.finish(JobStatus.DONE)
    history.add(done)

    assert History(tmp_path / "h.sqlite3").recover() == [job.id]
    entry = history.get(job.id)
    assert entry.status == "interrupted" and entry.paths == (str(written),) and entry.infotexts == ("a",)
    assert sorted(p.name for p in out.iterdir()) == [written.name]  # the temp file is gone
    assert history.get(done.id).status == "done"


def test_cancel_reason_decides_the_status():
    gate = threading.Event()

    def run(request, control):
        gate.wait(5)
        control.check()  # raises JobCancelled
        return JobResult(None)

    queue = JobQueue()
    queue.register("r", run)
    job = queue.submit("r", None, owner="a")
    assert wait_until(lambda: job.status is JobStatus.RUNNING)
    queue.cancel(job, CancelReason.CANCEL)
    gate.set()
    assert job.wait(5) and job.status is JobStatus.CANCELLED


# ------------------------------------------------------------------ auth gate pieces
def test_logins_compare_in_constant_time_and_rate_limit():
    from webui.auth import FailedLogins, Logins

    logins = Logins((("alice", "wonderland"), ("bob", "builder")))
    assert logins.verify("alice", "wonderland") and logins.verify("bob", "builder")
    assert not logins.verify("alice", "builder") and not logins.verify("", "") and not logins.verify("alice", "")
    now = [1000.0]
    failures = FailedLogins(3, clock=lambda: now[0])
    for _ in range(3):
        assert failures.retry_after("10.0.0.1") == 0
        failures.fail("10.0.0.1")
    assert 59 <= failures.retry_after("10.0.0.1") <= 60
    assert failures.retry_after("10.0.0.2") == 0  # per address
    now[0] += 61
    assert failures.retry_after("10.0.0.1") == 0


def gate_client(max_body=1000, limit=3):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.auth import USER_KEY, FailedLogins, Gate, Logins

    app = FastAPI()

    @app.post("/sdapi/v1/echo")
    async def echo(request: Request):
        return {"user": request.scope[USER_KEY], "n": len(await request.body())}

    @app.post("/login")
    async def login(request: Request):
        form = await request.json()
        from fastapi.responses import JSONResponse

        return JSONResponse({}, status_code=200 if form.get("password") == "wonderland" else 400)

    @app.get("/assets/app.js")
    def asset():
        return "js"

    app.add_middleware(Gate, logins=Logins((("alice", "wonderland"),)), max_body_bytes=max_body,
                       failures=FailedLogins(limit))
    return TestClient(app)


def test_gate_login_body_limit_and_429():
    client = gate_client()
    assert client.post("/sdapi/v1/echo", content=b"x").status_code == 401
    r = client.post("/sdapi/v1/echo", content=b"x" * 10, auth=("alice", "wonderland"))
    assert r.status_code == 200 and r.json() == {"user": "alice", "n": 10}
    assert client.get("/assets/app.js").status_code == 200  # draws the login page
    r = client.post("/sdapi/v1/echo", content=b"x" * 1001, auth=("alice", "wonderland"))
    assert r.status_code == 413

    def chunks():
        for _ in range(20):
            yield b"y" * 100

    r = client.post("/sdapi/v1/echo", content=chunks(), auth=("alice", "wonderland"))  # no Content-Length
    assert r.status_code == 413
    for _ in range(3):
        assert client.post("/sdapi/v1/echo", auth=("alice", "nope")).status_code == 401
    r = client.post("/sdapi/v1/echo", auth=("alice", "nope"))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert client.post("/login", json={"password": "wonderland"}).status_code == 429  # the form too
    # the right password still works from the blocked address (only failures are refused)
    assert client.post("/sdapi/v1/echo", auth=("alice", "wonderland")).status_code == 200


def test_gate_counts_failed_form_logins():
    client = gate_client(limit=2)
    assert client.post("/login", json={"password": "x"}).status_code == 400
    assert client.post("/login", json={"password": "y"}).status_code == 400
    r = client.post("/login", json={"password": "wonderland"})
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_ui_progress_text_shows_queue_position_steps_and_eta():
    from webui.ui.common import progress_text

    gates = {"A": threading.Event(), "B": threading.Event(), "C": threading.Event()}
    queue = JobQueue()
    queue.register("fake", batch_runner([], gates))
    a = queue.submit("fake", ("A", 2), owner="alice")
    assert wait_until(lambda: a.status is JobStatus.RUNNING)
    b = queue.submit("fake", ("B", 1), owner="bob")
    c = queue.submit("fake", ("C", 1), owner="carol")
    assert progress_text(queue, b) == (0, "Queued: 1 job ahead of you")
    assert progress_text(queue, c) == (0, "Queued: 2 jobs ahead of you")
    a.set_progress(step=3, steps=6, batch=0, batches=2)
    a.started = time.time() - 2.0
    value, text = progress_text(queue, a)
    assert value == pytest.approx(0.25)
    assert text.startswith("Batch 1/2 · step 3/6 · 2.0 s · ETA 6 s"), text
    for g in gates.values():
        g.set()
    assert a.wait(5) and b.wait(5) and c.wait(5)


def test_talking_head_runner_stops_at_the_first_report_when_cancelled(tmp_path):
    """The talking-head adapter: a cancelled job raises at the pipeline's next progress report."""
    import shutil
    import subprocess

    from PIL import Image
    from skimage.data import astronaut

    from talking_head.pipeline import TalkingHeadRequest
    from webui.config import AppConfig, PathsConfig
    from webui.jobs import JobCancelled
    from webui.jobs.runners import run_talking_head
    from webui.services import Services

    if not shutil.which("espeak-ng"):
        pytest.fail("espeak-ng is not installed: run bash scripts/install.sh --test")
    face, speech = tmp_path / "face.png", tmp_path / "speech.wav"
    Image.fromarray(astronaut()).save(face)
    subprocess.run(["espeak-ng", "-w", str(speech), "Hello."], check=True)
    services = Services(AppConfig(paths=PathsConfig(outputs_dir=tmp_path / "out")))

    class Cancelled(JobControl):
        def __init__(self):
            self.outputs = []

        def cancelled(self):
            return True

        def add_output(self, path, infotext=""):
            self.outputs.append(path)

    control = Cancelled()
    with pytest.raises(JobCancelled):
        run_talking_head(services, TalkingHeadRequest(image=face, audio=speech), control)
    assert len(control.outputs) == 1 and control.outputs[0].suffix == ".mp4"
    assert not control.outputs[0].exists() and not list((tmp_path / "out").rglob("*.mp4"))


def test_cancel_while_waiting_for_its_turn_between_batches():
    log: list = []
    gates = {"A": threading.Event(), "B": threading.Event()}
    queue = JobQueue()
    queue.register("fake", batch_runner(log, gates))
    a = queue.submit("fake", ("A", 3), owner="alice")
    assert wait_until(lambda: a.status is JobStatus.RUNNING)
    b = queue.submit("fake", ("B", 1), owner="bob")
    gates["A"].set()
    assert wait_until(lambda: b.status is JobStatus.RUNNING)  # alice yielded after her first batch
    assert a.waiting_turn
    queue.interrupt("alice")
    assert a.wait(5) and a.status is JobStatus.INTERRUPTED  # not "failed"
    gates["B"].set()
    assert b.wait(5) and b.status is JobStatus.DONE
    assert log == ["A0", "B0"]


def test_preview_rate_first_after_a_delay_then_limited_by_interval_and_cost(monkeypatch):
    import webui.jobs.job as job_mod
    from webui.jobs.job import Job

    clock = [100.0]
    monkeypatch.setattr(job_mod.time, "monotonic", lambda: clock[0])
    job = Job("alice", "txt2img", None)
    assert not job.mark_preview()  # the first step: only noise to show
    clock[0] += job_mod.PREVIEW_FIRST_S - 0.01
    assert not job.mark_preview()
    clock[0] += 0.02
    assert job.mark_preview()
    job.set_progress(preview="cheap")  # made at once: the next one is due an interval later
    clock[0] += job_mod.PREVIEW_MIN_INTERVAL_S - 0.01
    assert not job.mark_preview()
    clock[0] += 0.02
    assert job.mark_preview()
    cost = 0.2  # an expensive preview (a big batch's grid): previews keep to their share of the time
    asked = clock[0]
    clock[0] += cost
    job.set_progress(preview="costly")
    clock[0] = asked + cost / job_mod.PREVIEW_BUDGET - 0.01
    assert not job.mark_preview()
    clock[0] += 0.02
    assert job.mark_preview()
    assert job.progress()["preview"] == "costly"


def test_done_callbacks_and_the_ui_watch_loop_returns_when_the_job_ends(monkeypatch):
    import asyncio

    from webui.ui import common

    queue = JobQueue()
    queue.register("quick", lambda request, control: (time.sleep(0.05), JobResult("ok"))[1])
    calls = []
    job = queue.submit("quick", None, owner="alice")
    job.on_done(lambda: calls.append("before"))
    assert job.wait(5)
    job.on_done(lambda: calls.append("after"))  # already done: called at once
    assert calls == ["before", "after"]

    monkeypatch.setattr(common, "PREVIEW_INTERVAL_S", 10.0)  # polling alone would hold the result 10 s

    async def follow():
        job = queue.submit("quick", None, owner="alice")
        start = time.perf_counter()
        async for _ in common.watch_job(queue, job, None):
            pass
        return job, time.perf_counter() - start

    job, seconds = asyncio.run(follow())
    assert job.status is JobStatus.DONE and seconds < 5.0, seconds
