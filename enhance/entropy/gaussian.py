"""The Gaussian conditional: likelihood of integer symbols given a predicted scale, and its scale table."""

from __future__ import annotations

import math

import torch

SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 64.0, 64
# CompressAI's table: 64 scales spaced evenly in log from 0.11 to 64.
SCALE_TABLE = torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS)).double()
LIKELIHOOD_FLOOR = 1e-9


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """max(x, bound) whose gradient still flows where x is below the bound.

    A plain clamp cuts the gradient exactly where the model is worst (a value far in the tails
    of its density), so neither the density nor the value could ever move back; CompressAI's
    LowerBound exists for the same reason."""
    return x + (x.clamp(min=bound) - x).detach()


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2))


def gaussian_likelihood(centred: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(symbol) of `centred` = value - mean under N(0, scale) integrated over the unit bin."""
    scales = scales.clamp(min=SCALE_MIN)
    magnitude = centred.abs()
    # Evaluated on the lower tail for numerical accuracy, as CompressAI does.
    upper = _normal_cdf((0.5 - magnitude) / scales)
    lower = _normal_cdf((-0.5 - magnitude) / scales)
    return lower_bound(upper - lower, LIKELIHOOD_FLOOR)


def scale_indices(scales: torch.Tensor) -> torch.Tensor:
    """The index of the smallest table scale at least `scales` (int64), as CompressAI's build_indexes."""
    table = SCALE_TABLE.to(scales.device).float()
    clamped = scales.float().clamp(SCALE_MIN, SCALE_MAX)
    return torch.searchsorted(table, clamped.contiguous()).clamp(max=SCALE_LEVELS - 1)
