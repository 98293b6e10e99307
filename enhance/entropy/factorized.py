"""Ballé et al. (2018)'s non-parametric factorized density, one per channel, for hyper-latents."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .gaussian import LIKELIHOOD_FLOOR, lower_bound


class FactorizedDensity(nn.Module):
    """A learned monotone CDF per channel (the appendix-6.1 network of "Variational image
    compression with a scale hyperprior"); `tables` freezes it into coding tables."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0, max_symbol: int = 31):
        super().__init__()
        self.channels, self.max_symbol = channels, max_symbol
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for index in range(len(widths) - 1):
            init = math.log(math.expm1(1 / scale / widths[index + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[index + 1], widths[index]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, widths[index + 1], 1) - 0.5))
            if index < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[index + 1], 1)))
        # Frozen coding tables (C x 2*max_symbol+1), filled by `freeze_tables` before saving.
        self.register_buffer("tables", torch.zeros(channels, 2 * max_symbol + 1))

    def _logits(self, values: torch.Tensor) -> torch.Tensor:
        # values: C x 1 x N
        x = values
        for index, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix), x) + self.biases[index]
            if index < len(self.factors):
                x = x + torch.tanh(self.factors[index]) * torch.tanh(x)
        return x

    def likelihood(self, values: torch.Tensor) -> torch.Tensor:
        """P of each value's unit bin; `values` is N x C x H x W (rounded or noisy)."""
        flat = values.float().permute(1, 0, 2, 3).reshape(self.channels, 1, -1)
        upper, lower = self._logits(flat + 0.5), self._logits(flat - 0.5)
        # sigmoid(u) - sigmoid(l), computed on whichever side keeps it accurate
        sign = -torch.sign(upper + lower).detach()
        probability = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        probability = probability.reshape(self.channels, values.shape[0], *values.shape[2:]).permute(1, 0, 2, 3)
        return lower_bound(probability, LIKELIHOOD_FLOOR)

    @torch.no_grad()
    def freeze_tables(self) -> None:
        """Tabulates each channel's PMF over -max_symbol..max_symbol; the end bins take the tails."""
        symbols = torch.arange(-self.max_symbol, self.max_symbol + 1, dtype=torch.float32, device=self.tables.device)
        grid = symbols.view(1, 1, -1).expand(self.channels, 1, -1)
        cdf_upper = torch.sigmoid(self._logits(grid + 0.5))[:, 0]
        cdf_lower = torch.sigmoid(self._logits(grid - 0.5))[:, 0]
        pmf = cdf_upper - cdf_lower
        pmf[:, 0] += cdf_lower[:, 0]
        pmf[:, -1] += 1 - cdf_upper[:, -1]
        self.tables.copy_(pmf.clamp(min=0))
