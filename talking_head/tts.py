"""Text to speech for the talking head: a typed script, spoken offline by espeak-ng.

    speech = SpeechRequest(text="Hello!", voice="en", rate=175, pitch=50)
    clip = synthesize(speech, max_seconds=120)        # AudioClip at SAMPLE_RATE, whole frames

espeak-ng is the Debian package (``scripts/install.sh`` installs it); its voices and rules are
local files, so nothing is fetched.  The text goes to espeak-ng on stdin as UTF-8 (never on a
command line), the WAV it writes into a private temporary folder is decoded by
:func:`talking_head.audio.load_audio` (resampled to 16 kHz mono) and the folder is removed.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from talking_head.audio import DEFAULT_MAX_AUDIO_SECONDS, AudioClip, load_audio

# Voices offered in the UI (espeak-ng names); any other installed espeak-ng voice name works too.
VOICES = {
    "en": "English (British)",
    "en-us": "English (American)",
    "cmn": "Mandarin Chinese (汉字 or pinyin)",
    "yue": "Cantonese",
    "ja": "Japanese",
    "ko": "Korean",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "ru": "Russian",
}
DEFAULT_VOICE = "en"
RATE_RANGE = (80, 450)      # words per minute (espeak-ng -s), default 175
PITCH_RANGE = (0, 99)       # espeak-ng -p, default 50
DEFAULT_RATE = 175
DEFAULT_PITCH = 50
MAX_TEXT_CHARS = 20_000     # longer scripts are refused before synthesis
SYNTH_TIMEOUT_S = 120


@dataclass(frozen=True)
class SpeechRequest:
    """A script to speak instead of an uploaded speech file."""

    text: str                    # the words, any language the voice reads (UTF-8)
    voice: str = DEFAULT_VOICE   # espeak-ng voice name: 'en', 'cmn', ... (see VOICES)
    rate: int = DEFAULT_RATE     # words per minute, RATE_RANGE
    pitch: int = DEFAULT_PITCH   # 0..99, 50 = the voice's normal pitch


def espeak_exe() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("text to speech needs espeak-ng: install it with 'apt-get install espeak-ng' "
                           "(scripts/install.sh does this)")
    return exe


def installed_voices() -> set[str]:
    """Names of every voice the installed espeak-ng knows (file names and language codes)."""
    out = subprocess.run([espeak_exe(), "--voices"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         check=True, timeout=30).stdout.decode("utf-8", "replace")
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            names.add(cols[1].lower())                 # language code, e.g. cmn
            names.add(cols[4].split("/")[-1].lower())  # voice file, e.g. cmn-latn-pinyin
    return names


def check_speech(speech: SpeechRequest) -> None:
    """Raise ValueError naming the bad field (empty text, unknown voice, rate/pitch out of range)."""
    if not isinstance(speech.text, str) or not speech.text.strip():
        raise ValueError("text is empty: type what the portrait should say")
    if len(speech.text) > MAX_TEXT_CHARS:
        raise ValueError(f"text is {len(speech.text)} characters long, over the limit of {MAX_TEXT_CHARS}")
    lo, hi = RATE_RANGE
    if not (isinstance(speech.rate, (int, float)) and lo <= speech.rate <= hi):
        raise ValueError(f"rate={speech.rate!r} must be {lo}..{hi} words per minute")
    lo, hi = PITCH_RANGE
    if not (isinstance(speech.pitch, (int, float)) and lo <= speech.pitch <= hi):
        raise ValueError(f"pitch={speech.pitch!r} must be in {lo}..{hi}")
    voice = str(speech.voice or "").strip().lower()
    if not voice or voice.startswith("-") or any(c.isspace() for c in voice):
        raise ValueError(f"voice={speech.voice!r} is not a voice name (e.g. 'en', 'cmn')")
    if voice not in VOICES and voice not in installed_voices():
        raise ValueError(f"voice={speech.voice!r} is not an installed espeak-ng voice "
                         f"(try one of: {', '.join(VOICES)})")


def synthesize(speech: SpeechRequest, max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> AudioClip:
    """Speak ``speech`` offline; returns mono float32 audio at SAMPLE_RATE cut to whole frames.

    Raises ValueError for a bad request or speech longer than ``max_seconds``; RuntimeError when
    espeak-ng is missing or fails."""
    check_speech(speech)
    with tempfile.TemporaryDirectory(prefix="talking_head_tts_") as tmp:
        wav = Path(tmp) / "speech.wav"
        cmd = [espeak_exe(), "-b", "1", "-v", speech.voice.strip().lower(), "-s", str(int(round(speech.rate))),
               "-p", str(int(round(speech.pitch))), "-w", str(wav), "--stdin"]
        proc = subprocess.run(cmd, input=speech.text.encode("utf-8"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False, timeout=SYNTH_TIMEOUT_S)
        if proc.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            msg = proc.stderr.decode("utf-8", "replace").strip()
            raise RuntimeError(f"espeak-ng failed (exit {proc.returncode}): {msg or 'no audio written'}")
        try:
            return load_audio(wav, max_seconds=max_seconds)
        except ValueError as exc:  # name the text, not the temporary file
            if "over the limit" in str(exc):
                raise ValueError(f"the spoken text is too long: {str(exc).split(' is ', 1)[-1]}; "
                                 "shorten the text or speak faster") from None
            raise ValueError(f"text gave no usable speech ({exc})") from None
