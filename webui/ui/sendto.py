""""Send to" buttons: a result (or a PNG Info image) goes to another tab's input image, and that tab opens.

``SEND_TARGETS`` is the one list of targets. A new tab adds itself here with the elem_id of its input
image; the buttons appear under every result and are wired by ``wire_send_to`` once all tabs exist.
A target whose component does not exist (a tab left out) gets no wiring; its button says so when clicked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import gradio as gr


@dataclass(frozen=True)
class SendTarget:
    tab_id: str  # the gr.Tab id to select
    label: str  # shown as "Send to <label>"
    elem_id: str  # elem_id of the tab's input image component
    kind: str = "image"  # "image" (gr.Image) | "editor" (gr.ImageMask / ImageEditor)
    prompts: bool = False  # also copy prompt + negative prompt (image tabs)


SEND_TARGETS: list[SendTarget] = [
    SendTarget("img2img", "img2img", "img2img_image", prompts=True),
    SendTarget("inpaint", "inpaint", "inpaint_editor", kind="editor", prompts=True),
    SendTarget("talking_head", "talking head", "talk_image"),
    SendTarget("extras", "Extras", "extras_image"),
]


def send_to_buttons(source: str, only: tuple[str, ...] | None = None) -> dict[str, gr.Button]:
    """One "Send to ..." button per target other than ``source`` (a tab id), in a row under the results."""
    buttons: dict[str, gr.Button] = {}
    with gr.Row(elem_id=f"{source}_send_to"):
        for t in SEND_TARGETS:
            if t.tab_id != source and (only is None or t.tab_id in only):
                buttons[t.tab_id] = gr.Button(f"Send to {t.label}", size="sm", elem_id=f"{source}_send_to_{t.tab_id}")
    return buttons


def gallery_item_path(value: Any, index: Optional[int]) -> Optional[str]:
    """The file path of the selected (else the first) image of a gr.Gallery value; None when empty."""
    if not value:
        return None
    item = value[index] if index is not None and 0 <= index < len(value) else value[0]
    if isinstance(item, (tuple, list)):
        item = item[0]
    if isinstance(item, dict):  # {"image": {"path": ...}} / {"path": ...}
        item = item.get("image", item)
        item = item.get("path") if isinstance(item, dict) else item
    return getattr(item, "path", item) if item is not None else None


def target_value(target: SendTarget, path: str) -> Any:
    if target.kind == "editor":
        return {"background": path, "layers": [], "composite": path}
    return path


def find_component(demo: gr.Blocks, elem_id: str):
    for block in demo.blocks.values():
        if getattr(block, "elem_id", None) == elem_id:
            return block
    return None


def wire_send_to(demo: gr.Blocks, tabs: gr.Tabs, buttons: dict[str, gr.Button], image_source, *, index_state=None,
                 prompt=None, negative=None, prompt_targets: dict[str, tuple] | None = None) -> None:
    """Wires ``buttons`` (target tab id -> button) to send ``image_source`` (a Gallery, or an image path
    component) to each target; ``prompt_targets`` maps a tab id to its (prompt, negative) textboxes."""
    for target in SEND_TARGETS:
        button = buttons.get(target.tab_id)
        component = find_component(demo, target.elem_id)
        if button is None or component is None:
            continue
        outputs = [component, tabs]
        extra_inputs = []
        copies = target.prompts and prompt is not None and prompt_targets and target.tab_id in prompt_targets
        if copies:
            outputs += list(prompt_targets[target.tab_id])
            extra_inputs = [prompt, negative]
        inputs = [image_source] + ([index_state] if index_state is not None else []) + extra_inputs

        def send(*values, _target=target, _indexed=index_state is not None, _copies=copies):
            values = list(values)
            source = values.pop(0)
            index = values.pop(0) if _indexed else None
            path = gallery_item_path(source, index) if isinstance(source, list) else source
            if not path:
                raise gr.Error("Nothing to send yet: generate or upload an image first")
            out = [target_value(_target, str(path)), gr.Tabs(selected=_target.tab_id)]
            if _copies:
                out += [values[0] or "", values[1] or ""]
            return out

        button.click(send, inputs=inputs, outputs=outputs, api_name=False)
