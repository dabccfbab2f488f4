"""Stage 1b: reference videos (SadTalker's ``--ref_eyeblink`` / ``--ref_pose``).

A reference video lends its eye blinks and/or its head motion to the talking head instead of
the audio-driven ones. This stage decodes it (any format ffmpeg reads, resampled to ``FPS``),
finds the face mesh on every frame and keeps the landmarks; engines read what they need:

* the default engine uses :func:`mesh_motion`: eye closure from the eye aspect ratio and the
  head pose (yaw, pitch, roll, translation, scale) of a similarity fit of the rigid part of the
  mesh to the reference's first frame;
* the SadTalker engine re-decodes the frames with :meth:`ReferenceVideo.crops` (the face cut
  with the first frame's crop box, as the official code does) and runs its 3DMM network on them.

Length: only as many frames as the audio needs are decoded. A reference shorter than the audio
is looped from its start (SadTalker's rule); frames where no face is found hold the nearest
earlier landmarks (the first found, before any). A reference with no face at all is an error.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from talking_head import mesh
from talking_head.audio import FPS

MAX_DECODE_SIDE = 720   # frames are scaled down to this longest side before the mesh runs
REF_KINDS = ("eyeblink", "pose")

# Eye closure from the eye aspect ratio: the reference's own open level is its 90th percentile;
# an eye whose EAR fell by CLOSED_DROP of it counts as fully closed.
OPEN_PERCENTILE = 90
CLOSED_DROP = 0.7
PIVOT_DEPTH = 0.6  # head rotation centre behind the face, in face widths (as the default renderer)


@dataclass(frozen=True, eq=False)
class ReferenceVideo:
    """A decoded reference video.

    path:       the file.
    landmarks:  (N, 478, 3) float32 face-mesh points per frame at FPS, in ``frame_size`` pixels
                (gaps filled, see the module docstring).
    frame_size: (width, height) of the frames the landmarks refer to.
    found:      (N,) bool, whether the face was found on that frame (False = filled).
    """

    path: Path
    landmarks: np.ndarray
    frame_size: tuple[int, int]
    found: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.landmarks.shape[0])

    def loop_index(self, n_frames: int) -> np.ndarray:
        """(n_frames,) indices into the reference: 0, 1, ..., N-1, 0, 1, ... (SadTalker loops)."""
        return np.arange(n_frames) % self.n_frames

    def crops(self, box_of, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Re-decode the frames; yields (crop (size, size, 3) uint8, landmarks (478, 3) in crop
        pixels) per frame. ``box_of(landmarks0, frame0) -> (2, 3) affine`` maps frame pixels to
        the crop; it is evaluated once, on the first frame (the official crop rule)."""
        import cv2

        affine = None
        for i, frame in enumerate(_decode(self.path, self.n_frames)):
            if affine is None:
                affine = box_of(self.landmarks[0], frame)
            crop = cv2.warpAffine(frame, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            lm = self.landmarks[i].astype(np.float64)
            xy = lm[:, :2] @ affine[:, :2].T + affine[:, 2]
            z = lm[:, 2] * np.sqrt(abs(np.linalg.det(affine[:, :2])))
            yield crop, np.concatenate([xy, z[:, None]], 1).astype(np.float32)


def _decode(path: Path, max_frames: int) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8 RGB at FPS, longest side <= MAX_DECODE_SIDE, at most max_frames."""
    import imageio_ffmpeg

    scale = (f"scale='if(gt(iw,ih),min({MAX_DECODE_SIDE},iw),-2)':'if(gt(iw,ih),-2,min({MAX_DECODE_SIDE},ih))'"
             ",scale=trunc(iw/2)*2:trunc(ih/2)*2")
    gen = imageio_ffmpeg.read_frames(str(path), output_params=["-vf", f"fps={FPS},{scale}", "-frames:v", str(max_frames)])
    try:
        meta = next(gen)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise ValueError(f"reference video {str(path)!r} could not be decoded: {exc}") from exc
    w, h = meta["size"]
    try:
        for raw in gen:
            yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)
    except (RuntimeError, OSError) as exc:
        raise ValueError(f"reference video {str(path)!r} could not be decoded: {exc}") from exc
    finally:
        gen.close()


def _probe(path: Path) -> None:
    """ValueError unless ffmpeg sees a video stream in ``path``."""
    import imageio_ffmpeg

    if not path.is_file():
        raise ValueError(f"reference video {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"reference video {str(path)!r} is empty (0 bytes)")
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    info = proc.stderr.decode("utf-8", "replace")
    if "Video:" not in info:
        last = [ln for ln in info.strip().splitlines() if ln.strip()]
        why = last[-1].strip() if last and "Invalid data" in info else "it has no video stream"
        raise ValueError(f"reference video {str(path)!r} is not a video ffmpeg can read ({why})")


def load_reference(path: str | Path, landmarker, max_frames: int) -> ReferenceVideo:
    """Decode up to ``max_frames`` frames of ``path`` and find the face mesh on each."""
    path = Path(path)
    _probe(path)
    if max_frames < 1:
        raise ValueError(f"max_frames={max_frames} must be >= 1")
    found: list[bool] = []
    points: list[np.ndarray | None] = []
    size = None
    for frame in _decode(path, max_frames):
        size = (frame.shape[1], frame.shape[0])
        det = landmarker.detect(frame)
        ok = det is not None and det.detector == "mediapipe"
        found.append(ok)
        points.append(det.landmarks if ok else None)
    if not points:
        raise ValueError(f"reference video {str(path)!r} has no frames")
    if not any(found):
        raise ValueError(f"no face found in reference video {str(path)!r}: use a clip of a clearly visible face")
    first = next(p for p in points if p is not None)
    filled, last = [], first
    for p in points:
        last = p if p is not None else last
        filled.append(last)
    return ReferenceVideo(path=path, landmarks=np.stack(filled).astype(np.float32), frame_size=size,
                          found=np.asarray(found))


@dataclass(frozen=True, eq=False)
class References:
    """The reference videos of one request (either may be None; both may be the same video)."""

    eyeblink: ReferenceVideo | None = None
    pose: ReferenceVideo | None = None

    def __bool__(self) -> bool:
        return self.eyeblink is not None or self.pose is not None


def load_references(eyeblink: str | Path | None, pose: str | Path | None, landmarker, max_frames: int) -> References:
    """Decode the reference videos of a request (a video given for both is read once)."""
    blink_ref = load_reference(eyeblink, landmarker, max_frames) if eyeblink else None
    if pose and blink_ref is not None and Path(pose).resolve() == Path(eyeblink).resolve():
        return References(eyeblink=blink_ref, pose=blink_ref)
    return References(eyeblink=blink_ref, pose=load_reference(pose, landmarker, max_frames) if pose else None)


# ---------------------------------------------------------------------------- default engine
# Rigid part of the mesh for the pose fit: everything above the mouth except eyelids, irises
# and brows (they move with expression, not with the head).
_NON_RIGID = np.unique(np.concatenate([mesh.LIPS, mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER, mesh.LEFT_EYE_UPPER,
                                       mesh.LEFT_EYE_LOWER, mesh.RIGHT_IRIS, mesh.LEFT_IRIS, mesh.RIGHT_BROW,
                                       mesh.LEFT_BROW]))


def _rigid_indices(lm0: np.ndarray) -> np.ndarray:
    mouth_y = lm0[mesh.MOUTH_CORNERS, 1].mean()
    idx = np.flatnonzero(lm0[:468, 1] < mouth_y)
    return np.setdiff1d(idx, _NON_RIGID)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares dst ~ s R (src - mean(src)) + mean(dst) (Umeyama). Returns (R (3, 3), s, t = mean(dst) - mean(src))."""
    a, b = src - src.mean(0), dst - dst.mean(0)
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1.0, 1.0, d])
    R = u @ D @ vt
    s = float((sig * np.diag(D)).sum() / max((a ** 2).sum(), 1e-12))
    return R, s, dst.mean(0) - src.mean(0)


def euler_from_rotation(R: np.ndarray) -> tuple[float, float, float]:
    """R = Rz(roll) @ Rx(pitch) @ Ry(yaw) (the default renderer's order) -> degrees (yaw, pitch, roll)."""
    pitch = np.arcsin(np.clip(R[2, 1], -1.0, 1.0))
    yaw = np.arctan2(-R[2, 0], R[2, 2])
    roll = np.arctan2(-R[0, 1], R[1, 1])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


@dataclass(frozen=True, eq=False)
class MeshMotion:
    """Per reference frame (N,): eye closure (0 open .. 1 closed) and head pose relative to the
    reference's first frame, in the default engine's Coeffs units."""

    blink_right: np.ndarray
    blink_left: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    tz: np.ndarray


def mesh_motion(ref: ReferenceVideo) -> MeshMotion:
    """Blinks and head pose read off the reference's face mesh."""
    from talking_head.face import crop_box

    lms = ref.landmarks.astype(np.float64)
    ear = np.array([mesh.eye_aspect_ratio(lm) for lm in lms])           # (N, 2)
    open_level = np.percentile(ear, OPEN_PERCENTILE, axis=0)
    closure = np.clip((open_level - ear) / (CLOSED_DROP * np.maximum(open_level, 1e-6)), 0.0, 1.0)
    rigid = _rigid_indices(lms[0])
    side = crop_box(lms[0])[2]  # Coeffs translations are fractions of the crop side
    oval = lms[0, mesh.FACE_OVAL]
    pivot = np.array([*oval[:, :2].mean(0), lms[0, :, 2].mean() + PIVOT_DEPTH * np.ptp(oval[:, 0])])
    c0 = lms[0, rigid].mean(0)
    pose = np.zeros((len(lms), 6))
    for i, lm in enumerate(lms):
        R, s, _ = similarity_fit(lms[0, rigid], lm[rigid])
        # the translation left once the rotation about the renderer's pivot is accounted for
        shift = lm[rigid].mean(0) - pivot - s * R @ (c0 - pivot)
        pose[i, :3] = euler_from_rotation(R)
        pose[i, 3:5] = shift[:2] / side
        pose[i, 5] = s - 1.0
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return MeshMotion(blink_right=f32(closure[:, 0]), blink_left=f32(closure[:, 1]), yaw=f32(pose[:, 0]),
                      pitch=f32(pose[:, 1]), roll=f32(pose[:, 2]), tx=f32(pose[:, 3]), ty=f32(pose[:, 4]),
                      tz=f32(pose[:, 5]))


def apply_mesh_motion(coeffs, options, eyeblink: ReferenceVideo | None, pose: ReferenceVideo | None):
    """Default engine: Coeffs with the blinks and/or the head pose of the references (looped to
    the clip's length). ``still`` keeps the source pose and ``input_yaw/pitch/roll`` keep
    their angles, as in SadTalker, where both are applied after the reference pose."""
    from dataclasses import replace

    T = coeffs.n_frames
    changes: dict[str, np.ndarray] = {}
    if eyeblink is not None:
        m, idx = mesh_motion(eyeblink), eyeblink.loop_index(T)
        changes.update(blink_right=m.blink_right[idx], blink_left=m.blink_left[idx])
    if pose is not None and not options.still:
        m, idx = mesh_motion(pose), pose.loop_index(T)
        for name in ("yaw", "pitch", "roll", "tx", "ty", "tz"):
            if getattr(options, f"input_{name}", None) is None:
                changes[name] = getattr(m, name)[idx]
    return replace(coeffs, **changes) if changes else coeffs
