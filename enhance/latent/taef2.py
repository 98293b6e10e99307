"""TAEF2: the tiny autoencoder of FLUX.2's latent space (32 channels at 1/8), madebyollin/taesd's design.

Our own module with the same layer layout as upstream's `taesd.py`, so its state dicts load
strictly. The FLUX.2 variant adds a GroupNorm branch (`pool`) to the blocks at latent
resolution, which makes those blocks depend on the whole image. So only the local layers are
tiled (with a margin wider than their receptive field, giving exactly the untiled result); the
GroupNorm blocks run once over the whole latent, which is 1/64 of the pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from .tiles import run_tiled

TILE = 512  # pixels per tile side for the full-resolution layers
ENCODER_MARGIN = 72  # pixels; the local encoder layers see 65
DECODER_MARGIN = 10  # latent pixels; the local decoder layers see about 8.1


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    def __init__(self, channels: int, global_norm: bool = False):
        super().__init__()
        self.conv = nn.Sequential(
            _conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(), _conv(channels, channels)
        )
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if global_norm:
            wide = channels * 4
            self.pool = nn.Sequential(
                nn.Conv2d(channels, wide, 1, bias=False), nn.GroupNorm(4, wide), nn.ReLU(), nn.Conv2d(wide, channels, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def _encoder(latent_channels: int, width: int = 64) -> nn.Sequential:
    blocks = lambda n, norm=False: [_Block(width, norm) for _ in range(n)]  # noqa: E731
    down = lambda: _conv(width, width, stride=2, bias=False)  # noqa: E731
    return nn.Sequential(
        _conv(3, width), *blocks(1), down(), *blocks(3), down(), *blocks(3), down(), *blocks(3, True), _conv(width, latent_channels)
    )


def _decoder(latent_channels: int, width: int = 64) -> nn.Sequential:
    blocks = lambda n, norm=False: [_Block(width, norm) for _ in range(n)]  # noqa: E731
    up = lambda: [nn.Upsample(scale_factor=2), _conv(width, width, bias=False)]  # noqa: E731
    return nn.Sequential(
        _Clamp(), _conv(latent_channels, width), nn.ReLU(), *blocks(3, True),
        *up(), *blocks(3), *up(), *blocks(3), *up(), *blocks(1), _conv(width, 3),
    )


# Where each half splits into its whole-image part and its local (tiled) part.
ENCODER_LOCAL_END = 11
DECODER_LOCAL_START = 6


class TAEF2(nn.Module):
    """`LatentAutoencoder` over FLUX.2's latent space: 32 channels, 1/8 resolution, images in [0, 1]."""

    name = "taef2"
    factor = 8

    def __init__(self, latent_channels: int = 32, tile: int = TILE):
        super().__init__()
        self.channels = latent_channels
        self.tile = tile
        self.encoder = _encoder(latent_channels)
        self.decoder = _decoder(latent_channels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self._dtype())
        local = self.encoder[:ENCODER_LOCAL_END]
        features = run_tiled(local, images, tile=self.tile, margin=ENCODER_MARGIN, scale=1 / self.factor, align=self.factor)
        return self.encoder[ENCODER_LOCAL_END:](features).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        features = self.decoder[:DECODER_LOCAL_START](latents.to(self._dtype()))
        local = self.decoder[DECODER_LOCAL_START:]
        tile = self.tile // self.factor
        return run_tiled(local, features, tile=tile, margin=DECODER_MARGIN, scale=self.factor, align=1).float().clamp(0, 1)

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @classmethod
    def from_pretrained(cls, directory: Path | str, *, device="cpu", dtype=torch.float32) -> "TAEF2":
        """Loads `config.json`, `encoder.safetensors` and `decoder.safetensors` from `directory`, strictly."""
        from ..weights import load_file_exact

        directory = Path(directory)
        config = _read_config(directory / "config.json")
        model = cls(latent_channels=config["latent_channels"])
        for half in ("encoder", "decoder"):
            load_file_exact(getattr(model, half), directory / f"{half}.safetensors")
        return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: cannot read the TAEF2 config ({error})") from None
    if not isinstance(config, dict) or config.get("_class_name") != "TAEF2":
        raise WeightsError(f"{path}: not a TAEF2 config (_class_name must be 'TAEF2')")
    channels = config.get("latent_channels")
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 256:
        raise WeightsError(f"{path}: latent_channels must be an integer from 1 to 256, not {channels!r}")
    return config
