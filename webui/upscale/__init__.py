"""Upscaling and face restoration, no gradio: the upscaler registry (built-ins, latent modes, model
files loaded with spandrel), tiled inference, the Extras engine, GFPGAN, and the embedded upscaler's
training and evaluation."""

from __future__ import annotations


def postprocess_services(config):
    """(UpscalerRegistry, FaceRestorer) for an AppConfig; cheap: nothing loads until first use."""
    from webui.diffusion.perf import resolve_device
    from webui.upscale.faces import FaceRestorer
    from webui.upscale.registry import UpscalerRegistry

    def device() -> str:  # resolved on first use, like the diffusion pipelines (a bad --device errors there)
        return str(resolve_device(config.perf))

    return UpscalerRegistry(config.paths.models_dir, device=device), FaceRestorer(config.paths, device=device)
