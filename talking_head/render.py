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
  5. the mouth interior (:mod:`talking_head.mouth`: the photo's own teeth moved with the lips,
     or a shaded synthesized interior) and, on blinks, the eyeball under the moving lid and a
     soft lash line (:mod:`talking_head.eyes`; the lid itself is the warped skin).
"""
from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
from scipy import sparse
from scipy.spatial import Delaunay

from talking_head import mesh
from talking_head.coeffs import Coeffs
from talking_head.eyes import EyeLids
from talking_head.face import SourceFace
from talking_head.mouth import MouthInterior

FIELD_SIZE = 256        # displacement field resolution (upsampled to the frame size)
JAW_GAP = 0.45          # inner-lip gap at jaw_open = 1, in mouth widths
RING_SCALES = (1.35, 1.8)
RING_FOLLOW_HEAD = ((1.0, 0.5), (0.55, 0.15))  # (above mouth, below mouth) per ring
RING_FOLLOW_JAW = (0.45, 0.12)  # below the mouth the rings follow the jaw this much (no fold under the chin)
HEAD_CENTRE_DEPTH = 0.6  # rotation centre behind the face, in face widths
INVERSE_STEPS = 5
FOLD_RESIDUAL = 0.75     # field pixels; larger inverse residuals count as a fold


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
        # beside the mouth the ramp reaches higher up the cheeks, so their skin stretches over a
        # longer stretch (a short ramp streaks the texture when the jaw drops far)
        beside = np.clip((np.abs(u) - 0.45 * mw) / (0.4 * mw), 0, 1)
        ramp = 0.3 * mw + 0.45 * mw * beside
        vert = np.clip((v - corner_v + 0.05 * mw + 0.45 * mw * beside) / ramp, 0, 1)
        vert = vert * vert * (3 - 2 * vert)
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
        # --- lips: width / rounding act around the mouth centre with a Gaussian falloff.
        dist = np.hypot(u, v)
        self.mouth_w = np.exp(-(dist / (0.75 * mw)) ** 2)
        self.u, self.v = u, v
        # --- brows and forehead above them.
        brows = np.concatenate([mesh.RIGHT_BROW, mesh.LEFT_BROW])
        brow_v = float(np.mean(v[brows]))
        self.brow_w = np.clip(1 - np.abs(v - brow_v) / (0.45 * mw), 0, 1) * (v < brow_v + 0.3 * mw)
        # --- eyelids (upper lid skin down over the eye) and the mouth interior.
        self.lids = EyeLids(self.image, lm, self.down)
        self.mouth = MouthInterior(self.image, lm)

        # --- control points: landmarks + rings + border anchors.
        rings, ring_follow, ring_jaw = [], [], []
        for scale, (above, below), jaw in zip(RING_SCALES, RING_FOLLOW_HEAD, RING_FOLLOW_JAW):
            pts = self.face_centre + (oval[:, :2] - self.face_centre) * scale
            below_mouth = ((pts - self.mouth_centre) @ self.down) > 0
            follow = np.where(below_mouth, below, above)
            keep = (pts[:, 0] > 2) & (pts[:, 0] < s - 3) & (pts[:, 1] > 2) & (pts[:, 1] < s - 3)
            z = oval[keep, 2]  # a ring point turns like the outline point it extends
            rings.append(np.column_stack([pts[keep], z]))
            ring_follow.append(follow[keep])
            ring_jaw.append(jaw * jaw_w[mesh.FACE_OVAL][keep])  # as the outline point it extends
        n_border = 9
        edge = np.linspace(-2.0, s + 1.0, n_border)
        border = np.unique(np.concatenate([
            np.column_stack([edge, np.full(n_border, -2.0)]), np.column_stack([edge, np.full(n_border, s + 1.0)]),
            np.column_stack([np.full(n_border, -2.0), edge]), np.column_stack([np.full(n_border, s + 1.0), edge])]),
            axis=0)
        self.rings = np.concatenate(rings) if rings else np.zeros((0, 3))
        self.ring_follow = np.concatenate(ring_follow) if ring_follow else np.zeros(0)
        self.ring_jaw = np.concatenate(ring_jaw) if ring_jaw else np.zeros(0)
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
        self.simplices = tri.simplices
        # triangles a blink moves (exact local inverse warp for them, see _exact_patch), drawn in
        # order of how far they move: the lid's skin last, over the eye it closes
        self.eye_tris = []
        for f in self.lids.fields:
            move = np.linalg.norm(f, axis=1)[np.minimum(tri.simplices, self.n_lm - 1)]
            ids = np.flatnonzero((move > 1e-6).any(1) & (tri.simplices < self.n_lm).all(1))
            self.eye_tris.append(ids[np.argsort(move[ids].mean(1), kind="stable")])
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

    # ------------------------------------------------------------------ geometry
    def moved_landmarks(self, c: dict[str, float]) -> np.ndarray:
        """(478, 3) target landmarks for one frame's coefficients (``Coeffs.frame(i)``)."""
        lm = self.lm0.copy()
        mw = self.mouth_width
        down, right = self.down, self.right
        # jaw: the source's own mouth is the rest pose; open by jaw_open * JAW_GAP * mouth width
        jaw_px = max(0.0, c["jaw_open"]) * JAW_GAP * mw
        lm[:, :2] += np.outer(self.jaw_w * (jaw_px * 0.85), down)
        lm[:, :2] -= np.outer(self.upper_w * jaw_px * 0.15, down)
        # lips: widen / round around the mouth centre
        stretch = 0.12 * c["mouth_width"] - 0.1 * c["mouth_round"]
        lm[:, :2] += np.outer(self.mouth_w * self.u * stretch, right)
        lm[:, 2] -= self.mouth_w * c["mouth_round"] * 0.15 * mw
        # brows
        lm[:, :2] -= np.outer(self.brow_w * c["brow_raise"] * 0.12 * mw, down)
        # blinks: the upper lid's skin slides down to the lower lid
        if c["blink_right"] > 0 or c["blink_left"] > 0:
            lm[:, :2] += self.lids.displacement((c["blink_right"], c["blink_left"]))
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
        jaw_px = max(0.0, c["jaw_open"]) * JAW_GAP * self.mouth_width * 0.85
        ring = ring + np.outer(self.ring_jaw * jaw_px, self.down)
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
        blinks = (c["blink_right"], c["blink_left"])
        for b, tris in zip(blinks, self.eye_tris):
            if b > 0.02:  # the lid compresses the eye to nothing: invert those triangles exactly
                self._exact_patch(frame, pts, tris)
        self.mouth.composite(frame, lm)
        self.lids.composite(frame, lm, blinks)
        return frame

    def _exact_patch(self, frame: np.ndarray, pts: np.ndarray, tris: np.ndarray) -> None:
        """Redraw triangles ``tris`` with the exact piecewise-affine inverse of the mesh warp.

        The field inverse (fixed-point steps) cannot follow a triangle squeezed to zero height, as
        the eye opening is at a full blink; here each target pixel takes the source point with the
        same barycentric coordinates in its triangle.  Degenerate target triangles draw nothing."""
        simp = self.simplices[tris]
        tgt = pts[simp]                                            # (n, 3, 2) target vertices

        def signed_area(t: np.ndarray) -> np.ndarray:
            e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
            return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]

        # triangles squeezed flat or turned over (the eye under a closing lid) draw nothing
        keep = signed_area(tgt) * np.sign(signed_area(self.points2d[simp])) > 0.05
        simp, tgt = simp[keep], tgt[keep]
        if not len(simp):
            return
        x0, y0 = np.maximum(np.floor(tgt.reshape(-1, 2).min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(tgt.reshape(-1, 2).max(0)).astype(int) + 1, self.size)
        if x1 - x0 < 1 or y1 - y0 < 1:
            return
        index = np.full((y1 - y0, x1 - x0), -1, np.int32)
        q = np.round((tgt - np.array([x0, y0])) * 16).astype(np.int32)
        for i, tri_pts in enumerate(q):
            cv2.fillConvexPoly(index, tri_pts, i, cv2.LINE_8, 4)
        ys, xs = np.nonzero(index >= 0)
        if not len(ys):
            return
        ids = index[ys, xs]
        a, b, c = tgt[ids, 0], tgt[ids, 1], tgt[ids, 2]
        p = np.column_stack([xs + x0, ys + y0]).astype(np.float64)
        v0, v1, v2 = b - a, c - a, p - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        wb = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        wc = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        w = np.clip(np.column_stack([1 - wb - wc, wb, wc]), 0, 1)
        w /= w.sum(1, keepdims=True)
        src = (w[:, :, None] * self.points2d[simp[ids]]).sum(1).astype(np.float32)
        mx = np.zeros(index.shape, np.float32)
        my = np.zeros(index.shape, np.float32)
        mx[ys, xs], my[ys, xs] = src[:, 0], src[:, 1]
        vals = cv2.remap(self.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # feather into the field warp over a few pixels at the patch border (no seam where they meet)
        covered = np.pad(index >= 0, 1).astype(np.uint8)
        alpha = np.clip(cv2.distanceTransform(covered, cv2.DIST_L2, 3)[1:-1, 1:-1] / (3.0 * self.size / 256), 0, 1)
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(roi + alpha[..., None] * (vals.astype(np.float32) - roi) + 0.5, 0, 255
                                      ).astype(np.uint8)

    def frames(self, coeffs: Coeffs) -> Iterator[np.ndarray]:
        for i in range(coeffs.n_frames):
            yield self.render(coeffs.frame(i))
