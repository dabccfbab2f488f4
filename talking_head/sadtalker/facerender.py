"""Face renderer (face-vid2vid derivative): KPDetector, OcclusionAwareSPADEGenerator with its
DenseMotionNetwork, and the keypoint transform.

Checkpoint prefixes ``kp_extractor.`` and ``generator.``. All norms are BatchNorm (eval mode);
the SPADE decoder's convs are spectral-normalised (``weight_orig`` / ``weight_u`` / ``weight_v``).
Coordinates are in [-1, 1], ordered (x, y, z) as ``grid_sample`` expects.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import GeneratorConfig, KPDetectorConfig
from .mapping import bins_to_degrees

MASK_FLOOR = 1e-3  # dense-motion mask weights below this are dropped (official DenseMotionNetwork)


# ----------------------------------------------------------------------------- helpers

def coordinate_grid(d: int, h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(d, h, w, 3) grid of (x, y, z) in [-1, 1] (corner-aligned)."""
    def lin(n):
        return torch.linspace(-1, 1, n, device=device, dtype=dtype) if n > 1 else torch.zeros(1, device=device, dtype=dtype)
    z, y, x = torch.meshgrid(lin(d), lin(h), lin(w), indexing="ij")
    return torch.stack([x, y, z], -1)


def kp_to_gaussian(kp: torch.Tensor, shape, variance: float = 0.01) -> torch.Tensor:
    """kp (B, K, 3) -> (B, K, d, h, w) Gaussian heatmaps."""
    grid = coordinate_grid(*shape, device=kp.device, dtype=kp.dtype)
    diff = grid[None, None] - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / variance)


class AntiAliasDown(nn.Module):
    """Gaussian low-pass (sigma = (1/scale - 1)/2) then stride 1/scale; weight is a stored buffer."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad = size // 2
        self.step = int(1 / scale)
        ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-ax ** 2 / (2 * sigma ** 2))
        k = g[:, None] * g[None, :]
        self.register_buffer("weight", (k / k.sum()).expand(channels, 1, size, size).clone())
        self.groups = channels

    def forward(self, x):
        x = F.pad(x, (self.pad,) * 4)
        return F.conv2d(x, self.weight.to(x.dtype), groups=self.groups)[:, :, ::self.step, ::self.step]


class DownBlock2d(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class SameBlock2d(nn.Module):
    def __init__(self, cin, cout, lrelu=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)
        self.lrelu = lrelu

    def forward(self, x):
        x = self.norm(self.conv(x))
        return F.leaky_relu(x, 0.01) if self.lrelu else F.relu(x)


class DownBlock3d(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x):
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), (1, 2, 2))


class UpBlock3d(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class ResBlock3d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv3d(c, c, 3, padding=1)
        self.conv2 = nn.Conv3d(c, c, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(c)
        self.norm2 = nn.BatchNorm3d(c)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(out))) + x


# ----------------------------------------------------------------------------- KPDetector

class KPHourglass(nn.Module):
    """2-D encoder -> 1x1 conv -> reshape to a volume -> 3-D decoder (no skips)."""

    def __init__(self, cfg: KPDetectorConfig, in_features: int = 3):
        super().__init__()
        be, mx, nb = cfg.block_expansion, cfg.max_features, cfg.num_blocks
        self.down_blocks = nn.Sequential()
        for i in range(nb):
            cin = in_features if i == 0 else min(mx, be * 2 ** i)
            self.down_blocks.add_module(f"down{i}", DownBlock2d(cin, min(mx, be * 2 ** (i + 1))))
        self.conv = nn.Conv2d(min(mx, be * 2 ** nb), cfg.reshape_channel, 1)
        self.up_blocks = nn.Sequential()
        for i in range(nb):
            self.up_blocks.add_module(f"up{i}", UpBlock3d(min(mx, be * 2 ** (nb - i)), min(mx, be * 2 ** (nb - i - 1))))
        self.depth = cfg.reshape_depth
        self.out_filters = min(mx, be)

    def forward(self, x):
        out = self.conv(self.down_blocks(x))
        B, C, H, W = out.shape
        return self.up_blocks(out.view(B, C // self.depth, self.depth, H, W))


class KPDetector(nn.Module):
    """forward(image (B, 3, S, S) in [0, 1]) -> canonical keypoints (B, 15, 3) in [-1, 1].

    The image is low-passed and downscaled x0.25, the hourglass predicts 15 heatmaps over a
    (16, S/4, S/4) volume; softmax(logits / 0.1) expectation of the coordinate grid.
    """

    def __init__(self, cfg: KPDetectorConfig | None = None):
        super().__init__()
        cfg = cfg or KPDetectorConfig()
        self.predictor = KPHourglass(cfg)
        self.kp = nn.Conv3d(self.predictor.out_filters, cfg.num_kp, 3, padding=1)
        self.temperature = cfg.temperature
        self.down = AntiAliasDown(3, cfg.scale_factor)

    def forward(self, x):
        pred = self.kp(self.predictor(self.down(x)))
        B, K, D, H, W = pred.shape
        heat = F.softmax(pred.float().view(B, K, -1) / self.temperature, -1).view(B, K, D, H, W)
        grid = coordinate_grid(D, H, W, device=x.device)
        return (heat.unsqueeze(-1) * grid).sum((2, 3, 4))


# ----------------------------------------------------------------------------- dense motion

class HourglassEncoder(nn.Module):
    def __init__(self, be, cin, nb, mx):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock3d(cin if i == 0 else min(mx, be * 2 ** i), min(mx, be * 2 ** (i + 1))) for i in range(nb))

    def forward(self, x):
        outs = [x]
        for blk in self.down_blocks:
            outs.append(blk(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    def __init__(self, be, cin, nb, mx):
        super().__init__()
        ups = []
        for i in reversed(range(nb)):
            c_in = (1 if i == nb - 1 else 2) * min(mx, be * 2 ** (i + 1))
            ups.append(UpBlock3d(c_in, min(mx, be * 2 ** i)))
        self.up_blocks = nn.ModuleList(ups)
        self.out_filters = be + cin
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, feats):
        feats = list(feats)
        out = feats.pop()
        for blk in self.up_blocks:
            out = torch.cat([blk(out), feats.pop()], 1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    def __init__(self, be, cin, nb, mx):
        super().__init__()
        self.encoder = HourglassEncoder(be, cin, nb, mx)
        self.decoder = HourglassDecoder(be, cin, nb, mx)
        self.out_filters = self.decoder.out_filters

    def forward(self, x):
        return self.decoder(self.encoder(x))


class DenseMotionNetwork(nn.Module):
    """Source volume + keypoints -> deformation (B, d, h, w, 3), 16-way mask, occlusion (B, 1, h, w).

    The volume is compressed to 4 channels and warped 16 times (identity background + one
    motion per keypoint: grid - kp_driving + kp_source); the hourglass sees the warped volumes
    and the driving-minus-source Gaussian heatmaps ((15 + 1) x (4 + 1) = 80 channels).
    The returned ``mask`` is the softmax; the deformation mixes the motions with it after
    weights below ``MASK_FLOOR`` are zeroed.
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        k, c = cfg.num_kp, cfg.dm_compress
        self.num_kp = k
        self.hourglass = Hourglass(cfg.dm_block_expansion, (k + 1) * (c + 1), cfg.dm_num_blocks, cfg.dm_max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, k + 1, 7, padding=3)
        self.compress = nn.Conv3d(cfg.reshape_channel, c, 1)
        self.norm = nn.BatchNorm3d(c)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters * cfg.reshape_depth, 1, 7, padding=3)

    def compress_source(self, feature):
        """(B, 32, d, h, w) -> (B, 4, d, h, w); depends on the source only (cacheable)."""
        return F.relu(self.norm(self.compress(feature)))

    def forward(self, compressed, kp_driving, kp_source):
        B, C, d, h, w = compressed.shape
        K = self.num_kp
        grid = coordinate_grid(d, h, w, device=compressed.device, dtype=compressed.dtype)
        motions = grid[None, None] - kp_driving[:, :, None, None, None, :] + kp_source[:, :, None, None, None, :]
        sparse = torch.cat([grid[None, None].expand(B, 1, d, h, w, 3), motions], 1)  # (B, K+1, d, h, w, 3)
        feat = compressed.unsqueeze(1).expand(B, K + 1, C, d, h, w).reshape(B * (K + 1), C, d, h, w)
        deformed = F.grid_sample(feat, sparse.reshape(B * (K + 1), d, h, w, 3), align_corners=False)
        deformed = deformed.view(B, K + 1, C, d, h, w)
        heat = kp_to_gaussian(kp_driving, (d, h, w)) - kp_to_gaussian(kp_source, (d, h, w))
        heat = torch.cat([heat.new_zeros(B, 1, d, h, w), heat], 1).unsqueeze(2)
        pred = self.hourglass(torch.cat([heat, deformed], 2).view(B, -1, d, h, w))
        mask = F.softmax(self.mask(pred), 1)
        # SadTalker drops every mask weight below MASK_FLOOR (no renormalisation) before mixing.
        kept = torch.where(mask < MASK_FLOOR, torch.zeros_like(mask), mask)
        deformation = (sparse.permute(0, 1, 5, 2, 3, 4) * kept.unsqueeze(2)).sum(1).permute(0, 2, 3, 4, 1)
        occlusion = torch.sigmoid(self.occlusion(pred.reshape(B, -1, h, w)))
        return {"mask": mask, "deformation": deformation, "occlusion_map": occlusion}


# ----------------------------------------------------------------------------- SPADE decoder

class SNConv2d(nn.Module):
    """Conv2d with spectral norm as stored by ``torch.nn.utils.spectral_norm`` (eval semantics):
    weight = weight_orig / (u . (W v)), no power iteration at inference."""

    def __init__(self, cin, cout, kernel, padding=0, bias=True):
        super().__init__()
        self.padding = padding
        self.weight_orig = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_uniform_(self.weight_orig, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.register_buffer("weight_u", F.normalize(torch.randn(cout), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(cin * kernel * kernel), dim=0))

    def weight(self) -> torch.Tensor:
        w = self.weight_orig
        sigma = torch.dot(self.weight_u, w.reshape(w.shape[0], -1) @ self.weight_v)
        return w / sigma

    def forward(self, x):
        w = self.weight().to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return F.conv2d(x, w, b, padding=self.padding)


class SPADE(nn.Module):
    def __init__(self, norm_nc, label_nc, hidden):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, 3, padding=1)

    def forward(self, x, seg):
        normalized = F.instance_norm(x)
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin, fout, label_nc, hidden):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        self.conv_0 = SNConv2d(fin, fmid, 3, padding=1)
        self.conv_1 = SNConv2d(fmid, fout, 3, padding=1)
        if self.learned_shortcut:
            self.conv_s = SNConv2d(fin, fout, 1, bias=False)
        self.norm_0 = SPADE(fin, label_nc, hidden)
        self.norm_1 = SPADE(fmid, label_nc, hidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, hidden)

    def forward(self, x, seg):
        xs = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return xs + dx


class SPADEDecoder(nn.Module):
    """(B, 256, h, w) -> RGB (B, 3, 4h, 4w) in [0, 1]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        ic = cfg.block_expansion * 2 ** cfg.num_down_blocks
        oc, hid = cfg.decoder_out, cfg.spade_hidden
        self.num_middle = cfg.num_middle
        self.fc = nn.Conv2d(ic, 2 * ic, 3, padding=1)
        for i in range(cfg.num_middle):
            setattr(self, f"G_middle_{i}", SPADEResnetBlock(2 * ic, 2 * ic, ic, hid))
        self.up_0 = SPADEResnetBlock(2 * ic, ic, ic, hid)
        self.up_1 = SPADEResnetBlock(ic, oc, ic, hid)
        self.conv_img = nn.Conv2d(oc, 3, 3, padding=1)

    def forward(self, seg):
        x = self.fc(seg)
        for i in range(self.num_middle):
            x = getattr(self, f"G_middle_{i}")(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2, mode="nearest"), seg)
        x = self.up_1(F.interpolate(x, scale_factor=2, mode="nearest"), seg)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))


# ----------------------------------------------------------------------------- generator

class OcclusionAwareSPADEGenerator(nn.Module):
    """forward(source (B, 3, S, S) in [0, 1], kp_driving (B, 15, 3), kp_source (B, 15, 3)) -> (B, 3, S, S).

    :meth:`encode_source` (source only; cache it) -> (volume (B, 32, 16, S/4, S/4), compressed (B, 4, ...));
    :meth:`render` (cached source, keypoints) -> image. ``forward`` = both.
    """

    def __init__(self, cfg: GeneratorConfig | None = None):
        super().__init__()
        cfg = cfg or GeneratorConfig()
        self.cfg = cfg
        be, mx = cfg.block_expansion, cfg.max_features
        self.dense_motion_network = DenseMotionNetwork(cfg)
        self.first = SameBlock2d(3, be)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(min(mx, be * 2 ** i), min(mx, be * 2 ** (i + 1))) for i in range(cfg.num_down_blocks))
        self.second = nn.Conv2d(min(mx, be * 2 ** cfg.num_down_blocks), mx, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(cfg.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(cfg.reshape_channel))
        out = be * 2 ** cfg.num_down_blocks
        self.third = SameBlock2d(mx, out, lrelu=True)
        self.fourth = nn.Conv2d(out, out, 1)
        self.decoder = SPADEDecoder(cfg)

    def encode_source(self, source):
        out = self.first(source)
        for blk in self.down_blocks:
            out = blk(out)
        out = self.second(out)
        B, C, H, W = out.shape
        volume = self.resblocks_3d(out.view(B, self.cfg.reshape_channel, self.cfg.reshape_depth, H, W))
        return volume, self.dense_motion_network.compress_source(volume)

    def render(self, volume, compressed, kp_driving, kp_source):
        B = kp_driving.shape[0]
        if volume.shape[0] != B:
            volume = volume.expand(B, *volume.shape[1:])
            compressed = compressed.expand(B, *compressed.shape[1:])
            kp_source = kp_source.expand(B, *kp_source.shape[1:])
        motion = self.dense_motion_network(compressed, kp_driving, kp_source)
        out = F.grid_sample(volume, motion["deformation"].to(volume.dtype), align_corners=False)
        B, C, D, H, W = out.shape
        out = self.fourth(self.third(out.reshape(B, C * D, H, W)))
        out = out * motion["occlusion_map"]
        return self.decoder(out)

    def forward(self, source, kp_driving, kp_source):
        volume, compressed = self.encode_source(source)
        return self.render(volume, compressed, kp_driving, kp_source)


# ----------------------------------------------------------------------------- keypoint transform

def rotation_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Degrees (B,) -> (B, 3, 3) = Rx(pitch) @ Ry(yaw) @ Rz(roll), as SadTalker's
    ``get_rotation_matrix`` (``einsum('bij,bjk,bkm->bim', pitch, yaw, roll)``).

    Rx = [[1, 0, 0], [0, c, -s], [0, s, c]], Ry = [[c, 0, s], [0, 1, 0], [-s, 0, c]],
    Rz = [[c, -s, 0], [s, c, 0], [0, 0, 1]]. Degrees are converted with pi ~= 3.14, as the
    official code does, so official weights see the rotations they were trained with.
    """
    y, p, r = (a.float() / 180 * 3.14 for a in (yaw, pitch, roll))
    o, z = torch.ones_like(p), torch.zeros_like(p)
    rx = torch.stack([o, z, z, z, p.cos(), -p.sin(), z, p.sin(), p.cos()], -1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), z, y.sin(), z, o, z, -y.sin(), z, y.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([r.cos(), -r.sin(), z, r.sin(), r.cos(), z, z, z, o], -1).view(-1, 3, 3)
    return rx @ ry @ rz


def transform_keypoints(kp_canonical: torch.Tensor, he: dict[str, torch.Tensor],
                        yaw: torch.Tensor | None = None, pitch: torch.Tensor | None = None,
                        roll: torch.Tensor | None = None) -> torch.Tensor:
    """kp (B|1, 15, 3) + MappingNet output -> driving keypoints (B, 15, 3) = R kp + t + exp.

    ``yaw``/``pitch``/``roll`` (B,) degrees override the predicted angles (``--input_yaw``...).
    Only t[:, 1] is used (x and z are zeroed as in SadTalker).
    """
    deg = {k: bins_to_degrees(he[k]) for k in ("yaw", "pitch", "roll")}
    if yaw is not None:
        deg["yaw"] = yaw.float()
    if pitch is not None:
        deg["pitch"] = pitch.float()
    if roll is not None:
        deg["roll"] = roll.float()
    R = rotation_matrix(deg["yaw"], deg["pitch"], deg["roll"])
    B = R.shape[0]
    kp = kp_canonical.float().expand(B, -1, -1)
    t = he["t"].float() * torch.tensor([0.0, 1.0, 0.0], device=R.device)
    return kp @ R.transpose(1, 2) + t[:, None, :] + he["exp"].float().view(B, -1, 3)
