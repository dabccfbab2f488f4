"""Stage 4c (default engine): blinks made of the person's own eyelid skin.

A blink is a motion of the mesh, not a drawing:

* :meth:`EyeLids.displacement` moves the upper-lid landmarks down onto the lower lid (a little
  past it, ``CLOSE_AT``); the lid skin above follows with a falloff (the crease stretches, the
  brow and glasses stay), and points inside the opening (the iris landmarks) go down under the
  closing lid.  The warp thereby stretches the lid's real texture over the eye, and the
  source's own lashes travel down with the lid margin.
* :meth:`EyeLids.composite` keeps the eyeball itself from being squashed: inside the part of the
  opening that is still open it shows the source's eye (iris, whites) moved only with the head,
  so a half-closed frame shows the upper part of the iris hidden under the lid, as in a real
  half blink.  Along the moving lid margin the edge is softened to the photo's own blur and the
  lash line darkens softly (a blurred multiply, strongest when closed) -- there are no painted
  shapes and no outlines.

Landmark arrays are (478, 2+) pixels; blink amounts are 0 (open) .. 1 (closed).
"""
from __future__ import annotations

import cv2
import numpy as np

from talking_head import mesh
from talking_head.mouth import _aa_mask, _blur, _fit_affine

CLOSE_AT = 1.08          # the lid margin closes this far down the opening: a little past the lower-lid
                         # landmarks, which sit slightly inside the visible eye (the overlap is drawn
                         # lid-over-eye by render._exact_patch; the lower lid stays where it is)
SKIN_FALLOFF = 1.3       # lid skin above the margin follows up to this many opening heights (not the brow, not glasses)
LASH_DARKEN = 0.15       # lash-line multiply at a full blink (0 = none)

EYES = ((mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER), (mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER))


class EyeLids:
    """Per-clip blink geometry for both eyes of the prepared source."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, down: np.ndarray) -> None:
        self.image = image
        self.size = image.shape[0]
        lm = landmarks[:, :2].astype(np.float64)
        self.lm0 = lm
        right = np.array([-down[1], down[0]])
        u, v = lm @ right, lm @ down
        self.fields = []   # per eye: (478, 2) displacement at blink = 1
        self.heights = []  # per eye: largest opening, pixels
        for upper, lower in EYES:
            disp = np.zeros_like(lm)
            order = np.argsort(u[upper])
            ku = u[upper][order]
            v_up = v[upper][order]
            v_lo = np.interp(ku, u[lower][np.argsort(u[lower])], v[lower][np.argsort(u[lower])])
            delta = (lm[lower] - lm[upper])[order]  # zero at the corners (shared points)
            h_ref = float(max((v_lo - v_up).max(), 1.0))
            self.heights.append(h_ref)
            inside = (u > ku[0]) & (u < ku[-1]) & (v > v_up.min() - SKIN_FALLOFF * h_ref * 1.5) \
                & (v <= v_lo.max())
            for j in np.flatnonzero(inside):
                top = np.interp(u[j], ku, v_up)
                bot = np.interp(u[j], ku, v_lo)
                d = np.array([np.interp(u[j], ku, delta[:, 0]), np.interp(u[j], ku, delta[:, 1])])
                h = max(bot - top, 1e-3)
                if v[j] <= top:      # lid skin above the margin
                    x = min(1.0, (top - v[j]) / (SKIN_FALLOFF * h_ref))
                    w = CLOSE_AT * (1.0 - x * x * (3.0 - 2.0 * x))  # smoothstep: the lashes ride along
                elif v[j] <= bot:    # inside the opening (iris points): go under the closing lid
                    w = CLOSE_AT * (1.0 - (v[j] - top) / h)
                else:                # below the lower lid: stays
                    w = 0.0
                disp[j] = w * d
            margin = lm[lower[1:-1]] - lm[upper[1:-1]]  # the lid margins exactly
            disp[upper[1:-1]] = CLOSE_AT * margin
            disp[lower[1:-1]] = 0.0
            self.fields.append(disp)

    def displacement(self, blinks: tuple[float, float]) -> np.ndarray:
        """(478, 2) landmark displacement in source pixels for (image-left, image-right) eye closure."""
        return sum(max(0.0, float(b)) * f for b, f in zip(blinks, self.fields))

    def composite(self, frame: np.ndarray, lm: np.ndarray, blinks: tuple[float, float]) -> None:
        """Eyeball under the moved lid (source pixels, head motion only) and the soft lash line."""
        lm = lm[:, :2]
        for (upper, lower), b, h_ref in zip(EYES, blinks, self.heights):
            if b <= 0.02:
                continue
            poly = np.concatenate([lm[upper], lm[lower][::-1]])
            pad = 0.6 * h_ref + 3
            x0, y0 = np.floor(poly.min(0) - pad).astype(int)
            x1, y1 = np.ceil(poly.max(0) + pad).astype(int)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.size), min(y1, self.size)
            if x1 - x0 < 3 or y1 - y0 < 3:
                continue
            off = np.array([x0, y0], np.float64)
            shape = (y1 - y0, x1 - x0)
            roi = frame[y0:y1, x0:x1].astype(np.float32)
            # 1. the eyeball: source pixels moved like the lower lid and the corners (no squash)
            still_open = float(np.clip((1.0 / CLOSE_AT - b) * 5.0, 0.0, 1.0))  # 0 once the lid reaches the lower lid
            open_mask = _aa_mask([poly], shape, off) * still_open
            if open_mask.max() > 0:
                a = _fit_affine(self.lm0[lower], lm[lower])
                a[:, 2] -= off
                eye = cv2.warpAffine(self.image, a, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
                roi = roi + open_mask[..., None] * (eye - roi)
            # 2. lash line: soft darkening along the moved upper margin, strongest when closed
            k = self.size / 256
            line = np.zeros(shape, np.float32)
            margin = np.round((lm[upper] - off) * 4).astype(np.int32)
            cv2.polylines(line, [margin], False, 1.0, max(1, int(round(1.6 * k))), cv2.LINE_AA, 2)
            line = _blur(line, 0.9 * k)
            line /= max(float(line.max()), 1e-6)
            # the lid's edge is as soft as the photo: blend a blurred copy in along the margin
            soft = line[..., None] * min(1.0, 2.0 * b)
            roi = roi + soft * (cv2.GaussianBlur(roi, (0, 0), 0.8 * k) - roi)
            roi = roi * (1.0 - (LASH_DARKEN * min(1.0, b)) * line[..., None])
            frame[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
