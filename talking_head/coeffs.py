"""Stage 3 (default engine): audio features -> per-frame expression and head-pose coefficients.

Layout of :class:`Coeffs` (every field is a (T,) float32 array, T = number of video frames):

========== ============ ====================================================================
field      range        meaning
========== ============ ====================================================================
jaw_open   0 .. ~1.3    inner-lip gap as a fraction of ``render.JAW_GAP`` x mouth width
mouth_width -1 .. 1     lip stretch (+ wide, - narrow) around the mouth centre
mouth_round 0 .. 1      lip rounding/pucker (/u/, /o/): narrower, pushed forward
blink_right 0 .. 1      image-left eye closure (1 = closed)
blink_left  0 .. 1      image-right eye closure
brow_raise -1 .. 1      eyebrow lift (emphasis)
yaw        degrees      head turn (+ = towards image right), relative to the source
pitch      degrees      head nod (+ = chin down), relative to the source
roll       degrees      head tilt in the image plane, relative to the source
tx, ty     fraction     translation in units of the crop side
tz         fraction     scale change (+ = closer)
========== ============ ====================================================================

The source pose is the zero point: ``still`` gives all-zero pose fields.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.ndimage import gaussian_filter1d

from talking_head.audio import FPS, AudioFeatures

EXP_FIELDS = ("jaw_open", "mouth_width", "mouth_round", "blink_right", "blink_left", "brow_raise")
POSE_FIELDS = ("yaw", "pitch", "roll", "tx", "ty", "tz")
N_POSE_STYLES = 46
BLINK_SHAPE = np.array([0.5, 0.9, 1.0, 0.9, 0.5], dtype=np.float32)  # SadTalker's blink
MIN_BLINK_FRAMES = 20  # no blinks for T <= 20 (as SadTalker)
MAX_YAW, MAX_PITCH, MAX_ROLL = 15.0, 10.0, 8.0  # degrees, soft limits of the style motion


@dataclass(frozen=True)
class MotionOptions:
    """User controls for stage 3 (shared by every engine)."""

    pose_style: int = 0                    # 0..45, picks a distinct head-motion pattern
    still: bool = False                    # keep the source pose (no head motion)
    expression_scale: float = 1.0          # scales mouth/brow expression (not blinks)
    blink: bool = True                     # random SadTalker-style eye blinks
    seed: int = 0                          # everything random derives from this
    input_yaw: tuple[float, ...] | None = None    # degrees; 1 value = constant, n = keyframes
    input_pitch: tuple[float, ...] | None = None
    input_roll: tuple[float, ...] | None = None


@dataclass(frozen=True, eq=False)
class Coeffs:
    """Per-frame coefficients of one clip; see the module docstring for the layout."""

    jaw_open: np.ndarray
    mouth_width: np.ndarray
    mouth_round: np.ndarray
    blink_right: np.ndarray
    blink_left: np.ndarray
    brow_raise: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    tz: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.jaw_open.shape[0])

    @property
    def exp(self) -> np.ndarray:
        """(T, 6) float32 in EXP_FIELDS order."""
        return np.stack([getattr(self, f) for f in EXP_FIELDS], axis=1)

    @property
    def pose(self) -> np.ndarray:
        """(T, 6) float32 in POSE_FIELDS order (degrees, degrees, degrees, frac, frac, frac)."""
        return np.stack([getattr(self, f) for f in POSE_FIELDS], axis=1)

    def frame(self, i: int) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)[i]) for f in fields(self)}


def blink_sequence(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) blink ratio: 5-frame blinks separated by random gaps of 10..min(T/2, 70) frames."""
    ratio = np.zeros(n_frames, dtype=np.float32)
    if n_frames <= MIN_BLINK_FRAMES:
        return ratio
    lo, hi = min(10, n_frames), min(n_frames // 2, 70)
    frame = 0
    while True:
        gap = int(rng.integers(lo, max(hi, lo + 1)))
        start = frame + gap
        if start + len(BLINK_SHAPE) > n_frames - 1:
            break
        ratio[start:start + len(BLINK_SHAPE)] = BLINK_SHAPE
        frame = start + len(BLINK_SHAPE)
    return ratio


def keyframes(values: tuple[float, ...] | list[float], n_frames: int) -> np.ndarray:
    """SadTalker's --input_yaw semantics: one value is held, several are linearly interpolated."""
    v = np.asarray(values, dtype=np.float32)
    if v.size == 0:
        raise ValueError("keyframe list is empty")
    if v.size == 1 or n_frames == 1:
        return np.full(n_frames, v[0], dtype=np.float32)
    return np.interp(np.arange(n_frames), np.linspace(0, n_frames - 1, v.size), v).astype(np.float32)


def _style_motion(style: int, seed: int, n: int, amp: float, f_lo: float, f_hi: float, channel: int) -> np.ndarray:
    """Smooth sum of 3 sinusoids, zero at frame 0; shape from (style, channel), phases from seed."""
    shape_rng = np.random.default_rng([7919, style, channel])
    phase_rng = np.random.default_rng([seed, style, channel, 1])
    t = np.arange(n, dtype=np.float64) / FPS
    freqs = shape_rng.uniform(f_lo, f_hi, 3)
    weights = shape_rng.dirichlet(np.ones(3)) * amp * shape_rng.uniform(0.5, 1.0)
    phases = phase_rng.uniform(0, 2 * np.pi, 3)
    out = np.zeros(n)
    for w, f, p in zip(weights, freqs, phases):
        out += w * (np.sin(2 * np.pi * f * t + p) - np.sin(p))
    return out


def generate_coeffs(features: AudioFeatures, options: MotionOptions) -> Coeffs:
    """Deterministic (for options.seed) coefficients driven by the speech features."""
    if not 0 <= options.pose_style < N_POSE_STYLES:
        raise ValueError(f"pose_style={options.pose_style} must be in 0..{N_POSE_STYLES - 1}")
    t = features.n_frames
    scale = float(options.expression_scale)
    rng = np.random.default_rng(options.seed)

    # Mouth: opening follows loudness, more on voiced, open (high-F1) vowels; rounded vowels
    # (energy concentrated under 1 kHz) narrow and pucker the lips.
    energy = features.energy
    voiced = np.clip(features.voicing * 1.4 - 0.2, 0, 1)
    open_vowel = np.clip((features.openness - 0.15) / 0.35, 0, 1)
    jaw = energy * (0.6 + 0.25 * voiced + 0.25 * open_vowel)
    jaw = gaussian_filter1d(jaw, 0.7, mode="nearest")
    jaw[energy <= 0.0] *= 0.3  # silence closes the mouth quickly
    rounded = np.clip((features.roundness - 0.6) / 0.3, 0, 1) * voiced * np.clip(energy * 3, 0, 1)
    rounded = gaussian_filter1d(rounded, 1.0, mode="nearest")
    width = 0.35 * jaw * (1 - rounded) - 0.6 * rounded
    slow = gaussian_filter1d(energy, 6.0, mode="nearest")
    brow = np.clip((slow - slow.mean()) * 1.5, -0.3, 1.0)

    if options.blink:
        blink = blink_sequence(t, rng)
    else:
        blink = np.zeros(t, np.float32)

    # Head pose: style-specific smooth motion + a little speech-driven nod.
    if options.still:
        yaw = pitch = roll = tx = ty = tz = np.zeros(t)
    else:
        s, sd = options.pose_style, options.seed
        style_rng = np.random.default_rng([31337, s])
        amp_yaw, amp_pitch, amp_roll = style_rng.uniform(6, 14), style_rng.uniform(3, 8), style_rng.uniform(1.5, 5)
        yaw = _style_motion(s, sd, t, amp_yaw, 0.08, 0.45, 0)
        pitch = _style_motion(s, sd, t, amp_pitch, 0.1, 0.6, 1)
        roll = _style_motion(s, sd, t, amp_roll, 0.05, 0.35, 2)
        tx = _style_motion(s, sd, t, 0.012, 0.05, 0.3, 3)
        ty = _style_motion(s, sd, t, 0.008, 0.05, 0.3, 4)
        tz = _style_motion(s, sd, t, 0.01, 0.05, 0.25, 5)
        nod = gaussian_filter1d(energy, 3.0, mode="nearest")
        pitch = pitch + style_rng.uniform(1.5, 4.0) * (nod - nod[0])
        # soft limits: a single-image warp looks right only for moderate turns
        yaw, pitch, roll = (lim * np.tanh(a / lim) for a, lim in ((yaw, MAX_YAW), (pitch, MAX_PITCH), (roll, MAX_ROLL)))
    yaw = keyframes(options.input_yaw, t) if options.input_yaw else yaw
    pitch = keyframes(options.input_pitch, t) if options.input_pitch else pitch
    roll = keyframes(options.input_roll, t) if options.input_roll else roll

    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Coeffs(jaw_open=f32(jaw * scale), mouth_width=f32(width * scale), mouth_round=f32(rounded * scale),
                  blink_right=f32(blink), blink_left=f32(blink), brow_raise=f32(brow * scale),
                  yaw=f32(yaw), pitch=f32(pitch), roll=f32(roll), tx=f32(tx), ty=f32(ty), tz=f32(tz))
