"""Training task: PerCo's hyper-encoder, codebooks and decoder, fine-tuned from our latent prior.

Each step draws one rate level, encodes a batch of cached latents to its local and global
codes, and trains the decoder's diffusion loss (v-prediction, min-SNR-5 weights floored at 1)
conditioned on them, plus the quantisers' codebook and commitment losses and the encoder's
probe loss (its codes must predict the mean latent of their cells; `probe_weight`). The global code is
dropped (replaced by a learned null code) for `drop_global` of the samples, which is what
classifier-free guidance needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from enhance.compute import autocast
from enhance.priors import LatentPrior
from enhance.train.latent_request import PriorCodecTaskOptions
from enhance.train.latents import LatentCropSampler
from enhance.train.prior import min_snr_loss
from enhance.train.trainer import atomic_save

from .codec import _EncoderSide
from .config import PercoConfig
from .model import PercoModel, extend_prior


# The decoder's x0 error weighs at least this at every noise level, so that the noisy steps,
# where only the codes say what the image is, are learnt (see min_snr_loss).
SNR_FLOOR = 1.0


@dataclass
class PercoTaskOptions(PriorCodecTaskOptions):
    drop_global: float = 0.1
    # The probe term's weight: how hard the codes are pushed to say their cells' mean latent
    # (layout and colour) beside what the diffusion loss asks of them.
    probe_weight: float = 1.0
    config: PercoConfig = field(default_factory=PercoConfig)

    def check_option(self, key: str) -> None:
        from enhance.errors import EnhanceError

        if key in ("drop_global", "probe_weight") and not getattr(self, key) >= 0:
            raise EnhanceError(f"--option {key}={getattr(self, key)}: must be 0 or more")
        if key == "drop_global" and self.drop_global > 1:
            raise EnhanceError(f"--option drop_global={self.drop_global}: a share, at most 1")


class PercoTask:
    kind = "perco"

    def __init__(self, options: PercoTaskOptions):
        self.options = options
        self.sampler = LatentCropSampler(options.latent_files, options.crop, seed=options.seed)
        self.config = options.config.to_dict()
        self.val_batch = LatentCropSampler(options.val_files, options.crop, seed=1234).batch(16) if options.val_files else None

    def build(self, config: dict) -> PercoModel:
        perco_config = PercoConfig.from_dict(config, "perco task config")
        if self.options.init_from is not None:
            from enhance.weights import load_file_exact

            decoder = LatentPrior.from_pretrained(Path(self.options.init_from) / "decoder")
            model = PercoModel(perco_config, decoder)
            load_file_exact(_EncoderSide(model), Path(self.options.init_from) / "model.safetensors")
        else:
            model = PercoModel(perco_config, extend_prior(LatentPrior.from_pretrained(self.options.prior), perco_config.code_dim))
        return model.train().requires_grad_(True)

    def loss(self, model: PercoModel, step: int):
        self.sampler.set_state(self.options.seed, step)
        rng = np.random.default_rng([self.options.seed, step, 1])
        device = model.null_global.device
        latent = model.decoder.normalise(self.sampler.batch(self.options.batch).to(device))
        level = int(rng.integers(len(model.config.levels)))
        diffusion, vq, probe = self._losses(model, latent, level, rng)
        return diffusion + vq + self.options.probe_weight * probe, {"diffusion": diffusion.item(), "vq": vq.item(), "probe": probe.item(), "level": level}

    def _losses(self, model: PercoModel, latent: torch.Tensor, level: int, rng: np.random.Generator, timesteps=None):
        batch = latent.shape[0]
        local, _, global_codes, _, vq = model.encoder(latent, level)
        probe = model.encoder.probe_loss(local, latent, level)
        features = model.local_features(local, level, latent.shape[-2:])
        drop = torch.from_numpy(rng.random(batch) < self.options.drop_global).to(latent.device)
        null = model.null_global.expand(batch, -1, -1)
        global_codes = torch.where(drop.view(-1, 1, 1), null, global_codes)
        condition = model.condition_vector(level, global_codes, batch)
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        noise = torch.randn(latent.shape, generator=generator).to(latent.device)
        if timesteps is None:
            timesteps = torch.randint(0, model.decoder.num_timesteps, (batch,), generator=generator).to(latent.device)
        diffusion = min_snr_loss(
            model.decoder, latent, noise, timesteps, lambda noisy, t: model.output(noisy, t, features, condition), snr_floor=SNR_FLOOR
        )
        return diffusion, vq, probe

    @torch.no_grad()
    def validate(self, model: PercoModel) -> dict:
        if self.val_batch is None:
            return {}
        latent = model.decoder.normalise(self.val_batch.to(model.null_global.device))
        metrics = {}
        for level in range(len(model.config.levels)):
            rng = np.random.default_rng(level)
            timesteps = torch.full((latent.shape[0],), 700, device=latent.device)
            with autocast(latent.device):
                diffusion, _, probe = self._losses(model, latent, level, rng, timesteps=timesteps)
                _, indices, _, _, _ = model.encoder(latent, level)
            used = indices.unique().numel() / model.config.levels[level][1]
            metrics[f"L{level + 1}"] = {"loss_t700": round(float(diffusion), 4), "probe": round(float(probe), 4), "codes_used": round(used, 3)}
        return metrics

    def save_bundle(self, model: PercoModel, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        PercoConfig.from_dict(self.config, "perco task config").save(directory / "perco.json")
        atomic_save(dict(_EncoderSide(model).state_dict()), directory / "model.safetensors", {"format": "enhance.perco.weights", "version": "1"})
        model.decoder.save_pretrained(directory / "decoder")


def make_task(request) -> PercoTask:
    """The `perco` trainer of `enhance train-latent` (its decoder starts from `--prior`)."""
    from enhance.errors import EnhanceError

    if request.prior is None and request.init_from is None:
        raise EnhanceError("perco fine-tunes a prior: give --prior BUNDLE_DIR (or --init-from a PerCo bundle)")
    return PercoTask(PercoTaskOptions.from_request(request))
