"""Audio2Exp (SadTalker ExpNet): mel windows + reference exp + blink ratio -> exp coeffs.

Checkpoint prefix ``audio2exp.``: ``audio_encoder.{0..12}.conv_block.{0,1}`` and ``mapping1``.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import NUM_EXP, AudioEncoderConfig, ExpNetConfig


class ConvBNReLU(nn.Module):
    """Wav2Lip conv block: Conv2d -> BatchNorm2d (-> + input if residual) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return torch.relu(out)


def build_audio_encoder(cfg: AudioEncoderConfig) -> nn.Sequential:
    """13 blocks, (B, 1, 80, 16) -> (B, C[-1], 1, 1). Spatial path 80x16 -> 27x16 -> 9x6 -> 3x3 -> 1x1."""
    c1, c2, c3, c4, c5 = cfg.channels
    return nn.Sequential(
        ConvBNReLU(1, c1, 3, 1, 1),
        ConvBNReLU(c1, c1, 3, 1, 1, residual=True),
        ConvBNReLU(c1, c1, 3, 1, 1, residual=True),
        ConvBNReLU(c1, c2, 3, (3, 1), 1),
        ConvBNReLU(c2, c2, 3, 1, 1, residual=True),
        ConvBNReLU(c2, c2, 3, 1, 1, residual=True),
        ConvBNReLU(c2, c3, 3, 3, 1),
        ConvBNReLU(c3, c3, 3, 1, 1, residual=True),
        ConvBNReLU(c3, c3, 3, 1, 1, residual=True),
        ConvBNReLU(c3, c4, 3, (3, 2), 1),
        ConvBNReLU(c4, c4, 3, 1, 1, residual=True),
        ConvBNReLU(c4, c5, 3, 1, 0),
        ConvBNReLU(c5, c5, 1, 1, 0),
    )


class ExpNet(nn.Module):
    """SadTalker ``SimpleWrapperV2``.

    forward(mel (N, 1, 80, 16), ref_exp (N, 64), blink (N, 1)) -> exp (N, 64).
    The head is ``Linear(512 + 64 + 1, 64)``; there is no residual to the reference.
    """

    CHUNK = 10  # SadTalker runs ExpNet 10 frames at a time

    def __init__(self, cfg: ExpNetConfig | None = None):
        super().__init__()
        cfg = cfg or ExpNetConfig()
        self.audio_encoder = build_audio_encoder(cfg.audio)
        self.mapping1 = nn.Linear(cfg.audio.channels[-1] + NUM_EXP + 1, NUM_EXP)

    def forward(self, mel: torch.Tensor, ref_exp: torch.Tensor, blink: torch.Tensor) -> torch.Tensor:
        feat = self.audio_encoder(mel).flatten(1)
        return self.mapping1(torch.cat([feat, ref_exp.reshape(len(feat), -1), blink.reshape(len(feat), -1)], 1))

    def predict(self, mels: torch.Tensor, ref_exp: torch.Tensor, blink: torch.Tensor) -> torch.Tensor:
        """mels (T, 80, 16) or (T, 1, 80, 16); ref_exp (64,) or (T, 64); blink (T,) or (T, 1) -> (T, 64)."""
        T = mels.shape[0]
        mels = mels.reshape(T, 1, mels.shape[-2], mels.shape[-1])
        ref_exp = ref_exp.reshape(-1, NUM_EXP).expand(T, NUM_EXP)
        blink = blink.reshape(T, 1)
        outs = [self(mels[i:i + self.CHUNK], ref_exp[i:i + self.CHUNK], blink[i:i + self.CHUNK])
                for i in range(0, T, self.CHUNK)]
        return torch.cat(outs, 0) if outs else mels.new_zeros(0, NUM_EXP)
