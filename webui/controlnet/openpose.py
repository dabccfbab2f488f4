"""OpenPose-style skeletons from mediapipe's bundled pose / holistic models (no downloads).

mediapipe's 33 pose landmarks are mapped onto OpenPose's 18 body keypoints (COCO order: nose,
neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right hip/knee/ankle, left
hip/knee/ankle, right eye, left eye, right ear, left ear; the neck is the shoulders' midpoint) and
drawn in the OpenPose convention the openpose ControlNets were trained on: black canvas, 17 limbs
as translucent ellipses in the 18-colour rainbow, a dot per keypoint. Hands (21 points, the same
order in both) are drawn with rainbow bones and blue dots; the face as white dots.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

# OpenPose body index -> mediapipe pose landmark index (neck: -1, the shoulders' midpoint)
MP_FOR_OPENPOSE = (0, -1, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
# OpenPose limbs (0-based keypoint pairs), in the drawing order of the reference renderer
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
HAND_EDGES = tuple((0, 1 + f * 4) if j == 0 else (f * 4 + j, f * 4 + j + 1) for f in range(5) for j in range(4))
MIN_VISIBILITY = 0.3


def body_keypoints(landmarks, width: int, height: int) -> list:
    """18 OpenPose keypoints (x, y pixels, or None when not visible) from mediapipe pose landmarks."""
    lm = landmarks.landmark
    out = []
    for mp_index in MP_FOR_OPENPOSE:
        if mp_index < 0:
            a, b = lm[11], lm[12]
            ok = min(a.visibility, b.visibility) >= MIN_VISIBILITY
            out.append(((a.x + b.x) / 2 * width, (a.y + b.y) / 2 * height) if ok else None)
        else:
            p = lm[mp_index]
            inside = 0 <= p.x <= 1 and 0 <= p.y <= 1
            out.append((p.x * width, p.y * height) if p.visibility >= MIN_VISIBILITY and inside else None)
    return out


def draw_body(canvas: np.ndarray, keypoints: list) -> np.ndarray:
    """Draw 18 keypoints in the OpenPose colours onto ``canvas`` (uint8 RGB, modified and returned)."""
    import cv2

    h, w = canvas.shape[:2]
    stick = max(2, int(round(4 * max(h, w) / 512)))
    for i, (a, b) in enumerate(LIMBS):
        pa, pb = keypoints[a], keypoints[b]
        if pa is None or pb is None:
            continue
        cx, cy = (pa[0] + pb[0]) / 2, (pa[1] + pb[1]) / 2
        length = math.hypot(pa[0] - pb[0], pa[1] - pb[1])
        angle = math.degrees(math.atan2(pa[1] - pb[1], pa[0] - pb[0]))
        poly = cv2.ellipse2Poly((int(cx), int(cy)), (int(length / 2), stick), int(angle), 0, 360, 1)
        layer = canvas.copy()
        cv2.fillConvexPoly(layer, poly, COLOURS[i])
        canvas[:] = (canvas.astype(np.float32) * 0.4 + layer.astype(np.float32) * 0.6).astype(np.uint8)
    for i, p in enumerate(keypoints):
        if p is not None:
            cv2.circle(canvas, (int(p[0]), int(p[1])), stick, COLOURS[i], thickness=-1)
    return canvas


def draw_hand(canvas: np.ndarray, points: list) -> np.ndarray:
    import cv2

    h, w = canvas.shape[:2]
    width = max(1, int(round(2 * max(h, w) / 512)))
    for i, (a, b) in enumerate(HAND_EDGES):
        r, g, bl = colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0)
        pa, pb = points[a], points[b]
        cv2.line(canvas, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), (int(r * 255), int(g * 255), int(bl * 255)), width)
    for p in points:
        cv2.circle(canvas, (int(p[0]), int(p[1])), width + 1, (0, 0, 255), thickness=-1)
    return canvas


def draw_face(canvas: np.ndarray, points: list) -> np.ndarray:
    import cv2

    h, w = canvas.shape[:2]
    r = max(1, int(round(2 * max(h, w) / 512)))
    for p in points:
        cv2.circle(canvas, (int(p[0]), int(p[1])), r, (255, 255, 255), thickness=-1)
    return canvas


# a sparse subset of the 468-point face mesh, close to OpenPose's 68 face points (jaw, brows, nose, eyes, lips)
FACE_SUBSET = (
    127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300, 168, 6, 197, 195, 5, 4, 98, 97, 2, 326, 327,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 13, 308, 14,
)


def detect_pose(img: np.ndarray, body: bool = True, hands: bool = False, face: bool = False) -> np.ndarray:
    """OpenPose-style map (uint8 RGB, black where nothing was found) of the people in ``img``."""
    import mediapipe as mp

    h, w = img.shape[:2]
    canvas = np.zeros((h, w, 3), np.uint8)
    rgb = np.ascontiguousarray(img[..., :3])
    if hands or face:
        with mp.solutions.holistic.Holistic(static_image_mode=True, refine_face_landmarks=False) as model:
            res = model.process(rgb)
        pose, left, right, face_lm = res.pose_landmarks, res.left_hand_landmarks, res.right_hand_landmarks, res.face_landmarks
    else:
        with mp.solutions.pose.Pose(static_image_mode=True) as model:
            res = model.process(rgb)
        pose, left, right, face_lm = res.pose_landmarks, None, None, None
    if pose is not None and body:
        draw_body(canvas, body_keypoints(pose, w, h))
    if hands:
        for hand in (left, right):
            if hand is not None:
                draw_hand(canvas, [(p.x * w, p.y * h) for p in hand.landmark])
    if face and face_lm is not None:
        draw_face(canvas, [(face_lm.landmark[i].x * w, face_lm.landmark[i].y * h) for i in FACE_SUBSET])
    return canvas
