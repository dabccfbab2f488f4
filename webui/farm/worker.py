"""One farm worker: a Ray actor (one per GPU, or a CPU worker) that loads its models once and keeps them.

It is a plain class here; ``webui.farm.pool`` makes it a Ray actor (``ray.remote(...)``) only when the
farm starts, so nothing imports Ray without ``--cluster``. The worker saves nothing: results travel back
to the head as bytes (PNG with its infotext, MP4), and the head saves them and records them in history.
A worker runs one job piece at a time; ``info``/``cancel`` answer while it works (threaded actor).
"""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from webui.config import AppConfig, PathsConfig, PerfConfig
from webui.jobs.job import JobControl

TALK_FILE_FIELDS = ("image", "audio", "ref_eyeblink", "ref_pose")  # TalkingHeadRequest inputs sent as bytes


def png_bytes(image, infotext: str) -> bytes:
    """An image as PNG bytes with the infotext in its ``parameters`` chunk (as save_png writes it)."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    if infotext:
        meta.add_text("parameters", infotext)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=meta)
    return buf.getvalue()


class _WorkerControl(JobControl):
    """What the image/talking-head engines see on a worker: progress kept for ``info``, the head's cancel."""

    def __init__(self, worker: "FarmWorker", job_id: str):
        self._worker, self._job_id = worker, job_id

    def report(self, step, steps, *, batch=0, batches=1, preview=None, text=None) -> None:
        self._worker._progress = {"step": int(step), "steps": int(steps)}

    def cancelled(self) -> bool:
        return self._job_id in self._worker._cancelled


class FarmWorker:
    """Runs image batches and talking-head videos for the head's job queue."""

    def __init__(self, name: str, config: AppConfig, device: str = "cpu"):
        from webui.services import Services

        self.name = name
        self.device = device
        self.pid = os.getpid()
        self.host = socket.gethostname()
        try:
            import ray

            self.node_id = ray.get_runtime_context().get_node_id()
        except Exception:  # run outside Ray (unit use)
            self.node_id = self.host
        self._scratch = Path(tempfile.mkdtemp(prefix=f"farm-{name}-"))
        paths = PathsConfig(models_dir=config.paths.models_dir, checkpoints_dir=config.paths.checkpoints_dir,
                            outputs_dir=self._scratch)
        perf = dataclasses.replace(config.perf, device=device)
        self._services = Services(dataclasses.replace(config, paths=paths, perf=perf))
        self._lock = threading.Lock()  # one piece at a time
        self._current: Optional[dict] = None
        self._progress: dict = {}
        self._cancelled: set[str] = set()
        self.jobs_done = 0
        self.started = time.time()

    # ---------------------------------------------------------------- state
    def models(self) -> list[str]:
        """The Stable Diffusion models this node has under its models/Stable-diffusion/."""
        return [m.name for m in self._services.image.list_models()]

    def info(self) -> dict[str, Any]:
        loaded = [p.model.name for p in self._services.image._manager.loaded()] if "image" in vars(self._services) else []
        vram = None
        if self.device.startswith("cuda"):
            import torch

            free, total = torch.cuda.mem_get_info()
            vram = {"used": total - free, "total": total}
        try:
            import psutil

            mem = psutil.virtual_memory()
            ram = {"used": mem.total - mem.available, "total": mem.total}
        except ImportError:
            ram = None
        current = dict(self._current, **self._progress) if self._current else None
        return {"name": self.name, "node": self.node_id, "host": self.host, "pid": self.pid, "device": self.device,
                "vram": vram, "ram": ram,
                "loaded_models": loaded, "current": current, "jobs_done": self.jobs_done,
                "models_dir": str(self._services.config.paths.models_dir)}

    def cancel(self, job_id: str) -> None:
        self._cancelled.add(job_id)

    def _start(self, job_id: str, what: str) -> JobControl:
        self._current = {"job": job_id, "what": what, "since": time.time()}
        self._progress = {}
        return _WorkerControl(self, job_id)

    def _end(self, job_id: str) -> None:
        self._current = None
        self._progress = {}
        self._cancelled.discard(job_id)
        self.jobs_done += 1

    # ---------------------------------------------------------------- work
    def run_images(self, job_id: str, kind: str, request: Any) -> dict[str, Any]:
        """One batch (or several) of ``kind``; ``request.seed`` is the first image's seed, never -1.

        Returns {"pngs": [bytes], "seeds", "infotexts", "interrupted"} or {"missing": why} when this node
        lacks the request's model."""
        image = self._services.image
        with self._lock:
            if request.model and request.model not in self.models():
                return {"missing": f"worker {self.name} on node {self.host} has no model {request.model!r} "
                                   f"in {self._services.config.paths.sd_dir}"}
            control = self._start(job_id, f"{kind} seed {request.seed}")
            try:
                result = getattr(image, kind)(dataclasses.replace(request, save=False), control)
            finally:
                self._end(job_id)
        return {"pngs": [png_bytes(im, info) for im, info in zip(result.images, result.infotexts)],
                "seeds": list(result.seeds), "infotexts": list(result.infotexts),
                "subseeds": list(getattr(result, "subseeds", [])), "extra_params": dict(getattr(result, "extra_params", {})),
                "interrupted": bool(result.interrupted)}

    def run_talking_head(self, job_id: str, request: Any, files: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        """A talking-head video from the head's input files (sent as bytes); returns the MP4 as bytes."""
        with self._lock:
            folder = Path(tempfile.mkdtemp(prefix="job-", dir=self._scratch))
            changes: dict[str, Any] = {}
            for field, (name, data) in files.items():
                target = folder / Path(name).name
                target.write_bytes(data)
                changes[field] = target
            output = folder / "talking_head.mp4"
            request = dataclasses.replace(request, output=output, **changes)
            control = self._start(job_id, "talking head")

            def progress(stage: str, fraction: float) -> None:
                control.check()
                control.report(int(round(fraction * 1000)), 1000)

            try:
                result = self._services.talking_head(request, progress=progress)
                video = Path(result.video_path).read_bytes()
                speech = Path(result.speech_path).read_bytes() if result.speech_path else None
            finally:
                self._end(job_id)
                for p in folder.iterdir():
                    p.unlink(missing_ok=True)
                folder.rmdir()
        return {"mp4": video, "speech": speech, "frames": result.frames, "duration": result.duration,
                "engine": result.engine, "timings": result.timings}
