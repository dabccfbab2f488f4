"""SadTalker inside the talking-head pipeline: engine selection, errors, and an end-to-end run.

Checkpoint files are written in the official layout (file names, key prefixes, the
``mapping`` dict key) with random values at tiny widths (SadTalkerConfig.tiny()) and loaded
through the strict loader with that config -- the full-width files take minutes per frame
on CPU.  The portrait is scikit-image's astronaut, the speech a 0.4 s synthetic vowel (10 frames;
a tiny-width 256 frame still takes ~0.5 s on two CPU cores).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

skimage_data = pytest.importorskip("skimage.data")

from talking_head.audio import SAMPLE_RATE  # noqa: E402
from talking_head.face import FaceLandmarker, prepare_source  # noqa: E402
from talking_head.pipeline import TalkingHeadPipeline, TalkingHeadRequest  # noqa: E402
from talking_head.sadtalker import CheckpointError, SadTalkerConfig, load_sadtalker  # noqa: E402
from talking_head.sadtalker.adapter import SadTalkerAdapter, SadTalkerClip, five_point_landmarks  # noqa: E402
from talking_head.sadtalker.loader import MAPPING_70, MAPPING_73, required_files  # noqa: E402
from talking_head.sadtalker.testing import write_checkpoints  # noqa: E402
from talking_head.video import probe  # noqa: E402

TINY = SadTalkerConfig.tiny()
RENDERER_256 = "SadTalker_V0.0.2_256.safetensors"


def vowel(seconds: float = 0.4, f0: float = 130.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 20))
    x *= np.sin(np.pi * t / seconds)  # fade in/out
    return (0.4 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    from PIL import Image

    d = tmp_path_factory.mktemp("st_media")
    portrait = d / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(portrait)
    speech = d / "vowel.wav"
    sf.write(speech, vowel(), SAMPLE_RATE)
    return {"dir": d, "portrait": portrait, "speech": speech}


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("st_ckpt") / "checkpoints"
    write_checkpoints(d, TINY, 256, ("crop", "full"))
    return d


def paths_for(checkpoints: Path) -> SimpleNamespace:  # the two fields of webui's PathsConfig we use
    return SimpleNamespace(checkpoints_dir=checkpoints, models_dir=checkpoints.parent / "models")


# ----------------------------------------------------------------------------- loader + landmarks

def test_tiny_files_load_strictly_with_their_config(tiny_checkpoints):
    assert sorted(p.name for p in tiny_checkpoints.iterdir()) == sorted([RENDERER_256, MAPPING_70, MAPPING_73])
    nets = load_sadtalker(tiny_checkpoints, 256, "full", cfg=TINY)
    assert nets.coeff_nc == 73
    assert load_sadtalker(tiny_checkpoints, 256, "full", cfg=TINY) is nets     # cached, not reloaded
    # the strict key/shape check still applies: official widths refuse the tiny files
    with pytest.raises(CheckpointError, match=r"SadTalker_V0\.0\.2_256\.safetensors.*shape mismatches"):
        load_sadtalker(tiny_checkpoints, 256, "crop")


def test_five_points_from_face_mesh(media):
    from PIL import Image

    image = np.asarray(Image.open(media["portrait"]).convert("RGB"))
    lm = FaceLandmarker().detect(image)
    src = prepare_source(image, lm, "crop", 256)
    five = five_point_landmarks(src.landmarks)
    assert five.shape == (5, 2)
    eye_l, eye_r, nose, mouth_l, mouth_r = five
    assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < mouth_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert 20 < eye_r[0] - eye_l[0] < 128 and np.all((five > 0) & (five < 256))
    with pytest.raises(ValueError, match="478"):
        five_point_landmarks(np.zeros((68, 2)))


# ----------------------------------------------------------------------------- engine selection

def test_auto_uses_sadtalker_only_when_all_files_are_present(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    pipe = TalkingHeadPipeline(outputs_dir=tmp_path / "out", paths=paths_for(ckpt))
    assert pipe.checkpoints_dir() == ckpt
    assert pipe.select_engine("auto", 256, "crop").name == "default"
    assert pipe.select_engine("default", 256, "crop").name == "default"
    # renderer only: the mapping file is still missing -> default; sadtalker names the mapping file
    write_checkpoints(tmp_path / "staging", TINY, 256, ("crop",))
    (tmp_path / "staging" / RENDERER_256).rename(ckpt / RENDERER_256)
    assert pipe.select_engine("auto", 256, "crop").name == "default"
    with pytest.raises(FileNotFoundError, match=r"mapping_00229-model\.pth\.tar.*checkpoints/") as err:
        pipe.select_engine("sadtalker", 256, "crop")
    assert RENDERER_256 not in str(err.value) and str(ckpt) in str(err.value)
    (tmp_path / "staging" / MAPPING_70).rename(ckpt / MAPPING_70)
    assert pipe.select_engine("auto", 256, "crop").name == "sadtalker"
    assert pipe.select_engine("auto", 256, "extcrop").name == "sadtalker"   # same 70-dim mapping
    assert pipe.select_engine("auto", 256, "full").name == "default"        # 73-dim mapping missing
    assert pipe.select_engine("auto", 512, "crop").name == "default"        # no 512 renderer
    assert pipe.select_engine("default", 256, "crop").name == "default"     # always weight-free
    assert pipe.select_engine("sadtalker", 256, "crop").name == "sadtalker"
    assert pipe.engines["sadtalker"] is pipe.select_engine("sadtalker", 256, "crop")  # one adapter


def test_sadtalker_without_files_is_a_clear_error_and_writes_nothing(tmp_path, media):
    ckpt = tmp_path / "checkpoints"
    pipe = TalkingHeadPipeline(outputs_dir=tmp_path / "out", paths=paths_for(ckpt))
    out = tmp_path / "never.mp4"
    request = TalkingHeadRequest(image=media["portrait"], audio=media["speech"], output=out, engine="sadtalker",
                                 size=512, preprocess="full")
    with pytest.raises(FileNotFoundError) as err:
        pipe(request)
    msg = str(err.value)
    for name in required_files(512, "full"):
        assert name in msg
    assert "checkpoints/" in msg and not out.exists()
    # no paths: the repo-relative checkpoints/ folder (holds only its README here)
    assert TalkingHeadPipeline().checkpoints_dir() == Path("checkpoints")


# ----------------------------------------------------------------------------- end to end

@pytest.mark.parametrize("preprocess,nc", [("crop", 70), ("full", 73)])
def test_pipeline_end_to_end_with_sadtalker(tiny_checkpoints, media, tmp_path, preprocess, nc):
    adapter = SadTalkerAdapter(tiny_checkpoints, device="cpu", cfg=TINY)
    pipe = TalkingHeadPipeline(outputs_dir=tmp_path, paths=paths_for(tiny_checkpoints),
                               engines={"sadtalker": adapter})
    stages = []
    request = TalkingHeadRequest(image=media["portrait"], audio=media["speech"], output=tmp_path / "st.mp4",
                                 preprocess=preprocess, engine="auto", pose_style=5, seed=3)
    res = pipe(request, progress=lambda stage, f: stages.append(stage))
    assert res.engine == "sadtalker" and res.video_path.is_file()
    assert isinstance(res.coeffs, SadTalkerClip)
    T = res.coeffs.n_frames
    assert res.frames == T == 10 and res.coeffs.driving.shape == (T, nc)
    assert res.coeffs.motion.exp.shape == (T, 64) and res.coeffs.motion.pose.shape == (T, 6)
    assert {"face", "audio", "coeffs", "render", "mux"} <= set(res.timings)
    assert stages[0] == "face" and stages[-1] == "render"
    info = probe(res.video_path)
    assert info["audio"] and abs(info["duration"] - 0.4) < 0.1
    # crop: SadTalker's face box, width 256 and its own aspect (181 x 182 px on the astronaut);
    # full: the astronaut's size
    assert info["video"] == ((256, 254) if preprocess == "crop" else (512, 512))
    assert list(adapter._engines) == [(256, MAPPING_70 if nc == 70 else MAPPING_73)]
    engine = adapter.engine_for(256, preprocess)
    assert engine.nets is load_sadtalker(tiny_checkpoints, 256, preprocess, torch.device("cpu"), cfg=TINY)
    # a second request reuses the engine (and the loader's cached weights)
    assert adapter.engine_for(256, preprocess) is engine
    assert pipe.select_engine("sadtalker", 256, preprocess) is adapter
    assert pipe.select_engine("default", 256, preprocess).name == "default"
