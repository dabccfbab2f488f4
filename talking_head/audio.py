"""Stage 2: decode speech and compute per-frame audio features.

* :func:`load_audio` -- wav/flac/ogg via soundfile, anything else (mp3, m4a, ...) decoded by the
  bundled ffmpeg binary at its own rate; averaged to mono and resampled to ``SAMPLE_RATE`` Hz
  with librosa (soxr_hq), as SadTalker's ``librosa.load(path, sr=16000)``; cut to whole frames.
* :func:`mel_windows` -- SadTalker's (Wav2Lip-style) mel input for the neural engine,
  (T, 80, 16) float32 in [-4, 4].
* :func:`frame_features` -- cheap per-frame descriptors for the default engine.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
DEFAULT_MAX_AUDIO_SECONDS = 120.0
MIN_AUDIO_FRAMES = 2

# SadTalker / Wav2Lip mel parameters.
PREEMPHASIS = 0.97
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_STEP = 16  # mel frames per video frame window (0.2 s)
MEL_FPS = SAMPLE_RATE / HOP  # 80 mel frames per second

_SOUNDFILE_EXT = {".wav", ".flac", ".ogg", ".oga"}


@dataclass(frozen=True, eq=False)
class AudioClip:
    """Decoded speech. samples: (n_frames * 640,) float32 mono at SAMPLE_RATE, nominally in [-1, 1]
    (a resampler's overshoot past +-1 is kept, as ``librosa.load`` keeps it)."""

    samples: np.ndarray
    n_frames: int

    @property
    def duration(self) -> float:
        return self.n_frames / FPS


@dataclass(frozen=True, eq=False)
class AudioFeatures:
    """Per-video-frame descriptors, each (T,) float32.

    energy:    loudness mapped to [0, 1] (0 = noise floor/silence, 1 = loud speech peak).
    rms_db:    raw RMS level in dB full scale.
    voicing:   [0, 1], periodicity (normalised autocorrelation peak in 80-400 Hz pitch range).
    centroid:  spectral centroid in Hz.
    roundness: [0, 1], share of 150-1000 Hz energy in 150-3000 Hz (high for /u/ /o/, low F2).
    openness:  [0, 1], share of 500-1200 Hz (high F1: open vowels /a/) in 150-3000 Hz.
    mel:       optional (T, 80, 16) SadTalker mel windows, when an engine asked for them.
    """

    energy: np.ndarray
    rms_db: np.ndarray
    voicing: np.ndarray
    centroid: np.ndarray
    roundness: np.ndarray
    openness: np.ndarray
    mel: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.energy.shape[0])


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Any format ffmpeg reads -> (samples (N, C) float32 at the file's own rate, rate)."""
    import tempfile

    import imageio_ffmpeg
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="sdts-audio-") as tmp:
        wav = Path(tmp) / "decoded.wav"
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path),
               "-vn", "-acodec", "pcm_f32le", "-f", "wav", str(wav)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0 or not wav.is_file():
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ValueError(f"audio={str(path)!r} could not be decoded: {msg[-1] if msg else 'ffmpeg failed'}")
        data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    return data, int(sr)


def resample(x: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at ``sr`` -> SAMPLE_RATE with librosa's default resampler (soxr_hq), i.e.
    exactly what SadTalker's ``librosa.load(path, sr=16000)`` does after decoding."""
    if sr == SAMPLE_RATE:
        return x.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(np.ascontiguousarray(x, dtype=np.float32), orig_sr=sr, target_sr=SAMPLE_RATE,
                            res_type="soxr_hq").astype(np.float32)


def load_audio(path: str | Path, max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> AudioClip:
    """Decode ``path`` to mono float32 at SAMPLE_RATE, cut to whole frames.

    Raises ValueError for missing, empty, corrupt, silent-only-zero or too-long audio.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"audio={str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"audio={str(path)!r} is empty (0 bytes)")
    data = None
    if path.suffix.lower() in _SOUNDFILE_EXT:
        import soundfile as sf

        try:
            info = sf.info(str(path))
            if info.frames / max(info.samplerate, 1) > max_seconds + 1:
                raise ValueError(f"audio={str(path)!r} is {info.frames / info.samplerate:.1f} s long, "
                                 f"over the limit of {max_seconds:g} s")
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError):
            data = None  # let ffmpeg try (e.g. odd wav encodings)
    if data is None:
        data, sr = _decode_ffmpeg(path)
    # librosa.load's order: channels averaged to mono, then resampled to 16 kHz.
    samples = resample(data.mean(axis=1), sr)
    samples = np.nan_to_num(samples.astype(np.float32))
    n_frames = len(samples) // SAMPLES_PER_FRAME
    if n_frames < MIN_AUDIO_FRAMES:
        raise ValueError(f"audio={str(path)!r} is empty or shorter than {MIN_AUDIO_FRAMES} frames "
                         f"({len(samples) / SAMPLE_RATE:.3f} s)")
    if n_frames / FPS > max_seconds:
        raise ValueError(f"audio={str(path)!r} is {n_frames / FPS:.1f} s long, over the limit of {max_seconds:g} s")
    # not clipped: librosa.load keeps a resampler's overshoot past +-1 and SadTalker's mel sees it
    # (the muxer clips when it writes PCM)
    samples = samples[: n_frames * SAMPLES_PER_FRAME]
    return AudioClip(samples=np.ascontiguousarray(samples), n_frames=n_frames)


# ---------------------------------------------------------------- SadTalker mel windows
_MEL_BASIS: np.ndarray | None = None


def _mel_basis() -> np.ndarray:
    global _MEL_BASIS
    if _MEL_BASIS is None:
        import librosa

        _MEL_BASIS = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
    return _MEL_BASIS


def melspectrogram(samples: np.ndarray) -> np.ndarray:
    """(80, M) normalised mel spectrogram in [-4, 4], 80 frames/s (SadTalker audio.py)."""
    import librosa
    from scipy.signal import lfilter

    emphasized = lfilter([1.0, -PREEMPHASIS], [1.0], samples)
    spec = np.abs(librosa.stft(y=emphasized, n_fft=N_FFT, hop_length=HOP, win_length=WIN))
    mel = _mel_basis() @ spec
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    norm = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_windows(clip: AudioClip) -> np.ndarray:
    """(T, 80, 16) float32: per video frame i, 16 mel frames from int(80 * (i - 2) / 25), edge-clamped."""
    mel = melspectrogram(clip.samples)
    n_mel = mel.shape[1]
    out = np.empty((clip.n_frames, N_MELS, MEL_STEP), dtype=np.float32)
    steps = np.arange(MEL_STEP)
    for i in range(clip.n_frames):
        start = int(MEL_FPS * (i - 2) / FPS)
        idx = np.clip(start + steps, 0, n_mel - 1)
        out[i] = mel[:, idx]
    return out


# ---------------------------------------------------------------- default-engine features
FEATURE_CHUNK = 250  # frames analysed at once (keeps memory flat for long clips)


def _raw_features(x: np.ndarray, first: int, count: int, win: int) -> tuple[np.ndarray, ...]:
    """rms_db, roundness, openness, centroid, voicing for frames [first, first + count)."""
    pad = (win - SAMPLES_PER_FRAME) // 2
    idx = (np.arange(first, first + count)[:, None] * SAMPLES_PER_FRAME + np.arange(win)[None, :])
    frames = x[idx].astype(np.float64)  # (n, win)
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.mean(frames[:, pad:pad + SAMPLES_PER_FRAME] ** 2, axis=1) + 1e-12)
    rms_db = 20 * np.log10(rms + 1e-9)
    spec = np.abs(np.fft.rfft(frames * np.hanning(win)[None, :], axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / SAMPLE_RATE)

    def band(lo: float, hi: float) -> np.ndarray:
        sel = (freqs >= lo) & (freqs < hi)
        return spec[:, sel].sum(axis=1)

    total = band(150, 3000) + 1e-12
    roundness = band(150, 1000) / total
    openness = band(500, 1200) / total
    centroid = (spec * freqs[None, :]).sum(1) / (spec.sum(1) + 1e-12)
    # Voicing: normalised autocorrelation peak for lags of 40-200 samples (400-80 Hz).
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, n=2 * win, axis=1)) ** 2, axis=1)[:, :201]
    voicing = np.clip(ac[:, 40:201].max(axis=1) / (ac[:, 0] + 1e-12), 0, 1)
    return rms_db, roundness, openness, centroid, voicing


def frame_features(clip: AudioClip, with_mel: bool = False) -> AudioFeatures:
    """Per-frame energy, voicing and spectral shape (see :class:`AudioFeatures`)."""
    t = clip.n_frames
    win = 1024  # analysis window centred on each 640-sample frame
    pad = (win - SAMPLES_PER_FRAME) // 2
    x = np.pad(clip.samples, (pad, win - SAMPLES_PER_FRAME - pad))
    parts = [_raw_features(x, i, min(FEATURE_CHUNK, t - i), win) for i in range(0, t, FEATURE_CHUNK)]
    rms_db, roundness, openness, centroid, voicing = (np.concatenate(p) for p in zip(*parts))

    # Loudness relative to this clip: floor = quiet percentile (or -60 dBFS), peak = loud percentile.
    loud = np.percentile(rms_db, 95)
    floor = max(min(np.percentile(rms_db, 10), loud - 25.0), -60.0)
    floor = max(floor, loud - 40.0)
    gate = max(floor + 6.0, -55.0)
    energy = np.clip((rms_db - gate) / max(loud - gate, 1e-3), 0, 1)
    energy[rms_db < -60] = 0.0
    mel = mel_windows(clip) if with_mel else None
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return AudioFeatures(energy=f32(energy), rms_db=f32(rms_db), voicing=f32(voicing),
                         centroid=f32(centroid), roundness=f32(roundness), openness=f32(openness), mel=mel)
