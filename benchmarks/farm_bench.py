"""Farm throughput: images per minute with 1 and with 2 workers on a batch of 8 (batch count 8).

    PYTHONPATH=. .venv/bin/python benchmarks/farm_bench.py [--steps 10] [--size 128] [--rounds 2] [--gpu]

Starts a local Ray cluster (``--gpu``: one worker per GPU, compared with the head-only path; default:
CPU workers with 1 CPU each), the tiny random SD model from webui.diffusion.tiny, and runs the batch with
the farm's dispatcher, alternating 1 and 2 workers per round so machine load hits both alike. The
head-only path (no --cluster, this process) is measured in the same rounds. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--head-threads", type=int, default=0,
                    help="torch CPU threads of the head-only path (0 = torch's default; CPU workers use 1)")
    ap.add_argument("--gpu", action="store_true", help="GPU workers (num_gpus=1) instead of 2 CPU workers")
    args = ap.parse_args()

    import ray
    import torch

    if args.head_threads:
        torch.set_num_threads(args.head_threads)

    from webui.config import AppConfig, PathsConfig, PerfConfig
    from webui.diffusion.tiny import save_tiny_model
    from webui.diffusion.types import Txt2ImgRequest
    from webui.services import Services

    tmp = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    models = tmp / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    save_tiny_model(models / "Stable-diffusion" / "tiny-sd", seed=0)
    paths = PathsConfig(models_dir=models, checkpoints_dir=tmp / "checkpoints", outputs_dir=tmp / "outputs")
    perf = PerfConfig(device="cuda" if args.gpu else "cpu")
    cpus = os.cpu_count() or 2
    ray.init(num_cpus=max(2, cpus), include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False,
             configure_logging=False)
    request = Txt2ImgRequest(prompt="a lighthouse at dusk", seed=1, steps=args.steps, width=args.size,
                             height=args.size, sampler="Euler", batch_count=args.images, save=False)
    try:
        two = _farm(paths, perf, 0 if args.gpu else 2, args.gpu)
        one = _one_worker_view(two)
        head = Services(AppConfig(paths=paths, perf=perf))  # no --cluster: this process
        warm = dataclasses.replace(request, batch_count=2)
        for services in (two, head):  # every worker loads the model once and keeps it
            services.jobs.run("txt2img", warm, owner="warmup")

        def timed(services) -> float:
            t0 = time.perf_counter()
            job = services.jobs.run("txt2img", request, owner="bench")
            assert len(job.result.value.images) == args.images, job.error
            return time.perf_counter() - t0

        results: dict[str, list[float]] = {"head_only": [], "farm_1_worker": [], "farm_2_workers": []}
        for _ in range(args.rounds):  # alternating, so load on the shared machine hits all alike
            results["head_only"].append(timed(head))
            results["farm_1_worker"].append(timed(one))
            if not args.gpu:
                results["farm_2_workers"].append(timed(two))
        per_min = {k: round(args.images / statistics.median(v) * 60, 1) for k, v in results.items() if v}
        out = {"images": args.images, "steps": args.steps, "size": args.size, "rounds": args.rounds,
               "device": perf.device, "cpus": cpus, "head_threads": torch.get_num_threads(), "images_per_minute": per_min,
               "seconds": {k: [round(x, 2) for x in v] for k, v in results.items() if v}}
        if "farm_1_worker" in per_min and "farm_2_workers" in per_min:
            out["speedup_2_vs_1"] = round(per_min["farm_2_workers"] / per_min["farm_1_worker"], 2)
        if "farm_1_worker" in per_min:
            out["farm_1_vs_head_only"] = round(per_min["farm_1_worker"] / per_min["head_only"], 2)
        print(json.dumps(out))
    finally:
        ray.shutdown()


def _farm(paths, perf, cpu_workers: int, gpu: bool):
    from webui.config import AppConfig, ClusterConfig
    from webui.services import Services

    services = Services(AppConfig(paths=paths, perf=perf,
                                  cluster=ClusterConfig(address="local", cpu_workers=cpu_workers, poll_s=3600)))
    want = 1 if gpu else cpu_workers
    deadline = time.time() + 600
    while sum(w.state == "idle" for w in services.farm.workers_list()) < want:
        if time.time() > deadline:
            raise RuntimeError("workers did not start")
        time.sleep(0.2)
    services.jobs  # farm kinds
    return services


def _one_worker_view(services):
    """A second Services whose farm hides all workers but the first (same actors, models already loaded)."""
    import copy
    import threading

    from webui.farm.dispatch import register_farm_kinds
    from webui.jobs import JobQueue
    from webui.services import Services

    farm = copy.copy(services.farm)
    farm._cond = threading.Condition()
    farm._waiting = []
    farm._workers = services.farm.workers_list()[:1]
    view = Services(services.config)
    view.__dict__["farm"] = farm
    view.__dict__["image"] = services.image
    queue = JobQueue()
    register_farm_kinds(queue, view, farm)
    view.__dict__["jobs"] = queue
    return view


if __name__ == "__main__":
    main()
