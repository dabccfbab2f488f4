"""3DMM coefficient regressor (Deep3DFaceRecon ``ReconNetWrapper``) and its input alignment.

Checkpoint prefix ``face_3drecon.``: ``backbone.*`` (a torchvision-layout ResNet-50 without
the fc layer) and ``final_layers.{0..6}`` (1x1 conv heads: id 80, exp 64, tex 80, angle 3,
gamma 27, trans xy 2, trans z 1 = 257 values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import Face3DConfig

# 257-dim coefficient layout.
COEFF_SLICES = {"id": (0, 80), "exp": (80, 144), "tex": (144, 224), "angle": (224, 227),
                "gamma": (227, 254), "trans": (254, 257)}

# Standard 3-D positions of the 5 alignment landmarks (left eye centre, right eye centre, nose
# tip, left mouth corner, right mouth corner) as Deep3DFaceRecon derives them from
# ``similarity_Lm3D_all.mat`` (68-point BFM mean shape reduced with the 5-point rule). These are
# the widely published values of that reduction; the .mat itself is not shipped here.
LM3D_STD = np.array([
    [-0.31148657, 0.29036078, 0.13377953],
    [0.30979887, 0.28972036, 0.13179526],
    [0.0032535, -0.04617932, 0.55244243],
    [-0.25216928, -0.38133916, 0.22405732],
    [0.2484662, -0.38128236, 0.22235769],
], dtype=np.float64)

TARGET_SIZE = 224
RESCALE_FACTOR = 102.0


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        idt = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + idt)


class ResNetBackbone(nn.Module):
    """ResNet-50 (stride on the 3x3 conv), no fc; (B, 3, 224, 224) -> (B, 2048, 1, 1)."""

    def __init__(self, cfg: Face3DConfig):
        super().__init__()
        w = cfg.base_width
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        cin = w
        for i, n in enumerate(cfg.layers):
            width = w * 2 ** i
            stride = 1 if i == 0 else 2
            down = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4))
            blocks = [Bottleneck(cin, width, stride, down)] + [Bottleneck(width * 4, width) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = width * 4
        self.out_dim = cin

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return F.adaptive_avg_pool2d(x, 1)


class ReconNet(nn.Module):
    """forward(image (B, 3, 224, 224) RGB in [0, 1]) -> coeffs (B, 257)."""

    HEADS = (80, 64, 80, 3, 27, 2, 1)

    def __init__(self, cfg: Face3DConfig | None = None):
        super().__init__()
        self.backbone = ResNetBackbone(cfg or Face3DConfig())
        self.final_layers = nn.ModuleList(nn.Conv2d(self.backbone.out_dim, n, 1) for n in self.HEADS)

    def forward(self, x):
        f = self.backbone(x)
        return torch.cat([layer(f) for layer in self.final_layers], 1).flatten(1)


def split_coeffs(c: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: c[..., a:b] for k, (a, b) in COEFF_SLICES.items()}


# ----------------------------------------------------------------------------- alignment

def five_points(lm: np.ndarray) -> np.ndarray:
    """68 (or 5) points (x, y) -> 5: eye centres (mean of 37/40 and 43/46), nose 31, mouth 49 and 55."""
    lm = np.asarray(lm, dtype=np.float64).reshape(-1, 2)
    if lm.shape[0] == 5:
        return lm
    if lm.shape[0] != 68:
        raise ValueError(f"expected 5 or 68 landmarks, got {lm.shape[0]}")
    return np.stack([lm[[36, 39]].mean(0), lm[[42, 45]].mean(0), lm[30], lm[48], lm[54]])


def pos_fit(lm2d: np.ndarray, lm3d: np.ndarray = LM3D_STD) -> tuple[np.ndarray, float]:
    """Least-squares weak-perspective fit of 2-D points (y up) to 3-D points.

    Solves [X 1 0; 0 X 1] k = [x; y] for the two scaled rotation rows and translations;
    returns translation t (2,) and scale s (mean norm of the two rows).
    """
    n = lm2d.shape[0]
    A = np.zeros((2 * n, 8))
    A[0::2, 0:3] = lm3d
    A[0::2, 3] = 1
    A[1::2, 4:7] = lm3d
    A[1::2, 7] = 1
    k = np.linalg.lstsq(A, lm2d.reshape(-1), rcond=None)[0]
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3], k[7]]), float(s)


@dataclass(frozen=True)
class AlignResult:
    image: np.ndarray          # (224, 224, 3) uint8 RGB network input
    crop_params: np.ndarray    # (3,) float32: s, tx, ty (the 73-dim mapping's extra columns)
    trans_params: np.ndarray   # (5,) float32: w0, h0, s, tx, ty


def align_face(image: np.ndarray, landmarks: np.ndarray | None) -> AlignResult:
    """Deep3DFaceRecon ``align_img``: scale the image so the face matches the standard 5 points
    (rescale factor 102) and cut the 224x224 crop around the fitted translation.

    ``image`` (H, W, 3) uint8 RGB; ``landmarks`` (68|5, 2) pixel (x, y) or None (SadTalker's
    fallback: the standard points placed on the image). As the official ``resize_n_crop_img``:
    the uint8 image is resized with PIL's BICUBIC to (int(W s), int(H s)) and cropped with
    PIL's ``crop`` (pixels outside the image are black); offsets truncate toward zero.
    """
    from PIL import Image

    H, W = image.shape[:2]
    if landmarks is None:
        lm = (LM3D_STD[:, :2] + 1) / 2 * np.array([W, H])
    else:
        lm = five_points(landmarks).copy()
        lm[:, 1] = H - 1 - lm[:, 1]
    t, s = pos_fit(lm)
    s = RESCALE_FACTOR / s
    w, h = int(W * s), int(H * s)
    left = int(w / 2 - TARGET_SIZE / 2 + (t[0] - W / 2) * s)
    up = int(h / 2 - TARGET_SIZE / 2 + (H / 2 - t[1]) * s)
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    pil = pil.resize((max(w, 1), max(h, 1)), resample=Image.BICUBIC)
    out = np.array(pil.crop((left, up, left + TARGET_SIZE, up + TARGET_SIZE)).convert("RGB"))
    trans = np.array([W, H, s, t[0], t[1]], dtype=np.float32)
    return AlignResult(image=out, crop_params=trans[2:].copy(), trans_params=trans)
