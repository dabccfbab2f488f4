"""The History tab: the caller's past jobs (everyone's for --admin logins), filtered by kind and date,
with each output, its parameters, and "send to" buttons for the generation tabs."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from webui.diffusion.infotext import parse_infotext
from webui.services import Services
from webui.ui.common import GenerationWidgets, job_owner
from webui.ui.pnginfo import fields_for_txt2img

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov")
ALL_KINDS = "all"
MAX_ROWS = 200


@dataclass
class SendTargets:
    """Where "send to" puts an output: the generation tabs' widgets and the tab ids."""

    tabs: gr.Tabs
    txt2img: GenerationWidgets
    img2img: GenerationWidgets
    img2img_image: gr.Image
    inpaint: GenerationWidgets
    inpaint_editor: Any  # gr.ImageMask
    talk_image: Optional[gr.Image]


def parse_date(value: Optional[str], name: str, *, end: bool = False) -> Optional[float]:
    """'YYYY-MM-DD' -> unix time of local midnight (the next one when ``end``); ValueError names the field."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{name}: expected a date like 2026-12-01, got {value!r}") from e
    if end:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time()).timestamp()


def visible_owner(services: Services, request: Optional[gr.Request]) -> Optional[str]:
    """Whose history the caller sees: their own; everyone's (None) for admins or without a login."""
    server = services.config.server
    if not server.auth:
        return None
    owner, _ = job_owner(request)
    return None if owner in server.admins else owner


def load_history(services: Services, owner: Optional[str], kind: str, since: str, until: str):
    """-> (gallery items, table rows, the outputs as dicts) for the filters."""
    entries = services.history.list(owner, kind=None if kind in (None, "", ALL_KINDS) else kind,
                                    since=parse_date(since, "From"), until=parse_date(until, "To", end=True),
                                    limit=MAX_ROWS)
    items, outputs, rows = [], [], []
    for entry in entries:
        when = dt.datetime.fromtimestamp(entry.created).strftime("%Y-%m-%d %H:%M:%S")
        notes = [n for n in entry.notes if "retried on node" in n or "has no model" in n]  # farm events (docs/farm.md)
        rows.append([when, entry.kind, entry.status, len(entry.paths), entry.owner,
                     "; ".join(([entry.error] if entry.error else []) + notes)])
        for i, path in enumerate(entry.paths):
            if not Path(path).is_file():
                continue
            caption = f"{entry.kind} · {when} · {entry.status}" + ("" if owner else f" · {entry.owner}")
            items.append((path, caption))
            info = entry.infotexts[i] if i < len(entry.infotexts) else ""
            outputs.append({"path": path, "kind": entry.kind, "status": entry.status, "owner": entry.owner,
                            "when": when, "infotext": info, "params": entry.params})
    return items, rows, outputs


def details_text(output: dict) -> str:
    head = f"{output['kind']} · {output['status']} · {output['when']} · {output['owner']}\n{output['path']}\n\n"
    if output["infotext"]:
        return head + output["infotext"]
    return head + json.dumps(output["params"], indent=1, default=str)


def build(services: Services, targets: SendTargets, tab: gr.Tab) -> None:
    kinds = [ALL_KINDS] + services.jobs.kinds()
    with gr.Row():
        kind = gr.Dropdown(kinds, value=ALL_KINDS, label="Kind", elem_id="history_kind", scale=1)
        since = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="history_since", scale=1)
        until = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="history_until", scale=1)
        refresh = gr.Button("Refresh", elem_id="history_refresh", scale=0, min_width=100)
    gallery = gr.Gallery(label="Results", columns=8, height=360, allow_preview=False, fit_columns=False,
                         object_fit="contain", elem_id="history_gallery")
    with gr.Row():
        with gr.Column():
            image = gr.Image(label="Selected", type="filepath", interactive=False, height=300,
                             elem_id="history_image")
            video = gr.Video(label="Selected video", interactive=False, visible=False, elem_id="history_video")
        with gr.Column():
            details = gr.Textbox(label="Parameters", lines=8, interactive=False, elem_id="history_params")
            with gr.Row():
                to_txt2img = gr.Button("Send to txt2img", elem_id="history_send_txt2img")
                to_img2img = gr.Button("Send to img2img", elem_id="history_send_img2img")
                to_inpaint = gr.Button("Send to inpaint", elem_id="history_send_inpaint")
                to_talk = gr.Button("Send to talking head", elem_id="history_send_talking_head")
    table = gr.Dataframe(headers=["time", "kind", "status", "outputs", "owner", "error / notes"], interactive=False,
                         label="Jobs", elem_id="history_jobs")
    outputs_state = gr.State([])
    selected = gr.State(None)

    def refresh_list(kind_value: str, since_value: str, until_value: str, request: gr.Request):
        try:
            return load_history(services, visible_owner(services, request), kind_value, since_value, until_value)
        except ValueError as e:
            raise gr.Error(str(e)) from e

    filters = [kind, since, until]
    for event in (tab.select, refresh.click, kind.change, since.submit, until.submit):
        event(refresh_list, inputs=filters, outputs=[gallery, table, outputs_state], api_name=False)

    def select(outputs: list, evt: gr.SelectData):
        output = outputs[evt.index] if outputs and 0 <= evt.index < len(outputs) else None
        if output is None:
            return None, gr.update(value=None, visible=False), "", None
        is_video = output["path"].lower().endswith(VIDEO_SUFFIXES)
        return (None if is_video else output["path"], gr.update(value=output["path"] if is_video else None,
                                                                  visible=is_video),
                details_text(output), output)

    gallery.select(select, inputs=outputs_state, outputs=[image, video, details, selected], api_name=False)

    def prompt_updates(w: GenerationWidgets, output: Optional[dict]) -> list:
        fields = [w.prompt, w.negative_prompt, w.sampler, w.steps, w.cfg_scale, w.seed, w.width, w.height]
        params = parse_infotext(output["infotext"]) if output and output["infotext"] else {}
        updates = fields_for_txt2img(params, w)
        return [gr.update(value=updates[f]) if f in updates else gr.skip() for f in fields]

    def prompt_fields(w: GenerationWidgets) -> list:
        return [w.prompt, w.negative_prompt, w.sampler, w.steps, w.cfg_scale, w.seed, w.width, w.height]

    def is_image(output: Optional[dict]) -> bool:
        return bool(output) and not output["path"].lower().endswith(VIDEO_SUFFIXES)

    def need_image(output: Optional[dict]) -> dict:
        if not is_image(output):
            raise gr.Error("Select an image in the history first")
        return output

    def send_txt2img(output):
        if not output:
            raise gr.Error("Select a result in the history first")
        return prompt_updates(targets.txt2img, output) + [gr.Tabs(selected="txt2img")]

    def send_img2img(output):
        output = need_image(output)
        return prompt_updates(targets.img2img, output) + [output["path"], gr.Tabs(selected="img2img")]

    def send_inpaint(output):
        output = need_image(output)
        editor = {"background": output["path"], "layers": [], "composite": output["path"]}
        return prompt_updates(targets.inpaint, output) + [editor, gr.Tabs(selected="inpaint")]

    def send_talk(output):
        output = need_image(output)
        return [output["path"], gr.Tabs(selected="talking_head")]

    to_txt2img.click(send_txt2img, inputs=selected, outputs=prompt_fields(targets.txt2img) + [targets.tabs],
                     api_name=False)
    to_img2img.click(send_img2img, inputs=selected,
                     outputs=prompt_fields(targets.img2img) + [targets.img2img_image, targets.tabs], api_name=False)
    to_inpaint.click(send_inpaint, inputs=selected,
                     outputs=prompt_fields(targets.inpaint) + [targets.inpaint_editor, targets.tabs], api_name=False)
    if targets.talk_image is not None:
        to_talk.click(send_talk, inputs=selected, outputs=[targets.talk_image, targets.tabs], api_name=False)
