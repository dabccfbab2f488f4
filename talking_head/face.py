"""Stage 1: find the face, its 478 landmarks, and prepare the source for a preprocess mode.

Detection is offline: MediaPipe's face mesh (models inside the wheel, 478 points with the
refined iris) and, when it finds nothing, OpenCV's Haar cascade; a Haar box is refined by
running the mesh on a crop around it, and if that fails too a mean-face template
(:mod:`talking_head.face_template`) is fitted to the box.

Preprocess modes keep SadTalker's meaning:

======== ========================================== =====================================
mode     what the renderer animates (size x size)    output frame
======== ========================================== =====================================
crop     FFHQ-style face box (eyes/mouth derived)    size x size
extcrop  the same box enlarged x1.45                 size x size
resize   the whole image squashed to a square        size high, original aspect ratio
full     the ``crop`` box                            pasted back, original image size
extfull  the ``extcrop`` box                         pasted back, original image size
======== ========================================== =====================================
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from talking_head import mesh
from talking_head.face_template import template as _face_template

PREPROCESS_MODES = ("crop", "extcrop", "resize", "full", "extfull")
PASTE_BACK_MODES = ("full", "extfull")
MIN_EYE_DISTANCE_PX = 12      # smaller faces carry too little detail to animate
MAX_DETECT_SIDE = 1024        # detection runs on a copy downscaled to this longest side
CROP_BORDER = 1.10            # SadTalker's 10 % border around the FFHQ quad
EXTCROP_SCALE = 1.45          # extcrop / extfull: larger box than crop
PASTE_FEATHER = 0.08          # paste-back alpha ramps over this fraction of the crop side


@dataclass(frozen=True, eq=False)
class FaceDetection:
    """One detected face in an image.

    landmarks: (478, 3) float32 -- x, y in image pixels, z in pixels on the same scale as x
               (MediaPipe convention: smaller z is closer to the camera).
    box:       (x0, y0, x1, y1) tight bounding box of the landmarks, pixels.
    detector:  'mediapipe', 'haar+mediapipe' or 'haar+template'.
    """

    landmarks: np.ndarray
    box: tuple[float, float, float, float]
    detector: str

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(_eye_centres(self.landmarks)[1] - _eye_centres(self.landmarks)[0]))


@dataclass(frozen=True, eq=False)
class SourceFace:
    """What the renderer animates, plus what paste-back needs.

    image:       (size, size, 3) uint8 RGB, the prepared source.
    landmarks:   (478, 3) float32 landmarks in ``image`` pixels (z on the x scale).
    size:        256 or 512.
    mode:        one of PREPROCESS_MODES.
    original:    the original RGB uint8 image (H, W, 3).
    to_source:   (2, 3) affine matrix original pixels -> ``image`` pixels.
    output_size: (width, height) of the frames written to the video (both even).
    detector:    which detector found the face.
    """

    image: np.ndarray
    landmarks: np.ndarray
    size: int
    mode: str
    original: np.ndarray
    to_source: np.ndarray
    output_size: tuple[int, int]
    detector: str


def _eye_centres(lm: np.ndarray) -> np.ndarray:
    """(2, 2) centres of the image-left and image-right eye."""
    right = lm[np.concatenate([mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER]), :2].mean(0)
    left = lm[np.concatenate([mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER]), :2].mean(0)
    return np.stack([right, left])


class FaceLandmarker:
    """Face mesh + Haar cascade, created once and reused (not per request). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mesh = None
        self._haar = None

    def _get_mesh(self):
        if self._mesh is None:
            import mediapipe as mp  # heavy import, deferred until first use

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=0.5)
        return self._mesh

    def _get_haar(self):
        if self._haar is None:
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
            self._haar = cv2.CascadeClassifier(path)
            if self._haar.empty():
                raise RuntimeError(f"OpenCV Haar cascade missing: {path}")
        return self._haar

    def _mesh_landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        res = self._get_mesh().process(np.ascontiguousarray(rgb))
        if not res.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        pts = res.multi_face_landmarks[0].landmark
        return np.array([[p.x * w, p.y * h, p.z * w] for p in pts], dtype=np.float32)

    def detect(self, image: np.ndarray) -> FaceDetection | None:
        """Detect the most prominent face in an RGB uint8 image; None when there is none."""
        h, w = image.shape[:2]
        scale = min(1.0, MAX_DETECT_SIDE / max(h, w))
        small = image if scale == 1.0 else cv2.resize(
            image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        with self._lock:
            lm = self._mesh_landmarks(small)
            detector = "mediapipe"
            if lm is None:
                lm, detector = self._haar_landmarks(small)
        if lm is None:
            return None
        lm = lm / scale
        box = (float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max()))
        return FaceDetection(landmarks=lm.astype(np.float32), box=box, detector=detector)

    def _haar_landmarks(self, rgb: np.ndarray) -> tuple[np.ndarray | None, str]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        faces = self._get_haar().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(32, 32))
        if len(faces) == 0:
            return None, ""
        x, y, bw, bh = (float(v) for v in max(faces, key=lambda f: f[2] * f[3]))
        # Refine: the mesh often succeeds on a crop centred on the face even when its own
        # detector missed the face in the whole picture (small faces, busy scenes).
        h, w = rgb.shape[:2]
        x0, y0 = int(max(0, x - bw)), int(max(0, y - bh))
        x1, y1 = int(min(w, x + 2 * bw)), int(min(h, y + 2 * bh))
        lm = self._mesh_landmarks(rgb[y0:y1, x0:x1])
        if lm is not None:
            lm[:, 0] += x0
            lm[:, 1] += y0
            return lm, "haar+mediapipe"
        t = _face_template()
        lm = np.stack([x + t[:, 0] * bw, y + t[:, 1] * bh, t[:, 2] * bw], axis=1)
        return lm.astype(np.float32), "haar+template"

    def close(self) -> None:
        with self._lock:
            if self._mesh is not None:
                self._mesh.close()
                self._mesh = None


def crop_box(landmarks: np.ndarray, extended: bool = False) -> tuple[float, float, float]:
    """Square crop (cx, cy, side) in image pixels, SadTalker/FFHQ style.

    side = 2 * max(2 * eye distance, 1.8 * eye-to-mouth) with a 10 % border; the centre is
    the eye midpoint moved 10 % of the way to the mouth.  ``extended`` enlarges it (extcrop).
    """
    eyes = _eye_centres(landmarks)
    eye_avg = eyes.mean(0)
    mouth_avg = landmarks[mesh.MOUTH_CORNERS, :2].mean(0)
    eye_to_eye = eyes[1] - eyes[0]
    eye_to_mouth = mouth_avg - eye_avg
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    side = 2.0 * half * CROP_BORDER * (EXTCROP_SCALE if extended else 1.0)
    centre = eye_avg + eye_to_mouth * 0.1
    return float(centre[0]), float(centre[1]), float(side)


def _even(v: float) -> int:
    return max(2, int(round(v / 2.0)) * 2)


GEOMETRIES = ("default", "sadtalker")
SADTALKER_XSIZE = 512  # the official cropper's output_size, which sets its shrink rule


@dataclass(frozen=True)
class SadTalkerBoxes:
    """The official cropper's boxes (``src/utils/croper.py``), integer pixels of the image after
    the shrink (``shrink`` > 1 only for faces over ~2000 px, where it first scales the image by
    1/shrink). ``quad``: the face box ``crop`` mode animates; ``outer``: quad bbox + 10 % border
    (at least 3 px), clipped to the image, which ``extcrop``/``extfull`` animate."""

    quad: tuple[int, int, int, int]    # x0, y0, x1, y1 (clipped to the image, as slicing does)
    outer: tuple[int, int, int, int]
    shrink: int
    size: tuple[int, int]              # (width, height) of the image the boxes refer to
    quad_size: tuple[int, int]         # the quad box's (width, height) before clipping: it sets the
                                       # output frames' aspect in crop and extcrop (``crop_info[0]``)


def sadtalker_boxes(landmarks: np.ndarray, width: int, height: int) -> SadTalkerBoxes:
    """SadTalker's FFHQ-style crop from eye centres and mouth corners (68-point indices 36-47,
    48, 54; here the mesh's eye-lid rings and mouth corners), with its rounding and clipping."""
    eyes = _eye_centres(landmarks).astype(np.float64)
    eye_avg = eyes.mean(0)
    eye_to_eye = eyes[1] - eyes[0]
    mouth_avg = landmarks[mesh.MOUTH_CORNERS, :2].astype(np.float64).mean(0)
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = np.hypot(*x) * 2
    shrink = int(np.floor(qsize / SADTALKER_XSIZE * 0.5))
    w, h = width, height
    if shrink > 1:
        w, h = int(np.rint(width / shrink)), int(np.rint(height / shrink))
        quad /= shrink
        qsize /= shrink
    else:
        shrink = 1
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, w), min(crop[3] + border, h))
    if crop[2] - crop[0] < w or crop[3] - crop[1] < h:
        quad -= crop[0:2]
    q = (quad + 0.5).flatten()
    lx, ly = max(min(q[0], q[2]), 0), max(min(q[1], q[7]), 0)
    # (the official code clips the bottom edge with the image *width*; kept for parity)
    rx, ry = min(max(q[4], q[6]), w), min(max(q[3], q[5]), w)
    lx, ly, rx, ry = int(lx), int(ly), int(rx), int(ry)
    qbox = (crop[0] + lx, crop[1] + ly, crop[0] + min(rx, crop[2] - crop[0]), crop[1] + min(ry, crop[3] - crop[1]))
    return SadTalkerBoxes(quad=qbox, outer=crop, shrink=shrink, size=(w, h), quad_size=(rx - lx, ry - ly))


def _prepare_sadtalker(image: np.ndarray, detection: FaceDetection, mode: str, size: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(source (size, size, 3), affine original -> source pixels, output size) the way the
    official code prepares it: integer boxes, ``cv2.resize`` (bilinear) of the box to size x size
    (no aspect correction), frames later resized to width ``size`` and the quad box's aspect ratio
    (for extcrop too, as the official ``crop_info``), rounded to even sides for H.264."""
    h, w = image.shape[:2]
    if mode == "resize":
        box, scaled, k = (0, 0, w, h), image, 1.0
        out = (size, _even(size * h / w))
    else:
        b = sadtalker_boxes(detection.landmarks, w, h)
        k = 1.0 / b.shrink
        scaled = image if b.shrink == 1 else cv2.resize(image, b.size)
        box = b.quad if mode in ("crop", "full") else b.outer
        bw, bh = box[2] - box[0], box[3] - box[1]
        if bw < 2 or bh < 2:
            raise ValueError("the face box lies outside the image")
        qw, qh = b.quad_size
        out = (size, _even(size * qh / qw)) if mode in ("crop", "extcrop") else (_even(w), _even(h))
    x0, y0, x1, y1 = box
    src = cv2.resize(np.ascontiguousarray(scaled[y0:y1, x0:x1]), (size, size), interpolation=cv2.INTER_LINEAR)
    # cv2.resize's pixel-centre mapping, as an affine from original pixels to source pixels
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    # (pixel centres: shrink x_s = (x + 0.5) k - 0.5, crop x_c = x_s - x0, resize (x_c + 0.5) s - 0.5)
    m = np.array([[sx * k, 0, sx * (0.5 * k - x0) - 0.5], [0, sy * k, sy * (0.5 * k - y0) - 0.5]], dtype=np.float64)
    return src, m, out


def prepare_source(image: np.ndarray, detection: FaceDetection, mode: str, size: int,
                   geometry: str = "default") -> SourceFace:
    """Cut/resize the source for ``mode`` to (size, size) and move the landmarks with it.

    ``geometry='default'``: square boxes around the face (border replicated past the image
    edge), so the weight-free renderer never sees a squashed face. ``'sadtalker'``: the official
    cropper's integer boxes and resizing (:func:`sadtalker_boxes`), for SadTalker's networks.
    """
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess={mode!r} is not one of {PREPROCESS_MODES}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry={geometry!r} is not one of {GEOMETRIES}")
    if detection.eye_distance < MIN_EYE_DISTANCE_PX:
        raise ValueError(
            f"face too small: {detection.eye_distance:.0f} px between the eyes, "
            f"need at least {MIN_EYE_DISTANCE_PX} px (use a larger or closer portrait)")
    h, w = image.shape[:2]
    if geometry == "sadtalker":
        src, m, out_size = _prepare_sadtalker(image, detection, mode, size)
    elif mode == "resize":
        m = np.array([[size / w, 0, 0], [0, size / h, 0]], dtype=np.float64)
        out_size = (_even(size * w / h), size)
    else:
        cx, cy, side = crop_box(detection.landmarks, extended=mode in ("extcrop", "extfull"))
        s = size / side
        m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)
        out_size = (size, size) if mode in ("crop", "extcrop") else (_even(w), _even(h))
    if geometry == "default":
        src = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA if m[0, 0] < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    lm = detection.landmarks.astype(np.float64).copy()
    xy = lm[:, :2] @ m[:, :2].T + m[:, 2]
    z = lm[:, 2] * np.sqrt(abs(np.linalg.det(m[:, :2])))
    landmarks = np.concatenate([xy, z[:, None]], axis=1).astype(np.float32)
    return SourceFace(image=src, landmarks=landmarks, size=size, mode=mode, original=image,
                      to_source=m, output_size=out_size, detector=detection.detector)


class Compositor:
    """Turns rendered (size, size) frames into output frames for the source's mode.

    crop/extcrop: unchanged.  resize: back to the original aspect ratio.
    full/extfull: the frame is mapped back onto its box in the original image and blended
    with a feathered mask (the renderer keeps the crop border still, so the seam is
    invisible; this replaces SadTalker's per-frame cv2.seamlessClone, which costs ~0.2 s).
    Everything that does not change per frame is precomputed here.
    """

    def __init__(self, source: SourceFace) -> None:
        self.source = source
        self.mode = source.mode
        if self.mode not in PASTE_BACK_MODES:
            return
        orig = source.original
        h, w = orig.shape[:2]
        ow, oh = source.output_size
        base = np.zeros((oh, ow, 3), np.uint8)
        base[:h, :w] = orig
        if oh > h:
            base[h:, :w] = orig[-1:]
        if ow > w:
            base[:, w:] = base[:, w - 1:w]
        self.base = base
        inv = cv2.invertAffineTransform(source.to_source)
        size = source.size
        # pixel *edges* of the frame (-0.5 .. size - 0.5 in pixel-centre coordinates) mapped back,
        # + 0.5 to edges again: exactly the integer box for the sadtalker geometry (the official
        # paste box), and the covering box for the default one
        edges = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]], np.float64)
        corners = edges @ inv[:, :2].T + inv[:, 2] + 0.5
        x0, y0 = np.floor(corners.min(0) + 1e-6).astype(int)
        x1, y1 = np.ceil(corners.max(0) - 1e-6).astype(int)
        self.x0, self.y0 = max(0, x0), max(0, y0)
        self.x1, self.y1 = min(ow, x1), min(oh, y1)
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError("face crop lies outside the image")
        # Affine from rendered frame to the ROI of the output.
        roi = inv.copy()
        roi[0, 2] -= self.x0
        roi[1, 2] -= self.y0
        self.roi_affine = roi
        self.roi_size = (self.x1 - self.x0, self.y1 - self.y0)
        ramp = max(2, int(size * PASTE_FEATHER))
        ax = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)
        a1 = np.clip((ax - 1) / ramp, 0, 1)
        alpha = np.outer(a1, a1)
        alpha = cv2.warpAffine(alpha, roi, self.roi_size, flags=cv2.INTER_LINEAR, borderValue=0)
        self.alpha = alpha[..., None].astype(np.float32)
        self.base_roi = base[self.y0:self.y1, self.x0:self.x1].astype(np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(size, size, 3) uint8 -> (out_h, out_w, 3) uint8."""
        if self.mode in ("crop", "extcrop"):
            if frame.shape[1::-1] != tuple(self.source.output_size):  # a non-square official box
                return cv2.resize(frame, self.source.output_size, interpolation=cv2.INTER_LINEAR)
            return frame
        if self.mode == "resize":
            return cv2.resize(frame, self.source.output_size, interpolation=cv2.INTER_LINEAR)
        warped = cv2.warpAffine(frame, self.roi_affine, self.roi_size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        out = self.base.copy()
        blended = self.base_roi + (warped - self.base_roi) * self.alpha
        out[self.y0:self.y1, self.x0:self.x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out
