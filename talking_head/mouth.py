"""Stage 4b (default engine): the inside of the mouth, from the person's own pixels where possible.

The mesh warp moves the lips; the inner-lip polygon it opens is filled here, back to front:

1. **cavity** -- synthesized: a dark, soft-edged interior whose colour is the person's own lip
   colour darkened (so it carries the photo's white balance), darker with depth (distance from
   the lip edge), with a tongue rising from behind the lower teeth;
2. **lower teeth** -- the source's own lower teeth moved with the jaw (the inner lower lip), where
   the photo shows them (a synthesized lower row read as a grey band at viewing size: none is drawn);
3. **upper teeth** -- the source's own upper teeth moved with the upper lip, or, where the photo
   shows none, a row of shaded teeth hanging from the upper lip (each tooth a little longer at its
   middle, faint gaps between them, fading into the dark towards the corners).

Synthesized teeth take their colour from the photo (its own teeth, else the whites of the eyes)
and are shaded darker towards the mouth corners and under the lip; nothing has an outline, and
the whole interior is feathered into the lips.  At rest (``jaw_open = 0``) the photo's mouth is
reproduced exactly: an open one keeps its own inside (teeth or darkness) and moves it with the
lips, and a closed one stays closed.

All colours are float32 RGB 0..255; landmark arrays are (478, 2+) pixels of the rendered frame.
"""
from __future__ import annotations

import cv2
import numpy as np

from talking_head import mesh

SUPERSAMPLE = 4            # polygon masks are drawn 4x larger and averaged (anti-aliasing)
TEETH_MIN_SHARE = 0.2      # share of bright pixels in the source's mouth opening that means "teeth shown"
MIN_OPEN_GAP = 0.02        # source gaps below this (in mouth widths) count as a closed mouth
UPPER_TEETH_HEIGHT = 0.12  # visible synthesized upper teeth, in mouth widths (at most)
# Tooth gaps across the arch as seen from the front (mouth widths from the centre): the central
# incisors meet at 0; laterals, canines and premolars come closer together as the arch turns away.
TOOTH_EDGES = (0.0, 0.13, 0.23, 0.31, 0.37, 0.42)
FEATHER = 0.02            # edge softness, in mouth widths


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _aa_mask(polys: list[np.ndarray], shape: tuple[int, int], offset: np.ndarray) -> np.ndarray:
    """(h, w) float32 coverage in [0, 1] of the filled polygons (pixel-centre convention)."""
    h, w = shape
    ss = SUPERSAMPLE
    m = np.zeros((h * ss, w * ss), np.uint8)
    pts = [np.round((p - offset + 0.5) * ss - 0.5).astype(np.int32) for p in polys]
    cv2.fillPoly(m, pts, 255, cv2.LINE_AA)
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity (rotation, uniform scale, shift) of (N, 2) src onto dst.

    A similarity, not a full affine: lip points lie nearly on a line, and a free affine would
    stretch the teeth or the eye along the direction the points do not pin down."""
    sc, dc = src.mean(0), dst.mean(0)
    s, d = src - sc, dst - dc
    den = float((s ** 2).sum()) or 1.0
    a = float((s * d).sum()) / den                                   # scale * cos
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / den   # scale * sin
    m = np.array([[a, -b], [b, a]])
    return np.column_stack([m, dc - m @ sc])


def _smooth(curve: np.ndarray, steps: int = 4) -> np.ndarray:
    """(N, 2) polyline -> ((N - 1) * steps + 1, 2) Catmull-Rom curve through the same points."""
    p = np.concatenate([2 * curve[:1] - curve[1:2], curve, 2 * curve[-1:] - curve[-2:-1]])
    t = (np.arange(steps) / steps)[:, None, None]
    p0, p1, p2, p3 = p[:-3][None], p[1:-2][None], p[2:-1][None], p[3:][None]
    seg = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                 + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)                  # (steps, N - 1, 2)
    return np.concatenate([seg.transpose(1, 0, 2).reshape(-1, 2), curve[-1:]])


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.2:
        return a
    return cv2.GaussianBlur(a, (0, 0), sigma)


class MouthInterior:
    """Built once per clip from the prepared source; :meth:`composite` draws one frame's mouth."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        self.image = image
        lm = landmarks[:, :2].astype(np.float64)
        self.lm0 = lm
        self.size = image.shape[0]
        self.mouth_width = mw = float(np.linalg.norm(lm[61] - lm[291]))
        up, lo = lm[mesh.INNER_UPPER_LIP], lm[mesh.INNER_LOWER_LIP]
        self.src_gap = float(np.linalg.norm(lo[len(lo) // 2] - up[len(up) // 2]))
        img = image.astype(np.float32)

        # Reference colours, all from this photo: lips, teeth (own, else the eye whites).
        box = self._box(lm[np.concatenate([mesh.OUTER_UPPER_LIP, mesh.OUTER_LOWER_LIP])], 0.05 * mw)
        x0, y0, x1, y1 = box
        off = np.array([x0, y0], np.float64)
        shape = (y1 - y0, x1 - x0)
        outer = _aa_mask([np.concatenate([lm[mesh.OUTER_UPPER_LIP], lm[mesh.OUTER_LOWER_LIP][::-1]])], shape, off)
        inner = _aa_mask([np.concatenate([up, lo[::-1]])], shape, off)
        roi = img[y0:y1, x0:x1]
        lips = roi[(outer > 0.9) & (inner < 0.05)]
        self.lip_rgb = np.median(lips, 0) if len(lips) else np.array([170, 100, 100], np.float32)
        opening = roi[inner > 0.9]
        luma = _luma(opening) if len(opening) else np.zeros(0)
        lip_luma = float(_luma(self.lip_rgb))
        bright = luma > max(lip_luma * 1.1, 90.0)
        # an open mouth in the photo is kept as it is (its teeth, or its own dark inside) and moved
        # with the lips; only a closed one needs a synthesized inside
        self.own_inside = self.src_gap > MIN_OPEN_GAP * mw and len(opening) >= 12
        self.has_teeth = self.own_inside and bright.mean() >= TEETH_MIN_SHARE
        if self.has_teeth:
            self.teeth_rgb = np.median(opening[bright], 0)
        else:
            self.teeth_rgb = self._teeth_colour(img, lm)
        grey = float(self.lip_rgb.mean())
        red = np.clip(grey + (self.lip_rgb - grey) * 1.6, 0, 255)  # lip colour, more saturated
        self.cavity_edge = red * 0.38   # wet inner lip, in shadow
        self.cavity_deep = red * 0.08   # back of the mouth
        self.tongue_rgb = red * 0.62
        self._split = self._teeth_split(img, up, lo) if self.has_teeth else 1.0
        self._layers = self._teeth_layers() if self.own_inside else []
        rng = np.random.default_rng(0)
        self.grain = cv2.GaussianBlur(rng.normal(0.0, 1.6, (self.size, self.size)).astype(np.float32), (0, 0), 0.6)
        self.grain_sigma = self._grain_sigma(roi, outer, inner)

    # ------------------------------------------------------------------ source analysis
    def _box(self, pts: np.ndarray, pad: float) -> tuple[int, int, int, int]:
        x0, y0 = np.floor(pts.min(0) - pad - 2).astype(int)
        x1, y1 = np.ceil(pts.max(0) + pad + 3).astype(int)
        s = self.size
        return max(x0, 0), max(y0, 0), min(x1, s), min(y1, s)

    def _teeth_colour(self, img: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """Teeth for a photo that shows none: its eye whites when they look like eye whites
        (brighter than the skin, nearly neutral), else a light tone with the skin's tint."""
        patches = []
        for i in (50, 280, 4):  # both cheeks and the nose: lit skin
            x, y = np.round(lm[i]).astype(int)
            r = max(2, int(0.06 * self.mouth_width))
            patches.append(img[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].reshape(-1, 3))
        skin = np.median(np.concatenate(patches), 0)
        skin_luma = float(_luma(skin))
        tint = (skin / max(skin_luma, 1.0)) ** 0.3
        fallback = tint * min(238.0, skin_luma * 1.15 + 25.0)
        sclera = self._sclera_rgb(img, lm)
        if sclera is not None and _luma(sclera) > skin_luma and np.ptp(sclera) < 0.22 * sclera.max():
            return (0.5 * sclera + 0.5 * fallback).astype(np.float32)
        return fallback.astype(np.float32)

    def _sclera_rgb(self, img: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
        """Eye-white colour: the brighter part of both eye openings outside the irises."""
        samples = []
        for upper, lower, iris in ((mesh.RIGHT_EYE_UPPER, mesh.RIGHT_EYE_LOWER, mesh.RIGHT_IRIS),
                                   (mesh.LEFT_EYE_UPPER, mesh.LEFT_EYE_LOWER, mesh.LEFT_IRIS)):
            poly = np.concatenate([lm[upper], lm[lower][::-1]])
            x0, y0, x1, y1 = self._box(poly, 1.0)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            m = _aa_mask([poly], (y1 - y0, x1 - x0), np.array([x0, y0], np.float64)) > 0.9
            r = float(np.linalg.norm(lm[iris[1:]] - lm[iris[0]], axis=1).mean()) * 1.15
            yy, xx = np.mgrid[y0:y1, x0:x1]
            m &= np.hypot(xx - lm[iris[0], 0], yy - lm[iris[0], 1]) > r
            samples.append(img[y0:y1, x0:x1][m])
        px = np.concatenate(samples) if samples else np.zeros((0, 3), np.float32)
        if len(px) < 6:
            return None
        lum = _luma(px)
        return np.median(px[lum >= np.percentile(lum, 60)], 0).astype(np.float32) * 0.92

    def _teeth_split(self, img: np.ndarray, up: np.ndarray, lo: np.ndarray) -> float:
        """Where the upper teeth end, as a fraction of the source gap (1.0 = only upper teeth show).

        Looks for a dark band (the gap between the rows of teeth) with bright teeth below it,
        on the central columns of the opening."""
        n = 24
        fr = (np.arange(n) + 0.5) / n
        cols = []
        for i in range(3, len(up) - 3):
            pts = up[i][None] + (lo[i] - up[i])[None] * fr[:, None]
            xs, ys = np.clip(np.round(pts).astype(int), 0, self.size - 1).T
            cols.append(_luma(img[ys, xs]))
        prof = np.mean(cols, 0)
        teeth = np.percentile(prof, 80)
        sel = (fr > 0.35) & (fr < 0.9)
        k = int(np.argmin(np.where(sel, prof, np.inf)))
        if prof[k] < 0.6 * teeth and prof[k + 1:].max(initial=0) > 0.8 * teeth:
            return float(fr[k])
        return 1.0

    def _grain_sigma(self, roi: np.ndarray, outer: np.ndarray, inner: np.ndarray) -> float:
        """Fine-grain noise level of the lips (so synthesized surfaces are not smoother than the photo)."""
        g = _luma(roi)
        hp = g - cv2.GaussianBlur(g, (0, 0), 1.5)
        sel = (outer > 0.9) & (inner < 0.05)
        return float(np.clip(np.std(hp[sel]) if sel.any() else 1.0, 0.5, 2.0))

    # ------------------------------------------------------------------ per frame
    def composite(self, frame: np.ndarray, lm: np.ndarray) -> None:
        """Draw the mouth interior for target landmarks ``lm`` into ``frame`` (in place)."""
        lm = lm[:, :2]
        up, lo = lm[mesh.INNER_UPPER_LIP], lm[mesh.INNER_LOWER_LIP]
        mid = len(up) // 2
        gap = float(np.linalg.norm(lo[mid] - up[mid]))
        if gap < 0.75 and not self.own_inside:
            return
        mw = float(np.linalg.norm(up[-1] - up[0]))
        poly = np.concatenate([_smooth(up), _smooth(lo)[::-1]])  # rounded, not the landmark polyline
        x0, y0, x1, y1 = self._box(poly, 0.04 * mw)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        off = np.array([x0, y0], np.float64)
        shape = (y1 - y0, x1 - x0)
        feather = FEATHER * mw
        opening = _aa_mask([poly], shape, off)
        if opening.max() <= 0:
            return
        down = lo[mid] - up[mid]
        down = down / (np.linalg.norm(down) + 1e-9) if gap > 0.5 else np.array([0.0, 1.0])
        across = (up[-1] - up[0]) / max(mw, 1e-6)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        centre = (up[0] + up[-1]) / 2
        lateral = ((xx - centre[0]) * across[0] + (yy - centre[1]) * across[1]) / max(mw / 2, 1.0)
        side_shade = np.clip(1.0 - 0.55 * lateral ** 2, 0.3, 1.0)[..., None]

        # 1. cavity: dark, deeper away from the lips, tongue low in the mouth
        binary = (opening > 0.5).astype(np.uint8)
        depth = cv2.distanceTransform(binary, cv2.DIST_L2, 3) if binary.any() else np.zeros(shape, np.float32)
        t = np.exp(-depth / max(0.05 * mw, 0.8))[..., None]
        out = self.cavity_deep + t * (self.cavity_edge - self.cavity_deep)
        if gap > 0.08 * mw:
            tip = lo[mid] - down * 0.22 * gap
            ax, ay = 0.3 * mw, 0.4 * gap
            du = ((xx - tip[0]) * across[0] + (yy - tip[1]) * across[1]) / ax
            dv = ((xx - tip[0]) * down[0] + (yy - tip[1]) * down[1]) / ay
            r = du ** 2 + np.minimum(dv, 0.0) ** 2
            tongue = np.clip((1.0 - r) / 0.6, 0, 1) ** 1.5
            lift = np.clip((dv + 1.0) / 1.4, 0.25, 1.0)  # darker towards the back (up)
            amount = min(1.0, (gap / mw - 0.08) / 0.12)
            colour = self.tongue_rgb * (0.4 + 0.6 * lift[..., None]) * side_shade
            out = out + (0.85 * amount * _blur(tongue, 2 * feather))[..., None] * (colour - out)

        # 2./3. teeth: the photo's own, moved with the lips, or synthesized from its colours
        out = out + self.grain[y0:y1, x0:x1, None] * self.grain_sigma
        if self.own_inside:
            out = self._own_teeth(out, lm, off, shape)
        else:
            out = self._synth_upper(out, up, down, gap, mw, off, shape)

        # 4. feather into the lips
        # (at rest the photo's own inside equals the frame there, so feathering changes nothing)
        alpha = _blur(opening, 0.6 * feather) * np.clip(opening * 4, 0, 1)
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(roi + alpha[..., None] * (out - roi) + 0.5, 0, 255).astype(np.uint8)

    def _teeth_layers(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per layer of the photo's own inside, the lower row (with the jaw) first, the upper row last:
        (inner-lip landmark ids that carry it, source coverage at rest, source coverage once open).

        Both coverages are (size, size) float32.  At rest the upper layer reaches a pixel into the
        lower lip, so the photo's mouth comes back exactly; once the jaw opens it stops half a pixel
        above the lower lip, so the teeth do not carry a pink rim away from it."""
        up0, lo0 = self.lm0[mesh.INNER_UPPER_LIP], self.lm0[mesh.INNER_LOWER_LIP]
        split0 = up0 + (lo0 - up0) * self._split
        lift = np.array([0.0, -2.0])  # take the lip edge along: no seam where the teeth meet the lip

        def cover(poly: np.ndarray) -> np.ndarray:
            x0, y0, x1, y1 = self._box(poly, 2.0)
            m = np.zeros((self.size, self.size), np.float32)
            m[y0:y1, x0:x1] = _aa_mask([poly], (y1 - y0, x1 - x0), np.array([x0, y0], np.float64))
            return m

        rest = cover(np.concatenate([up0 + lift, (split0 - lift * 0.5)[::-1]]))
        opened = cover(np.concatenate([up0 + lift, (split0 + lift * 0.25)[::-1]]))
        layers = [(mesh.INNER_UPPER_LIP, rest, opened)]
        if self._split < 1.0:
            lower = cover(np.concatenate([split0, (lo0 - lift)[::-1]]))
            layers.insert(0, (mesh.INNER_LOWER_LIP, lower, lower))
        return layers

    def _own_teeth(self, out, lm, off, shape):
        """Source pixels of the opening: upper row moved with the upper lip, lower row with the jaw."""
        gap = float(np.linalg.norm(lm[mesh.LOWER_LIP_MID] - lm[mesh.UPPER_LIP_MID]))
        opened = float(np.clip(gap - self.src_gap * self._scale(lm), 0.0, 1.0))  # pixels beyond the rest gap
        size = (shape[1], shape[0])
        for idx, m_rest, m_open in self._layers:
            a = _fit_affine(self.lm0[idx][2:-2], lm[idx][2:-2])  # corners follow the jaw: left out
            a[:, 2] -= off
            pix = cv2.warpAffine(self.image, a, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            m_src = m_rest if opened <= 0 else m_rest + opened * (m_open - m_rest)
            m = cv2.warpAffine(m_src, a, size, flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
            out = out + m * (pix.astype(np.float32) - out)
        return out

    def _scale(self, lm: np.ndarray) -> float:
        """Mouth-width ratio of the frame to the source (head nearer or farther)."""
        return float(np.linalg.norm(lm[61] - lm[291])) / max(self.mouth_width, 1e-6)

    def _teeth(self, out, edge, inward, height, mw, off, shape, brightness, reach):
        """A row of shaded teeth hanging from ``edge`` (inner-lip points) towards ``inward``.

        height: visible tooth length at the centre, pixels; reach: half-width of the visible row
        in mouth widths.  Each tooth is a little longer at its middle than at its gaps, the gaps
        are faint darker lines, and the row fades into the dark towards the mouth corners."""
        h, w = shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        xx += off[0]
        yy += off[1]
        across = (edge[-1] - edge[0]) / max(float(np.linalg.norm(edge[-1] - edge[0])), 1e-6)
        centre = (edge[0] + edge[-1]) / 2
        s = ((xx - centre[0]) * across[0] + (yy - centre[1]) * across[1]) / mw          # lateral, mouth widths
        v = (xx - centre[0]) * inward[0] + (yy - centre[1]) * inward[1]                 # towards the teeth tips
        es = (edge - centre) @ across / mw
        ev = (edge - centre) @ inward
        order = np.argsort(es)
        depth = v - np.interp(s, es[order], ev[order])                                  # below the lip edge, px
        a = np.abs(s)
        edges = np.array(TOOTH_EDGES, np.float32)
        k = np.clip(np.searchsorted(edges, a) - 1, 0, len(edges) - 2)
        q = np.clip((a - edges[k]) / (edges[k + 1] - edges[k]), 0, 1)                   # across one tooth
        gap_dist = np.minimum(a - edges[k], edges[k + 1] - a) if len(edges) > 1 else a
        lateral = np.clip(1 - (a / reach) ** 2, 0, 1)
        length = height * np.sqrt(lateral) * (0.9 + 0.1 * np.sin(np.pi * q))
        soft = max(0.6, 0.01 * mw)
        mask = np.clip((length - depth) / soft, 0, 1) * np.clip((depth + 0.04 * mw) / soft, 0, 1)
        gap = np.exp(-(gap_dist / 0.007) ** 2)
        tip = np.clip(depth / np.maximum(length, 1.0), 0, 1)
        mask *= 1 - 0.5 * gap * np.clip((tip - 0.6) / 0.4, 0, 1)                       # notches at the tips
        shade = (0.68 + 0.32 * np.clip(tip * 3.0, 0, 1)) * (1 - 0.12 * gap) * (0.35 + 0.65 * lateral ** 0.7)
        colour = self.teeth_rgb * (brightness * shade)[..., None]
        return out + mask[..., None] * (colour - out)

    def _synth_upper(self, out, up, down, gap, mw, off, shape):
        height = min(0.5 * gap, UPPER_TEETH_HEIGHT * mw)
        light = 0.74 + 0.16 * min(1.0, gap / (0.2 * mw))  # a narrow opening lets in less light
        return self._teeth(out, up, down, height, mw, off, shape, light, reach=0.36)
