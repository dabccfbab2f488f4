"""Talking-head pipeline, end to end and measured on the output video (offline, CPU, ~1 min).

The portrait is scikit-image's astronaut; speech comes from espeak-ng (skipped if missing),
plus a synthetic vowel/silence signal.  Mouth and eye measurements use the pipeline's own
landmark detector (talking_head.face) on the decoded output frames.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

skimage_data = pytest.importorskip("skimage.data")

from talking_head import mesh  # noqa: E402
from talking_head.audio import FPS, SAMPLE_RATE, frame_features, load_audio  # noqa: E402
from talking_head.face import FaceLandmarker  # noqa: E402
from talking_head.pipeline import TalkingHeadPipeline, TalkingHeadRequest  # noqa: E402
from talking_head.video import ffmpeg_exe, probe  # noqa: E402


def vowel_signal(on: float = 0.4, off: float = 0.4, cycles: int = 3, f0: float = 120.0) -> np.ndarray:
    """Harmonic tone shaped by /a/ formants (700, 1200, 2600 Hz), alternating with silence."""
    t = np.arange(int(on * SAMPLE_RATE)) / SAMPLE_RATE
    tone = np.zeros_like(t)
    for h in range(1, 40):
        f = h * f0
        gain = sum(1.0 / (1 + ((f - fc) / bw) ** 2) for fc, bw in ((700, 110), (1200, 120), (2600, 200)))
        tone += gain * np.sin(2 * np.pi * f * t)
    tone *= np.hanning(len(t)) ** 0.2
    tone = 0.5 * tone / np.abs(tone).max()
    silence = np.zeros(int(off * SAMPLE_RATE))
    return np.concatenate([silence] + [np.concatenate([tone, silence]) for _ in range(cycles)]).astype(np.float32)


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("talking_head_media")
    out = {"dir": d}
    vowels = d / "vowels.wav"
    sf.write(vowels, vowel_signal(), SAMPLE_RATE)
    out["vowels"] = vowels
    short = d / "short.wav"
    sf.write(short, vowel_signal(0.3, 0.2, 1), SAMPLE_RATE)
    out["short"] = short
    espeak = shutil.which("espeak-ng")
    if espeak:
        speech = d / "speech.wav"
        subprocess.run([espeak, "-w", str(speech), "-s", "150",
                        "Hello, my name is Anna. Open your mouth wide and say aah."], check=True)
        out["speech"] = speech
    portrait = d / "astronaut.png"
    from PIL import Image

    Image.fromarray(skimage_data.astronaut()).save(portrait)
    out["portrait"] = portrait
    return out


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> TalkingHeadPipeline:
    p = TalkingHeadPipeline(outputs_dir=tmp_path_factory.mktemp("talking_head_out"))
    yield p
    p.close()


@pytest.fixture(scope="session")
def landmarker() -> FaceLandmarker:
    return FaceLandmarker()


def read_frames(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]


def measure(frames: list[np.ndarray], landmarker: FaceLandmarker) -> dict[str, np.ndarray]:
    mouth, ear, eyes = [], [], []
    for f in frames:
        det = landmarker.detect(f)
        assert det is not None, "face lost in an output frame"
        lm = det.landmarks
        mouth.append(mesh.mouth_opening(lm))
        ear.append(np.mean(mesh.eye_aspect_ratio(lm)))
        eyes.append(lm[[468, 473], :2].mean(0))
    return {"mouth": np.array(mouth), "ear": np.array(ear), "eyes": np.array(eyes)}


def run(pipeline, media, tmp_path, name="out.mp4", **kw):
    kw.setdefault("image", media["portrait"])
    kw.setdefault("audio", media["short"])
    return pipeline(TalkingHeadRequest(output=tmp_path / name, **kw))


# ------------------------------------------------------------------------- output format
def test_video_has_streams_and_audio_duration(pipeline, media, tmp_path):
    res = run(pipeline, media, tmp_path, audio=media["vowels"])
    info = probe(res.video_path)
    clip = load_audio(media["vowels"])
    assert info["video"] == (256, 256) and info["audio"]
    assert abs(info["duration"] - clip.duration) <= 1.0 / FPS + 0.03
    assert res.frames == clip.n_frames == len(read_frames(res.video_path))
    assert set(res.timings) >= {"face", "audio", "coeffs", "render", "mux", "total"}


@pytest.mark.parametrize("mode,size,expected", [
    ("crop", 256, (256, 256)), ("extcrop", 256, (256, 256)), ("resize", 256, (342, 256)),
    ("full", 256, (512, 384)), ("extfull", 512, (512, 384))])
def test_preprocess_output_sizes(pipeline, media, tmp_path, mode, size, expected):
    image = skimage_data.astronaut()[:384]  # 512 x 384, not square
    res = run(pipeline, media, tmp_path, image=image, preprocess=mode, size=size)
    assert probe(res.video_path)["video"] == expected


def test_full_keeps_far_pixels(pipeline, media, tmp_path):
    image = skimage_data.astronaut()
    res = run(pipeline, media, tmp_path, image=image, preprocess="full", still=False, pose_style=3)
    frames = read_frames(res.video_path)
    far = (slice(400, 512), slice(380, 512))  # lower right: suit and flag, far from the face
    for f in (frames[0], frames[len(frames) // 2], frames[-1]):
        diff = np.abs(f[far].astype(int) - image[far].astype(int)).mean()
        assert diff < 4.0, diff  # only H.264 noise


# ------------------------------------------------------------------------- motion, measured
def test_mouth_follows_speech_energy(pipeline, media, tmp_path, landmarker):
    if "speech" not in media:
        pytest.skip("espeak-ng not installed")
    res = run(pipeline, media, tmp_path, audio=media["speech"], still=True, blink=False)
    m = measure(read_frames(res.video_path), landmarker)
    energy = frame_features(load_audio(media["speech"])).energy
    r = np.corrcoef(m["mouth"], energy)[0, 1]
    assert r >= 0.6, f"Pearson r = {r:.2f}"


def test_mouth_rests_as_in_the_photo_and_opens_on_vowels(pipeline, media, tmp_path, landmarker):
    # the astronaut smiles with her teeth showing: in silence the mouth is hers, as photographed
    rest = mesh.mouth_opening(landmarker.detect(skimage_data.astronaut()).landmarks)
    res = run(pipeline, media, tmp_path, audio=media["vowels"], still=True, blink=False)
    m = measure(read_frames(res.video_path), landmarker)
    energy = frame_features(load_audio(media["vowels"])).energy
    silent, loud = energy == 0, energy > 0.6
    assert silent.sum() > 10 and loud.sum() > 10
    assert abs(np.median(m["mouth"][silent]) - rest) < 0.04, (np.median(m["mouth"][silent]), rest)
    assert np.median(m["mouth"][loud]) > np.median(m["mouth"][silent]) + 0.12


def test_blinks_on_and_off(pipeline, media, tmp_path, landmarker):
    on = measure(read_frames(run(pipeline, media, tmp_path, "on.mp4", audio=media["vowels"],
                                 still=True, blink=True, seed=1).video_path), landmarker)["ear"]
    off = measure(read_frames(run(pipeline, media, tmp_path, "off.mp4", audio=media["vowels"],
                                  still=True, blink=False).video_path), landmarker)["ear"]
    assert on.min() < 0.7 * np.median(on), (on.min(), np.median(on))
    assert off.min() > 0.85 * np.median(off), (off.min(), np.median(off))


def test_still_and_pose_styles(pipeline, media, tmp_path, landmarker):
    kw = dict(audio=media["vowels"], blink=False)
    still = measure(read_frames(run(pipeline, media, tmp_path, "s.mp4", still=True, **kw).video_path), landmarker)
    a = measure(read_frames(run(pipeline, media, tmp_path, "a.mp4", pose_style=0, **kw).video_path), landmarker)
    b = measure(read_frames(run(pipeline, media, tmp_path, "b.mp4", pose_style=17, **kw).video_path), landmarker)
    # 95th percentile of the eye-midpoint distance from its median (robust to detector jitter)
    spread = lambda m: np.percentile(np.linalg.norm(m["eyes"] - np.median(m["eyes"], 0), axis=1), 95)  # noqa: E731
    assert spread(still) < 1.5, spread(still)
    assert spread(a) > 3.0 and spread(b) > 3.0, (spread(a), spread(b))
    assert np.abs(a["eyes"] - b["eyes"]).mean() > 1.5


# ------------------------------------------------------------------------- bad inputs
def _bad_inputs(media, d: Path) -> dict[str, dict]:
    empty = d / "empty.wav"
    empty.write_bytes(b"")
    corrupt = d / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + bytes(range(200)))
    long = d / "long.wav"
    sf.write(long, np.zeros(int(3.0 * SAMPLE_RATE), np.float32), SAMPLE_RATE)
    huge = np.zeros((8000, 6000, 3), np.uint8)  # 48 MP > MAX_IMAGE_PIXELS
    return {
        "no face": dict(image=np.full((256, 256, 3), 128, np.uint8)),
        "swapped": dict(image=media["short"], audio=media["portrait"]),
        "image as audio": dict(audio=media["portrait"]),
        "empty audio": dict(audio=empty),
        "corrupt audio": dict(audio=corrupt),
        "too long": dict(audio=long, max_audio_seconds=2.0),
        "1x1 image": dict(image=np.zeros((1, 1, 3), np.uint8)),
        "huge image": dict(image=huge),
        "bad size": dict(size=300),
        "bad style": dict(pose_style=46),
    }


def test_bad_inputs_raise_value_error_and_leave_no_file(pipeline, media, tmp_path):
    out_dir = tmp_path / "bad_out"
    for name, kw in _bad_inputs(media, tmp_path).items():
        kw = {"image": media["portrait"], "audio": media["short"], **kw}
        with pytest.raises(ValueError) as err:
            pipeline(TalkingHeadRequest(output=out_dir / f"{name}.mp4", **kw))
        assert str(err.value), name
        assert not out_dir.exists() or not any(out_dir.iterdir()), name


def test_bad_input_messages_are_specific(pipeline, media, tmp_path):
    cases = _bad_inputs(media, tmp_path)
    expect = {"no face": "no face", "swapped": "swapped", "empty audio": "empty", "too long": "limit",
              "1x1 image": "too small", "huge image": "too large", "bad style": "pose_style"}
    for name, word in expect.items():
        kw = {"image": media["portrait"], "audio": media["short"], **cases[name]}
        with pytest.raises(ValueError, match=word):
            pipeline(TalkingHeadRequest(output=tmp_path / "x.mp4", **kw))
    assert not (tmp_path / "x.mp4").exists()


def test_default_output_path_is_unique(pipeline, media):
    a = pipeline(TalkingHeadRequest(image=media["portrait"], audio=media["short"]))
    b = pipeline(TalkingHeadRequest(image=media["portrait"], audio=media["short"]))
    assert a.video_path != b.video_path and a.video_path.is_file() and b.video_path.is_file()
    assert a.video_path.parent == pipeline.outputs_dir
    assert not list(pipeline.outputs_dir.glob("*.partial.mp4"))


def test_ffmpeg_is_bundled():
    assert Path(ffmpeg_exe()).is_file()
