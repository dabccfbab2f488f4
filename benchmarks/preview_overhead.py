"""Preview overhead: a txt2img image through the app's job path, live previews on, against plain diffusers.

One process; every round times one image for each side in turn (plain, then the app), so machine load
from other work hits both alike; medians over the rounds and their ratio are reported.

- plain: a diffusers ``StableDiffusionPipeline`` on the same weights, with the app's scheduler for the
  sampler (``webui.diffusion.samplers.make_scheduler``), no previews, nothing saved; called in a fresh
  thread, as the app's job runs in one.
- app, previews on: ``Services.jobs.submit("txt2img", ...)``, the path the browser's Generate button takes:
  the job queue, history (SQLite), the ImageService with its per-step callback computing live previews (the
  job's rate: ``PREVIEW_FIRST_S``, then at most every ``PREVIEW_MIN_INTERVAL_S``, within ``PREVIEW_BUDGET``
  of the time), the PNG with its infotext saved; the main thread follows the job with the UI's own watch
  loop (``webui.ui.common.watch_job``) and PNG-encodes each new preview as Gradio does before sending it;
  the time is taken until that loop has the result. The previews the engine really made are counted (each
  round must have at least one).
- app, previews off: the same with the preview computation skipped (what the previews themselves cost).

    python benchmarks/preview_overhead.py [--rounds 7] [--size 128] [--steps 20] [--batch-size 1]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.image_speed import PROMPT, app_request, app_service, plain_pipeline  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def app_services(model_dir: Path, work: Path):
    """The app's Services (job queue + history) around image_speed's ImageService on ``model_dir``."""
    from webui.services import Services

    image = app_service(model_dir, work)
    services = Services(image.config)
    services.image = image  # a cached_property: the queue's runners use this service
    return services


class PreviewCounter:
    """Wraps ``ImageService._preview`` on one instance: counts the previews the engine really computed.
    With ``enabled`` False it makes none (the "previews off" variant: the callback still asks, gets None)."""

    def __init__(self, service):
        self.count = 0
        self.seconds = 0.0
        self.enabled = True
        original = service._preview

        def counted(*args, **kwargs):
            if not self.enabled:
                return None
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t
                self.count += 1

        service._preview = counted


def follow(jobs, job) -> int:
    """The UI's own watch loop (webui.ui.common.watch_job) on ``job``, each new preview PNG-encoded as Gradio
    does before sending it; returns when the job is done, with the number of previews shown."""
    import asyncio

    from webui.ui.common import watch_job

    async def go() -> int:
        shown = 0
        async for update in watch_job(jobs, job, None):
            update["preview"].save(io.BytesIO(), format="PNG")
            shown += 1
        return shown

    return asyncio.run(go())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "models" / "Stable-diffusion" / "demo-shapes")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import dataclasses

    import torch

    from webui.jobs.job import PREVIEW_BUDGET, PREVIEW_MIN_INTERVAL_S, JobStatus

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="preview-overhead-"))
    try:
        plain = plain_pipeline(args.model)
        services = app_services(args.model, work)
        counter = PreviewCounter(services.image)
        request = dataclasses.replace(app_request("off", args.size, args.steps, 1), save=True,
                                      batch_size=args.batch_size)

        def plain_call() -> None:
            g = [torch.Generator("cpu").manual_seed(1 + i) for i in range(args.batch_size)]
            with torch.inference_mode():
                plain([PROMPT] * args.batch_size, num_inference_steps=args.steps, guidance_scale=7.0,
                      height=args.size, width=args.size, generator=g)

        def run_plain() -> None:
            # In a fresh thread, as the app runs each job: on a loaded machine torch's CPU thread pool
            # behaves very differently in the main thread (up to 10x slower here), which is not what we measure.
            worker = threading.Thread(target=plain_call)
            worker.start()
            worker.join()

        def run_app() -> tuple[int, int]:
            before = counter.count
            job = services.jobs.submit("txt2img", request, owner="bench")
            seen = follow(services.jobs, job)
            if job.status is not JobStatus.DONE:
                raise RuntimeError(f"app job ended {job.status.value}: {job.error}")
            return counter.count - before, seen

        def run_app_no_previews() -> tuple[int, int]:
            counter.enabled = False
            try:
                return run_app()
            finally:
                counter.enabled = True

        variants = {"plain diffusers": run_plain, "app, previews on": run_app, "app, previews off": run_app_no_previews}
        for fn in variants.values():  # first calls: loading
            fn()
        times: dict[str, list[float]] = {name: [] for name in variants}
        made, seen = [], []
        for r in range(args.rounds):
            for name, fn in variants.items():
                t = time.perf_counter()
                out = fn()
                times[name].append(time.perf_counter() - t)
                if name == "app, previews on":
                    made.append(out[0])
                    seen.append(out[1])
            print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in times.items())
                  + f"; previews made {made[-1]}, shown {seen[-1]}", flush=True)
        if min(made) < 1:
            raise RuntimeError(f"a round produced no live preview (made per round: {made})")
        plain_t = times["plain diffusers"]
        print(f"\n{args.size} px, {args.steps} steps, batch size {args.batch_size}, DPM++ 2M, "
              f"{args.rounds} alternating rounds, threads {args.threads}, torch {torch.__version__}")
        print(f"{'variant':<20}{'median s':>10}{'x plain':>9}{'round ratios: median':>22}{'min':>7}{'max':>7}")
        for name, v in times.items():
            ratios = [a / b for a, b in zip(v, plain_t)]
            print(f"{name:<20}{statistics.median(v):>10.3f}{statistics.median(v) / statistics.median(plain_t):>9.3f}"
                  f"{statistics.median(ratios):>22.3f}{min(ratios):>7.3f}{max(ratios):>7.3f}")
        print(f"previews made per image: median {statistics.median(made):g}, shown by the watch loop: median "
              f"{statistics.median(seen):g} (at most every {PREVIEW_MIN_INTERVAL_S} s, within {PREVIEW_BUDGET:.0%} of the time); "
              f"{counter.seconds / max(counter.count, 1) * 1000:.1f} ms each")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
