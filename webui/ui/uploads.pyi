"""Upload components that answer a wrong file with a plain message.

Gradio's own components fail to preprocess a non-image (or non-audio) file with "Could not preprocess
input component at index N ..." and temp paths. These subclasses turn any such failure into a
``gr.Error`` that says which field wants which kind of file; the frontend is the stock one.
"""

from __future__ import annotations

import gradio as gr

IMAGE_MESSAGE = "{label}: this file is not an image. Upload a PNG, JPEG or WebP picture."
AUDIO_MESSAGE = "{label}: this file is not an audio file. Upload a WAV, MP3, M4A, OGG or FLAC file."


class _PlainErrors:
    message = ""
    frontend = ""  # the stock Svelte component this one renders with

    def get_block_name(self) -> str:
        return self.frontend

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception as e:  # PIL / ffmpeg / soundfile errors on a file of the wrong kind
            raise gr.Error(self.message.format(label=self.label or "upload")) from e

from gradio.events import Dependency

class UploadImage(_PlainErrors, gr.Image):
    message = IMAGE_MESSAGE
    frontend = "image"
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class UploadImageMask(_PlainErrors, gr.ImageMask):
    message = IMAGE_MESSAGE
    frontend = "imageeditor"
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class UploadAudio(_PlainErrors, gr.Audio):
    message = AUDIO_MESSAGE
    frontend = "audio"

    def preprocess(self, payload):
        value = super().preprocess(payload)
        if isinstance(value, str) and not looks_like_audio(value):
            raise gr.Error(self.message.format(label=self.label or "upload"))
        return value
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component