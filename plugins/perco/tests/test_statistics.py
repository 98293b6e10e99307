"""The channel statistics: one byte a channel, and a projection that lands on them."""

from __future__ import annotations

import numpy as np
import torch

from enhance_perco import statistics


def test_the_projection_sets_each_channels_mean_and_spread_to_the_sent_ones():
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(1, 4, 12, 16, generator=generator) * torch.tensor([0.5, 1.0, 1.5, 0.8]).view(1, 4, 1, 1)
    source = source + torch.tensor([-0.6, 0.0, 0.4, 0.9]).view(1, 4, 1, 1)
    codes = statistics.measure(source)
    assert codes.dtype == np.uint8 and codes.shape == (4,)
    projected = statistics.projection(codes, "cpu")(torch.randn(1, 4, 12, 16, generator=generator))
    mean, std = projected.mean(dim=(2, 3))[0], projected.std(dim=(2, 3), correction=0)[0]
    # Within half a quantisation step: 0.08 in mean, 6% in standard deviation.
    assert torch.allclose(mean, source.mean(dim=(2, 3))[0], atol=0.09)
    assert torch.allclose(std.log2(), source.std(dim=(2, 3), correction=0)[0].log2(), atol=0.09)


def test_values_beyond_the_ranges_are_clamped_not_wrapped():
    extreme = torch.cat([torch.full((1, 1, 4, 4), 9.0), torch.full((1, 1, 4, 4), -9.0)], dim=1)
    extreme[0, :, 0, 0] += 0.001  # a tiny spread: below the lowest standard deviation
    codes = statistics.measure(extreme)
    assert list(codes >> 4) == [15, 0] and list(codes & 0x0F) == [0, 0]
