"""How the weight-free renderer draws eyes and mouths, on frames straight from FaceRenderer (no video),
and the offline text to speech.  Portraits: scikit-image's astronaut (smiling, teeth shown) and
matplotlib's Grace Hopper sample photo (mouth closed; matplotlib ships with mediapipe).
"""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from talking_head import mesh
from talking_head.coeffs import EXP_FIELDS, POSE_FIELDS
from talking_head.face import FaceLandmarker, prepare_source
from talking_head.render import FaceRenderer

skimage_data = pytest.importorskip("skimage.data")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def coeffs(**kw) -> dict[str, float]:
    c = {k: 0.0 for k in EXP_FIELDS + POSE_FIELDS}
    c.update(kw)
    return c


def hopper() -> np.ndarray:
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture(scope="module")
def landmarker():
    lmk = FaceLandmarker()
    yield lmk
    lmk.close()


@pytest.fixture(scope="module")
def astronaut(landmarker) -> FaceRenderer:
    img = skimage_data.astronaut()
    return FaceRenderer(prepare_source(img, landmarker.detect(img), "crop", 256))


@pytest.fixture(scope="module")
def closed_mouth(landmarker) -> FaceRenderer:
    img = hopper()
    return FaceRenderer(prepare_source(img, landmarker.detect(img), "crop", 256))


def poly_mask(points: np.ndarray, size: int, erode: int = 0) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(points).astype(np.int32)], 1)
    if erode:
        m = cv2.erode(m, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    return m.astype(bool)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


# ------------------------------------------------------------------------- eyes
def test_blink_is_the_lid_skin_moved_down(astronaut, landmarker):
    r = astronaut
    lm = r.lm0[:, :2]
    src = r.image
    eye = np.concatenate([lm[mesh.RIGHT_EYE_UPPER], lm[mesh.RIGHT_EYE_LOWER][::-1]])
    inside = poly_mask(eye, r.size, erode=1)
    h = float(np.ptp(eye[:, 1]))
    upper = lm[mesh.RIGHT_EYE_UPPER]
    lid = poly_mask(np.concatenate([upper - [0, 0.3 * h], (upper - [0, 1.0 * h])[::-1]]), r.size)  # the lid's skin
    lid_rgb = np.median(src[lid].astype(np.float32), 0)
    dark = luma(src[inside]) < 0.4 * float(luma(lid_rgb))                   # iris and pupil
    assert dark.sum() > 10

    c = coeffs(blink_right=1.0, blink_left=1.0)
    closed = r.render(c)
    half = r.render(coeffs(blink_right=0.5, blink_left=0.5))
    line = r.target_points(c)[1][mesh.RIGHT_EYE_UPPER]            # where the lid margin (lashes) came down to
    lid_zone = inside & poly_mask(np.concatenate([lm[mesh.RIGHT_EYE_UPPER], (line - [0, 2])[::-1]]), r.size)
    assert lid_zone.sum() > 10
    px = closed[lid_zone].astype(np.float32)
    # above the lash line the eye opening is now lid skin: the iris is gone (what stays dark is the
    # lash line, a quarter of the open eye's dark share at most), the lid's colours, textured
    assert (luma(px) < 0.4 * float(luma(lid_rgb))).mean() < dark.mean() / 4
    chroma = lambda rgb: rgb / rgb.sum()  # noqa: E731
    assert np.abs(chroma(np.median(px, 0)) - chroma(lid_rgb)).max() < 0.03, (np.median(px, 0), lid_rgb)
    assert 0.6 < luma(np.median(px, 0)) / luma(lid_rgb) < 1.1         # skin, a little in the lid's shadow
    assert luma(px).std() > 1.5
    # no outline: the closed eye has no edge stronger than the open eye's own
    box = (slice(int(eye[:, 1].min()) - 3, int(eye[:, 1].max()) + 4), slice(int(eye[:, 0].min()) - 3,
                                                                            int(eye[:, 0].max()) + 4))
    grad = lambda im: np.hypot(*np.gradient(cv2.GaussianBlur(luma(im[box]), (3, 3), 0)))  # noqa: E731
    assert grad(closed).max() <= grad(src).max()
    # a half blink hides the top of the iris under the lid but keeps its lower part as it was
    kept = (luma(half[inside].astype(np.float32)) < 0.4 * float(luma(lid_rgb))).sum() / dark.sum()
    assert 0.15 < kept < 0.9, kept
    # the face mesh itself sees the eye closed
    open_ear = np.mean(mesh.eye_aspect_ratio(landmarker.detect(src).landmarks))
    closed_ear = np.mean(mesh.eye_aspect_ratio(landmarker.detect(closed).landmarks))
    assert closed_ear < 0.6 * open_ear, (closed_ear, open_ear)


# ------------------------------------------------------------------------- mouth
def test_own_teeth_kept_at_rest_and_carried_by_the_upper_lip(astronaut):
    r = astronaut
    assert r.mouth.has_teeth
    lm0 = r.lm0[:, :2]
    opening = poly_mask(np.concatenate([lm0[mesh.INNER_UPPER_LIP], lm0[mesh.INNER_LOWER_LIP][::-1]]), r.size)
    rest = r.render(coeffs())
    teeth0 = cv2.erode(opening.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.abs(rest[teeth0].astype(int) - r.image[teeth0].astype(int)).max() <= 2  # her own teeth

    c = coeffs(jaw_open=1.0)
    frame = r.render(c)
    lm = r.target_points(c)[1]
    up, lo = lm[mesh.INNER_UPPER_LIP], lm[mesh.INNER_LOWER_LIP]
    gap0 = float(np.linalg.norm(lm0[mesh.LOWER_LIP_MID] - lm0[mesh.UPPER_LIP_MID]))
    shift = (up - lm0[mesh.INNER_UPPER_LIP])[3:-3].mean(0)
    # the teeth band right under the moved upper lip is the source's teeth, moved, not stretched
    teeth = opening & poly_mask(np.concatenate([lm0[mesh.INNER_UPPER_LIP][3:-3],
                                                (lm0[mesh.INNER_UPPER_LIP][3:-3] + [0, 0.6 * gap0])[::-1]]), r.size, 1)
    ys, xs = np.nonzero(teeth)
    moved = frame[np.clip(np.round(ys + shift[1]).astype(int), 0, r.size - 1),
                  np.clip(np.round(xs + shift[0]).astype(int), 0, r.size - 1)]
    assert np.abs(moved.astype(float) - r.image[ys, xs].astype(float)).mean() < 14
    # below the teeth the jaw has opened a dark mouth, not a stretched copy of the teeth
    below = poly_mask(np.concatenate([(up + [0, 1.3 * gap0])[3:-3], (lo - [0, 2])[3:-3][::-1]]), r.size)
    assert below.sum() > 20
    assert luma(frame[below]).mean() < 0.45 * luma(r.image[teeth]).mean()


def test_closed_mouth_stays_closed_then_opens_onto_a_shaded_interior(closed_mouth):
    r = closed_mouth
    assert not r.mouth.has_teeth
    lm0 = r.lm0[:, :2]
    mw = float(np.linalg.norm(lm0[61] - lm0[291]))
    around = poly_mask(np.concatenate([lm0[mesh.OUTER_UPPER_LIP], lm0[mesh.OUTER_LOWER_LIP][::-1]]), r.size)
    rest = r.render(coeffs())
    assert np.abs(rest[around].astype(int) - r.image[around].astype(int)).max() <= 2

    c = coeffs(jaw_open=1.0)
    frame = r.render(c)
    lm = r.target_points(c)[1]
    up, lo = lm[mesh.INNER_UPPER_LIP], lm[mesh.INNER_LOWER_LIP]
    inner = poly_mask(np.concatenate([up, lo[::-1]]), r.size, erode=1)
    assert inner.sum() > 0.02 * mw * mw
    px = frame[inner].astype(np.float32)
    lips = np.median(r.image[around].astype(np.float32), 0)
    # dark on average, with shading and bright teeth: many levels, no flat band
    assert luma(px).mean() < 0.6 * float(luma(lips))
    assert luma(px).std() > 12
    assert len(np.unique(px.astype(np.uint8), axis=0)) > 0.3 * len(px)
    top = inner & poly_mask(np.concatenate([up[3:-3], (up[3:-3] + [0, 0.08 * mw])[::-1]]), r.size)
    assert luma(frame[top]).mean() > luma(px).mean() + 25                  # teeth under the upper lip
    # the teeth take the photo's colour temperature: warmer than neutral, as the skin, but paler
    x, y = np.round(lm0[50]).astype(int)
    s = r.image[y - 3:y + 4, x - 3:x + 4].reshape(-1, 3).astype(np.float32).mean(0)
    t = frame[top].astype(np.float32).mean(0)
    assert 0 < np.log(t[0] / t[2]) < np.log(s[0] / s[2]), (t, s)
    # soft edges: the step from lip into the mouth spreads over more than one pixel
    row = int(round((up[5, 1] + lo[5, 1]) / 2))
    col = int(round(lo[5, 0]))
    profile = luma(frame[row:int(lo[5, 1]) + 6, col].astype(np.float32))
    assert np.abs(np.diff(profile)).max() < 0.8 * (profile.max() - profile.min())


# ------------------------------------------------------------------------- text to speech
@needs_espeak
@pytest.mark.parametrize("voice,text", [("en", "Hello, my name is Anna."),
                                        ("cmn", "你好，我的名字是安娜。")])
def test_tts_speaks_offline(voice, text):
    from talking_head.audio import SAMPLE_RATE, SAMPLES_PER_FRAME
    from talking_head.tts import SpeechRequest, synthesize

    clip = synthesize(SpeechRequest(text, voice=voice))
    assert SAMPLE_RATE == 16_000 and len(clip.samples) == clip.n_frames * SAMPLES_PER_FRAME
    assert 0.8 < clip.duration < 8
    assert np.sqrt(np.mean(clip.samples ** 2)) > 0.02          # speech, not silence
    fast = synthesize(SpeechRequest(text, voice=voice, rate=350))
    assert fast.duration < 0.75 * clip.duration
    low, high = (synthesize(SpeechRequest(text, voice=voice, pitch=p)) for p in (10, 90))

    def centroid(c):
        spec = np.abs(np.fft.rfft(c.samples))
        return (spec * np.arange(len(spec))).sum() / spec.sum() / len(spec)

    assert centroid(high) > centroid(low)


@needs_espeak
def test_tts_errors_name_the_problem():
    from talking_head.tts import SpeechRequest, synthesize

    for request, words in ((SpeechRequest("   "), "empty"), (SpeechRequest("hi", voice="zz-none"), "voice"),
                           (SpeechRequest("hi", rate=5), "rate"), (SpeechRequest("hi", pitch=150), "pitch")):
        with pytest.raises(ValueError, match=words):
            synthesize(request)
    with pytest.raises(ValueError, match="too long"):
        synthesize(SpeechRequest("This sentence takes a few seconds to say aloud. " * 2), max_seconds=1.5)


@needs_espeak
def test_pipeline_speaks_text_and_keeps_the_wav(tmp_path):
    import soundfile as sf

    from talking_head.pipeline import TalkingHeadPipeline, TalkingHeadRequest
    from talking_head.video import probe

    pipe = TalkingHeadPipeline(outputs_dir=tmp_path)
    try:
        img = skimage_data.astronaut()
        res = pipe(TalkingHeadRequest(image=img, text="你好", voice="cmn", rate=200, output=tmp_path / "t.mp4",
                                      still=True))
        assert res.speech_path == tmp_path / "t.wav" and res.speech_path.is_file()
        data, sr = sf.read(res.speech_path)
        assert sr == 16_000 and abs(len(data) / sr - res.duration) < 0.05
        assert probe(res.video_path)["audio"]
        for kw, words in ((dict(text=""), "empty"), (dict(text="hi", audio=tmp_path / "t.wav"), "not both"),
                          (dict(), "audio is missing"), (dict(text="Hello there, " * 20, max_audio_seconds=1.0),
                                                         "too long")):
            with pytest.raises(ValueError, match=words):
                pipe(TalkingHeadRequest(image=img, output=tmp_path / "bad.mp4", **kw))
        assert not (tmp_path / "bad.mp4").exists() and not (tmp_path / "bad.wav").exists()
    finally:
        pipe.close()
