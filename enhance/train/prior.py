"""Training task of a latent diffusion prior: an unconditional diffusers UNet over cached latents.

v-prediction with min-SNR-5 loss weighting (Hang et al. 2023), which converges faster than
plain epsilon-MSE on small budgets; the schedule is Stable Diffusion's (scaled-linear betas,
1000 steps), so the prior and SD 2.1 are interchangeable in the codecs.
"""

from __future__ import annotations

import json

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import EnhanceError

from ..compute import autocast
from ..priors.prior import LatentPrior, PriorConfig, build_unet
from ..weights import load_file_exact
from .latents import LatentCropSampler

SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
MIN_SNR = 5.0


def min_snr_loss(prior: LatentPrior, clean, noise, timesteps, predict, *, min_snr: float = MIN_SNR, snr_floor: float = 0.0) -> torch.Tensor:
    """The batch's diffusion loss: `predict(noisy, timesteps)` against the prior's training target, min-SNR weighted.

    In x0 terms the weight is clamp(snr, snr_floor, min_snr). A conditional model needs the floor:
    without it the noisiest steps, the only ones where the noisy input does not already hold the
    answer, weigh almost nothing and the model learns to ignore its condition.
    """
    noisy = prior.add_noise(clean, noise, timesteps)
    output = predict(noisy, timesteps).float()
    target = prior.training_target(clean, noise, timesteps)
    alpha = prior.alphas_cumprod[timesteps]
    snr = alpha / (1 - alpha)
    # For v-prediction the v error is (snr + 1) times the x0 error.
    weight = torch.clamp(snr, min=snr_floor, max=min_snr) / (snr + 1)
    per_sample = ((output - target) ** 2).mean(dim=(1, 2, 3))
    return (weight * per_sample).mean()


def default_unet(channels: int, widths=(32, 64, 128)) -> dict:
    """A CPU-sized UNet2DModel: attention only at the coarsest level and in the middle."""
    return {
        "_class_name": "UNet2DModel",
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": list(widths),
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "attention_head_dim": 32,
        "norm_num_groups": 8,
    }


@dataclass
class PriorTaskOptions:
    latent_files: list[Path]
    val_files: list[Path] = field(default_factory=list)
    autoencoder: str = "taef2"
    crop: int = 32
    batch: int = 16
    seed: int = 0
    min_snr: float = MIN_SNR
    widths: tuple[int, ...] = (32, 64, 128)
    init_from: Path | None = None


class PriorTask:
    kind = "latent-prior"

    def __init__(self, options: PriorTaskOptions):
        self.options = options
        self.sampler = LatentCropSampler(options.latent_files, options.crop, seed=options.seed)
        self.config = {
            "unet": default_unet(self.sampler.channels, options.widths),
            "scheduler": SCHEDULER,
            "prior": self._normalisation(),
        }
        self.val_batch = self._validation_batch()
        self.generator = torch.Generator().manual_seed(options.seed)

    def _normalisation(self) -> dict:
        """The latent statistics the UNet works in: an --init-from bundle's own (its UNet was trained
        in that space, and the codecs built on it normalise with them), else measured on the data."""
        if self.options.init_from is not None:
            path = Path(self.options.init_from) / "prior.json"
            return PriorConfig.from_dict(json.loads(path.read_text()), str(path)).to_dict()
        mean, std = self.sampler.statistics()
        return PriorConfig(self.options.autoencoder, mean.tolist(), std.tolist()).to_dict()

    def build(self, config: dict) -> LatentPrior:
        prior_config = PriorConfig.from_dict(config["prior"], "prior task config")
        prior = LatentPrior(build_unet(config["unet"]), config["scheduler"], prior_config)
        if self.options.init_from is not None:
            load_file_exact(prior.unet, Path(self.options.init_from) / "unet" / "diffusion_pytorch_model.safetensors")
        return prior

    def resume_config(self, stored: dict) -> dict:
        """A resumed run keeps its latent normalisation (measured when it started) and must train the same UNet."""
        if stored.get("unet") != self.config["unet"] or stored.get("scheduler") != self.config["scheduler"]:
            raise EnhanceError(f"this run trains the UNet {stored.get('unet')}, not {self.config['unet']}")
        return stored

    def _validation_batch(self) -> torch.Tensor | None:
        if not self.options.val_files:
            return None
        sampler = LatentCropSampler(self.options.val_files, self.options.crop, seed=1234)
        return sampler.batch(32)

    def loss(self, model: LatentPrior, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        self.sampler.set_state(self.options.seed, step)
        device = model.alphas_cumprod.device
        clean = model.normalise(self.sampler.batch(self.options.batch).to(device))
        generator = torch.Generator().manual_seed(self.options.seed * 1_000_003 + step)
        noise = torch.randn(clean.shape, generator=generator).to(device)
        timesteps = torch.randint(0, model.num_timesteps, (clean.shape[0],), generator=generator).to(device)
        return min_snr_loss(model, clean, noise, timesteps, model.model_output, min_snr=self.options.min_snr), {}

    @torch.no_grad()
    def validate(self, model: LatentPrior) -> dict:
        """Mean clean-latent MSE at a few fixed noise levels on held-out latents."""
        if self.val_batch is None:
            return {}
        device = model.alphas_cumprod.device
        clean = model.normalise(self.val_batch.to(device))
        generator = torch.Generator().manual_seed(0)
        noise = torch.randn(clean.shape, generator=generator).to(device)
        metrics = {}
        for t in (50, 200, 500, 900):
            timesteps = torch.full((clean.shape[0],), t, device=device)
            with autocast(device):
                estimate = model.predict_clean(model.add_noise(clean, noise, timesteps), timesteps)
            metrics[f"x0_mse_t{t}"] = round(float(((estimate.float() - clean) ** 2).mean()), 5)
        return metrics

    def save_bundle(self, model: LatentPrior, directory: Path) -> None:
        model.save_pretrained(directory)


def make_task(request) -> PriorTask:
    """The `prior` trainer of `enhance train-latent` (a `LatentTrainingRequest`)."""
    if request.config is not None:
        raise EnhanceError(f"{request.config}: the prior trainer takes no config file (it trains its default UNet)")
    if request.options:
        raise EnhanceError(f"--option {next(iter(request.options))}: the prior trainer has no options of its own")
    return PriorTask(
        PriorTaskOptions(
            latent_files=request.latent_files, val_files=request.val_files, autoencoder=request.autoencoder,
            crop=request.crop, batch=request.batch, seed=request.seed, init_from=request.init_from,
        )
    )
