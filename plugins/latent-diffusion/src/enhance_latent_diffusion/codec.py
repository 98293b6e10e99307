"""`LatentDiffusionCodec`: Relic et al.'s codec as an enhance full codec.

Sender: latent z = E(x), normalised by the prior's statistics; per-channel steps gamma
(rate level plus a predicted offset); y = z / gamma rounded and coded with a hyperprior; the
timestep whose noise level matches the quantization error it measured goes in the header.
Receiver: z_hat = y_hat * gamma, taken as the diffusion state at that timestep (scaled by
sqrt(alpha_t)), denoised by the frozen prior in `steps` DDIM steps (at most 100 of its 1000),
decoded by E's decoder. `steps=0` is the naive decode (no diffusion), the paper's baseline.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from enhance.errors import BadInput, EnhanceError, WeightsError

from . import bitstream
from .config import CodecConfig
from .model import LatentDiffusionCodecModel

BUNDLE = "latent-diffusion"
MAX_STEPS = 100  # 10% of the prior's 1000-step schedule
MAX_PIXELS = 150_000_000


def _lock() -> Path:
    return Path(__file__).parent / "weights.lock"


def _component(directory: Path, name: str, loader_from_directory, loader_by_name):
    """A sub-folder of the bundle when it has one, else the core bundle of that name."""
    if (directory / name).is_dir():
        return loader_from_directory(directory / name)
    return loader_by_name(name)


class LatentDiffusionCodec:
    name = "latent-diffusion"
    container_id = 10
    rate_unit = "level"

    def __init__(self, *, bundle: Path | str | None = None, device: str | None = None):
        self._bundle = Path(bundle) if bundle is not None else None
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._loaded = None

    # --- what users and the registry see -------------------------------------------------
    @property
    def rate_range(self) -> tuple[float, float]:
        return (1.0, float(self._parts()[0].levels))

    @classmethod
    def available(cls) -> tuple[bool, str]:
        from enhance import weights

        missing = [f"{row.bundle}/{row.path}" for row in weights.load_lock(_lock()) if weights.locate(row) is None]
        if missing:
            return False, f"weights missing: {', '.join(missing)} (enhance weights fetch {BUNDLE})"
        return True, ""

    def encode(self, image: np.ndarray, rate: float) -> bytes:
        config, model, autoencoder, prior = self._parts()
        level = self._level(rate, config)
        with torch.no_grad():
            latent = prior.normalise(self._encode_latent(image, autoencoder))
            levels = torch.tensor([level], device=latent.device)
            offsets = model.offsets(latent, levels)
            step = model.steps(levels, offsets)
            compressed = model.hyperprior.compress(latent / step, model.embedding(levels))
            error = (compressed["latent"] * step - latent).pow(2).mean().sqrt()
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
        steps = config.default_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
            raise EnhanceError(f"latent-diffusion: steps must be an integer from 0 to {MAX_STEPS}, not {steps!r}")
        payload = bitstream.read(data, channels=config.latent_channels, levels=config.levels, max_pixels=MAX_PIXELS)
        with torch.no_grad():
            latent = self._dequantize(payload, model, autoencoder.factor)
            if steps:
                latent = self._diffuse(latent, payload, steps, seed, prior, config)
            pixels = autoencoder.decode(prior.denormalise(latent))
        return self._to_image(pixels, payload.height, payload.width)

    # --- the two halves ------------------------------------------------------------------
    def _dequantize(self, payload: bitstream.Payload, model: LatentDiffusionCodecModel, factor: int) -> torch.Tensor:
        size = (math.ceil(payload.height / factor), math.ceil(payload.width / factor))
        hyper_shape = (math.ceil(size[0] / 4), math.ceil(size[1] / 4))
        levels = torch.tensor([payload.level], device=self._device)
        offsets = torch.from_numpy(payload.offsets.astype(np.float32)).to(self._device)[None]
        step = model.steps(levels, offsets)
        quantized = model.hyperprior.decompress(payload.strings, hyper_shape, size, model.embedding(levels), what="latent-diffusion payload")
        return quantized * step

    def _diffuse(self, latent, payload, steps, seed, prior, config) -> torch.Tensor:
        start = min(prior.num_timesteps - 1, payload.timestep_code * bitstream.TIMESTEP_UNIT)
        generator = torch.Generator().manual_seed(seed)
        noisy = prior.alphas_cumprod[start].sqrt() * latent
        with torch.autocast(self._device.type, dtype=torch.bfloat16):
            return prior.denoise(noisy, start, steps, eta=config.eta, generator=generator).float()

    def _encode_latent(self, image: np.ndarray, autoencoder) -> torch.Tensor:
        from enhance.latent import image_to_tensor
        from enhance.latent.padding import pad_to_multiple

        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            raise BadInput("latent-diffusion: the image must be uint8 HxWx3")
        if not 1 <= image.shape[0] <= bitstream.MAX_SIDE or not 1 <= image.shape[1] <= bitstream.MAX_SIDE:
            raise BadInput(f"latent-diffusion: sides must be 1..{bitstream.MAX_SIDE} pixels")
        return autoencoder.encode(pad_to_multiple(image_to_tensor(image, self._device), autoencoder.factor))

    @staticmethod
    def _to_image(pixels: torch.Tensor, height: int, width: int) -> np.ndarray:
        from enhance.latent import tensor_to_image

        return tensor_to_image(pixels[..., :height, :width])

    @staticmethod
    def _level(rate: float, config: CodecConfig) -> int:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate != int(rate) or not 1 <= rate <= config.levels:
            raise EnhanceError(f"latent-diffusion: rate must be a level from 1 to {config.levels}, not {rate!r}")
        return int(rate) - 1

    # --- loading ------------------------------------------------------------------------
    def _parts(self):
        if self._loaded is None:
            self._loaded = load_parts(self._bundle or self._shipped_bundle(), self._device)
        return self._loaded

    @staticmethod
    def _shipped_bundle() -> Path:
        from enhance import weights

        return weights.resolve_bundle(BUNDLE, lock=_lock())


def load_parts(directory: Path, device) -> tuple:
    """(config, trained model, autoencoder, prior) of a codec bundle folder."""
    from enhance.latent import autoencoder_from_directory, load_autoencoder
    from enhance.priors import LatentPrior, load_prior
    from enhance.weights import load_file_exact

    config = CodecConfig.load(directory / "codec.json")
    model = LatentDiffusionCodecModel(config)
    load_file_exact(model, directory / "model.safetensors")
    model.to(device).eval().requires_grad_(False)
    autoencoder = _component(directory, config.autoencoder, lambda d: autoencoder_from_directory(d, device=device), lambda n: load_autoencoder(n, device=device))
    prior = _component(directory, config.prior, lambda d: LatentPrior.from_pretrained(d, device=device), lambda n: load_prior(n, device=device))
    if prior.config.autoencoder != config.autoencoder or autoencoder.channels != config.latent_channels:
        raise WeightsError(f"{directory}: the prior works on {prior.config.autoencoder!r}, the codec on {config.autoencoder!r}")
    return config, model, autoencoder, prior
