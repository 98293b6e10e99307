"""`PercoCodec`: PerCo (Careil et al. 2024) as an enhance full codec, at any image size.

Sender: latent z = E(x), normalised; the hyper-encoder's grid of local codes at the level's
resolution (1/8 to 1/64 of the image) and a global code, each an index into a codebook, sent
with log2(V) bits apiece; each latent channel's mean and standard deviation in a byte
(`statistics.py`); an optional caption travels zlib-compressed.
Receiver: DDIM from pure noise over the whole schedule, the UNet conditioned on the
nearest-upsampled local codes and on the level and global code (and, for a decoder with text
cross-attention and a text encoder named in perco.json, on the caption, as the paper does), with
classifier-free guidance on the global code and caption (`guidance`, 1 = off), each step's clean
estimate projected onto the sent channel statistics; 20 steps below 0.05 bpp and 5 above by default.
Seeded: the same bytes and seed give the same image.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from enhance.compute import autocast
from enhance.errors import EnhanceError, WeightsError
from enhance.latent import decode_latent
from enhance.latent.full_codec import (
    bundle_folder, bundled_autoencoder, component_folder, default_device, image_latent, rate_level, step_count, weights_available,
    weights_identity,
)
from enhance.limits import max_pixels

from . import bitstream, statistics
from .config import PercoConfig
from .model import PercoModel

BUNDLE = "perco"
MAX_STEPS = 1000
LOCK = Path(__file__).parent / "weights.lock"


class PercoCodec:
    name = "perco"
    container_id = 9
    rate_unit = "level"

    takes_caption = True

    def __init__(self, *, bundle: Path | str | None = None, device: str | None = None, guidance: float | None = None):
        self._bundle = Path(bundle) if bundle is not None else None
        self._device = default_device(device)
        self._guidance = guidance
        self._loaded = None
        self._identity = None

    @property
    def rate_range(self) -> tuple[float, float]:
        return (1.0, float(len(self._parts()[0].levels)))

    @property
    def identity(self) -> str:
        """Changes with any file of the codec (its decoder included) or its autoencoder, and with the device type."""
        if self._identity is None:
            directory = bundle_folder(self._bundle, BUNDLE, LOCK)
            config = PercoConfig.load(directory / "perco.json")
            components = [component_folder(directory, name) for name in (config.autoencoder, config.text_encoder) if name]
            self._identity = weights_identity([directory, *components], self._device)
        return self._identity

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return weights_available(BUNDLE, LOCK)

    # --- encode --------------------------------------------------------------------------
    def encode(self, image: np.ndarray, rate: float, *, caption: str | None = None) -> bytes:
        """`caption` travels zlib-compressed (at most MAX_CAPTION_BYTES of UTF-8)."""
        config, model, autoencoder, _ = self._parts()
        if caption is not None and len(caption.encode("utf-8")) > bitstream.MAX_CAPTION_BYTES:
            raise EnhanceError(f"perco: the caption is longer than {bitstream.MAX_CAPTION_BYTES} bytes of UTF-8")
        level = rate_level(rate, len(config.levels), "perco")
        with torch.no_grad():
            latent = model.decoder.normalise(image_latent(image, autoencoder, self._device, max_side=bitstream.MAX_SIDE, what="perco"))
            _, local_indices, _, global_indices, _ = model.encoder(latent, level)
        payload = bitstream.Payload(
            height=image.shape[0],
            width=image.shape[1],
            level=level,
            global_indices=global_indices[0].cpu().numpy(),
            local_indices=local_indices[0].cpu().numpy(),
            statistics=statistics.measure(latent),
            caption=caption,
        )
        return bitstream.write(payload, self._global_bits(config), self._local_bits(config, level))

    # --- decode --------------------------------------------------------------------------
    def decode(self, data: bytes, *, steps: int | None = None, seed: int = 0) -> np.ndarray:
        config, model, autoencoder, text_encoder = self._parts()
        payload = bitstream.read(
            data,
            grid=lambda level, h, w: self._grid(config, level, h, w, autoencoder.factor),
            levels=len(config.levels),
            channels=config.latent_channels,
            global_codes=config.global_codes,
            global_bits=self._global_bits(config),
            local_bits=lambda level: self._local_bits(config, level),
            max_pixels=max_pixels(),
        )
        steps = step_count(config.default_steps(payload.level) if steps is None else steps, 1, MAX_STEPS, "perco")
        with torch.no_grad():
            latent = self._generate(payload, steps, seed, config, model, autoencoder.factor, text_encoder)
            return decode_latent(autoencoder, model.decoder.denormalise(latent), payload.height, payload.width)

    def _generate(self, payload, steps, seed, config, model: PercoModel, factor: int, text_encoder) -> torch.Tensor:
        size = (math.ceil(payload.height / factor), math.ceil(payload.width / factor))
        quantizer = model.encoder.quantizers[payload.level]
        local = quantizer.lookup(torch.from_numpy(payload.local_indices).to(self._device)).permute(2, 0, 1)[None]
        features = model.local_features(local, payload.level, size)
        global_codes = None
        if config.global_codes:
            global_codes = model.encoder.global_quantizer.lookup(torch.from_numpy(payload.global_indices).to(self._device))[None]
        conditional = model.condition_vector(payload.level, global_codes, 1)
        unconditional = model.condition_vector(payload.level, None, 1)
        # Guidance drops the caption with the global code: the unconditional branch sees the empty prompt.
        caption, no_caption = (None, None) if text_encoder is None else text_encoder.encode([payload.caption or "", ""]).chunk(2)
        guidance = config.guidance if self._guidance is None else self._guidance
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((1, config.latent_channels, *size), generator=generator).to(self._device)

        def guide(noisy, timesteps, _):
            if guidance == 1.0:
                return model.output(noisy, timesteps, features, conditional, caption)
            captions = None if caption is None else torch.cat([caption, no_caption])
            both = model.output(
                noisy.repeat(2, 1, 1, 1), timesteps.repeat(2), features.repeat(2, 1, 1, 1), torch.cat([conditional, unconditional]), captions
            )
            with_code, without = both.chunk(2)
            return without + guidance * (with_code - without)

        project = None if payload.statistics is None else statistics.projection(payload.statistics, self._device)
        start = model.decoder.num_timesteps - 1
        with autocast(self._device):
            return model.decoder.denoise(noise, start, steps, eta=config.eta, generator=generator, guide=guide, project=project).float()

    # --- helpers -------------------------------------------------------------------------
    @staticmethod
    def _grid(config: PercoConfig, level: int, height: int, width: int, factor: int) -> tuple[int, int]:
        grid = config.levels[level][0]
        return math.ceil(math.ceil(height / factor) / grid), math.ceil(math.ceil(width / factor) / grid)

    @staticmethod
    def _local_bits(config: PercoConfig, level: int) -> int:
        return int(math.log2(config.levels[level][1]))

    @staticmethod
    def _global_bits(config: PercoConfig) -> int:
        return int(math.log2(config.global_codebook))

    def _parts(self):
        if self._loaded is None:
            self._loaded = load_parts(bundle_folder(self._bundle, BUNDLE, LOCK), self._device)
        return self._loaded


def load_parts(directory: Path, device) -> tuple:
    """(config, model, autoencoder, text encoder or None) of a PerCo bundle folder: perco.json,
    model.safetensors, decoder/, and the components perco.json names."""
    from enhance.priors import LatentPrior
    from enhance.weights import load_file_exact

    config = PercoConfig.load(directory / "perco.json")
    decoder = LatentPrior.from_pretrained(directory / "decoder", device=device)
    model = PercoModel(config, decoder)
    load_file_exact(_EncoderSide(model), directory / "model.safetensors")
    model.to(device).eval().requires_grad_(False)
    autoencoder = bundled_autoencoder(directory, config.autoencoder, device)
    if autoencoder.channels != config.latent_channels or decoder.config.autoencoder != config.autoencoder:
        raise WeightsError(f"{directory}: the decoder works on {decoder.config.autoencoder!r}, the codec on {config.autoencoder!r}")
    return config, model, autoencoder, caption_reader(directory, config, decoder, device)


def caption_reader(directory: Path, config: PercoConfig, decoder, device):
    """The text encoder perco.json names, checked against the decoder's cross-attention; None without one."""
    if not config.text_encoder:
        return None
    from enhance.priors.text_encoder import TextEncoder

    text_encoder = TextEncoder.from_pretrained(component_folder(directory, config.text_encoder), device=device)
    attends_to = decoder.unet.config.get("cross_attention_dim")
    if attends_to != text_encoder.hidden_size:
        raise WeightsError(
            f"{directory}: the decoder cross-attends to {attends_to} channels, the text encoder {config.text_encoder!r} gives {text_encoder.hidden_size}"
        )
    return text_encoder


class _EncoderSide(torch.nn.Module):
    """A view of a PercoModel's state without its decoder UNet (saved separately, in prior format)."""

    def __init__(self, model: PercoModel):
        super().__init__()
        self.encoder = model.encoder
        self.level_embedding = model.level_embedding
        self.global_projection = model.global_projection
        self.null_global = model.null_global
