"""Reference videos (SadTalker's --ref_eyeblink / --ref_pose) for both engines.

The reference clip is made here: the default renderer animates scikit-image's astronaut with a
scripted head turn, tilt and one blink, so the motion a reference carries is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

skimage_data = pytest.importorskip("skimage.data")

from talking_head.audio import SAMPLE_RATE  # noqa: E402
from talking_head.coeffs import Coeffs  # noqa: E402
from talking_head.face import FaceLandmarker, prepare_source  # noqa: E402
from talking_head.pipeline import DefaultEngine, TalkingHeadPipeline, TalkingHeadRequest  # noqa: E402
from talking_head.reference import (euler_from_rotation, load_reference, load_references, mesh_motion,  # noqa: E402
                                    similarity_fit)

REF_FRAMES = 40
BLINK_AT = 20  # frames 20..24 carry the blink [.5 .9 1 .9 .5]


class ScriptedEngine(DefaultEngine):
    """Default renderer with fixed coefficients: yaw 0 -> 12 deg, roll 0 -> -6 deg, one blink."""

    def coefficients(self, source, audio, features, options, references=None):
        n = audio.n_frames
        z = np.zeros(n, np.float32)
        blink = z.copy()
        blink[BLINK_AT:BLINK_AT + 5] = [0.5, 0.9, 1.0, 0.9, 0.5]
        return Coeffs(jaw_open=z, mouth_width=z, mouth_round=z, blink_right=blink, blink_left=blink, brow_raise=z,
                      yaw=np.linspace(0, 12, n, dtype=np.float32), pitch=z,
                      roll=np.linspace(0, -6, n, dtype=np.float32), tx=z, ty=z, tz=z)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    from PIL import Image

    d = tmp_path_factory.mktemp("ref_media")
    portrait = d / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(portrait)
    short = d / "short.wav"
    sf.write(short, tone(REF_FRAMES / 25), SAMPLE_RATE)
    long = d / "long.wav"
    sf.write(long, tone(3.2), SAMPLE_RATE)          # 80 frames: the reference loops
    scripted = TalkingHeadPipeline(outputs_dir=d, engines={"default": ScriptedEngine()})
    ref = d / "reference.mp4"
    scripted(TalkingHeadRequest(image=portrait, audio=short, output=ref, engine="default"))
    still = d / "still.mp4"  # a video with no face in it
    import imageio_ffmpeg

    w = imageio_ffmpeg.write_frames(str(still), (128, 96), fps=25, macro_block_size=1)
    w.send(None)
    for i in range(10):
        w.send(np.full((96, 128, 3), 40 + 10 * i, np.uint8).tobytes())
    w.close()
    not_video = d / "notes.mp4"
    not_video.write_text("this is not a video")
    return {"dir": d, "portrait": portrait, "short": short, "long": long, "ref": ref, "still": still,
            "not_video": not_video}


@pytest.fixture(scope="module")
def landmarker():
    lm = FaceLandmarker()
    yield lm
    lm.close()


def test_euler_round_trip_and_similarity_fit():
    from talking_head.render import _rotation

    R = _rotation(10.0, -4.0, 7.0)                       # the default renderer's Rz @ Rx @ Ry
    assert np.allclose(euler_from_rotation(R), (10.0, -4.0, 7.0), atol=1e-6)
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((50, 3))
    moved = 1.2 * pts @ R.T + [3.0, -2.0, 0.5]
    R2, s, t = similarity_fit(pts, moved)
    assert np.allclose(R2, R, atol=1e-6) and s == pytest.approx(1.2, abs=1e-6)


def test_mesh_motion_reads_the_scripted_turn_tilt_and_blink(media, landmarker):
    ref = load_reference(media["ref"], landmarker, max_frames=1000)
    assert ref.n_frames == REF_FRAMES and ref.found.all()
    m = mesh_motion(ref)
    assert m.yaw[0] == pytest.approx(0, abs=0.5) and m.yaw[-1] > 6            # turned towards +yaw
    assert np.corrcoef(m.yaw, np.arange(REF_FRAMES))[0, 1] > 0.9
    assert m.roll[-1] < -3 and np.corrcoef(m.roll, np.arange(REF_FRAMES))[0, 1] < -0.9
    assert np.abs(m.pitch).max() < 3 and np.abs(m.tx).max() < 0.03
    closed = (m.blink_right + m.blink_left) / 2
    assert closed[BLINK_AT + 1:BLINK_AT + 4].min() > 0.5                        # the blink is read
    assert np.delete(closed, np.arange(BLINK_AT - 1, BLINK_AT + 6)).max() < 0.3  # open elsewhere
    # max_frames caps decoding
    assert load_reference(media["ref"], landmarker, max_frames=7).n_frames == 7


def test_bad_reference_videos(media, landmarker):
    with pytest.raises(ValueError, match="no face found in reference video"):
        load_reference(media["still"], landmarker, 100)
    with pytest.raises(ValueError, match="not a video"):
        load_reference(media["not_video"], landmarker, 100)
    with pytest.raises(ValueError, match="does not exist"):
        load_reference(media["dir"] / "missing.mp4", landmarker, 100)
    refs = load_references(media["ref"], media["ref"], landmarker, 10)
    assert refs.pose is refs.eyeblink                                          # read once


def test_default_engine_takes_blinks_and_pose_from_the_reference(media, landmarker, tmp_path):
    pipe = TalkingHeadPipeline(outputs_dir=tmp_path)
    base = dict(image=media["portrait"], audio=media["long"], engine="default", seed=3)
    plain = pipe(TalkingHeadRequest(output=tmp_path / "plain.mp4", blink=False, still=True, **base))
    refd = pipe(TalkingHeadRequest(output=tmp_path / "ref.mp4", ref_eyeblink=media["ref"], ref_pose=media["ref"],
                                   **base))
    n = refd.frames
    assert n == 80 and plain.frames == 80
    c = refd.coeffs
    # looped: frame 40 + k repeats reference frame k
    assert np.allclose(c.yaw[REF_FRAMES:], c.yaw[:n - REF_FRAMES])
    assert c.yaw[REF_FRAMES - 1] > 6 and abs(c.yaw[REF_FRAMES]) < 0.5
    blink = (c.blink_right + c.blink_left) / 2
    assert blink[BLINK_AT + 2] > 0.5 and blink[REF_FRAMES + BLINK_AT + 2] > 0.5
    # and the rendered video shows it: read it back as a reference itself
    out = mesh_motion(load_reference(refd.video_path, landmarker, 1000))
    assert out.yaw[REF_FRAMES - 1] > 4 and np.corrcoef(out.yaw, c.yaw)[0, 1] > 0.9
    seen = (out.blink_right + out.blink_left) / 2
    window = np.r_[BLINK_AT - 1:BLINK_AT + 6, REF_FRAMES + BLINK_AT - 1:REF_FRAMES + BLINK_AT + 6]
    assert seen[BLINK_AT + 2] > 0.2 and seen[BLINK_AT + 2] > 1.5 * np.delete(seen, window).max()
    # still keeps the source pose, input_yaw keeps its angle, blinks still come from the video
    still = pipe(TalkingHeadRequest(output=tmp_path / "still.mp4", ref_pose=media["ref"], still=True,
                                    ref_eyeblink=media["ref"], **base)).coeffs
    assert np.all(still.yaw == 0) and still.blink_right[BLINK_AT + 2] > 0.5
    fixed = pipe(TalkingHeadRequest(output=tmp_path / "fixed.mp4", ref_pose=media["ref"], input_yaw=(5.0,),
                                    **base)).coeffs
    assert np.allclose(fixed.yaw, 5.0) and fixed.roll[REF_FRAMES - 1] < -3


def test_pipeline_rejects_missing_reference_before_writing(media, tmp_path):
    pipe = TalkingHeadPipeline(outputs_dir=tmp_path)
    out = tmp_path / "never.mp4"
    with pytest.raises(ValueError, match="ref_pose="):
        pipe(TalkingHeadRequest(image=media["portrait"], audio=media["short"], output=out,
                                ref_pose=tmp_path / "nope.mp4"))
    with pytest.raises(ValueError, match="no face found in reference video"):
        pipe(TalkingHeadRequest(image=media["portrait"], audio=media["short"], output=out,
                                engine="default", ref_eyeblink=media["still"]))
    assert not out.exists()


def test_sadtalker_engine_reference_semantics(media, landmarker):
    """Official rules: the blink video's exp feeds ExpNet with ratio 0; the pose video's change
    from its first frame is added to the PoseVAE pose; both loop when shorter."""
    from talking_head.sadtalker import SadTalkerConfig, SadTalkerEngine, SadTalkerOptions, build_networks
    from talking_head.sadtalker.adapter import REFERENCE_SIZE, SadTalkerAdapter, five_point_landmarks

    import torch

    torch.manual_seed(0)
    engine = SadTalkerEngine(build_networks(SadTalkerConfig.tiny(), 256, "crop"), batch_size=2)
    from PIL import Image

    image = np.asarray(Image.open(media["portrait"]).convert("RGB"))
    source = prepare_source(image, landmarker.detect(image), "crop", 256)
    ref = load_reference(media["ref"], landmarker, 1000)
    rows = SadTalkerAdapter(media["dir"]).reference_coeffs(engine, source, ref)
    assert rows.shape == (REF_FRAMES, 70) and np.isfinite(rows).all()
    crops = list(ref.crops(lambda lm0, f0: prepare_source(f0, landmarker.detect(f0), "crop", REFERENCE_SIZE).to_source,
                           REFERENCE_SIZE))
    assert len(crops) == REF_FRAMES and crops[0][0].shape == (256, 256, 3)
    again = engine.reference_coeffs((c, five_point_landmarks(lm)) for c, lm in crops[:3])
    assert np.allclose(again, rows[:3], atol=1e-4)

    T = 55
    mels = np.random.default_rng(1).standard_normal((T, 80, 16)).astype(np.float32)
    src = engine.source_coeffs(source.image, five_point_landmarks(source.landmarks))
    opts = SadTalkerOptions(seed=5)
    plain = engine.coefficients(mels, src, opts)
    blinked = engine.coefficients(mels, src, opts, ref_eyeblink=rows)
    posed = engine.coefficients(mels, src, opts, ref_pose=rows)
    assert plain.blink.any() and not blinked.blink.any()
    looped = rows[np.arange(T) % REF_FRAMES]
    expect = engine.audio_to_exp(mels, src, np.zeros(T, np.float32), looped[:, :64])
    assert np.allclose(blinked.exp, expect, atol=1e-5) and not np.allclose(blinked.exp, plain.exp)
    assert np.allclose(posed.pose - plain.pose, looped[:, 64:70] - rows[:1, 64:70], atol=1e-5)
    assert np.array_equal(posed.exp, plain.exp)
