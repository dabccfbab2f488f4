"""SadTalkerEngine: SadTalker's coefficient and rendering stages over the official networks.

Inputs come from the default pipeline's stages: the source face crop (uint8 RGB (S, S, 3)),
optional 68/5-point landmarks in crop pixels, and mel windows (T, 80, 16) float32 (25 fps).

Stages (numbered as in SadTalker's inference):
 1. :meth:`source_coeffs`   crop -> 5-point alignment -> ReconNet -> exp 64, pose 6, crop 3
 1b. :meth:`reference_coeffs` the same per frame of a --ref_eyeblink / --ref_pose video
 2. :func:`blink_sequence`  random 5-frame blinks (seeded)
 3. :meth:`audio_to_exp`    ExpNet, 10 frames per chunk
 4. :meth:`audio_to_pose`   PoseVAE decoder per 32-frame window (seeded z) + Savitzky-Golay
 5. :meth:`driving_coeffs`  expression_scale, still mode, crop columns in full modes
 6. :meth:`render`          27-frame windows -> MappingNet -> keypoint transform
 7.                         generator in batches, yielding uint8 frames (memory flat in T)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .audio2pose import smooth_pose
from .config import NUM_CROP, NUM_EXP, NUM_POSE, SEMANTIC_RADIUS
from .face3d import TARGET_SIZE, align_face, split_coeffs
from .facerender import transform_keypoints
from .loader import FULL_MODES, SadTalkerNets, check_options, coeff_nc, load_sadtalker

BLINK_SHAPE = (0.5, 0.9, 1.0, 0.9, 0.5)


@dataclass(frozen=True)
class SadTalkerOptions:
    pose_style: int = 0                   # 0..45, row of the pose class-bias table
    still: bool = False                   # keep the source head pose (blinks and lips still move)
    expression_scale: float = 1.0         # multiplies the 64 exp coefficients fed to the renderer
    blink: bool = True                    # random eye blinks (none for clips of <= 20 frames)
    seed: int = 0                         # seeds blinks and the pose VAE's z (SadTalker does not)
    input_yaw: Sequence[float] | None = None    # degrees; one value = constant, several = path
    input_pitch: Sequence[float] | None = None
    input_roll: Sequence[float] | None = None
    preprocess: str = "crop"              # crop/extcrop/resize (70 coeffs) or full/extfull (73)

    def validate(self, num_classes: int = 46) -> None:
        if not 0 <= int(self.pose_style) < num_classes:
            raise ValueError(f"pose_style must be in [0, {num_classes}), got {self.pose_style}")
        if not np.isfinite(self.expression_scale):
            raise ValueError(f"expression_scale must be finite, got {self.expression_scale}")
        check_options(256, self.preprocess)


@dataclass(frozen=True)
class SourceCoeffs:
    """Stage 1 output for the source face."""

    full: np.ndarray          # (257,) raw ReconNet output
    exp: np.ndarray           # (64,)
    pose: np.ndarray          # (6,) angle (3, radians) + trans (3)
    crop: np.ndarray          # (3,) alignment s, tx, ty

    def semantics(self, nc: int) -> np.ndarray:
        """(70,) = exp + pose, or (73,) = exp + pose + crop."""
        v = np.concatenate([self.exp, self.pose, self.crop]).astype(np.float32)
        return v[:nc]


@dataclass(frozen=True)
class MotionCoeffs:
    """Stages 2-4 output, per frame (25 fps)."""

    exp: np.ndarray           # (T, 64) ExpNet output
    pose: np.ndarray          # (T, 6) smoothed PoseVAE output
    blink: np.ndarray         # (T,) blink ratio fed to ExpNet, in [0, 1]

    @property
    def num_frames(self) -> int:
        return int(self.exp.shape[0])


def blink_sequence(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """SadTalker's random blinks: none when T <= 20; else 5-frame blinks [.5 .9 1 .9 .5] after
    gaps drawn from [min(10, T), min(T // 2, 70)) until the next blink would not fit."""
    ratio = np.zeros(num_frames, dtype=np.float32)
    if num_frames <= 20:
        return ratio
    lo, hi = min(10, num_frames), min(num_frames // 2, 70)
    frame = 0
    while frame < num_frames:
        gap = int(rng.integers(lo, hi)) if hi > lo else lo
        if frame + gap + 5 <= num_frames - 1:
            ratio[frame + gap:frame + gap + 5] = BLINK_SHAPE
            frame += gap + 5
        else:
            break
    return ratio


def camera_path(values: Sequence[float] | None, num_frames: int) -> np.ndarray | None:
    """``--input_yaw`` semantics: one value is held; several are visited at constant angular
    speed (total |change| spread over T - 1 frames), padded with the last value."""
    if values is None or len(values) == 0:
        return None
    vals = [float(v) for v in values]
    if len(vals) == 1 or num_frames <= 1:
        return np.full(num_frames, vals[0], dtype=np.float32)
    total = sum(abs(b - a) for a, b in zip(vals, vals[1:]))
    if total == 0:
        return np.full(num_frames, vals[0], dtype=np.float32)
    per_frame = total / (num_frames - 1)
    path: list[float] = []
    for a, b in zip(vals, vals[1:]):
        if b != a:
            path.extend(np.arange(a, b, per_frame * np.sign(b - a)).tolist())
    path = path[:num_frames] or [vals[-1]]
    path += [path[-1]] * (num_frames - len(path))
    return np.asarray(path, dtype=np.float32)


def _looped(rows: np.ndarray, n: int) -> np.ndarray:
    """(N, C) -> (n, C): rows 0..N-1 repeated from the start until n (SadTalker's reference rule)."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] < 1 or rows.shape[1] < NUM_EXP + NUM_POSE:
        raise ValueError(f"reference coefficients must be (N >= 1, 70), got {rows.shape}")
    return rows[np.arange(n) % rows.shape[0]]


def window_indices(frame_ids: np.ndarray, num_frames: int, radius: int = SEMANTIC_RADIUS) -> np.ndarray:
    """(B,) frame ids -> (B, 2r+1) edge-clamped indices of each frame's semantic window."""
    offs = np.arange(-radius, radius + 1)
    return np.clip(frame_ids[:, None] + offs[None], 0, num_frames - 1)


class SadTalkerEngine:
    """SadTalker stages 1-7 over a :class:`SadTalkerNets`.

    ``batch_size``: frames rendered per generator call. ``use_fp16``: autocast float16 on CUDA.
    ``channels_last``: NHWC for the 2-D SPADE decoder (default: on for CUDA only).
    """

    def __init__(self, nets: SadTalkerNets, batch_size: int = 2, use_fp16: bool = True,
                 channels_last: bool | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.nets = nets
        self.batch_size = int(batch_size)
        self.device = nets.device
        self.size = nets.size
        self.autocast = use_fp16 and self.device.type == "cuda" and nets.dtype == torch.float32
        cl = self.device.type == "cuda" if channels_last is None else channels_last
        if cl:
            nets.generator.decoder.to(memory_format=torch.channels_last)
        self.channels_last = cl

    @classmethod
    def from_checkpoints(cls, checkpoints_dir, size: int = 256, preprocess: str = "crop",
                         device: str = "cpu", dtype: torch.dtype = torch.float32, **kw) -> "SadTalkerEngine":
        return cls(load_sadtalker(checkpoints_dir, size, preprocess, device, dtype), **kw)

    # ------------------------------------------------------------------ helpers
    def _tensor(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=self.device).to(self.nets.dtype)

    def _image(self, rgb: np.ndarray, size: int) -> torch.Tensor:
        """uint8 (H, W, 3) -> (1, 3, size, size) in [0, 1]."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float() / 255
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x.to(self.nets.dtype)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.autocast)

    def _mels(self, mels: np.ndarray) -> torch.Tensor:
        mels = np.asarray(mels, dtype=np.float32)
        if mels.ndim != 3 or mels.shape[1:] != (80, 16):
            raise ValueError(f"mel windows must be (T, 80, 16), got {mels.shape}")
        if mels.shape[0] < 1:
            raise ValueError("mel windows are empty (T = 0)")
        return self._tensor(mels).unsqueeze(1)

    # ------------------------------------------------------------------ 1. source 3DMM
    def source_coeffs(self, face_rgb: np.ndarray, landmarks: np.ndarray | None = None) -> SourceCoeffs:
        """face_rgb uint8 (S, S, 3) crop; landmarks (68|5, 2) in crop pixels or None."""
        if face_rgb.shape[:2] != (self.size, self.size):
            if landmarks is not None:
                landmarks = np.asarray(landmarks, np.float64) * [self.size / face_rgb.shape[1], self.size / face_rgb.shape[0]]
            face_rgb = (self._image(face_rgb, self.size)[0].permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)
        aligned = align_face(face_rgb, landmarks)
        with torch.inference_mode(), self._autocast():
            full = self.nets.face3d(self._image(aligned.image, TARGET_SIZE)).float()[0]
        c = {k: v.cpu().numpy() for k, v in split_coeffs(full).items()}
        return SourceCoeffs(full=full.cpu().numpy(), exp=c["exp"], pose=np.concatenate([c["angle"], c["trans"]]),
                            crop=aligned.crop_params.astype(np.float32))

    # ------------------------------------------------------------------ 1b. reference 3DMM
    def reference_coeffs(self, crops: Iterable[tuple[np.ndarray, np.ndarray | None]], batch: int = 16) -> np.ndarray:
        """Reference video frames -> (N, 70) = exp 64, angle 3, trans 3 per frame, as the official
        ``CropAndExtract`` on ``--ref_eyeblink`` / ``--ref_pose`` videos (crop at 256, 5-point
        alignment, ReconNet). ``crops`` yields (crop uint8 (S, S, 3), 68|5 landmarks in crop px or None)."""
        rows: list[np.ndarray] = []
        pending: list[np.ndarray] = []

        def flush():
            if not pending:
                return
            x = torch.cat([self._image(a, TARGET_SIZE) for a in pending])
            with torch.inference_mode(), self._autocast():
                full = self.nets.face3d(x).float()
            c = split_coeffs(full)
            rows.append(torch.cat([c["exp"], c["angle"], c["trans"]], 1).cpu().numpy())
            pending.clear()

        for crop, landmarks in crops:
            pending.append(align_face(crop, landmarks).image)
            if len(pending) >= batch:
                flush()
        flush()
        if not rows:
            raise ValueError("the reference video gave no frames")
        return np.concatenate(rows).astype(np.float32)

    # ------------------------------------------------------------------ 3. audio -> exp
    def audio_to_exp(self, mels: np.ndarray, source: SourceCoeffs, blink: np.ndarray,
                     ref_exp: np.ndarray | None = None) -> np.ndarray:
        """(T, 80, 16) -> (T, 64). ExpNet's reference is the source exp, or per frame the
        ``ref_exp`` (T, 64) of a reference video (``--ref_eyeblink``)."""
        m = self._mels(mels)
        ref = source.exp if ref_exp is None else ref_exp
        with torch.inference_mode(), self._autocast():
            exp = self.nets.expnet.predict(m, self._tensor(ref), self._tensor(blink))
        return exp.float().cpu().numpy()

    # ------------------------------------------------------------------ 4. audio -> pose
    def audio_to_pose(self, mels: np.ndarray, source: SourceCoeffs, pose_style: int = 0, seed: int = 0,
                      smooth: bool = True) -> np.ndarray:
        """(T, 80, 16) -> (T, 6); frame 0 = source pose; deterministic for a given seed."""
        m = self._mels(mels)
        gen = torch.Generator().manual_seed(int(seed))
        with torch.inference_mode(), self._autocast():
            pose = self.nets.posevae.predict(m, self._tensor(source.pose), pose_style, gen)
        pose = pose.float().cpu().numpy()
        return smooth_pose(pose).astype(np.float32) if smooth else pose

    # ------------------------------------------------------------------ 2-4
    def coefficients(self, mels: np.ndarray, source: SourceCoeffs,
                     options: SadTalkerOptions = SadTalkerOptions(), ref_eyeblink: np.ndarray | None = None,
                     ref_pose: np.ndarray | None = None) -> MotionCoeffs:
        """Stages 2-4. ``ref_eyeblink`` / ``ref_pose``: (N, 70) :meth:`reference_coeffs` of
        reference videos, looped to T frames when shorter (the official rule). The blink video's
        exp replaces ExpNet's reference and the blink ratio is 0; the pose video's change from its
        first frame is added to the smoothed PoseVAE pose."""
        options.validate(self.nets.posevae.cfg.num_classes)
        T = int(np.asarray(mels).shape[0])
        rng = np.random.default_rng(options.seed)
        blink = blink_sequence(T, rng) if options.blink else np.zeros(T, np.float32)
        ref_exp = None
        if ref_eyeblink is not None:
            blink = np.zeros(T, np.float32)
            ref_exp = _looped(ref_eyeblink, T)[:, :NUM_EXP]
        exp = self.audio_to_exp(mels, source, blink, ref_exp)
        pose = self.audio_to_pose(mels, source, options.pose_style, options.seed)
        if ref_pose is not None:
            ref = _looped(ref_pose, T)[:, NUM_EXP:NUM_EXP + NUM_POSE]
            pose = (pose + (ref - ref[:1])).astype(np.float32)
        return MotionCoeffs(exp=exp, pose=pose, blink=blink)

    # ------------------------------------------------------------------ 5. still / scale
    def driving_coeffs(self, coeffs: MotionCoeffs, source: SourceCoeffs,
                       options: SadTalkerOptions = SadTalkerOptions()) -> np.ndarray:
        """(T, 70|73) renderer input: exp * expression_scale, pose; full modes add the source
        crop columns; still mode copies the source pose (and crop) columns."""
        nc = coeff_nc(options.preprocess)
        if nc != self.nets.coeff_nc:
            raise ValueError(f"preprocess {options.preprocess!r} needs the {nc}-coefficient mapping, "
                             f"but the loaded MappingNet takes {self.nets.coeff_nc}")
        T = coeffs.num_frames
        sem = np.concatenate([coeffs.exp * options.expression_scale, coeffs.pose], 1).astype(np.float32)
        src = source.semantics(nc)
        if options.preprocess in FULL_MODES:
            sem = np.concatenate([sem, np.repeat(src[None, NUM_EXP + NUM_POSE:], T, 0)], 1)
        if options.still:
            sem[:, NUM_EXP:] = src[None, NUM_EXP:]
        return sem

    # ------------------------------------------------------------------ 6-7. render
    def render(self, face_rgb: np.ndarray, source: SourceCoeffs, driving: np.ndarray,
               options: SadTalkerOptions = SadTalkerOptions()) -> Iterator[np.ndarray]:
        """Yield T frames uint8 (S, S, 3). ``driving`` (T, 70|73) from :meth:`driving_coeffs`."""
        nets = self.nets
        T, nc = driving.shape
        if nc != nets.coeff_nc:
            raise ValueError(f"driving coefficients have {nc} columns, MappingNet expects {nets.coeff_nc}")
        angles = [camera_path(v, T) for v in (options.input_yaw, options.input_pitch, options.input_roll)]
        driving_t = self._tensor(driving)                       # (T, nc), small
        with torch.inference_mode(), self._autocast():
            img = self._image(face_rgb, self.size)
            kp_canonical = nets.kp_detector(img).float()        # (1, 15, 3)
            src = self._tensor(source.semantics(nc))[None, :, None].expand(1, nc, 2 * SEMANTIC_RADIUS + 1)
            kp_source = transform_keypoints(kp_canonical, nets.mapping(src))
            volume, compressed = nets.generator.encode_source(img)
        for start in range(0, T, self.batch_size):
            ids = np.arange(start, min(start + self.batch_size, T))
            with torch.inference_mode(), self._autocast():
                win = driving_t[torch.from_numpy(window_indices(ids, T)).to(self.device)]  # (B, 27, nc)
                he = nets.mapping(win.transpose(1, 2))
                over = [None if a is None else torch.from_numpy(a[ids]).to(self.device) for a in angles]
                kp_driving = transform_keypoints(kp_canonical, he, *over)
                frames = nets.generator.render(volume, compressed, kp_driving.to(volume.dtype), kp_source.to(volume.dtype))
                frames = (frames.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            yield from frames

    # ------------------------------------------------------------------ all stages
    def generate(self, face_rgb: np.ndarray, mels: np.ndarray, landmarks: np.ndarray | None = None,
                 options: SadTalkerOptions = SadTalkerOptions()) -> Iterator[np.ndarray]:
        """Stages 1-7: yields len(mels) frames uint8 (S, S, 3)."""
        source = self.source_coeffs(face_rgb, landmarks)
        coeffs = self.coefficients(mels, source, options)
        yield from self.render(face_rgb, source, self.driving_coeffs(coeffs, source, options), options)
