"""Runs a purely local network over an NCHW tensor in tiles, giving exactly the untiled result.

Each tile is cut with a margin at least as wide as the network's receptive field and cropped
back after, so memory is bounded by the tile while the output has no seams. Tiles start on
multiples of `align` input pixels so strided layers keep their phase.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _spans(length: int, tile: int, align: int) -> list[tuple[int, int]]:
    step = max(align, tile // align * align)
    return [(start, min(start + step, length)) for start in range(0, length, step)]


def run_tiled(network: nn.Module, inputs: torch.Tensor, *, tile: int, margin: int, scale: float, align: int) -> torch.Tensor:
    """`network(inputs)` computed tile by tile; `scale` is output size / input size."""
    height, width = inputs.shape[-2:]
    if height <= tile and width <= tile:
        return network(inputs)
    output = None
    for y0, y1 in _spans(height, tile, align):
        for x0, x1 in _spans(width, tile, align):
            top, left = max(0, y0 - margin), max(0, x0 - margin)
            piece = network(inputs[..., top : min(height, y1 + margin), left : min(width, x1 + margin)])
            if output is None:
                shape = (*piece.shape[:2], math.ceil(height * scale), math.ceil(width * scale))
                output = piece.new_empty(shape)
            oy, ox = round((y0 - top) * scale), round((x0 - left) * scale)
            oh, ow = round((y1 - y0) * scale), round((x1 - x0) * scale)
            output[..., round(y0 * scale) : round(y0 * scale) + oh, round(x0 * scale) : round(x0 * scale) + ow] = piece[
                ..., oy : oy + oh, ox : ox + ow
            ]
    return output
