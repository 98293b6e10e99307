"""Training task: the gamma predictor and entropy model on cached latents, the prior frozen.

Loss per image at rate level k: bits per pixel + lambda_k * MSE between the normalised latent
and its reconstruction, each channel's error weighted by how far it moves the decoded pixels
(`enhance.latent.sensitivity`: the channels differ by two orders of magnitude, and unweighted
the codec spent its bits evenly on them). The prior contributes its latent normalisation; the
autoencoder's decoder runs only once, for those weights (the latents are cached), which is
what makes this cheap enough for a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from enhance.priors import LatentPrior
from enhance.train.latent_request import PriorCodecTaskOptions
from enhance.train.latents import LatentCropSampler
from enhance.train.trainer import atomic_save

from .config import CodecConfig
from .model import LatentDiffusionCodecModel

PIXELS_PER_POSITION = 64  # TAEF2: one latent position per 8x8 pixels
# A run from scratch weighs the rate in over its first steps: at full weight from step 0 the
# rate term zeroes the code before the synthesis learns to use it, and a 128-channel model
# stayed at that all-zero code (latent MSE 1.0 at every level) for 650 steps and counting.
RATE_RAMP_STEPS = 1000
SENSITIVITY_CROPS = 8  # latent crops the channel weights are measured on


@dataclass
class CodecTaskOptions(PriorCodecTaskOptions):
    config: CodecConfig = field(default_factory=CodecConfig)


class CodecTask:
    kind = "latent-diffusion-codec"

    def __init__(self, options: CodecTaskOptions):
        self.options = options
        self.prior = LatentPrior.from_pretrained(options.prior)
        self.sampler = LatentCropSampler(options.latent_files, options.crop, seed=options.seed)
        self.config = options.config.to_dict()
        self.val_batch = None
        if options.val_files:
            self.val_batch = LatentCropSampler(options.val_files, options.crop, seed=1234).batch(32)
        self.channel_weights = self._channel_weights()

    def _channel_weights(self) -> torch.Tensor:
        from enhance.latent import load_autoencoder
        from enhance.latent.sensitivity import channel_weights

        autoencoder = load_autoencoder(self.prior.config.autoencoder)
        self.sampler.set_state(self.options.seed + 1, 1 << 40)  # no training step draws with this state
        crops = self.prior.normalise(self.sampler.batch(SENSITIVITY_CROPS))
        return channel_weights(lambda latent: autoencoder.decode(self.prior.denormalise(latent)), crops).view(1, -1, 1, 1)

    def weighted_mse(self, reconstruction: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Per image: the latent MSE with each channel weighted by its pixel sensitivity."""
        return ((reconstruction - latent).pow(2) * self.channel_weights.to(latent.device)).mean(dim=(1, 2, 3))

    def build(self, config: dict) -> LatentDiffusionCodecModel:
        model = LatentDiffusionCodecModel(CodecConfig.from_dict(config, "codec task config"))
        if self.options.init_from is not None:
            from enhance.weights import load_file_exact

            load_file_exact(model, Path(self.options.init_from) / "model.safetensors")
        return model

    def _normalised(self, batch: torch.Tensor, device) -> torch.Tensor:
        return self.prior.normalise(batch).to(device)

    def loss(self, model: LatentDiffusionCodecModel, step: int):
        self.sampler.set_state(self.options.seed, step)
        device = model.base_log_step.device
        latent = self._normalised(self.sampler.batch(self.options.batch), device)
        generator = torch.Generator().manual_seed(self.options.seed * 7919 + step)
        levels = torch.randint(0, model.config.levels, (latent.shape[0],), generator=generator).to(device)
        with torch.autocast(device.type, enabled=False):
            reconstruction, bits = model(latent.float(), levels)
            mse = self.weighted_mse(reconstruction, latent)
            bpp = bits / PIXELS_PER_POSITION
            lambdas = torch.tensor(model.config.lambdas, device=device)[levels]
            loss = (self.rate_weight(step) * bpp + lambdas * mse).mean()
        return loss, {"bpp": bpp.mean().detach().item(), "mse": mse.mean().detach().item()}

    def rate_weight(self, step: int) -> float:
        if self.options.init_from is not None:
            return 1.0
        return min(1.0, step / RATE_RAMP_STEPS)

    @torch.no_grad()
    def validate(self, model: LatentDiffusionCodecModel) -> dict:
        if self.val_batch is None:
            return {}
        latent = self._normalised(self.val_batch, model.base_log_step.device)
        metrics = {}
        for level in range(model.config.levels):
            levels = torch.full((latent.shape[0],), level, device=latent.device)
            reconstruction, bits = model(latent, levels)
            metrics[f"L{level + 1}"] = {
                "bpp": round(float(bits.mean()) / PIXELS_PER_POSITION, 4),
                "mse": round(float(self.weighted_mse(reconstruction, latent).mean()), 4),
            }
        return metrics

    def save_bundle(self, model: LatentDiffusionCodecModel, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        model.hyperprior.density.freeze_tables()
        CodecConfig.from_dict(self.config, "codec task config").save(directory / "codec.json")
        atomic_save(dict(model.state_dict()), directory / "model.safetensors", {"format": "enhance.latent-diffusion-codec.weights", "version": "1"})


def make_task(request) -> CodecTask:
    """The `latent-diffusion` trainer of `enhance train-latent` (needs `--prior`)."""
    from enhance.errors import EnhanceError

    if request.prior is None:
        raise EnhanceError("latent-diffusion trains on a frozen prior: give --prior BUNDLE_DIR")
    return CodecTask(CodecTaskOptions.from_request(request))
