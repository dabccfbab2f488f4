"""The Settings panel: every performance switch, wired to ImageService.set_perf (same as the CLI flags)."""

from __future__ import annotations

import gradio as gr

from webui.config import MemoryMode, PerfConfig
from webui.services import Services
from webui.ui.common import bind, guard


def build(services: Services) -> None:
    perf = services.config.perf
    gr.Markdown("Performance switches. They apply to the loaded model at once; device or precision changes reload it.")
    with gr.Row():
        device = gr.Dropdown(["auto", "cpu", "cuda", "mps"], value=perf.device, allow_custom_value=True,
                             label="Device (auto: CUDA > MPS > CPU)", elem_id="settings_device")
        precision = gr.Radio(["auto", "fp32", "fp16", "bf16"], value=perf.precision, label="Precision",
                             elem_id="settings_precision")
        attention = gr.Radio(["sdpa", "xformers", "sliced"], value=perf.attention, label="Attention",
                             elem_id="settings_attention")
    with gr.Row():
        autocast = gr.Checkbox(value=perf.autocast, label="Autocast")
        tf32 = gr.Checkbox(value=perf.tf32, label="TF32 (Ampere+ GPUs)")
        vae_slicing = gr.Checkbox(value=perf.vae_slicing, label="VAE slicing")
        vae_tiling = gr.Checkbox(value=perf.vae_tiling, label="VAE tiling (large images)")
        channels_last = gr.Checkbox(value=perf.channels_last, label="channels_last")
    with gr.Row():
        memory = gr.Radio([m.value for m in MemoryMode], value=perf.memory.value, label="Memory (CPU offload)",
                          elem_id="settings_memory")
        threads = gr.Number(value=perf.threads, precision=0, label="CPU threads (0 = default)")
    apply = gr.Button("Apply settings", variant="primary", elem_id="settings_apply")
    status = gr.Markdown(elem_id="settings_status")

    fields = {"device": device, "precision": precision, "attention": attention, "autocast": autocast, "tf32": tf32,
              "vae_slicing": vae_slicing, "vae_tiling": vae_tiling, "channels_last": channels_last,
              "memory": memory, "threads": threads}

    def apply_settings(values: dict) -> str:
        named = dict(values)
        named["memory"] = MemoryMode(named["memory"])
        named["threads"] = int(named["threads"] or 0)
        new = PerfConfig(**named)
        services.image.set_perf(new)
        return f"Applied: `{new}`"

    bind(apply.click, guard(apply_settings), fields, status, "settings")
