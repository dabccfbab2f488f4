"""Stage 6 (mux): stream RGB frames into ffmpeg (H.264 yuv420p + AAC) without holding them.

Frames go to the bundled ffmpeg (``imageio_ffmpeg.get_ffmpeg_exe()``) through stdin as raw
rgb24; the audio is written once as a 16-bit wav into a private temporary directory.  The
MP4 is first written to ``<name>.partial.mp4`` and renamed on success; on any error the
partial file is deleted and a RuntimeError carries ffmpeg's last message.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from talking_head.audio import FPS, SAMPLE_RATE, AudioClip

X264_PRESET = "veryfast"
X264_CRF = 20
AAC_BITRATE = "128k"


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_wav(path: str | Path, clip: AudioClip) -> None:
    """The clip as a 16-bit mono WAV at SAMPLE_RATE."""
    import soundfile as sf

    sf.write(str(path), np.clip(clip.samples, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")


def write_video(frames: Iterable[np.ndarray], clip: AudioClip, output: str | Path,
                frame_size: tuple[int, int]) -> int:
    """Encode ``frames`` ((H, W, 3) uint8 RGB, exactly ``clip.n_frames`` of them) + audio to ``output``.

    frame_size: (width, height), both even.  Returns the number of frames written.
    Memory is flat in clip length: one frame is in flight at a time.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.stem + ".partial.mp4")
    width, height = frame_size
    if width % 2 or height % 2:
        raise ValueError(f"frame_size={frame_size} must be even for yuv420p")
    written = 0
    with tempfile.TemporaryDirectory(prefix="talking_head_") as tmp:
        wav = Path(tmp) / "audio.wav"
        log = Path(tmp) / "ffmpeg.log"
        write_wav(wav, clip)
        cmd = [ffmpeg_exe(), "-y", "-v", "error", "-nostdin",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(FPS), "-i", "pipe:0",
               "-i", str(wav),
               "-map", "0:v:0", "-map", "1:a:0",
               "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF), "-pix_fmt", "yuv420p",
               "-c:a", "aac", "-b:a", AAC_BITRATE, "-movflags", "+faststart",
               "-f", "mp4", str(partial)]
        try:
            with open(log, "wb") as log_f:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log_f)
                try:
                    for frame in frames:
                        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                            raise ValueError(f"frame {written} has shape {frame.shape} {frame.dtype}, "
                                             f"expected {(height, width, 3)} uint8")
                        proc.stdin.write(np.ascontiguousarray(frame).tobytes())
                        written += 1
                    proc.stdin.close()
                    rc = proc.wait()
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                finally:
                    if proc.stdin and not proc.stdin.closed:
                        try:
                            proc.stdin.close()
                        except OSError:
                            pass
            if rc != 0:
                msg = log.read_text(errors="replace").strip().splitlines()
                raise RuntimeError(f"ffmpeg failed (exit {rc}): {msg[-1] if msg else 'no message'}")
            if written != clip.n_frames:
                raise RuntimeError(f"wrote {written} frames, expected {clip.n_frames}")
            os.replace(partial, output)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return written


def probe(path: str | Path) -> dict:
    """Minimal probe via ``ffmpeg -i``: {'duration': s, 'video': (w, h) | None, 'audio': bool}."""
    import re

    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    text = proc.stderr.decode("utf-8", "replace")
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    vid = re.search(r"Stream #.*Video:.*?(\d{2,5})x(\d{2,5})", text)
    return {
        "duration": (int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3])) if dur else None,
        "video": (int(vid[1]), int(vid[2])) if vid else None,
        "audio": bool(re.search(r"Stream #.*Audio:", text)),
    }
