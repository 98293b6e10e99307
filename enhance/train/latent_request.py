"""What `enhance train-latent` hands a latent-model trainer: cached latents and where things are.

Every latent model (our prior, the latent-diffusion codec, PerCo) trains on the same cached
latents of the training photos; the trainer named on the command line (built in, or a
plugin's `enhance.trainers` entry point) turns this request into a `TrainingTask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .. import registry
from ..compute import fast_dtype
from .latents import cache_latents
from .trainer import Trainer, TrainerOptions

DEFAULT_MAX_SIDE = 640


@dataclass
class LatentTrainingRequest:
    latent_files: list[Path]
    val_files: list[Path]
    autoencoder: str = "taef2"
    prior: Path | None = None  # a prior bundle folder, for the codecs built on one
    crop: int = 32
    batch: int = 16
    seed: int = 0
    init_from: Path | None = None
    config: Path | None = None  # the model's config file, for a run that does not start from defaults
    options: dict[str, str] = field(default_factory=dict)  # trainer-specific settings (`--option KEY=VALUE`)


@dataclass
class PriorCodecTaskOptions:
    """What a trainer of a codec built on a prior bundle (latent-diffusion, PerCo) takes from the request.

    Subclasses add `config`, a `BundleConfig` whose defaults a request's config file replaces."""

    latent_files: list[Path]
    prior: Path | None
    val_files: list[Path] = field(default_factory=list)
    crop: int = 32
    batch: int = 16
    seed: int = 0
    init_from: Path | None = None

    @classmethod
    def from_request(cls, request: LatentTrainingRequest):
        options = cls(
            latent_files=request.latent_files, val_files=request.val_files, prior=request.prior,
            crop=request.crop, batch=request.batch, seed=request.seed, init_from=request.init_from,
        )
        if request.config is not None:
            options.config = type(options.config).load(request.config)
        options.apply(request.options)
        return options

    def apply(self, settings: dict[str, str]) -> None:
        """Sets the trainer-specific fields named in `settings`, converting each to its field's type."""
        from ..errors import EnhanceError

        shared = {f.name for f in fields(PriorCodecTaskOptions)} | {"config"}
        own = sorted(f.name for f in fields(self) if f.name not in shared)
        for key, text in settings.items():
            if key not in own:
                raise EnhanceError(f"--option {key}: this trainer has no such option (it has: {', '.join(own) or 'none'})")
            kind = type(getattr(self, key))
            try:
                setattr(self, key, kind(text))
            except ValueError:
                raise EnhanceError(f"--option {key}={text}: not a {kind.__name__}") from None
            self.check_option(key)

    def check_option(self, key: str) -> None:
        """Raises `EnhanceError` when the option `key` has a value this trainer cannot use."""


def cached_latents(roots: list[Path], cache: Path, autoencoder: str, *, every: int = 1, log=print) -> list[Path]:
    """The latent cache files of every image under `roots` (or of every `every`-th of each folder),
    encoding what is not cached yet."""
    from ..latent import load_autoencoder

    if not roots:
        return []
    dtype = fast_dtype("cpu") if not torch.cuda.is_available() else torch.float16
    model = load_autoencoder(autoencoder, device="cuda" if torch.cuda.is_available() else "cpu", dtype=dtype)
    return cache_latents(model, roots, cache, max_side=DEFAULT_MAX_SIDE, every=every, log=log)


def train_latent_model(name: str, request: LatentTrainingRequest, options: TrainerOptions, *, log=print) -> Path:
    """Trains (or resumes) the latent model `name`; returns its bundle folder."""
    task = registry.factory("trainer", name)(request)
    return Trainer(task, options, log=log).run()
