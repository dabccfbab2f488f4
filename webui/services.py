"""The long-lived services the UI, the API and the CLI share. Built once by ``app.py``; models load lazily."""

from __future__ import annotations

import threading
from functools import cached_property

from webui.config import AppConfig


class Services:
    """Holds one ImageService, one TalkingHeadPipeline and the job queue per process (models loaded once)."""

    def __init__(self, config: AppConfig):
        self.config = config
        self._lock = threading.Lock()

    @cached_property
    def image(self):
        from webui.diffusion.service import ImageService

        return ImageService(self.config)

    @cached_property
    def upscalers(self):
        """The upscaler registry (shared with the image service's hires fix)."""
        return self.image.upscalers

    @cached_property
    def extras(self):
        from webui.upscale.extras import ExtrasService

        return ExtrasService(self.upscalers, self.image.face_restorer, self.config.paths.outputs_dir)

    @cached_property
    def talking_head(self):
        from talking_head.pipeline import TalkingHeadPipeline

        return TalkingHeadPipeline(
            outputs_dir=self.config.paths.outputs_dir / "talking-head",
            paths=self.config.paths,
            max_image_pixels=self.config.limits.max_image_pixels,
        )

    @cached_property
    def history(self):
        from webui.jobs import History

        return History(self.config.paths.history_db)

    @cached_property
    def jobs(self):
        """The one queue every generation goes through (UI, REST API, CLI)."""
        from webui.jobs import JobQueue
        from webui.jobs.runners import register_builtin_kinds

        queue = JobQueue(history=self.history)
        register_builtin_kinds(queue, self)
        if self.config.cluster.enabled:  # --cluster: images and talking heads run on the farm's workers
            from webui.farm.dispatch import register_farm_kinds

            self.farm.on_slots = queue.set_slots  # one job per live worker at a time
            queue.set_slots(max(1, sum(1 for w in self.farm.workers_list() if w.live)))
            register_farm_kinds(queue, self, self.farm)
        return queue

    @cached_property
    def farm(self):
        """The GPU farm (webui.farm.pool.Farm) with ``--cluster``, else None. Ray is imported only here."""
        if not self.config.cluster.enabled:
            return None
        from webui.farm.pool import Farm

        return Farm(self.config).start()
