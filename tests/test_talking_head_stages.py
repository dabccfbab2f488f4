"""Unit tests of the talking-head stages (fast, offline)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from talking_head import mesh
from talking_head.audio import (FPS, MEL_STEP, N_MELS, SAMPLE_RATE, SAMPLES_PER_FRAME, frame_features,
                                load_audio, mel_windows)
from talking_head.coeffs import BLINK_SHAPE, MotionOptions, blink_sequence, generate_coeffs, keyframes
from talking_head.enhance import GFPGAN_FILE, gfpgan_status
from talking_head.face import FaceLandmarker, prepare_source
from talking_head.video import ffmpeg_exe


def _tone(seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3", "m4a"])
def test_audio_formats_decode_to_16k_whole_frames(tmp_path, ext):
    wav = tmp_path / "a.wav"
    sf.write(wav, _tone(1.03, 44_100), 44_100)
    path = tmp_path / f"a.{ext}"
    if ext != "wav":
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(wav), str(path)], check=True)
    clip = load_audio(path)
    assert len(clip.samples) == clip.n_frames * SAMPLES_PER_FRAME
    assert abs(clip.duration - 1.03) <= 2.0 / FPS  # encoders pad a little
    assert np.abs(clip.samples).max() > 0.2


def test_mel_windows_match_sadtalker_layout():
    from talking_head.audio import AudioClip

    samples = np.concatenate([_tone(0.5), np.zeros(int(0.5 * SAMPLE_RATE), np.float32)])
    clip = AudioClip(samples=samples, n_frames=len(samples) // SAMPLES_PER_FRAME)
    mel = mel_windows(clip)
    assert mel.shape == (25, N_MELS, MEL_STEP) and mel.dtype == np.float32
    assert mel.min() >= -4.0 and mel.max() <= 4.0
    # frame 0 and 1 are edge-clamped to mel index 0 -> same first column
    assert np.allclose(mel[0][:, 0], mel[1][:, 0])
    assert mel[5].mean() > mel[-1].mean()  # tone louder than silence


def test_features_energy_zero_in_silence():
    from talking_head.audio import AudioClip

    s = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), _tone(0.5)])
    f = frame_features(AudioClip(samples=s, n_frames=25))
    assert f.energy[:10].max() == 0.0 and f.energy[-8:].min() > 0.5
    assert f.voicing[-8:].min() > 0.5


def test_blink_sequence_like_sadtalker():
    rng = np.random.default_rng(0)
    assert not blink_sequence(20, rng).any()
    seq = blink_sequence(300, rng)
    starts = np.flatnonzero(np.diff(np.concatenate([[0], (seq > 0).astype(int)])) == 1)
    assert len(starts) >= 3
    for s in starts:
        assert np.allclose(seq[s:s + 5], BLINK_SHAPE)
    assert np.diff(starts).min() >= 10 + 5


def test_keyframes_constant_and_interpolated():
    assert np.allclose(keyframes([10], 5), 10)
    k = keyframes([0, 20], 11)
    assert k[0] == 0 and k[-1] == 20 and np.isclose(k[5], 10)


def test_coeffs_deterministic_still_and_styles():
    from talking_head.audio import AudioClip

    clip = AudioClip(samples=_tone(3.0), n_frames=75)
    feats = frame_features(clip)
    a = generate_coeffs(feats, MotionOptions(pose_style=3, seed=5))
    b = generate_coeffs(feats, MotionOptions(pose_style=3, seed=5))
    c = generate_coeffs(feats, MotionOptions(pose_style=4, seed=5))
    still = generate_coeffs(feats, MotionOptions(still=True))
    assert np.array_equal(a.pose, b.pose) and np.array_equal(a.exp, b.exp)
    assert not np.allclose(a.pose, c.pose)
    assert np.abs(still.pose).max() == 0.0
    assert np.abs(np.diff(a.yaw)).max() < 2.0  # smooth: < 2 degrees per frame
    half = generate_coeffs(feats, MotionOptions(expression_scale=0.5, seed=5))
    assert np.allclose(half.jaw_open, 0.5 * generate_coeffs(feats, MotionOptions(seed=5)).jaw_open)
    yaw = generate_coeffs(feats, MotionOptions(input_yaw=(-10, 10), seed=5)).yaw
    assert yaw[0] == -10 and yaw[-1] == 10
    assert not generate_coeffs(feats, MotionOptions(blink=False)).blink_left.any()
    with pytest.raises(ValueError, match="pose_style"):
        generate_coeffs(feats, MotionOptions(pose_style=46))


def test_haar_fallback_and_face_too_small():
    import skimage.data

    img = skimage.data.astronaut()
    lm = FaceLandmarker()
    rgb_lm, detector = lm._haar_landmarks(img)
    assert rgb_lm is not None and rgb_lm.shape == (mesh.N_LANDMARKS, 3)
    tiny = np.ascontiguousarray(img[::8, ::8])  # 64 x 64: eyes ~5 px apart
    det = lm.detect(tiny)
    if det is not None:
        with pytest.raises(ValueError, match="too small"):
            prepare_source(tiny, det, "crop", 256)


def test_gfpgan_status_names_the_missing_file(tmp_path):
    ok, msg = gfpgan_status(tmp_path)
    assert not ok and GFPGAN_FILE in msg and "GFPGAN" in msg
    from talking_head.enhance import GFPGANEnhancer

    with pytest.raises(FileNotFoundError, match=GFPGAN_FILE):
        GFPGANEnhancer(tmp_path)


def test_engine_imports_no_gradio():
    code = "import talking_head.pipeline, talking_head.render, talking_head.enhance, sys; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
