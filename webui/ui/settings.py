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
    with gr.Row():
        speed = gr.Radio(["off", "cache", "compile", "cache+compile"], value=perf.speed, elem_id="settings_speed",
                         label="Speed (cache: DeepCache feature reuse; compile: torch.compile, slow first run)")
        cache_interval = gr.Number(value=perf.cache_interval, precision=0, minimum=1, label="Cache interval (full UNet every N steps)")
        cache_branch = gr.Number(value=perf.cache_branch, precision=0, minimum=0, label="Cache branch (0 = fastest)")
        token_merging_ratio = gr.Slider(0.0, 0.75, value=perf.token_merging_ratio, step=0.05,
                                        label="Token merging ratio (ToMe; 0 = off)", elem_id="settings_tome")
        token_merging_min_side = gr.Number(value=perf.token_merging_min_side, precision=0, minimum=0,
                                           label="Token merging from this image side (px)")
    apply = gr.Button("Apply settings", variant="primary", elem_id="settings_apply")
    status = gr.Markdown(elem_id="settings_status")
    with gr.Accordion("Doctor: this machine and the recommended settings", open=False, elem_id="settings_doctor"):
        check = gr.Button("Check this machine", elem_id="settings_doctor_run")
        report_md = gr.Markdown(elem_id="settings_doctor_report")
        apply_recommended = gr.Button("Apply recommended settings", variant="primary", visible=False,
                                      elem_id="settings_doctor_apply")

    fields = {"device": device, "precision": precision, "attention": attention, "autocast": autocast, "tf32": tf32,
              "vae_slicing": vae_slicing, "vae_tiling": vae_tiling, "channels_last": channels_last,
              "memory": memory, "threads": threads, "speed": speed, "cache_interval": cache_interval,
              "cache_branch": cache_branch, "token_merging_ratio": token_merging_ratio,
              "token_merging_min_side": token_merging_min_side}

    def apply_settings(values: dict) -> str:
        from webui.diffusion.perf import resolve_device
        from webui.doctor import describe_perf, precision_problem

        named = dict(values)
        named["memory"] = MemoryMode(named["memory"])
        named["threads"] = int(named["threads"] or 0)
        for name in ("cache_interval", "cache_branch", "token_merging_min_side"):
            named[name] = int(named[name] or 0)
        named["token_merging_ratio"] = float(named["token_merging_ratio"] or 0.0)
        new = PerfConfig(**named)
        problem = precision_problem(new, resolve_device(new).type)
        if problem:  # refused: the device would run this precision far slower than fp32
            raise ValueError(problem)
        services.image.set_perf(new)
        return f"Applied: {describe_perf(new)}"

    bind(apply.click, guard(apply_settings), fields, status, "settings")

    def run_doctor():
        from webui.doctor import diagnose

        report = diagnose(services.config.paths)
        return report.markdown(), gr.Button(visible=True)

    def apply_recommendation():
        from webui.doctor import describe_perf, diagnose, with_recommended

        new = with_recommended(services.image.perf, diagnose(services.config.paths).recommended)
        services.image.set_perf(new)
        return [new.device, new.precision, new.attention, new.memory.value, new.vae_tiling,
                f"Applied the recommended settings: {describe_perf(new)}"]

    check.click(run_doctor, outputs=[report_md, apply_recommended], api_name="doctor")
    apply_recommended.click(guard(apply_recommendation),
                            outputs=[device, precision, attention, memory, vae_tiling, status], api_name=False)
    build_workers_panel(services)


def build_workers_panel(services: Services) -> None:
    """The GPU farm's workers (``--cluster``); the same data as ``GET /sdapi/v1/workers``."""
    from webui.farm import TABLE_COLUMNS, workers_report, workers_table

    def refresh():
        report = workers_report(services)
        if not report["cluster"]:
            note = "No farm: this server runs every job itself. Start it with `--cluster auto` (see docs/farm.md)."
        else:
            live = sum(w["state"] in ("idle", "busy") for w in report["workers"])
            note = f"Farm on Ray cluster `{report['address']}`: {live} live worker(s) of {len(report['workers'])}."
        return note, workers_table(report)

    with gr.Accordion("Workers (GPU farm)", open=services.config.cluster.enabled, elem_id="settings_workers"):
        note = gr.Markdown(elem_id="settings_workers_note")
        table = gr.Dataframe(headers=list(TABLE_COLUMNS), interactive=False, elem_id="settings_workers_table")
        button = gr.Button("Refresh workers", elem_id="settings_workers_refresh")
    button.click(guard(refresh), None, [note, table])
    if services.config.cluster.enabled:  # keep it current while the page is open
        gr.Timer(5.0).tick(guard(refresh), None, [note, table])
