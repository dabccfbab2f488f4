"""Named landmark index groups of the 478-point MediaPipe face mesh (refine_landmarks=True).

"Left"/"right" follow the *image*: ``RIGHT_EYE_*`` is the eye on the image's left side
(the subject's right eye), as in MediaPipe's own naming.  Lip and lid curves are ordered
from the image-left corner to the image-right corner so they can be zipped point by point.
"""
from __future__ import annotations

import numpy as np

N_LANDMARKS = 478  # 468 mesh points + 2 x 5 iris points

# Face outline, clockwise from the forehead top.
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379,
                      378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127,
                      162, 21, 54, 103, 67, 109])

# Lips, corner to corner (image left -> image right).
OUTER_UPPER_LIP = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291])
OUTER_LOWER_LIP = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291])
INNER_UPPER_LIP = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308])
INNER_LOWER_LIP = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])
MOUTH_CORNERS = np.array([61, 291])
LIPS = np.unique(np.concatenate([OUTER_UPPER_LIP, OUTER_LOWER_LIP, INNER_UPPER_LIP, INNER_LOWER_LIP]))

# Eyes: upper and lower lid from the inner-to-outer ordering MediaPipe uses, both
# including the two corners so upper[i] and lower[i] face each other.
RIGHT_EYE_UPPER = np.array([33, 246, 161, 160, 159, 158, 157, 173, 133])
RIGHT_EYE_LOWER = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133])
LEFT_EYE_UPPER = np.array([362, 398, 384, 385, 386, 387, 388, 466, 263])
LEFT_EYE_LOWER = np.array([362, 382, 381, 380, 374, 373, 390, 249, 263])
# Eye aspect ratio points: (corner a, corner b, upper mid, lower mid).
RIGHT_EYE_EAR = (33, 133, 159, 145)
LEFT_EYE_EAR = (362, 263, 386, 374)
RIGHT_IRIS = np.arange(468, 473)  # centre first
LEFT_IRIS = np.arange(473, 478)

RIGHT_BROW = np.array([70, 63, 105, 66, 107, 55, 65, 52, 53, 46])
LEFT_BROW = np.array([300, 293, 334, 296, 336, 285, 295, 282, 283, 276])

NOSE_TIP = 1
CHIN = 152
FOREHEAD = 10
UPPER_LIP_MID = 13  # inner upper lip centre
LOWER_LIP_MID = 14  # inner lower lip centre


def eye_aspect_ratio(landmarks: np.ndarray) -> tuple[float, float]:
    """Eye opening / eye width for (right, left) eye; ~0.25-0.35 open, < 0.12 closed."""
    out = []
    for a, b, up, lo in (RIGHT_EYE_EAR, LEFT_EYE_EAR):
        width = np.linalg.norm(landmarks[a, :2] - landmarks[b, :2]) + 1e-6
        out.append(float(np.linalg.norm(landmarks[up, :2] - landmarks[lo, :2]) / width))
    return out[0], out[1]


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip gap divided by mouth width (0 closed, ~0.3-0.6 wide open)."""
    width = np.linalg.norm(landmarks[61, :2] - landmarks[291, :2]) + 1e-6
    gap = np.linalg.norm(landmarks[UPPER_LIP_MID, :2] - landmarks[LOWER_LIP_MID, :2])
    return float(gap / width)
