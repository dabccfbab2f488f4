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


class UploadImage(_PlainErrors, gr.Image):
    message = IMAGE_MESSAGE
    frontend = "image"


class UploadImageMask(_PlainErrors, gr.ImageMask):
    message = IMAGE_MESSAGE
    frontend = "imageeditor"


# how audio files start: WAV, MP3 (ID3 tag or frame sync), OGG, FLAC, WebM/Matroska (browser recordings);
# M4A/MP4 have "ftyp" at byte 4
AUDIO_MAGIC = (b"RIFF", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"OggS", b"fLaC", b"\x1a\x45\xdf\xa3")


def looks_like_audio(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head.startswith(AUDIO_MAGIC) or head[4:8] == b"ftyp"


class UploadAudio(_PlainErrors, gr.Audio):
    message = AUDIO_MESSAGE
    frontend = "audio"

    def preprocess(self, payload):
        value = super().preprocess(payload)
        if isinstance(value, str) and not looks_like_audio(value):
            raise gr.Error(self.message.format(label=self.label or "upload"))
        return value
