"""Training task: the gamma predictor and entropy model on cached latents, the prior frozen.

Loss per image at rate level k: bits per pixel + lambda_k * distortion, one of
- `latent` (the default): MSE between the normalised latent and its reconstruction, each
  channel's error weighted by how far it moves the decoded pixels (`enhance.latent.sensitivity`:
  the channels differ by two orders of magnitude, and unweighted the codec spent its bits evenly
  on them). The decoder runs once, for those weights, which makes a step cheap (0.3 s on the CPU);
- `pixels` (`--option distortion=pixels`): the MSE between the decoder's images of the latent and
  of its reconstruction, through the frozen decoder: what the per-channel weights approximate to
  first order, without their blind spots (errors correlated across channels and positions). It
  costs a decoder pass with gradient per step, so it is meant for fine-tuning on small crops.
  It is divided by the summed channel sensitivities, which puts it in the latent distortion's
  units (to first order): one set of lambdas serves both.
The prior contributes its latent normalisation.
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


DISTORTIONS = ("latent", "pixels")


@dataclass
class CodecTaskOptions(PriorCodecTaskOptions):
    config: CodecConfig = field(default_factory=CodecConfig)
    distortion: str = "latent"

    def check_option(self, key: str) -> None:
        from enhance.errors import EnhanceError

        if key == "distortion" and self.distortion not in DISTORTIONS:
            raise EnhanceError(f"--option distortion={self.distortion}: must be one of {', '.join(DISTORTIONS)}")


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
        from enhance.latent import load_autoencoder

        self.autoencoder = load_autoencoder(self.prior.config.autoencoder)
        sensitivity = self._pixel_sensitivity()
        self.channel_weights = (sensitivity / sensitivity.mean()).view(1, -1, 1, 1)
        # A unit of error in every channel moves the pixels by the sum of the channels' sensitivities.
        self.pixel_scale = float(sensitivity.sum())

    def _pixel_sensitivity(self) -> torch.Tensor:
        from enhance.latent.sensitivity import pixel_sensitivity

        self.sampler.set_state(self.options.seed + 1, 1 << 40)  # no training step draws with this state
        crops = self.prior.normalise(self.sampler.batch(SENSITIVITY_CROPS))
        return pixel_sensitivity(lambda latent: self.autoencoder.decode(self.prior.denormalise(latent)), crops)

    def weighted_mse(self, reconstruction: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Per image: the latent MSE with each channel weighted by its pixel sensitivity."""
        return ((reconstruction - latent).pow(2) * self.channel_weights.to(latent.device)).mean(dim=(1, 2, 3))

    def decoded(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoder's image of a normalised latent: [0, 1] pixels, unclamped so that the gradient
        does not vanish outside that range."""
        from enhance.compute import autocast

        decoder = self.autoencoder.decoder.to(latent.device)
        std, mean = self.prior.std.to(latent.device), self.prior.mean.to(latent.device)
        with autocast(latent.device):
            return decoder(latent * std + mean).float()

    def pixel_mse(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per image: the MSE between the decoded image of `reconstruction` and `target` pixels."""
        return (self.decoded(reconstruction) - target).pow(2).mean(dim=(1, 2, 3))

    def distortion(self, reconstruction: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        if self.options.distortion == "pixels":
            with torch.no_grad():
                target = self.decoded(latent)
            return self.pixel_mse(reconstruction, target) / self.pixel_scale
        return self.weighted_mse(reconstruction, latent)

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
            mse = self.distortion(reconstruction, latent)
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
        target = self.decoded(latent)  # the same for every level
        metrics = {}
        for level in range(model.config.levels):
            levels = torch.full((latent.shape[0],), level, device=latent.device)
            reconstruction, bits = model(latent, levels)
            metrics[f"L{level + 1}"] = {
                "bpp": round(float(bits.mean()) / PIXELS_PER_POSITION, 4),
                "mse": round(float(self.weighted_mse(reconstruction, latent).mean()), 4),
                "pixel_psnr": round(float(-10 * self.pixel_mse(reconstruction, target).mean().log10()), 2),
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
