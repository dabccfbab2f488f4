"""SadTalker as a talking-head pipeline engine (stages 3-4 of :mod:`talking_head.pipeline`).

The pipeline's own stages feed it: stage 1's :class:`~talking_head.face.SourceFace` (the
prepared crop at the request size, 478 MediaPipe landmarks in crop pixels, the preprocess
mode), stage 2's mel windows ``AudioFeatures.mel`` (T, 80, 16), and the request's
:class:`~talking_head.coeffs.MotionOptions`.  Enhancement, paste-back and muxing stay in the
pipeline.

One adapter serves every (size, preprocess): the underlying :class:`SadTalkerEngine` is built
on first use per (size, mapping file) and kept; the weights come from the loader's
process-wide cache, so nothing is reloaded per request.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from talking_head import mesh

from .config import SadTalkerConfig
from .engine import MotionCoeffs, SadTalkerEngine, SadTalkerOptions, SourceCoeffs
from .loader import load_sadtalker, mapping_file, missing_files

__all__ = ["SadTalkerAdapter", "SadTalkerClip", "five_point_landmarks", "default_device"]

REFERENCE_SIZE = 256  # reference-video frames are cut at 256 whatever the render size (official)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def five_point_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(478, 2|3) MediaPipe face-mesh points -> (5, 2) in the 3DMM alignment's order:
    image-left eye centre, image-right eye centre, nose tip, image-left and image-right mouth
    corner.  Eye centres are the midpoints of the eye corners, as the 68-point rule
    (mean of points 37 and 40 / 43 and 46) does."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] != mesh.N_LANDMARKS:
        raise ValueError(f"expected ({mesh.N_LANDMARKS}, 2|3) face-mesh landmarks, got {lm.shape}")
    xy = lm[:, :2]
    r_a, r_b = mesh.RIGHT_EYE_EAR[:2]  # eye on the image's left
    l_a, l_b = mesh.LEFT_EYE_EAR[:2]
    left_corner, right_corner = mesh.MOUTH_CORNERS
    return np.stack([(xy[r_a] + xy[r_b]) / 2, (xy[l_a] + xy[l_b]) / 2, xy[mesh.NOSE_TIP],
                     xy[left_corner], xy[right_corner]])


@dataclass(frozen=True, eq=False)
class SadTalkerClip:
    """Stage-3 output of the SadTalker engine for one request.

    source:   the source face's 3DMM coefficients (exp 64, pose 6, crop 3).
    motion:   per-frame ExpNet exp (T, 64), PoseVAE pose (T, 6), blink ratio (T,).
    driving:  (T, 70|73) renderer input after expression_scale / still / crop columns.
    options:  the SadTalker options the clip was made with (render reuses the camera overrides).
    """

    source: SourceCoeffs
    motion: MotionCoeffs
    driving: np.ndarray
    options: SadTalkerOptions

    @property
    def n_frames(self) -> int:
        return int(self.driving.shape[0])


class SadTalkerAdapter:
    """Pipeline :class:`~talking_head.pipeline.Engine` over the official SadTalker networks.

    checkpoints_dir: folder with the official files (``SadTalker_V0.0.2_{size}.safetensors``,
                     ``mapping_00229-model.pth.tar`` / ``mapping_00109-model.pth.tar``).
    device:          None = CUDA if available, else CPU.
    cfg:             network widths the files are checked against (None = official).
    batch_size:      frames per generator call.
    """

    name = "sadtalker"
    uses_mel = True

    def __init__(self, checkpoints_dir: str | os.PathLike, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, cfg: SadTalkerConfig | None = None,
                 batch_size: int = 2) -> None:
        self.checkpoints_dir = Path(checkpoints_dir)
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype
        self.cfg = cfg
        self.batch_size = int(batch_size)
        self._engines: dict[tuple[int, str], SadTalkerEngine] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ files
    def missing_files(self, size: int, preprocess: str) -> list[str]:
        return missing_files(self.checkpoints_dir, size, preprocess)

    def available(self, size: int, preprocess: str) -> bool:
        try:
            return not self.missing_files(size, preprocess)
        except ValueError:
            return False

    def require(self, size: int, preprocess: str) -> None:
        """FileNotFoundError naming every missing file and the folder they belong in."""
        missing = self.missing_files(size, preprocess)
        if missing:
            raise FileNotFoundError(
                f"SadTalker engine (size {size}, preprocess {preprocess!r}) needs "
                f"{', '.join(repr(m) for m in missing)} in the checkpoints/ folder "
                f"'{self.checkpoints_dir}'. Put the official SadTalker files there, or use engine='default'.")

    def engine_for(self, size: int, preprocess: str) -> SadTalkerEngine:
        """The engine for (size, mapping file of ``preprocess``), loaded on first use."""
        key = (int(size), mapping_file(preprocess))
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                self.require(size, preprocess)
                nets = load_sadtalker(self.checkpoints_dir, size, preprocess, self.device, self.dtype, cfg=self.cfg)
                engine = self._engines[key] = SadTalkerEngine(nets, batch_size=self.batch_size)
            return engine

    # ------------------------------------------------------------------ Engine protocol
    @staticmethod
    def options(source: Any, options: Any) -> SadTalkerOptions:
        """MotionOptions + the source's preprocess mode -> SadTalkerOptions."""
        return SadTalkerOptions(pose_style=int(options.pose_style), still=bool(options.still),
                                expression_scale=float(options.expression_scale), blink=bool(options.blink),
                                seed=int(options.seed), input_yaw=options.input_yaw,
                                input_pitch=options.input_pitch, input_roll=options.input_roll,
                                preprocess=source.mode)

    def reference_coeffs(self, engine: SadTalkerEngine, source: Any, ref: Any) -> np.ndarray:
        """(N, 70) 3DMM coefficients of a :class:`~talking_head.reference.ReferenceVideo`: each
        frame cut with the first frame's crop box for the source's preprocess mode at 256 (the
        official code's ``pic_size`` for reference videos), aligned on its 5 points, ReconNet."""
        from talking_head.face import FaceDetection, prepare_source

        def box_of(landmarks0: np.ndarray, frame0: np.ndarray) -> np.ndarray:
            det = FaceDetection(landmarks=landmarks0, box=(0.0, 0.0, 1.0, 1.0), detector="mediapipe")
            return prepare_source(frame0, det, source.mode, REFERENCE_SIZE, geometry="sadtalker").to_source

        crops = ((crop, five_point_landmarks(lm)) for crop, lm in ref.crops(box_of, REFERENCE_SIZE))
        return engine.reference_coeffs(crops)

    def coefficients(self, source: Any, audio: Any, features: Any, options: Any,
                     references: Any = None) -> SadTalkerClip:
        """SourceFace + AudioClip + AudioFeatures (mel) + MotionOptions (+ References) -> SadTalkerClip."""
        engine = self.engine_for(source.size, source.mode)
        mels = features.mel
        if mels is None:  # the pipeline fills it for uses_mel engines; direct callers may not
            from talking_head.audio import mel_windows

            mels = mel_windows(audio)
        opts = self.options(source, options)
        src = engine.source_coeffs(source.image, five_point_landmarks(source.landmarks))
        ref_blink = ref_pose = None
        if references is not None and references.eyeblink is not None:
            ref_blink = self.reference_coeffs(engine, source, references.eyeblink)
        if references is not None and references.pose is not None:
            same = references.pose is references.eyeblink
            ref_pose = ref_blink if same else self.reference_coeffs(engine, source, references.pose)
        motion = engine.coefficients(mels, src, opts, ref_eyeblink=ref_blink, ref_pose=ref_pose)
        return SadTalkerClip(source=src, motion=motion, driving=engine.driving_coeffs(motion, src, opts), options=opts)

    def frames(self, source: Any, coeffs: SadTalkerClip) -> Iterator[np.ndarray]:
        """Yields coeffs.n_frames uint8 (size, size, 3) RGB frames of the source crop."""
        engine = self.engine_for(source.size, source.mode)
        return engine.render(source.image, coeffs.source, coeffs.driving, coeffs.options)
