"""MappingNet: a 27-frame window of coefficients -> head pose + keypoint deltas.

Stored in ``mapping_00229-model.pth.tar`` (70-dim input) / ``mapping_00109-model.pth.tar``
(73-dim: + crop params) under the dict key ``mapping``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import MappingConfig


class MappingNet(nn.Module):
    """forward(coeffs (B, C, 27)) -> dict yaw/pitch/roll (B, 66) logits, t (B, 3), exp (B, 45).

    Conv1d(C, 1024, k7) then ``layers`` x [LeakyReLU(0.1) -> Conv1d(k3, dilation 3)] with the
    input cropped by 3 on each side as residual (27 -> 21 -> 15 -> 9 -> 3), global average pool.
    """

    def __init__(self, coeff_nc: int = 70, cfg: MappingConfig | None = None):
        super().__init__()
        cfg = cfg or MappingConfig()
        self.coeff_nc = coeff_nc
        self.layers = cfg.layers
        d = cfg.descriptor
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, d, kernel_size=7, bias=True))
        for i in range(cfg.layers):
            setattr(self, f"encoder{i}", nn.Sequential(nn.LeakyReLU(0.1), nn.Conv1d(d, d, 3, dilation=3)))
        self.fc_roll = nn.Linear(d, cfg.num_bins)
        self.fc_pitch = nn.Linear(d, cfg.num_bins)
        self.fc_yaw = nn.Linear(d, cfg.num_bins)
        self.fc_t = nn.Linear(d, 3)
        self.fc_exp = nn.Linear(d, 3 * cfg.num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.first(x)
        for i in range(self.layers):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, 3:-3]
        out = out.mean(-1)
        return {"yaw": self.fc_yaw(out), "pitch": self.fc_pitch(out), "roll": self.fc_roll(out),
                "t": self.fc_t(out), "exp": self.fc_exp(out)}


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """(B, 66) logits -> (B,) degrees = 3 * E[bin] - 99."""
    idx = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32)
    return (F.softmax(logits.float(), -1) * idx).sum(-1) * 3 - 99
