"""Audio2Pose (SadTalker PoseVAE): a conditional VAE whose decoder turns audio + pose style
+ noise into a head-pose residual per 32-frame window.

Checkpoint prefix ``audio2pose.``: ``audio_encoder.audio_encoder.*`` (frozen Wav2Lip encoder),
``netG.encoder.*`` / ``netG.decoder.*`` (CVAE; only the decoder runs at inference) and
``netD_motion.*`` (training discriminator, never run, kept so strict loading matches).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal import savgol_filter
from torch import nn

from .audio2exp import build_audio_encoder
from .config import NUM_POSE, PoseVAEConfig


class ResidualConv(nn.Module):
    """Pre-activation residual block: BN-ReLU-Conv(stride)-BN-ReLU-Conv + Conv(stride)-BN skip."""

    def __init__(self, cin: int, cout: int, stride):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 3, stride, 1),
            nn.BatchNorm2d(cout), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1))
        self.conv_skip = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.conv_block(x) + self.conv_skip(x)


class Upsample(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(cin, cout, kernel_size=(2, 1), stride=(2, 1))

    def forward(self, x):
        return self.upsample(x)


class ResUnet(nn.Module):
    """2-D ResUNet over a (B, 1, 32, 6) pose map; halves/doubles only the time axis. Output in (0, 1)."""

    def __init__(self, filters=(32, 64, 128, 256)):
        super().__init__()
        f0, f1, f2, f3 = filters
        self.input_layer = nn.Sequential(nn.Conv2d(1, f0, 3, padding=1), nn.BatchNorm2d(f0), nn.ReLU(),
                                         nn.Conv2d(f0, f0, 3, padding=1))
        self.input_skip = nn.Sequential(nn.Conv2d(1, f0, 3, padding=1))
        self.residual_conv_1 = ResidualConv(f0, f1, (2, 1))
        self.residual_conv_2 = ResidualConv(f1, f2, (2, 1))
        self.bridge = ResidualConv(f2, f3, (2, 1))
        self.upsample_1 = Upsample(f3, f3)
        self.up_residual_conv1 = ResidualConv(f3 + f2, f2, 1)
        self.upsample_2 = Upsample(f2, f2)
        self.up_residual_conv2 = ResidualConv(f2 + f1, f1, 1)
        self.upsample_3 = Upsample(f1, f1)
        self.up_residual_conv3 = ResidualConv(f1 + f0, f0, 1)
        self.output_layer = nn.Sequential(nn.Conv2d(f0, 1, 1, 1), nn.Sigmoid())

    def forward(self, x):
        x1 = self.input_layer(x) + self.input_skip(x)
        x2 = self.residual_conv_1(x1)
        x3 = self.residual_conv_2(x2)
        x4 = self.upsample_1(self.bridge(x3))
        x6 = self.upsample_2(self.up_residual_conv1(torch.cat([x4, x3], 1)))
        x8 = self.upsample_3(self.up_residual_conv2(torch.cat([x6, x2], 1)))
        return self.output_layer(self.up_residual_conv3(torch.cat([x8, x1], 1)))


class PoseEncoder(nn.Module):
    """CVAE encoder (training only; present for strict key parity)."""

    def __init__(self, cfg: PoseVAEConfig):
        super().__init__()
        self.resunet = ResUnet(cfg.filters)
        in_size = cfg.seq_len * NUM_POSE + cfg.latent + cfg.seq_len * cfg.audio_out + NUM_POSE  # 454
        self.MLP = nn.Sequential()
        self.MLP.add_module("L0", nn.Linear(in_size, cfg.hidden))
        self.MLP.add_module("A0", nn.ReLU())
        self.linear_means = nn.Linear(cfg.hidden, cfg.latent)
        self.linear_logvar = nn.Linear(cfg.hidden, cfg.latent)
        self.linear_audio = nn.Linear(cfg.audio.channels[-1], cfg.audio_out)
        self.classbias = nn.Parameter(torch.zeros(cfg.num_classes, cfg.latent))


class PoseDecoder(nn.Module):
    """CVAE decoder.

    forward(z (B, 64), style (B,) long, ref_pose (B, 6), audio_emb (B, 32, 512)) -> pose residual (B, 32, 6).
    Path: [ref, z + classbias[style], Linear(512, 6)(audio) flattened] (262) -> MLP 262-128-192 sigmoid
    -> (B, 1, 32, 6) -> ResUNet -> Linear(6, 6).
    """

    def __init__(self, cfg: PoseVAEConfig):
        super().__init__()
        self.seq_len = cfg.seq_len
        self.resunet = ResUnet(cfg.filters)
        in_size = cfg.latent + cfg.seq_len * cfg.audio_out + NUM_POSE  # 262
        self.MLP = nn.Sequential()
        self.MLP.add_module("L0", nn.Linear(in_size, cfg.hidden))
        self.MLP.add_module("A0", nn.ReLU())
        self.MLP.add_module("L1", nn.Linear(cfg.hidden, cfg.seq_len * NUM_POSE))
        self.MLP.add_module("sigmoid", nn.Sigmoid())
        self.pose_linear = nn.Linear(NUM_POSE, NUM_POSE)
        self.linear_audio = nn.Linear(cfg.audio.channels[-1], cfg.audio_out)
        self.classbias = nn.Parameter(torch.zeros(cfg.num_classes, cfg.latent))

    def forward(self, z, style, ref_pose, audio_emb):
        B = z.shape[0]
        audio = self.linear_audio(audio_emb).reshape(B, -1)
        x = self.MLP(torch.cat([ref_pose, z + self.classbias[style], audio], -1))
        x = self.resunet(x.reshape(B, 1, self.seq_len, NUM_POSE))
        return self.pose_linear(x.squeeze(1))


class CVAE(nn.Module):
    def __init__(self, cfg: PoseVAEConfig):
        super().__init__()
        self.encoder = PoseEncoder(cfg)
        self.decoder = PoseDecoder(cfg)


class ConvNormRelu1d(nn.Module):
    def __init__(self, cin, cout, kernel, stride, padding):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride, padding, bias=False)
        self.norm = nn.BatchNorm1d(cout)

    def forward(self, x):
        return nn.functional.leaky_relu(self.norm(self.conv(x)), 0.2)


class PoseSequenceDiscriminator(nn.Module):
    """Training-time discriminator; never run at inference (kept for strict key parity)."""

    def __init__(self, cfg: PoseVAEConfig):
        super().__init__()
        d0, d1, d2 = cfg.disc_channels
        self.seq = nn.Sequential(
            ConvNormRelu1d(NUM_POSE, d0, 4, 2, 1), ConvNormRelu1d(d0, d1, 4, 2, 1),
            ConvNormRelu1d(d1, d2, 3, 1, 1), nn.Conv1d(d2, 1, 3, 1, 1))


class AudioEncoder(nn.Module):
    def __init__(self, cfg: PoseVAEConfig):
        super().__init__()
        self.audio_encoder = build_audio_encoder(cfg.audio)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(N, 1, 80, 16) -> (N, 512)."""
        return self.audio_encoder(mels).flatten(1)


class PoseVAE(nn.Module):
    """SadTalker ``Audio2Pose``.

    :meth:`predict` (mels (T, 80, 16), ref_pose (6,), style int, generator) -> pose (T, 6):
    frame 0 is the reference; frames 1..T-1 are predicted window by window (32 frames each,
    the tail window re-uses the last 32 audio frames) and added to the reference pose.
    """

    def __init__(self, cfg: PoseVAEConfig | None = None):
        super().__init__()
        cfg = cfg or PoseVAEConfig()
        self.cfg = cfg
        self.audio_encoder = AudioEncoder(cfg)
        self.netG = CVAE(cfg)
        self.netD_motion = PoseSequenceDiscriminator(cfg)

    def predict(self, mels: torch.Tensor, ref_pose: torch.Tensor, style: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if not 0 <= int(style) < self.cfg.num_classes:
            raise ValueError(f"pose_style must be in [0, {self.cfg.num_classes}), got {style}")
        T = mels.shape[0]
        L = self.cfg.seq_len
        device = ref_pose.device
        ref = ref_pose.reshape(1, NUM_POSE)
        style_t = torch.tensor([int(style)], device=device)
        mels = mels.reshape(T, 1, mels.shape[-2], mels.shape[-1])[1:]
        n = T - 1
        parts = [torch.zeros(1, NUM_POSE, device=device, dtype=ref.dtype)]

        def window(m):
            z = torch.randn(1, self.cfg.latent, generator=generator, device="cpu").to(device, ref.dtype)
            emb = self.audio_encoder(m)
            if emb.shape[0] < L:  # clip shorter than one window: pad with the first frame
                emb = torch.cat([emb[:1].expand(L - emb.shape[0], -1), emb], 0)
            return self.netG.decoder(z, style_t, ref, emb.unsqueeze(0))[0]

        for i in range(n // L):
            parts.append(window(mels[i * L:(i + 1) * L]))
        rest = n % L
        if rest:
            parts.append(window(mels[-L:])[-rest:])
        return ref + torch.cat(parts, 0)


def smooth_pose(pose: np.ndarray, window: int = 13, order: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing over time of (T, 6); shorter clips use the largest odd window <= T."""
    T = pose.shape[0]
    if T < window:
        window = (T - 1) // 2 * 2 + 1
    if window <= order:
        return pose.copy()
    return savgol_filter(pose, window, order, axis=0)
