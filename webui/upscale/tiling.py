"""Tiled inference with overlap, so memory stays bounded on big images.

The image is cut into tiles of ``tile`` x ``tile`` low-resolution pixels that overlap by ``overlap``;
each tile is upscaled on its own and only its interior (up to half the overlap from each cut) is kept,
so every output pixel comes from a tile where it has ``overlap / 2`` pixels of real context. For a
convolutional network whose receptive field fits in that margin the result equals the untiled one.
"""

from __future__ import annotations

DEFAULT_TILE = 192  # low-resolution tile side
DEFAULT_OVERLAP = 16  # low-resolution pixels shared by neighbouring tiles


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def tiled_apply(fn, x, scale: int, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP):
    """Apply ``fn`` (``[1, C, h, w] -> [1, C', h*scale, w*scale]``) to ``x`` ``[1, C, H, W]`` tile by tile.

    ``tile=0`` runs the whole image at once. Returns ``[1, C', H*scale, W*scale]`` on ``x``'s device.
    """
    import torch

    if tile < 0 or overlap < 0:
        raise ValueError(f"tile ({tile}) and overlap ({overlap}) must not be negative")
    _, _, H, W = x.shape
    if tile == 0 or (H <= tile and W <= tile):
        return fn(x)
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")
    out = None
    ys, xs = _starts(H, tile, overlap), _starts(W, tile, overlap)
    for iy, y0 in enumerate(ys):
        for ix, x0 in enumerate(xs):
            y1, x1 = min(y0 + tile, H), min(x0 + tile, W)
            result = fn(x[:, :, y0:y1, x0:x1])
            if out is None:
                out = torch.zeros(1, result.shape[1], H * scale, W * scale, dtype=result.dtype, device=result.device)
            # keep the interior: cut halfway into the overlap with each neighbour
            ky0 = y0 if iy == 0 else (y0 + ys[iy - 1] + tile) // 2
            ky1 = y1 if iy == len(ys) - 1 else (ys[iy + 1] + y1) // 2
            kx0 = x0 if ix == 0 else (x0 + xs[ix - 1] + tile) // 2
            kx1 = x1 if ix == len(xs) - 1 else (xs[ix + 1] + x1) // 2
            out[:, :, ky0 * scale : ky1 * scale, kx0 * scale : kx1 * scale] = result[
                :, :, (ky0 - y0) * scale : (ky1 - y0) * scale, (kx0 - x0) * scale : (kx1 - x0) * scale
            ]
    return out
