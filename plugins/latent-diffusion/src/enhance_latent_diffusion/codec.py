"""`LatentDiffusionCodec`: Relic et al.'s codec as an enhance full codec.

Sender: latent z = E(x), normalised by the prior's statistics; a learned analysis transform
to a code at half the latent's resolution; per-channel steps gamma (rate level plus a
predicted offset); code / gamma rounded and coded with a hyperprior; the timestep whose noise
level matches the latent error it measured goes in the header.
Receiver: the code dequantised and mapped back to a latent by the synthesis transform, taken
as the diffusion state at that timestep (scaled by sqrt(alpha_t), with that timestep's fresh
noise added when the bundle says `fresh_noise`), denoised by the frozen prior in `steps` DDIM
steps (at most 100 of its 1000) that keep the dequantised latent's block means
(`anchor_pool`), decoded by E's decoder. `steps=0` is the naive decode (no diffusion), the
paper's baseline.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from enhance.compute import autocast
from enhance.errors import WeightsError
from enhance.latent import decode_latent
from enhance.latent.full_codec import (
    bundle_folder, bundled_autoencoder, bundled_prior, component_folder, default_device, image_latent, rate_level, step_count,
    weights_available, weights_identity,
)
from enhance.limits import max_pixels

from . import bitstream
from .config import CodecConfig
from .model import CODE_FACTOR, LatentDiffusionCodecModel

BUNDLE = "latent-diffusion"
MAX_STEPS = 100  # 10% of the prior's 1000-step schedule
LOCK = Path(__file__).parent / "weights.lock"


class LatentDiffusionCodec:
    name = "latent-diffusion"
    container_id = 10
    rate_unit = "level"

    def __init__(self, *, bundle: Path | str | None = None, device: str | None = None):
        self._bundle = Path(bundle) if bundle is not None else None
        self._device = default_device(device)
        self._loaded = None
        self._identity = None

    # --- what users and the registry see -------------------------------------------------
    @property
    def rate_range(self) -> tuple[float, float]:
        return (1.0, float(self._parts()[0].levels))

    @property
    def identity(self) -> str:
        """Changes with any file of the codec, its prior or autoencoder, and with the device type."""
        if self._identity is None:
            directory = bundle_folder(self._bundle, BUNDLE, LOCK)
            config = CodecConfig.load(directory / "codec.json")
            folders = [directory, component_folder(directory, config.autoencoder), component_folder(directory, config.prior)]
            self._identity = weights_identity(folders, self._device)
        return self._identity

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return weights_available(BUNDLE, LOCK)

    def encode(self, image: np.ndarray, rate: float) -> bytes:
        config, model, autoencoder, prior = self._parts()
        level = rate_level(rate, config.levels, "latent-diffusion")
        with torch.no_grad():
            latent = prior.normalise(image_latent(image, autoencoder, self._device, max_side=bitstream.MAX_SIDE, what="latent-diffusion"))
            code = model.transform.encode(latent)
            levels = torch.tensor([level], device=latent.device)
            offsets = model.offsets(code, levels)
            step = model.steps(levels, offsets)
            compressed = model.hyperprior.compress(code / step, model.embedding(levels))
            reconstruction = model.transform.decode(compressed["latent"] * step, *latent.shape[-2:])
            error = (reconstruction - latent).pow(2).mean().sqrt()
            timestep = int(prior.timestep_for_noise(config.noise_scale * error)[0])
        payload = bitstream.Payload(
            height=image.shape[0],
            width=image.shape[1],
            level=level,
            timestep_code=min(255, round(timestep / bitstream.TIMESTEP_UNIT)),
            offsets=offsets[0].round().to(torch.int8).cpu().numpy(),
            strings=compressed["strings"],
        )
        return bitstream.write(payload)

    def decode(self, data: bytes, *, steps: int | None = None, seed: int = 0) -> np.ndarray:
        config, model, autoencoder, prior = self._parts()
        steps = step_count(config.default_steps if steps is None else steps, 0, MAX_STEPS, "latent-diffusion")
        payload = bitstream.read(data, offset_count=config.offset_count, levels=config.levels, max_pixels=max_pixels())
        with torch.no_grad():
            latent = self._dequantize(payload, model, autoencoder.factor)
            if steps:
                latent = self._diffuse(latent, payload, steps, seed, prior, config)
            return decode_latent(autoencoder, prior.denormalise(latent), payload.height, payload.width)

    # --- the two halves ------------------------------------------------------------------
    def _dequantize(self, payload: bitstream.Payload, model: LatentDiffusionCodecModel, factor: int) -> torch.Tensor:
        size = (math.ceil(payload.height / factor), math.ceil(payload.width / factor))
        code_size = (math.ceil(size[0] / CODE_FACTOR), math.ceil(size[1] / CODE_FACTOR))
        hyper_shape = (math.ceil(code_size[0] / 4), math.ceil(code_size[1] / 4))
        levels = torch.tensor([payload.level], device=self._device)
        offsets = torch.from_numpy(payload.offsets.astype(np.float32)).to(self._device)[None]
        step = model.steps(levels, offsets)
        quantized = model.hyperprior.decompress(payload.strings, hyper_shape, code_size, model.embedding(levels), what="latent-diffusion payload")
        return model.transform.decode(quantized * step, *size)

    def _diffuse(self, latent, payload, steps, seed, prior, config) -> torch.Tensor:
        start = min(prior.num_timesteps - 1, payload.timestep_code * bitstream.TIMESTEP_UNIT)
        generator = torch.Generator().manual_seed(seed)
        alpha = prior.alphas_cumprod[start]
        noisy = alpha.sqrt() * latent
        if config.fresh_noise:
            noisy = noisy + (1 - alpha).sqrt() * torch.randn(latent.shape, generator=generator).to(latent)
        project = block_mean_anchor(latent, config.anchor_pool) if config.anchor_pool else None
        with autocast(self._device):
            return prior.denoise(noisy, start, steps, eta=config.eta, generator=generator, project=project).float()

    # --- loading ------------------------------------------------------------------------
    def _parts(self):
        if self._loaded is None:
            self._loaded = load_parts(bundle_folder(self._bundle, BUNDLE, LOCK), self._device)
        return self._loaded


def block_mean_anchor(reference: torch.Tensor, pool: int):
    """A projection of clean estimates onto `reference`'s means over pool x pool blocks
    (partial blocks at the edges included): what the code says about the layout is kept
    exactly, the prior only chooses the detail inside each block."""
    height, width = reference.shape[-2:]

    def block_means(latent: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(latent.float(), pool, ceil_mode=True)

    target = block_means(reference)

    def project(clean: torch.Tensor) -> torch.Tensor:
        correction = (target - block_means(clean)).repeat_interleave(pool, -2).repeat_interleave(pool, -1)
        return clean + correction[..., :height, :width].to(clean)

    return project


def load_parts(directory: Path, device) -> tuple:
    """(config, trained model, autoencoder, prior) of a codec bundle folder."""
    from enhance.weights import load_file_exact

    config = CodecConfig.load(directory / "codec.json")
    model = LatentDiffusionCodecModel(config)
    load_file_exact(model, directory / "model.safetensors")
    model.to(device).eval().requires_grad_(False)
    autoencoder = bundled_autoencoder(directory, config.autoencoder, device)
    prior = bundled_prior(directory, config.prior, device)
    if prior.config.autoencoder != config.autoencoder or autoencoder.channels != config.latent_channels:
        raise WeightsError(f"{directory}: the prior works on {prior.config.autoencoder!r}, the codec on {config.autoencoder!r}")
    return config, model, autoencoder, prior
