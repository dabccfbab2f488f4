"""SadTalker semantics that output parity with the official code depends on.

Each expected value is derived by hand from the official behaviour (OpenTalker/SadTalker
``make_animation.get_rotation_matrix``, ``DenseMotionNetwork.forward``, ``librosa.load(sr=16000)``,
``resize_n_crop_img``), not from our own code, so a regression cannot slip back in.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from talking_head.audio import SAMPLE_RATE, load_audio
from talking_head.sadtalker import SadTalkerConfig
from talking_head.sadtalker.face3d import RESCALE_FACTOR, TARGET_SIZE, align_face, five_points, pos_fit
from talking_head.sadtalker.facerender import MASK_FLOOR, DenseMotionNetwork, rotation_matrix, transform_keypoints

PI = 3.14  # SadTalker converts degrees with pi ~= 3.14


def test_roll_turns_x_axis_towards_y():
    # Rz(roll) = [[c, -s, 0], [s, c, 0], [0, 0, 1]] applied to (1, 0, 0) gives (c, s, 0):
    # a positive roll moves a point on the x axis towards +y.
    roll = 20.0
    a = roll / 180 * PI
    R = rotation_matrix(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([roll]))[0]
    assert torch.allclose(R @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([math.cos(a), math.sin(a), 0.0]), atol=1e-6)
    # Keypoints are rotated as kp @ R^T (einsum('bmp,bkp->bkm')): same point, same place.
    he = {k: torch.zeros(1, 66) for k in ("yaw", "pitch", "roll")}
    he.update(t=torch.zeros(1, 3), exp=torch.zeros(1, 45))
    kp = torch.zeros(1, 15, 3)
    kp[0, 0] = torch.tensor([1.0, 0.0, 0.0])
    out = transform_keypoints(kp, he, yaw=torch.zeros(1), pitch=torch.zeros(1), roll=torch.tensor([roll]))
    assert torch.allclose(out[0, 0], torch.tensor([math.cos(a), math.sin(a), 0.0]), atol=1e-6)


def test_rotation_is_pitch_yaw_roll_in_that_order():
    yaw, pitch, roll = 30.0, -10.0, 5.0
    y, p, r = (v / 180 * PI for v in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    R = rotation_matrix(torch.tensor([yaw]), torch.tensor([pitch]), torch.tensor([roll]))[0].double().numpy()
    assert np.allclose(R, rx @ ry @ rz, atol=1e-6)
    assert not np.allclose(R, rx @ ry @ rz.T, atol=1e-3)


def test_dense_motion_drops_mask_weights_below_floor():
    torch.manual_seed(0)
    cfg = SadTalkerConfig.tiny().generator
    net = DenseMotionNetwork(cfg).eval()
    # Spread the mask logits, so that some softmax weights fall below the floor and some not.
    with torch.no_grad():
        net.mask.bias.copy_(torch.linspace(-6.0, 6.0, cfg.num_kp + 1))
    d, h, w = cfg.reshape_depth, 32, 32
    compressed = torch.rand(1, cfg.dm_compress, d, h, w)
    kp_s = torch.rand(1, cfg.num_kp, 3) * 1.6 - 0.8
    kp_d = kp_s + 0.05 * torch.randn_like(kp_s)
    with torch.no_grad():
        out = net(compressed, kp_d, kp_s)
    mask = out["mask"]                                     # the softmax itself
    assert torch.allclose(mask.sum(1), torch.ones(1), atol=1e-5)
    small = mask < MASK_FLOOR
    assert small.any() and (~small).any()
    # Hand-built deformation: identity background + one motion per keypoint, mixed with the
    # mask where entries below 1e-3 are zero (no renormalisation).
    lin = lambda n: torch.linspace(-1, 1, n)  # noqa: E731
    zz, yy, xx = torch.meshgrid(lin(d), lin(h), lin(w), indexing="ij")
    grid = torch.stack([xx, yy, zz], -1)                   # (d, h, w, 3) as (x, y, z)
    motions = [grid] + [grid - kp_d[0, k] + kp_s[0, k] for k in range(cfg.num_kp)]
    kept = torch.where(small, torch.zeros_like(mask), mask)[0]
    expected = sum(kept[k][..., None] * motions[k] for k in range(cfg.num_kp + 1))
    assert torch.allclose(out["deformation"][0], expected, atol=1e-5)
    unfloored = sum(mask[0, k][..., None] * motions[k] for k in range(cfg.num_kp + 1))
    assert not torch.allclose(out["deformation"][0], unfloored, atol=1e-6)


@pytest.mark.parametrize("rate,channels,square", [(22_050, 1, False), (44_100, 2, False), (16_000, 1, False),
                                                  (22_050, 1, True)])
def test_audio_resampling_equals_librosa_load(tmp_path, rate, channels, square):
    import librosa

    rng = np.random.default_rng(rate)
    n = int(rate * 1.3)
    t = np.arange(n) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 7000 * t)
    if square:  # full scale: the resampler overshoots past +-1 and librosa.load keeps it
        tone = np.sign(np.sin(2 * np.pi * 220 * t)) * 0.99
    data = np.stack([tone + 0.01 * rng.standard_normal(n) for _ in range(channels)], 1).astype(np.float32)
    path = tmp_path / f"speech_{rate}.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    ours = load_audio(path).samples
    ref, sr = librosa.load(path, sr=SAMPLE_RATE)           # SadTalker's own call
    assert sr == SAMPLE_RATE
    ref = ref[: len(ours)]
    assert len(ours) == (len(ref) // 640) * 640
    assert np.allclose(ours, ref, atol=1e-6)
    if square:
        assert np.abs(ours).max() > 1.05


def test_audio_through_ffmpeg_resamples_like_librosa(tmp_path):
    """A format soundfile does not take (m4a/mp3 go this way) is decoded at its own rate and
    resampled by librosa, not by ffmpeg."""
    import subprocess

    import imageio_ffmpeg
    import librosa

    rate = 22_050
    t = np.arange(int(rate * 1.0)) / rate
    wav = tmp_path / "src.wav"
    sf.write(wav, (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="FLOAT")
    raw = tmp_path / "speech.aiff"  # pcm in an AIFF container, read through ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(wav), "-acodec", "pcm_s16be",
                    str(raw)], check=True)
    raw_ext = raw.with_suffix(".aif_")
    raw.rename(raw_ext)                                    # an extension soundfile is not tried on
    ours = load_audio(raw_ext).samples
    pcm = np.round(0.4 * np.sin(2 * np.pi * 440 * t) * 32767).clip(-32768, 32767) / 32768.0
    ref = librosa.resample(pcm.astype(np.float32), orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    assert np.allclose(ours, ref[: len(ours)], atol=1e-4)


def test_3dmm_crop_is_pil_bicubic_resize_then_crop():
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    img[100:140, 80:180] = 30                                # some structure, not only noise
    lm68 = rng.uniform(70, 190, (68, 2))
    res = align_face(img, lm68)
    # The official recipe, written out: y flipped, POS fit, s = 102 / s, PIL BICUBIC resize, crop.
    lm5 = five_points(lm68).copy()
    lm5[:, 1] = 256 - 1 - lm5[:, 1]
    t, s = pos_fit(lm5)
    s = RESCALE_FACTOR / s
    w, h = int(256 * s), int(256 * s)
    left = int(w / 2 - TARGET_SIZE / 2 + float((t[0] - 256 / 2) * s))
    up = int(h / 2 - TARGET_SIZE / 2 + float((256 / 2 - t[1]) * s))
    pil = Image.fromarray(img).resize((w, h), resample=Image.BICUBIC)
    expected = np.asarray(pil.crop((left, up, left + TARGET_SIZE, up + TARGET_SIZE)))
    assert res.image.shape == (TARGET_SIZE, TARGET_SIZE, 3)
    assert np.array_equal(res.image, expected)
    assert np.allclose(res.trans_params, [256, 256, s, t[0], t[1]], rtol=1e-6)


def _face_points(eye_l, eye_r, mouth_l, mouth_r) -> np.ndarray:
    from talking_head import mesh

    lm = np.zeros((mesh.N_LANDMARKS, 3), np.float32)
    lm[np.r_[mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER], :2] = eye_l   # image-left eye
    lm[np.r_[mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER], :2] = eye_r
    lm[mesh.MOUTH_CORNERS[0], :2] = mouth_l
    lm[mesh.MOUTH_CORNERS[1], :2] = mouth_r
    return lm


def test_crop_boxes_follow_the_official_cropper():
    """Eyes (100, 100) / (140, 100), mouth corners (105, 150) / (135, 150) in a 400 x 400 image:
    eye_to_eye (40, 0), eye_to_mouth (0, 50) -> x = (90, 0), y = (0, 90), c = (120, 105),
    quad (30, 15)-(210, 195), qsize 180, border 18 -> outer (12, 0, 228, 213) after clipping,
    quad box (30, 15, 210, 195)."""
    from talking_head.face import sadtalker_boxes

    lm = _face_points((100, 100), (140, 100), (105, 150), (135, 150))
    b = sadtalker_boxes(lm, 400, 400)
    assert b.shrink == 1 and b.outer == (12, 0, 228, 213) and b.quad == (30, 15, 210, 195)
    assert b.quad_size == (180, 180)
    # near the bottom-right corner the quad box is cut by the image, its size (the frames' aspect) is not
    corner = sadtalker_boxes(lm + [300, 250, 0], 460, 400)
    assert corner.quad == (330, 265, 460, 400) and corner.quad_size == (180, 180)
    # a face of over 2048 px: the official code shrinks the image by floor(qsize / 1024) first
    big = sadtalker_boxes(lm * 12, 5000, 5000)
    assert big.shrink == 2 and big.size == (2500, 2500)
    assert big.quad == (180, 90, 1260, 1170)


def test_sadtalker_geometry_prepares_the_source_as_cv2_resize_of_the_box():
    import cv2

    from talking_head.face import Compositor, FaceDetection, prepare_source

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    lm = _face_points((100, 100), (140, 100), (105, 150), (135, 150))
    det = FaceDetection(landmarks=lm, box=(0, 0, 1, 1), detector="mediapipe")
    src = prepare_source(img, det, "crop", 256, geometry="sadtalker")
    assert np.array_equal(src.image, cv2.resize(img[15:195, 30:210], (256, 256)))
    ext = prepare_source(img, det, "extcrop", 256, geometry="sadtalker")
    assert np.array_equal(ext.image, cv2.resize(img[0:213, 12:228], (256, 256)))
    assert ext.output_size == (256, 256)          # the quad box's aspect (180 x 180), as crop_info
    res = prepare_source(img, det, "resize", 256, geometry="sadtalker")
    assert np.array_equal(res.image, cv2.resize(img, (256, 256))) and res.output_size == (256, 192)
    # the affine maps landmarks the way the pixels moved: pixel centre (30, 15) -> (s/2 - 1/2, ...)
    m = src.to_source
    s = 256 / 180
    assert np.allclose(m @ [30, 15, 1], [0.5 * s - 0.5, 0.5 * s - 0.5])
    full = prepare_source(img, det, "full", 256, geometry="sadtalker")
    comp = Compositor(full)
    assert (comp.x0, comp.y0, comp.x1, comp.y1) == (30, 15, 210, 195)          # paste_pic's integer box
    small = prepare_source(img, det, "full", 512, geometry="sadtalker")        # box upscaled, not down
    c2 = Compositor(small)
    assert (c2.x0, c2.y0, c2.x1, c2.y1) == (30, 15, 210, 195)
    out = comp(full.image)
    assert out.shape == (300, 400, 3)
    assert np.array_equal(out[250:, :], img[250:, :])                      # far from the box: unchanged
