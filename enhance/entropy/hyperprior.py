"""A mean-scale hyperprior over a latent (Minnen et al. 2018 without the autoregressive context).

`forward` is for training (noisy rate proxy, straight-through rounding); `compress` and
`decompress` give and take CompressAI-style `{"strings": [hyper, latent], "shape": hyper HxW}`.
An optional condition vector (a rate embedding) modulates the synthesis, so one model serves
several rates. Latents of any size are edge-padded to a multiple of 4 for the hyper-analysis.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..latent.padding import pad_to_multiple
from .coding import clip_gaussian, decode_categorical, decode_gaussian, encode_categorical, encode_gaussian
from .factorized import FactorizedDensity
from .gaussian import gaussian_likelihood, scale_indices


def round_straight_through(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class MeanScaleHyperprior(nn.Module):
    def __init__(self, channels: int, hyper_channels: int = 32, width: int = 128, condition_dim: int = 0):
        super().__init__()
        self.channels, self.hyper_channels = channels, hyper_channels
        act = nn.GELU
        self.analysis = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), act(),
            nn.Conv2d(width, width, 4, stride=2, padding=1), act(),
            nn.Conv2d(width, hyper_channels, 4, stride=2, padding=1),
        )
        self.synthesis_in = nn.Sequential(
            nn.ConvTranspose2d(hyper_channels, width, 4, stride=2, padding=1), act(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),
        )
        self.condition = nn.Linear(condition_dim, 2 * width) if condition_dim else None
        self.synthesis_out = nn.Sequential(act(), nn.Conv2d(width, width, 3, padding=1), act(), nn.Conv2d(width, 2 * channels, 3, padding=1))
        self.density = FactorizedDensity(hyper_channels)

    def _distribution(self, hyper: torch.Tensor, condition: torch.Tensor | None, height: int, width: int):
        features = self.synthesis_in(hyper)
        if self.condition is not None and condition is not None:
            scale, shift = self.condition(condition).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
            features = features * (1 + scale) + shift
        means, scales = self.synthesis_out(features)[..., :height, :width].chunk(2, dim=1)
        return means, nn.functional.softplus(scales) + 0.11

    def forward(self, latent: torch.Tensor, condition: torch.Tensor | None = None):
        """(quantized latent with straight-through gradients, latent likelihoods, hyper likelihoods)."""
        height, width = latent.shape[-2:]
        hyper = self.analysis(pad_to_multiple(latent, 4))
        noisy_hyper = hyper + torch.empty_like(hyper).uniform_(-0.5, 0.5)
        means, scales = self._distribution(round_straight_through(hyper), condition, height, width)
        noisy = latent + torch.empty_like(latent).uniform_(-0.5, 0.5)
        latent_likelihood = gaussian_likelihood(noisy - means, scales)
        quantized = round_straight_through(latent - means) + means
        return quantized, latent_likelihood, self.density.likelihood(noisy_hyper)

    def _hyper_rows(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(self.hyper_channels).reshape(1, -1, 1, 1), shape)

    @torch.no_grad()
    def compress(self, latent: torch.Tensor, condition: torch.Tensor | None = None) -> dict:
        """One image (batch of 1) to its two strings; also returns the decoder's reconstruction."""
        height, width = latent.shape[-2:]
        maximum = self.density.max_symbol
        hyper = torch.round(self.analysis(pad_to_multiple(latent, 4))).clamp(-maximum, maximum)
        hyper_symbols = hyper.long().cpu().numpy()
        tables = self.density.tables.cpu().numpy()
        hyper_string = encode_categorical(hyper_symbols + maximum, tables, self._hyper_rows(hyper_symbols.shape))
        means, scales = self._distribution(hyper, condition, height, width)
        symbols = clip_gaussian(torch.round(latent - means).long().cpu().numpy())
        latent_string = encode_gaussian(symbols, scale_indices(scales).cpu().numpy())
        reconstruction = torch.from_numpy(symbols).to(means) + means
        return {"strings": [hyper_string, latent_string], "shape": tuple(hyper.shape[-2:]), "latent": reconstruction}

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shape: tuple[int, int], size: tuple[int, int], condition=None, what="stream"):
        """The quantized latent of `size` (latent H x W) from `compress`'s strings."""
        maximum = self.density.max_symbol
        hyper_shape = (1, self.hyper_channels, *shape)
        tables = self.density.tables.cpu().numpy()
        hyper_symbols = decode_categorical(strings[0], tables, self._hyper_rows(hyper_shape), what) - maximum
        device = self.density.tables.device
        hyper = torch.from_numpy(hyper_symbols.reshape(hyper_shape)).float().to(device)
        means, scales = self._distribution(hyper, condition, *size)
        symbols = decode_gaussian(strings[1], scale_indices(scales).cpu().numpy(), what)
        return torch.from_numpy(symbols.reshape(means.shape)).to(means) + means
