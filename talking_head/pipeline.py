"""Talking head: portrait + speech -> MP4, in six numbered stages.

    request = TalkingHeadRequest(image="face.png", audio="speech.wav", size=256)
    request = TalkingHeadRequest(image="face.png", text="你好", voice="cmn")  # or speak a typed text
    pipeline = TalkingHeadPipeline(outputs_dir="outputs/talking-head")   # models load once
    result = pipeline(request, progress=lambda stage, fraction: ...)

Stages 3-4 come from an :class:`Engine` (the weight-free default here; SadTalker's networks
plug in through the same protocol and reuse stages 1, 2, 5 and 6).  Frames stream from the
engine through enhancement and paste-back into ffmpeg, so memory does not grow with the clip.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from talking_head.audio import DEFAULT_MAX_AUDIO_SECONDS, FPS, SAMPLE_RATE, AudioClip, AudioFeatures, frame_features, load_audio
from talking_head.coeffs import N_POSE_STYLES, Coeffs, MotionOptions, generate_coeffs
from talking_head.face import PREPROCESS_MODES, Compositor, FaceLandmarker, SourceFace, prepare_source
from talking_head.reference import References, apply_mesh_motion, load_references
from talking_head.tts import DEFAULT_PITCH, DEFAULT_RATE, DEFAULT_VOICE, SpeechRequest, synthesize
from talking_head.video import write_video, write_wav

__all__ = ["FPS", "SAMPLE_RATE", "SIZES", "ENGINES", "ENHANCERS", "MAX_IMAGE_PIXELS", "MIN_IMAGE_SIDE",
           "TalkingHeadRequest", "TalkingHeadResult", "TalkingHeadPipeline", "Engine", "DefaultEngine",
           "MotionOptions", "check_inputs"]

SIZES = (256, 512)
ENGINES = ("auto", "default", "sadtalker")
ENHANCERS = (None, "gfpgan")
MAX_IMAGE_PIXELS = 40_000_000   # ~ 7700 x 5200; larger images are refused
MIN_IMAGE_SIDE = 64
PROGRESS_EVERY = 1              # frames between progress callbacks while rendering (a job checks its cancel there)

ProgressFn = Callable[[str, float], None]

_AUDIO_MAGIC = (b"RIFF", b"ID3", b"fLaC", b"OggS", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"FORM")
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


@dataclass(frozen=True)
class TalkingHeadRequest:
    """One talking-head job.  Built from named widgets / CLI flags, validated by check_inputs."""

    image: str | Path | np.ndarray          # portrait: a path, or (H, W, 3) uint8 RGB
    audio: str | Path | None = None         # speech: wav, mp3, m4a, ogg, flac (or give ``text``)
    output: str | Path | None = None        # mp4 path; None = unique file in the pipeline's outputs_dir
    size: int = 256                         # face render size, 256 or 512
    preprocess: str = "crop"                # crop | extcrop | resize | full | extfull
    still: bool = False                     # keep the source head pose
    pose_style: int = 0                     # 0..45
    expression_scale: float = 1.0           # >= 0, scales mouth/brow motion
    blink: bool = True                      # random eye blinks
    enhancer: str | None = None             # None or 'gfpgan' (needs weights + package)
    seed: int = 0                           # all randomness derives from it
    input_yaw: tuple[float, ...] | None = None    # degrees; 1 value = constant, n = keyframes
    input_pitch: tuple[float, ...] | None = None
    input_roll: tuple[float, ...] | None = None
    engine: str = "auto"                    # auto | default | sadtalker
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
    ref_eyeblink: str | Path | None = None  # video whose eye blinks replace the random ones
    ref_pose: str | Path | None = None      # video whose head motion drives the pose
    text: str | None = None                 # a script to speak (espeak-ng, offline) instead of ``audio``
    voice: str = DEFAULT_VOICE              # espeak-ng voice: 'en', 'cmn', ... (talking_head.tts.VOICES)
    rate: int = DEFAULT_RATE                # speaking rate, words per minute (80..450)
    pitch: int = DEFAULT_PITCH              # 0..99, 50 = the voice's normal pitch

    def speech(self) -> SpeechRequest | None:
        return None if self.text is None else SpeechRequest(text=self.text, voice=self.voice,
                                                            rate=self.rate, pitch=self.pitch)

    def motion_options(self) -> MotionOptions:
        tup = lambda v: None if v is None else tuple(float(x) for x in v)  # noqa: E731
        return MotionOptions(pose_style=int(self.pose_style), still=bool(self.still),
                             expression_scale=float(self.expression_scale), blink=bool(self.blink),
                             seed=int(self.seed), input_yaw=tup(self.input_yaw),
                             input_pitch=tup(self.input_pitch), input_roll=tup(self.input_roll))


@dataclass(frozen=True, eq=False)
class TalkingHeadResult:
    video_path: Path                 # the finished mp4
    coeffs: Any                      # the engine's coefficients (Coeffs for the default engine)
    timings: dict[str, float]        # stage name -> seconds
    frames: int                      # number of video frames
    duration: float                  # seconds (= frames / FPS)
    engine: str = "default"
    speech_path: Path | None = None  # the spoken text as a 16 kHz WAV beside the video (text requests)


@runtime_checkable
class Engine(Protocol):
    """Stages 3-4.  ``coefficients`` turns audio into per-frame motion (any object with
    ``n_frames``); ``frames`` yields exactly n_frames (size, size, 3) uint8 RGB frames of the
    prepared source, one at a time.  Engines hold their models and are reused across calls."""

    name: str
    uses_mel: bool  # True: stage 2 also computes SadTalker's (T, 80, 16) mel windows

    def coefficients(self, source: SourceFace, audio: AudioClip, features: AudioFeatures,
                     options: MotionOptions, references: References | None = None) -> Any: ...

    def frames(self, source: SourceFace, coeffs: Any) -> Iterator[np.ndarray]: ...


class DefaultEngine:
    """Weight-free engine: speech features -> Coeffs; mesh warp renderer."""

    name = "default"
    uses_mel = False

    def coefficients(self, source: SourceFace, audio: AudioClip, features: AudioFeatures,
                     options: MotionOptions, references: References | None = None) -> Coeffs:
        coeffs = generate_coeffs(features, options)
        if references:
            coeffs = apply_mesh_motion(coeffs, options, references.eyeblink, references.pose)
        return coeffs

    def frames(self, source: SourceFace, coeffs: Coeffs) -> Iterator[np.ndarray]:
        from talking_head.render import FaceRenderer

        return FaceRenderer(source).frames(coeffs)


# ---------------------------------------------------------------------------- validation
def _head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _looks_like_audio(head: bytes) -> bool:
    if head[:4] == b"RIFF" and head[8:12] != b"WAVE":
        return head[8:12] in (b"AVI ",)  # RIFF WEBP is an image
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp" and head[8:11] in (b"M4A", b"mp4", b"isom", b"3gp")


def _looks_like_image(head: bytes) -> bool:
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _load_image(image: str | Path | np.ndarray, max_pixels: int) -> np.ndarray:
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"image array has shape {image.shape}, expected (H, W, 3) RGB")
        h, w = arr.shape[:2]
        if h * w > max_pixels:
            raise ValueError(f"image is too large: {w}x{h} = {w * h} pixels, limit {max_pixels}")
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr[..., :3])
    path = Path(image)
    if not path.is_file():
        raise ValueError(f"image={str(path)!r} does not exist")
    head = _head(path)
    if _looks_like_audio(head):
        raise ValueError(f"image={str(path)!r} is an audio file, not an image (image and audio swapped?)")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ValueError(f"image={str(path)!r} is too large: {w}x{h} = {w * h} pixels, limit {max_pixels}")
            Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels)
            arr = np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as exc:  # raised by Image.open itself, before our own size check
        raise ValueError(f"image={str(path)!r} is too large (limit {max_pixels} pixels): {exc}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image={str(path)!r} is not a readable image ({exc})") from exc
    return np.ascontiguousarray(arr)


def check_inputs(request: TalkingHeadRequest, max_image_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, AudioClip]:
    """Validate every field; returns the decoded (H, W, 3) uint8 image and the AudioClip.

    Raises ValueError naming the bad value.  Does not look for the face (stage 1 does).
    A ``text`` request is spoken here (espeak-ng, into memory), so its length is checked too.
    """
    r = request
    if r.size not in SIZES:
        raise ValueError(f"size={r.size!r} must be one of {SIZES}")
    if r.preprocess not in PREPROCESS_MODES:
        raise ValueError(f"preprocess={r.preprocess!r} must be one of {PREPROCESS_MODES}")
    if not (isinstance(r.pose_style, (int, np.integer)) and 0 <= r.pose_style < N_POSE_STYLES):
        raise ValueError(f"pose_style={r.pose_style!r} must be an int in 0..{N_POSE_STYLES - 1}")
    if not (math.isfinite(r.expression_scale) and 0 <= r.expression_scale <= 5):
        raise ValueError(f"expression_scale={r.expression_scale!r} must be in [0, 5]")
    if r.enhancer not in ENHANCERS:
        raise ValueError(f"enhancer={r.enhancer!r} must be one of {ENHANCERS}")
    if r.engine not in ENGINES:
        raise ValueError(f"engine={r.engine!r} must be one of {ENGINES}")
    if not r.max_audio_seconds > 0:
        raise ValueError(f"max_audio_seconds={r.max_audio_seconds!r} must be > 0")
    for name in ("input_yaw", "input_pitch", "input_roll"):
        v = getattr(r, name)
        if v is not None and (len(v) == 0 or not all(math.isfinite(float(x)) and abs(float(x)) <= 90 for x in v)):
            raise ValueError(f"{name}={v!r} must be a non-empty list of degrees in [-90, 90]")
    image = _load_image(r.image, max_image_pixels)
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise ValueError(f"image is too small: {w}x{h}, need at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    for name in ("ref_eyeblink", "ref_pose"):
        v = getattr(r, name)
        if v is not None and not Path(v).is_file():
            raise ValueError(f"{name}={str(v)!r} does not exist")
    if r.text is not None:
        if r.audio is not None:
            raise ValueError("give either audio or text, not both")
        return image, synthesize(r.speech(), max_seconds=r.max_audio_seconds)
    if r.audio is None:
        raise ValueError("audio is missing: upload a speech file or type a text to speak")
    audio_path = Path(r.audio)
    if not audio_path.is_file():
        raise ValueError(f"audio={str(audio_path)!r} does not exist")
    if audio_path.stat().st_size > 0 and _looks_like_image(_head(audio_path)):
        raise ValueError(f"audio={str(audio_path)!r} is an image, not audio (image and audio swapped?)")
    clip = load_audio(audio_path, max_seconds=r.max_audio_seconds)
    return image, clip


# ---------------------------------------------------------------------------- pipeline
def _timed(frames: Iterable[np.ndarray], key: str, timings: dict[str, float]) -> Iterator[np.ndarray]:
    """Yields from ``frames`` adding the time spent producing them to timings[key]."""
    it = iter(frames)
    while True:
        t0 = time.perf_counter()
        try:
            frame = next(it)
        except StopIteration:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
            return
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
        yield frame


class TalkingHeadPipeline:
    """Holds the loaded models (face mesh, engines, enhancer) and runs requests.

    outputs_dir:      where ``output=None`` requests write ``talking_head_<time>_<id>.mp4``.
    paths:            weight roots for GFPGAN and SadTalker (None = cwd, a repo root, or webui
                      PathsConfig with .models_dir / .checkpoints_dir).
    engines:          extra/replacement engines by name (e.g. {'sadtalker': SadTalkerAdapter(dir,
                      cfg=...)}); without one, 'sadtalker' is a SadTalkerAdapter over
                      checkpoints_dir(), created on first use.
    max_image_pixels: refuse larger portraits.
    """

    def __init__(self, outputs_dir: str | Path = "outputs/talking-head", paths: Any = None,
                 engines: Mapping[str, Engine] | None = None, max_image_pixels: int = MAX_IMAGE_PIXELS) -> None:
        self.outputs_dir = Path(outputs_dir)
        self.paths = paths
        self.max_image_pixels = int(max_image_pixels)
        self.landmarker = FaceLandmarker()
        self.engines: dict[str, Engine] = {"default": DefaultEngine()}
        self.engines.update(engines or {})
        self._enhancer = None
        self._lock = threading.Lock()

    def checkpoints_dir(self) -> Path:
        """SadTalker's folder: ``paths.checkpoints_dir``, or ``<root>/checkpoints`` for a root path."""
        p = self.paths
        if p is None or isinstance(p, (str, Path)):
            return Path(p or ".") / "checkpoints"
        return Path(p.checkpoints_dir)

    def sadtalker_engine(self) -> Engine:
        """The injected 'sadtalker' engine, or a SadTalker adapter over checkpoints_dir() made
        on first use (it loads its networks lazily per (size, mapping) from the loader's cache)."""
        with self._lock:
            if "sadtalker" not in self.engines:
                from talking_head.sadtalker.adapter import SadTalkerAdapter

                self.engines["sadtalker"] = SadTalkerAdapter(self.checkpoints_dir())
            return self.engines["sadtalker"]

    def select_engine(self, name: str, size: int = 256, preprocess: str = "crop") -> Engine:
        """'default': the weight-free engine.  'sadtalker': SadTalker, FileNotFoundError naming the
        missing checkpoint files.  'auto': SadTalker when every file for (size, preprocess) is in
        checkpoints/ (an injected engine without a file check counts as present), else default."""
        if name == "default":
            return self.engines["default"]
        if name in ("auto", "sadtalker"):
            engine = self.sadtalker_engine()
            missing = getattr(engine, "missing_files", None)
            if missing is None or not missing(size, preprocess):
                return engine
            if name == "auto":
                return self.engines["default"]
            engine.require(size, preprocess)  # raises FileNotFoundError naming files and folder
            return engine
        if name not in self.engines:
            raise ValueError(f"engine={name!r} is not available (loaded engines: {sorted(self.engines)})")
        return self.engines[name]

    def enhancer(self):
        with self._lock:
            if self._enhancer is None:
                from talking_head.enhance import GFPGANEnhancer

                self._enhancer = GFPGANEnhancer(self.paths)
            return self._enhancer

    def output_path(self, request: TalkingHeadRequest) -> Path:
        if request.output is not None:
            return Path(request.output)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.outputs_dir / f"talking_head_{stamp}_{uuid.uuid4().hex[:8]}.mp4"

    def __call__(self, request: TalkingHeadRequest, progress: ProgressFn | None = None) -> TalkingHeadResult:
        report = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()

        # 0. Check inputs (before anything is written)
        image, clip = check_inputs(request, self.max_image_pixels)
        engine = self.select_engine(request.engine, request.size, request.preprocess)
        enhancer = self.enhancer() if request.enhancer == "gfpgan" else None
        timings["check"] = time.perf_counter() - t0

        # 1. Face: detect landmarks, prepare the source for the preprocess mode
        report("face", 0.0)
        t = time.perf_counter()
        detection = self.landmarker.detect(image)
        if detection is None:
            name = "array" if isinstance(request.image, np.ndarray) else repr(str(request.image))
            raise ValueError(f"no face found in image={name}: use a clear, frontal portrait")
        geometry = "sadtalker" if engine.name == "sadtalker" else "default"
        source = prepare_source(image, detection, request.preprocess, request.size, geometry=geometry)
        compositor = Compositor(source)
        timings["face"] = time.perf_counter() - t
        report("face", 1.0)

        # 1b. Reference videos (blinks / head pose), only as many frames as the audio needs
        references = None
        if request.ref_eyeblink or request.ref_pose:
            t = time.perf_counter()
            report("reference", 0.0)
            references = load_references(request.ref_eyeblink, request.ref_pose, self.landmarker, clip.n_frames)
            timings["reference"] = time.perf_counter() - t

        # 2. Audio features
        t = time.perf_counter()
        features = frame_features(clip, with_mel=engine.uses_mel)
        timings["audio"] = time.perf_counter() - t
        report("audio", 1.0)

        # 3. Coefficients (expression, blinks, head pose)
        t = time.perf_counter()
        if references:
            coeffs = engine.coefficients(source, clip, features, request.motion_options(), references=references)
        else:
            coeffs = engine.coefficients(source, clip, features, request.motion_options())
        timings["coeffs"] = time.perf_counter() - t
        report("coeffs", 1.0)

        # 4. Render face frames (streamed)
        n = clip.n_frames
        frames: Iterable[np.ndarray] = _timed(engine.frames(source, coeffs), "render", timings)

        # 5. Enhance (opt-in, streamed in batches)
        if enhancer is not None:
            frames = _timed(enhancer.enhance_frames(frames), "enhance", timings)

        # 6. Paste-back + mux
        def composed() -> Iterator[np.ndarray]:
            for i, frame in enumerate(frames):
                t_c = time.perf_counter()
                out = compositor(frame)
                timings["paste"] = timings.get("paste", 0.0) + time.perf_counter() - t_c
                if i % PROGRESS_EVERY == 0:
                    report("render", i / n)
                yield out

        output = self.output_path(request)
        t = time.perf_counter()
        written = write_video(composed(), clip, output, source.output_size)
        mux_total = time.perf_counter() - t
        if "enhance" in timings:  # the enhancer pulls frames from the renderer: remove nested time
            timings["enhance"] = max(0.0, timings["enhance"] - timings.get("render", 0.0))
        streamed = sum(timings.get(k, 0.0) for k in ("render", "enhance", "paste"))
        timings["mux"] = max(0.0, mux_total - streamed)
        speech_path = None
        if request.text is not None:  # keep the spoken text beside the video, for download
            speech_path = output.with_suffix(".wav")
            write_wav(speech_path, clip)
        timings["total"] = time.perf_counter() - t0
        report("render", 1.0)
        return TalkingHeadResult(video_path=output, coeffs=coeffs, timings=timings, frames=written,
                                 duration=written / FPS, engine=engine.name, speech_path=speech_path)

    def close(self) -> None:
        self.landmarker.close()
