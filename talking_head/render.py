"""Stage 4 (default engine): warp the portrait along the moved face mesh.

Per clip (``FaceRenderer.__init__``), once:
  * control points = 478 landmarks (with z) + two rings around the face (hair, neck, ears)
    + fixed anchors on the image border;
  * a Delaunay triangulation of the control points in the *source* image, and for every pixel
    of a displacement grid (<= 256 px) its triangle's 3 vertices and barycentric weights,
    stored as one sparse (pixels x points) matrix;
  * per-landmark weights for jaw, lips, brows and lids.

Per frame (``render``), cheap:
  1. move the control points: expression in the face frame, then a 3-D rigid head rotation
     (yaw/pitch/roll about a centre behind the face, orthographic projection) and
     translation; ring points follow the head partially, border anchors stay;
  2. forward displacement field = sparse matrix x point displacements;
  3. invert it by fixed-point steps (x <- y - d(x), then damped; each one cv2.remap);
  4. cv2.remap of the source with float32 maps (upsampled for 512);
  5. synthesize the mouth interior inside the moved inner-lip polygon (dark cavity,
     tongue, upper teeth under the upper lip, lower teeth on the lower lip) and shade the
     eyelids on blinks.
"""
from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
from scipy import sparse
from scipy.spatial import Delaunay

from talking_head import mesh
from talking_head.coeffs import Coeffs
from talking_head.face import SourceFace

FIELD_SIZE = 256        # displacement field resolution (upsampled to the frame size)
JAW_GAP = 0.55          # inner-lip gap at jaw_open = 1, in mouth widths
RING_SCALES = (1.35, 1.8)
RING_FOLLOW_HEAD = ((1.0, 0.5), (0.55, 0.15))  # (above mouth, below mouth) per ring
HEAD_CENTRE_DEPTH = 0.6  # rotation centre behind the face, in face widths
INVERSE_STEPS = 5
FOLD_RESIDUAL = 0.75     # field pixels; larger inverse residuals count as a fold
LID_WARP = 0.5           # share of the lid closure done by the warp (the rest is painted)
LID_CLOSED = 0.95        # painted lid edge at blink = 1, as a fraction of the eye opening

CAVITY_RGB = np.array([38, 12, 14], np.float32)
TONGUE_RGB = np.array([150, 62, 66], np.float32)
TEETH_RGB = np.array([228, 224, 212], np.float32)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


class FaceRenderer:
    """Renders (size, size, 3) uint8 RGB frames of ``source`` for :class:`Coeffs`."""

    def __init__(self, source: SourceFace) -> None:
        self.source = source
        self.size = s = source.size
        self.image = source.image
        lm = source.landmarks.astype(np.float64)
        self.lm0 = lm
        oval = lm[mesh.FACE_OVAL]
        self.face_centre = oval[:, :2].mean(0)
        self.face_width = float(np.ptp(oval[:, 0]))
        self.mouth_centre = lm[[mesh.UPPER_LIP_MID, mesh.LOWER_LIP_MID], :2].mean(0)
        self.mouth_width = float(np.linalg.norm(lm[61, :2] - lm[291, :2]))
        eyes = lm[[468, 473], :2]
        # Face frame: "down" axis from eyes to mouth (handles a tilted source).
        down = self.mouth_centre - eyes.mean(0)
        self.down = down / (np.linalg.norm(down) + 1e-9)
        self.right = np.array([-self.down[1], self.down[0]])
        rel = lm[:, :2] - self.mouth_centre
        u = rel @ self.right   # lateral, pixels
        v = rel @ self.down    # below the mouth centre (+), pixels
        mw = self.mouth_width
        self.head_centre = np.array([self.face_centre[0], self.face_centre[1],
                                     lm[:, 2].mean() + HEAD_CENTRE_DEPTH * self.face_width])

        # --- jaw weights: lower face follows the jaw, fading laterally and up to the corners.
        corner_v = float(np.mean(v[mesh.MOUTH_CORNERS]))
        vert = np.clip((v - corner_v + 0.05 * mw) / (0.3 * mw), 0, 1)
        lat = np.clip(1 - (u / (0.55 * self.face_width)) ** 2, 0.2, 1)
        jaw_w = vert * lat
        lip_profile = np.clip(1 - (u / (0.5 * mw)) ** 2, 0, 1)
        lower_lip = np.concatenate([mesh.OUTER_LOWER_LIP[1:-1], mesh.INNER_LOWER_LIP[1:-1]])
        jaw_w[lower_lip] = 0.15 + 0.85 * lip_profile[lower_lip]
        jaw_w[mesh.MOUTH_CORNERS] = 0.25
        jaw_w[[78, 308]] = 0.25
        self.jaw_w = jaw_w
        upper_lip = np.concatenate([mesh.OUTER_UPPER_LIP[1:-1], mesh.INNER_UPPER_LIP[1:-1]])
        self.upper_w = np.zeros(len(lm))
        self.upper_w[upper_lip] = lip_profile[upper_lip]
        # Source lip gap per inner-lip column (closing it first makes jaw_open = 0 "closed").
        gap = (lm[mesh.INNER_LOWER_LIP, :2] - lm[mesh.INNER_UPPER_LIP, :2]) @ self.down
        self.src_gap = float(max(0.0, gap[len(gap) // 2]))
        self.close_w = jaw_w.copy()
        # --- lips: width / rounding act around the mouth centre with a Gaussian falloff.
        dist = np.hypot(u, v)
        self.mouth_w = np.exp(-(dist / (0.75 * mw)) ** 2)
        self.u, self.v = u, v
        # --- brows and forehead above them.
        brows = np.concatenate([mesh.RIGHT_BROW, mesh.LEFT_BROW])
        brow_v = float(np.mean(v[brows]))
        self.brow_w = np.clip(1 - np.abs(v - brow_v) / (0.45 * mw), 0, 1) * (v < brow_v + 0.3 * mw)
        # --- eyelids: upper lid onto the lower lid; the skin above follows partly.
        self.lid_pairs = []
        for upper, lower in ((mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER), (mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER)):
            delta = lm[lower[1:-1], :2] - lm[upper[1:-1], :2]
            self.lid_pairs.append((upper[1:-1], lower[1:-1], delta))
        self.lid_colour = self._lid_colours()

        # --- control points: landmarks + rings + border anchors.
        rings, ring_follow = [], []
        for scale, (above, below) in zip(RING_SCALES, RING_FOLLOW_HEAD):
            pts = self.face_centre + (oval[:, :2] - self.face_centre) * scale
            below_mouth = ((pts - self.mouth_centre) @ self.down) > 0
            follow = np.where(below_mouth, below, above)
            keep = (pts[:, 0] > 2) & (pts[:, 0] < s - 3) & (pts[:, 1] > 2) & (pts[:, 1] < s - 3)
            z = oval[keep, 2]  # a ring point turns like the outline point it extends
            rings.append(np.column_stack([pts[keep], z]))
            ring_follow.append(follow[keep])
        n_border = 9
        edge = np.linspace(-2.0, s + 1.0, n_border)
        border = np.unique(np.concatenate([
            np.column_stack([edge, np.full(n_border, -2.0)]), np.column_stack([edge, np.full(n_border, s + 1.0)]),
            np.column_stack([np.full(n_border, -2.0), edge]), np.column_stack([np.full(n_border, s + 1.0), edge])]),
            axis=0)
        self.rings = np.concatenate(rings) if rings else np.zeros((0, 3))
        self.ring_follow = np.concatenate(ring_follow) if ring_follow else np.zeros(0)
        self.n_lm = len(lm)
        self.n_ring = len(self.rings)
        pts2d = np.concatenate([lm[:, :2], self.rings[:, :2], border])
        self.points2d = pts2d
        self.n_points = len(pts2d)

        # --- dense barycentric interpolation matrix at field resolution.
        fs = min(FIELD_SIZE, s)
        self.field_size = fs
        k = s / fs
        tri = Delaunay(pts2d, qhull_options="QJ")
        # Triangle index per field pixel by rasterising the triangles (much faster and more
        # robust than Delaunay.find_simplex on 65k points); barycentrics from tri.transform.
        shift = 4
        field_pts = np.round(((pts2d + 0.5) / k - 0.5) * (1 << shift)).astype(np.int32)
        index = np.full((fs, fs), -1, np.int32)
        for t_id, simplex_pts in enumerate(tri.simplices):
            cv2.fillConvexPoly(index, field_pts[simplex_pts], int(t_id), cv2.LINE_8, shift)
        if (index < 0).any():  # rounding gaps: take the nearest covered pixel
            from scipy.ndimage import distance_transform_edt

            _, (iy, ix) = distance_transform_edt(index < 0, return_indices=True)
            index = index[iy, ix]
        gy, gx = np.mgrid[0:fs, 0:fs].astype(np.float64)
        grid = np.column_stack([(gx.ravel() + 0.5) * k - 0.5, (gy.ravel() + 0.5) * k - 0.5])
        simplex = index.ravel()
        verts = tri.simplices[simplex]
        a, b, c = pts2d[verts[:, 0]], pts2d[verts[:, 1]], pts2d[verts[:, 2]]
        v0, v1, v2 = b - a, c - a, grid - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-12, 1e-12, den)
        wb = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        wc = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        bary = np.column_stack([1 - wb - wc, wb, wc])
        rows = np.repeat(np.arange(len(grid)), 3)
        self.interp = sparse.csr_matrix((bary.ravel(), (rows, verts.ravel())), shape=(len(grid), self.n_points))
        self.grid_x = ((gx + 0.5) * k - 0.5).astype(np.float32)
        self.grid_y = ((gy + 0.5) * k - 0.5).astype(np.float32)
        self.field_scale = np.float32(fs / s)  # frame pixels -> field pixels
        if fs != s:
            yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
            self.full_grid = (xx, yy)
        else:
            self.full_grid = (self.grid_x, self.grid_y)

    def _lid_colours(self) -> list[np.ndarray]:
        """Eyelid skin colour per eye: median of a patch just above the upper lid."""
        out = []
        for upper, lower, delta in self.lid_pairs:
            pts = self.lm0[upper, :2]
            h = max(2.0, float(np.abs(delta @ self.down).mean()))
            centre = pts.mean(0) - self.down * (h * 0.9 + 1.5)
            r = max(1, int(h * 0.5))
            x, y = int(round(centre[0])), int(round(centre[1]))
            patch = self.image[max(0, y - r):y + r + 1, max(0, x - 2 * r):x + 2 * r + 1].reshape(-1, 3)
            out.append(np.median(patch, axis=0).astype(np.float32) if len(patch) else np.array([180, 140, 120], np.float32))
        return out

    # ------------------------------------------------------------------ geometry
    def moved_landmarks(self, c: dict[str, float]) -> np.ndarray:
        """(478, 3) target landmarks for one frame's coefficients (``Coeffs.frame(i)``)."""
        lm = self.lm0.copy()
        mw = self.mouth_width
        down, right = self.down, self.right
        # jaw: first close the source gap, then open to jaw_open * JAW_GAP * mouth width
        jaw_px = max(0.0, c["jaw_open"]) * JAW_GAP * mw
        lm[:, :2] += np.outer(self.jaw_w * (jaw_px * 0.85) - self.close_w * self.src_gap, down)
        lm[:, :2] -= np.outer(self.upper_w * jaw_px * 0.15, down)
        # lips: widen / round around the mouth centre
        stretch = 0.12 * c["mouth_width"] - 0.1 * c["mouth_round"]
        lm[:, :2] += np.outer(self.mouth_w * self.u * stretch, right)
        lm[:, 2] -= self.mouth_w * c["mouth_round"] * 0.15 * mw
        # brows
        lm[:, :2] -= np.outer(self.brow_w * c["brow_raise"] * 0.12 * mw, down)
        # blinks: upper lid towards the lower lid
        for (upper, lower, delta), b in zip(self.lid_pairs, (c["blink_right"], c["blink_left"])):
            if b > 0:
                lm[upper, :2] += delta * (LID_WARP * b)
        return lm

    def _rigid(self, pts: np.ndarray, c: dict[str, float]) -> np.ndarray:
        """Rotate (N,3) about the head centre, scale, translate; returns (N,2)."""
        r = _rotation(c["yaw"], c["pitch"], c["roll"])
        rel = pts - self.head_centre
        out = rel @ r.T * (1.0 + c["tz"]) + self.head_centre
        return out[:, :2] + np.array([c["tx"], c["ty"]]) * self.size

    def target_points(self, c: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """(target 2-D control points (N, 2), target landmarks (478, 2))."""
        lm = self._rigid(self.moved_landmarks(c), c)
        ring_rigid = self._rigid(self.rings, c) if self.n_ring else np.zeros((0, 2))
        ring = self.rings[:, :2] + (ring_rigid - self.rings[:, :2]) * self.ring_follow[:, None]
        pts = self.points2d.copy()
        pts[: self.n_lm] = lm
        pts[self.n_lm: self.n_lm + self.n_ring] = ring
        return pts, lm

    # ------------------------------------------------------------------ per frame
    def render(self, c: dict[str, float]) -> np.ndarray:
        """One (size, size, 3) uint8 RGB frame for a coefficient dict (``Coeffs.frame(i)``)."""
        pts, lm = self.target_points(c)
        disp = ((pts - self.points2d) * self.field_scale).astype(np.float32)  # field pixels
        fs = self.field_size
        field = np.asarray(self.interp @ disp, dtype=np.float32).reshape(fs, fs, 2)
        gx, gy = self.grid_x * self.field_scale, self.grid_y * self.field_scale
        if fs == self.size:
            gx, gy = self.grid_x, self.grid_y
        # invert the forward warp: source x such that x + d(x) = y
        mx, my = gx - field[..., 0], gy - field[..., 1]
        for step in range(INVERSE_STEPS - 1):
            d = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            if step == 0:
                mx, my = gx - d[..., 0], gy - d[..., 1]
            else:  # damped steps: converge where the face is squeezed (far side of a turn)
                mx, my = 0.5 * (mx + gx - d[..., 0]), 0.5 * (my + gy - d[..., 1])
        # where the mesh folds (far cheek of a turned head) the inverse does not converge:
        # use a smoothed map there instead of scattered pixels
        d = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        bad = np.abs(mx + d[..., 0] - gx) + np.abs(my + d[..., 1] - gy) > FOLD_RESIDUAL
        if bad.any():
            bad = cv2.dilate(bad.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            mx[bad] = cv2.blur(mx, (9, 9))[bad]
            my[bad] = cv2.blur(my, (9, 9))[bad]
        if fs != self.size:
            k = np.float32(self.size / fs)
            mx = cv2.resize((mx + 0.5) * k - 0.5, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            my = cv2.resize((my + 0.5) * k - 0.5, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        frame = cv2.remap(self.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        self._draw_mouth(frame, lm)
        self._draw_lids(frame, lm, (c["blink_right"], c["blink_left"]))
        return frame

    def frames(self, coeffs: Coeffs) -> Iterator[np.ndarray]:
        for i in range(coeffs.n_frames):
            yield self.render(coeffs.frame(i))

    # ------------------------------------------------------------------ mouth interior
    def _draw_mouth(self, frame: np.ndarray, lm: np.ndarray) -> None:
        up = lm[mesh.INNER_UPPER_LIP]
        lo = lm[mesh.INNER_LOWER_LIP]
        gap = float(np.linalg.norm(lo[len(lo) // 2] - up[len(up) // 2]))
        if gap < 1.0:
            return
        ss = 4  # supersampling for anti-aliased polygon masks
        poly = np.concatenate([up, lo[::-1]])
        x0, y0 = np.floor(poly.min(0)).astype(int) - 2
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 3
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.size), min(y1, self.size)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        w, h = x1 - x0, y1 - y0
        off = np.array([x0, y0], np.float64)

        def mask(p: np.ndarray) -> np.ndarray:
            m = np.zeros((h * ss, w * ss), np.uint8)
            cv2.fillPoly(m, [np.round((p - off + 0.5) * ss - 0.5).astype(np.int32)], 255, cv2.LINE_AA)
            return cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

        down = (lo[len(lo) // 2] - up[len(up) // 2]) / gap
        mw = float(np.linalg.norm(up[-1] - up[0]))
        cavity = mask(poly)
        # upper teeth hang from the upper lip; lower teeth sit on the lower lip (jaw)
        inner = slice(2, -2)
        t_up = min(0.55 * gap, 0.16 * mw)
        upper_teeth = np.concatenate([up[inner], (up[inner] + down * t_up)[::-1]])
        t_lo = min(0.3 * gap, 0.09 * mw) if gap > 0.12 * mw else 0.0
        teeth = mask(upper_teeth)
        if t_lo > 0.5:
            lower_teeth = np.concatenate([lo[inner], (lo[inner] - down * t_lo)[::-1]])
            teeth = np.maximum(teeth, 0.85 * mask(lower_teeth))
        teeth = np.minimum(teeth, cavity)
        # shading: cavity darker at the top, tongue glow at the bottom; teeth darker at the sides
        yy = (np.arange(h, dtype=np.float32)[:, None] + y0 - up[:, 1].min()) / max(gap, 1.0)
        tongue = np.clip((yy - 0.55) * 2.0, 0, 0.6)
        base = CAVITY_RGB + tongue[..., None] * (TONGUE_RGB - CAVITY_RGB)
        xx = (np.arange(w, dtype=np.float32)[None, :] + x0 - (up[0, 0] + up[-1, 0]) / 2) / max(mw / 2, 1.0)
        shade = np.clip(1.0 - 0.55 * xx ** 2, 0.35, 1.0)
        teeth_rgb = TEETH_RGB * shade[..., None]
        colour = base + teeth[..., None] * (teeth_rgb - base)
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        a = cavity[..., None]
        frame[y0:y1, x0:x1] = np.clip(roi + a * (colour - roi), 0, 255).astype(np.uint8)

    # ------------------------------------------------------------------ eyelids
    def _draw_lids(self, frame: np.ndarray, lm: np.ndarray, blinks: tuple[float, float]) -> None:
        """On blinks: skin-coloured lid over the eye opening and a dark lash line."""
        full = (mesh.RIGHT_EYE_UPPER, mesh.LEFT_EYE_UPPER)
        for (upper, lower, _), colour, b, eye in zip(self.lid_pairs, self.lid_colour, blinks, full):
            if b <= 0.05:
                continue
            # lm holds the lid already moved by LID_WARP*b; paint from the open lid down to
            # LID_CLOSED*b of the opening (target-space lid vector recovered from lm).
            moved, low = lm[upper], lm[lower]
            delta = (low - moved) / max(1e-3, 1.0 - LID_WARP * b)
            opened = moved - delta * (LID_WARP * b) - self.down * max(1.0, self.size / 256)
            closed = opened + delta * (LID_CLOSED * b)
            ends = lm[[eye[0], eye[-1]]]
            eye_u = np.concatenate([ends[:1], closed, ends[1:]])
            poly = np.concatenate([ends[:1], opened, ends[1:], closed[::-1]])
            x0, y0 = np.floor(poly.min(0)).astype(int) - 3
            x1, y1 = np.ceil(poly.max(0)).astype(int) + 4
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, self.size), min(y1, self.size)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            off = np.array([x0, y0])
            m = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(m, [np.round(poly - off).astype(np.int32)], 255, cv2.LINE_AA)
            lash = np.zeros_like(m)
            th = max(1, int(round(self.size / 256)))
            cv2.polylines(lash, [np.round(eye_u - off).astype(np.int32)], False, 255, th, cv2.LINE_AA)
            m = cv2.GaussianBlur(m, (3, 3), 0).astype(np.float32) / 255.0 * min(1.0, b * 1.1)
            lash = cv2.GaussianBlur(lash, (3, 3), 0).astype(np.float32) / 255.0 * min(1.0, b)
            roi = frame[y0:y1, x0:x1].astype(np.float32)
            lid = colour * 0.86
            roi = roi + m[..., None] * (lid - roi)
            roi = roi * (1 - 0.6 * lash[..., None])
            frame[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)
