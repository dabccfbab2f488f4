"""The GPU farm on a local Ray cluster: 2 CPU workers started from these tests, the tiny SD model at 64 px.

One Ray head and one farm for the whole module (starting them takes the longest); the test that kills a
worker runs last. Nothing here depends on timing: every wait is for a state, with a generous deadline.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

from tests.app_fixtures import app_config
from webui.config import ClusterConfig

ray = pytest.importorskip("ray")

STEPS = 3
DEADLINE_S = 240


def wait_for(condition, what: str, timeout: float = DEADLINE_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def farm_services(tiny_models_dir, tmp_path_factory):
    from webui.services import Services

    ray.init(num_cpus=3, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False,
             configure_logging=False)
    config = app_config(tiny_models_dir, tmp_path_factory.mktemp("farm"))
    config = dataclasses.replace(config, cluster=ClusterConfig(address="local", cpu_workers=2, poll_s=1.0))
    services = Services(config)
    try:
        farm = services.farm
        wait_for(lambda: sum(w.state == "idle" for w in farm.workers_list()) == 2, "2 idle workers")
        services.jobs  # registers the farm kinds
        yield services
    finally:
        if "farm" in vars(services) and services.farm is not None:
            services.farm.stop()
        ray.shutdown()


def request(prompt: str, seed: int, **kw):
    from webui.diffusion.types import Txt2ImgRequest

    return Txt2ImgRequest(prompt=prompt, seed=seed, steps=kw.pop("steps", STEPS), width=64, height=64,
                          sampler="Euler", **kw)


def makers(entry) -> set[str]:
    """The workers a history entry says made its images ("... made by worker w0 on node ...")."""
    return {n.split("made by worker ")[1].split()[0] for n in entry.notes if "made by worker " in n}


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_six_concurrent_jobs_run_on_both_workers(farm_services):
    queue = farm_services.jobs
    jobs = [queue.submit("txt2img", request(f"job {i}", 100 + i), owner=f"user{i % 2}") for i in range(6)]
    for job in jobs:
        assert job.wait(DEADLINE_S), job
    assert [j.status.value for j in jobs] == ["done"] * 6, [j.error for j in jobs]
    used = set()
    for i, job in enumerate(jobs):
        entry = farm_services.history.get(job.id)
        assert len(entry.paths) == 1 and os.path.isfile(entry.paths[0])
        info = Image.open(entry.paths[0]).info["parameters"]
        assert info.startswith(f"job {i}\n") and f"Seed: {100 + i}," in info  # saved with its metadata here
        assert entry.infotexts[0] == info
        who = makers(entry)
        assert len(who) == 1, entry.notes
        used |= who
    assert used == {"w0", "w1"}
    done = {row["name"]: row["jobs_done"] for row in farm_services.farm.status()}
    assert done["w0"] + done["w1"] >= 6 and min(done.values()) >= 1


def test_same_seeds_give_identical_images_with_the_farm_on_and_off(farm_services, tiny_models_dir, tmp_path):
    from webui.services import Services

    req = request("a red circle", 4242, batch_count=4, subseed=77, subseed_strength=0.3)  # variation seeds too
    job = farm_services.jobs.run("txt2img", req, owner="alice")
    entry = farm_services.history.get(job.id)
    assert len(makers(entry)) == 2, entry.notes  # the batch was split across both workers
    assert job.result.value.seeds == [4242, 4243, 4244, 4245]
    assert job.result.value.subseeds == [77, 78, 79, 80]

    alone = Services(app_config(tiny_models_dir, tmp_path))  # no --cluster: this process, as always
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the 1-CPU workers (CPU torch with other thread counts differs by 1/255 here and there)
    try:
        local = alone.jobs.run("txt2img", req, owner="alice")
    finally:
        torch.set_num_threads(threads)
    assert alone.farm is None
    assert local.result.value.seeds == job.result.value.seeds
    assert list(local.result.value.infotexts) == list(job.result.value.infotexts)
    for farm_path, local_path in zip(job.result.paths, local.result.paths):
        assert np.array_equal(pixels(farm_path), pixels(local_path)), (farm_path, local_path)


def test_a_worker_without_the_model_is_skipped(farm_services, tmp_path):
    farm = farm_services.farm
    empty = tmp_path / "models"
    (empty / "Stable-diffusion").mkdir(parents=True)
    node = farm.workers_list()[0]
    extra = farm.add_worker(node.node_id, node.host, "cpu", models_dir=empty)
    try:
        wait_for(lambda: extra.state == "idle", "the third worker")
        assert extra.models == ()
        # asked directly, it says so (and names the model and its folder)
        answer = ray.get(extra.handle.run_images.remote("x", "txt2img", request("p", 1, model="tiny-sd")))
        assert "has no model 'tiny-sd'" in answer["missing"] and str(empty) in answer["missing"]
        jobs = [farm_services.jobs.submit("txt2img", request(f"skip {i}", 7 + i), owner="bob") for i in range(4)]
        for job in jobs:
            assert job.wait(DEADLINE_S) and job.status.value == "done", job.error
            assert makers(farm_services.history.get(job.id)) <= {"w0", "w1"}
        assert farm.status()[-1]["jobs_done"] == 0
    finally:
        farm.remove_worker(extra)


def test_workers_report_lists_node_device_model_and_jobs(farm_services):
    from webui.farm import TABLE_COLUMNS, workers_report, workers_table

    report = workers_report(farm_services)
    assert report["cluster"] is True
    rows = {w["name"]: w for w in report["workers"]}
    assert {"w0", "w1"} <= set(rows)
    for name in ("w0", "w1"):
        w = rows[name]
        assert w["state"] == "idle" and w["device"] == "cpu" and w["node"] and w["pid"]
        assert w["loaded_model"] == "tiny-sd" and w["jobs_done"] >= 1 and w["ram"]["total"] > 0
    assert all(len(row) == len(TABLE_COLUMNS) for row in workers_table(report))


def test_a_talking_head_job_runs_on_a_worker_and_its_mp4_is_saved_here(farm_services, tmp_path):
    import soundfile as sf
    from skimage import data as skimage_data

    from talking_head.pipeline import TalkingHeadRequest

    portrait, audio = tmp_path / "face.png", tmp_path / "speech.wav"
    Image.fromarray(skimage_data.astronaut()).save(portrait)
    t = np.arange(int(0.6 * 16000)) / 16000
    sf.write(audio, (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), 16000)
    job = farm_services.jobs.run("talking_head", TalkingHeadRequest(image=portrait, audio=audio), owner="alice")
    assert job.status.value == "done", job.error
    video = job.result.value.video_path
    head_dir = farm_services.config.paths.outputs_dir / "talking-head"
    assert video.parent == head_dir and video.is_file() and video.read_bytes()[4:8] == b"ftyp"
    assert job.result.value.frames > 0
    entry = farm_services.history.get(job.id)
    assert entry.paths == (str(video),) and any("made by worker" in n for n in entry.notes), entry.notes
    assert not list(head_dir.glob("*.partial.mp4"))


def test_the_job_progress_shows_the_workers_denoising_step(farm_services, monkeypatch):
    import webui.farm.dispatch as dispatch

    monkeypatch.setattr(dispatch, "PROGRESS_EVERY_S", 0.02)  # read it often, so a fast machine is caught too
    # 6 batches of 150 steps: long enough on an idle machine too for the head to read a worker's step
    job = farm_services.jobs.submit("txt2img", request("slow", 3, steps=150, batch_count=6), owner="alice")
    seen = set()
    while not job.wait(0.05):
        p = job.progress()
        if p["steps"] == 150 and 0 < p["step"] < 150:
            seen.add(p["step"])
    assert job.status.value == "done", job.error
    assert seen, "no step progress came back from the worker"


def test_a_node_that_joins_gets_workers_and_one_that_leaves_loses_them(farm_services, monkeypatch):
    """ray.nodes() as the head polls it, with a 3-GPU PC and a CPU PC added. Their actors cannot be placed
    on this one machine: Ray refuses them, the farm marks them dead with the reason and stops retrying."""
    from webui.farm.pool import MAX_START_FAILURES

    farm = farm_services.farm
    real = ray.nodes
    gpu_pc = {"NodeID": "a" * 56, "Alive": True, "Resources": {"CPU": 16.0, "GPU": 3.0}, "NodeManagerHostname": "pc2"}
    cpu_pc = {"NodeID": "b" * 56, "Alive": True, "Resources": {"CPU": 8.0}, "NodeManagerHostname": "pc3"}
    monkeypatch.setattr(ray, "nodes", lambda: real() + [gpu_pc, cpu_pc])
    before = len(farm.workers_list())
    on = lambda node: [w for w in farm.workers_list() if w.node_id == node["NodeID"]]  # noqa: E731
    try:
        farm.sync_nodes()
        wait_for(lambda: len(on(gpu_pc)) >= 3 and len(on(cpu_pc)) >= 2, "workers for the nodes that joined")
        assert {(w.host, w.device) for w in on(gpu_pc)} == {("pc2", "cuda")}  # one per GPU
        assert {(w.host, w.device) for w in on(cpu_pc)} == {("pc3", "cpu")}  # --cluster-cpu-workers 2

        def settled(node):
            farm.sync_nodes()
            mine = on(node)
            return all(w.state == "dead" for w in mine) and len(mine) >= MAX_START_FAILURES

        deadline = time.time() + 30
        while time.time() < deadline and not settled(cpu_pc):
            time.sleep(0.1)
        if settled(cpu_pc):  # Ray refused them (2.60 does at once; a Ray that keeps them pending: "starting")
            assert all("failed to start" in w.error for w in on(cpu_pc))
            count = len(on(cpu_pc))
            farm.sync_nodes()
            assert len(on(cpu_pc)) == count  # not retried forever
        else:
            assert {w.state for w in on(cpu_pc)} == {"starting"} and len(on(cpu_pc)) == 2
        gpu_pc["Alive"] = False  # the GPU PC leaves: no more workers for it
        farm.sync_nodes()
        count = len(on(gpu_pc))
        farm.sync_nodes()
        assert len(on(gpu_pc)) == count and all(w.state == "dead" for w in on(gpu_pc))
        assert {w.name for w in farm.workers_list() if w.live} >= {"w0", "w1"}  # the real ones carry on
    finally:
        monkeypatch.setattr(ray, "nodes", real)
        for w in farm.workers_list()[before:]:
            farm.remove_worker(w)


def test_a_worker_killed_mid_job_is_retried_elsewhere(farm_services):
    farm = farm_services.farm
    queue = farm_services.jobs
    # more steps so a job is surely still running when its worker is killed
    jobs = [queue.submit("txt2img", request(f"fault {i}", 500 + i, steps=12), owner=f"user{i % 3}")
            for i in range(6)]

    def busy_mid_job():
        for row in farm.status():
            progress = row["progress"] or {}
            if row["state"] == "busy" and row["name"] in ("w0", "w1") and 1 <= progress.get("step", 0) <= 9:
                return row
        return None

    victim = wait_for(busy_mid_job, "a worker in the middle of a job")
    os.kill(victim["pid"], signal.SIGKILL)
    t0 = time.time()
    for job in jobs:
        assert job.wait(DEADLINE_S), job
    elapsed = time.time() - t0
    assert [j.status.value for j in jobs] == ["done"] * 6, [j.error for j in jobs]
    retried = []
    for i, job in enumerate(jobs):
        entry = farm_services.history.get(job.id)
        info = Image.open(entry.paths[0]).info["parameters"]
        assert info.startswith(f"fault {i}\n") and f"Seed: {500 + i}," in info and "Steps: 12," in info
        retried += [n for n in entry.notes if "retried on node" in n]
    assert len(retried) == 1, retried
    assert f"{victim['name']} on node" in retried[0] and "died" in retried[0]
    dead = [w for w in farm.workers_list() if w.name == victim["name"]][0]
    assert dead.state == "dead" and "died while running" in dead.error
    print(f"fault test: worker {victim['name']} killed mid-job; 6/6 jobs done {elapsed:.1f} s after the kill; "
          f"retry: {retried[0]}")


def test_without_cluster_nothing_imports_ray_and_the_route_says_so(live_server):
    import subprocess
    import sys

    import requests

    from tests.app_fixtures import LOGIN

    code = ("import sys, app; from webui.config import AppConfig; from webui.services import Services; "
            "import webui.farm, webui.farm.dispatch; s = Services(AppConfig()); s.jobs; "
            "assert s.farm is None; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    url, _ = live_server
    assert requests.get(f"{url}/sdapi/v1/workers", timeout=60).status_code == 401
    r = requests.get(f"{url}/sdapi/v1/workers", auth=LOGIN, timeout=60)
    assert r.status_code == 200 and r.json()["cluster"] is False and r.json()["workers"] == []


def test_cluster_flags():
    from webui.cli import parse_args

    config = parse_args(["--cluster", "auto", "--cluster-cpu-workers", "2"]).config
    assert config.cluster.address == "auto" and config.cluster.cpu_workers == 2 and config.cluster.enabled
    assert not parse_args([]).config.cluster.enabled
    with pytest.raises(SystemExit):
        parse_args(["--cluster-cpu-workers", "2"])
