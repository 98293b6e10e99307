"""Overlap tiling with linear blending, and a position-keyed noise field.

Memory stays bounded by the tile, not the image: each tile is enhanced on its own and
blended into a float32 accumulator. Tiles start on a 16-pixel grid so they line up with
JPEG's 8x8 blocks and 16x16 MCUs, which the model sees at fixed phase in training.
The noise that starts diffusion sampling is drawn per 64x64 block from a generator
seeded by (seed, block position), so overlapping tiles see identical noise where they
overlap and the image's noise does not depend on the tiling.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

GRID = 16
NOISE_BLOCK = 64


@dataclass(frozen=True)
class Tile:
    y0: int
    y1: int
    x0: int
    x1: int


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    last = length - tile
    starts.append(last)
    return sorted(set(starts))


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles covering a (padded) image whose sides are multiples of GRID."""
    if tile % GRID or overlap % GRID or not 0 <= overlap < tile:
        raise ValueError(f"tile and overlap must be multiples of {GRID} with 0 <= overlap < tile")
    if height % GRID or width % GRID:
        raise ValueError(f"padded size {width}x{height} is not a multiple of {GRID}")
    return [
        Tile(y, min(y + tile, height), x, min(x + tile, width))
        for y in _starts(height, tile, overlap)
        for x in _starts(width, tile, overlap)
    ]


def _ramp(length: int, lead: int, trail: int) -> np.ndarray:
    """1 inside, rising linearly over `lead` pixels and falling over `trail` pixels."""
    weight = np.ones(length, dtype=np.float32)
    if lead:
        weight[:lead] = (np.arange(lead, dtype=np.float32) + 0.5) / lead
    if trail:
        weight[length - trail :] = np.minimum(weight[length - trail :], (np.arange(trail, 0, -1, dtype=np.float32) - 0.5) / trail)
    return weight


def blend_weights(tile: Tile, tiles: list[Tile]) -> np.ndarray:
    """Separable weights that fall to zero only where a neighbouring tile takes over."""
    ys = [t for t in tiles if t.x0 == tile.x0]
    xs = [t for t in tiles if t.y0 == tile.y0]
    lead_y = max((p.y1 - tile.y0 for p in ys if p.y0 < tile.y0 < p.y1), default=0)
    trail_y = max((tile.y1 - n.y0 for n in ys if tile.y0 < n.y0 < tile.y1), default=0)
    lead_x = max((p.x1 - tile.x0 for p in xs if p.x0 < tile.x0 < p.x1), default=0)
    trail_x = max((tile.x1 - n.x0 for n in xs if tile.x0 < n.x0 < tile.x1), default=0)
    wy = _ramp(tile.y1 - tile.y0, lead_y, trail_y)
    wx = _ramp(tile.x1 - tile.x0, lead_x, trail_x)
    return wy[:, None] * wx[None, :]


def pad_to_grid(image: np.ndarray) -> np.ndarray:
    """Edge-replicates bottom and right so both sides are multiples of GRID."""
    height, width = image.shape[:2]
    pad_y, pad_x = -height % GRID, -width % GRID
    if not pad_y and not pad_x:
        return image
    return np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")


def noise_field(seed: int, tile: Tile, channels: int = 3) -> torch.Tensor:
    """Standard normal noise for a tile, identical wherever two tiles overlap."""
    out = torch.empty(1, channels, tile.y1 - tile.y0, tile.x1 - tile.x0)
    for by in range(tile.y0 // NOISE_BLOCK, (tile.y1 - 1) // NOISE_BLOCK + 1):
        for bx in range(tile.x0 // NOISE_BLOCK, (tile.x1 - 1) // NOISE_BLOCK + 1):
            generator = torch.Generator().manual_seed(hash_seed(seed, by, bx))
            block = torch.randn(channels, NOISE_BLOCK, NOISE_BLOCK, generator=generator)
            y0, x0 = by * NOISE_BLOCK, bx * NOISE_BLOCK
            ty0, ty1 = max(y0, tile.y0), min(y0 + NOISE_BLOCK, tile.y1)
            tx0, tx1 = max(x0, tile.x0), min(x0 + NOISE_BLOCK, tile.x1)
            out[0, :, ty0 - tile.y0 : ty1 - tile.y0, tx0 - tile.x0 : tx1 - tile.x0] = block[:, ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
    return out


def hash_seed(seed: int, by: int, bx: int) -> int:
    # A fixed integer mix (not Python's salted hash) so seeds reproduce across processes.
    value = (seed * 0x9E3779B1 + by * 0x85EBCA77 + bx * 0xC2B2AE3D) & 0xFFFFFFFFFFFF
    return value ^ (value >> 17)


# Called as (tiles done, tiles in all) after each tile of an image of several tiles, so
# applications can show progress inside one large image (`reporting_tiles`).
_tile_progress: ContextVar[Callable[[int, int], None] | None] = ContextVar("tile_progress", default=None)


@contextmanager
def reporting_tiles(callback: Callable[[int, int], None] | None) -> Iterator[None]:
    """Within the block, `apply_tiled` calls `callback(done, total)` after each tile of a multi-tile image."""
    token = _tile_progress.set(callback)
    try:
        yield
    finally:
        _tile_progress.reset(token)


def apply_tiled(
    image: np.ndarray,
    process: Callable[[np.ndarray, Tile], np.ndarray],
    tile: int,
    overlap: int,
) -> np.ndarray:
    """Runs `process(pixels, tile) -> float32 HxWxC` over tiles of `image` and blends the results."""
    height, width = image.shape[:2]
    padded = pad_to_grid(image)
    tiles = plan_tiles(padded.shape[0], padded.shape[1], tile, overlap)
    accumulator = None
    total = np.zeros(padded.shape[:2], dtype=np.float32)
    report = _tile_progress.get() if len(tiles) > 1 else None
    for done, t in enumerate(tiles, start=1):
        result = process(padded[t.y0 : t.y1, t.x0 : t.x1], t)
        if accumulator is None:
            accumulator = np.zeros(padded.shape[:2] + result.shape[2:], dtype=np.float32)
        weight = blend_weights(t, tiles)
        accumulator[t.y0 : t.y1, t.x0 : t.x1] += result * weight[..., None]
        total[t.y0 : t.y1, t.x0 : t.x1] += weight
        if report is not None:
            report(done, len(tiles))
    accumulator /= total[..., None]
    return accumulator[:height, :width]
