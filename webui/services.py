"""The long-lived services the UI, the API and the CLI share. Built once by ``app.py``; models load lazily."""

from __future__ import annotations

import threading
from functools import cached_property

from webui.config import AppConfig


class Services:
    """Holds one ImageService and one TalkingHeadPipeline per process (models loaded once, reused)."""

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
