"""The DIRAC task: what `enhance train` trains, on the reusable `Trainer` (`enhance.train.trainer`).

The Trainer owns the run (checkpoint and resume, EMA, time budget, SIGTERM/SIGINT, the
JSON-lines log, validation); this module says what DIRAC learns: from a decoded crop and
noise, the residual to the original crop, with a share of samples at the first sampling
step (the fidelity mode, from noise alone). Crops are degraded on the fly by the codec
adapters (`enhance.train.data`), as at inference.

Checkpoints written before the Trainer existed (format "enhance.dirac.checkpoint") resume
unchanged: the tensors are laid out alike, and the Trainer accepts the old metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from ..enhancers import FIRST_STEP_WEIGHTS_FILE, WEIGHTS_FILE
from ..enhancers.dirac.config import BundleError, DiracConfig
from ..enhancers.dirac.model import DiracUNet, DiracUNetConfig
from ..enhancers.dirac.pipeline import DiracPipeline, clip_range
from ..enhancers.dirac.scheduler import LateStartDDIM
from ..errors import EnhanceError
from ..image import find_images, write_atomic
from ..metrics.detail import hf_energy_ratio
from ..metrics.psnr import psnr_rgb
from ..weights import load_exact, load_safetensors
from .adversarial import (
    PATCH,
    AdversarialOptions,
    PatchDiscriminator,
    adaptive_weight,
    coarse_mse,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    patch_distribution_loss,
    texture_energy_loss,
    without_unknown_chroma,
)
from .data import DEGRADATIONS, CropSampler, load_rgb
from .trainer import Trainer, TrainerOptions, adam_tensors, restore_adam

# The metadata format of checkpoints from before the Trainer; they resume as "dirac" ones.
LEGACY_CHECKPOINT_FORMAT = "enhance.dirac.checkpoint"
# Checkpoint key prefix of the frozen network a run's bundle holds beside the trained one.
PARTNER = "partner."


@dataclass
class TrainOptions:
    codec: str
    data: list[Path]
    out: Path
    val: list[Path] | None = None
    steps: int = 100_000
    minutes: float | None = None
    batch: int = 16
    crop: int = 128
    lr: float = 2e-4
    warmup: int = 500
    cooldown: int = 0
    ema_decay: float = 0.999
    # Share of samples drawn at the first sampling timestep: that step alone is the
    # fidelity mode, so it gets more than its uniform share of training.
    start_step_share: float = 0.25
    seed: int = 0
    device: str | None = None
    log_every: int = 50
    val_every: int = 1000
    checkpoint_every: int = 250
    val_quality: int = 10
    val_images: int = 12
    model: DiracUNetConfig | None = None
    # Without a checkpoint in `out`, start from these bundle weights (fresh optimiser):
    # how a run continues on a machine that kept only the committed bundle.
    init_from: Path | None = None
    # Sampling steps of the schedule (the realism end is its last step); None keeps the
    # `init_from` bundle's (or the default).
    schedule_steps: int | None = None
    # Train the steps after the first adversarially (the realism end); None: x0 MSE only.
    adversarial: AdversarialOptions | None = None
    # Train the first step's own network alone (the fidelity end, x0 MSE from noise alone);
    # the later steps keep the `init_from` bundle's network, and the bundle holds both.
    first_step_network: bool = False

    def trainer_options(self) -> TrainerOptions:
        return TrainerOptions(
            out=Path(self.out), steps=self.steps, minutes=self.minutes, lr=self.lr, warmup=self.warmup, cooldown=self.cooldown,
            ema_decay=self.ema_decay, log_every=self.log_every, val_every=self.val_every,
            checkpoint_every=self.checkpoint_every, seed=self.seed, device=self.device,
        )


def save_bundle(
    directory: Path, model: DiracUNet, config: DiracConfig, first_step: DiracUNet | None = None, dtype=torch.float16
) -> None:
    """A loadable bundle: config.json plus half-precision weights (half the size, same output in bf16),
    with the first step's own network when the config names one."""
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / "config.json")
    metadata = {"format": "enhance.dirac.weights", "version": "1"}
    for network, name in ((model, WEIGHTS_FILE), (first_step, FIRST_STEP_WEIGHTS_FILE)):
        if network is not None:
            tensors = {k: v.detach().to(dtype).contiguous() for k, v in network.state_dict().items()}
            write_atomic(directory / name, safetensors_bytes(tensors, metadata=metadata))


def to_unit(images: np.ndarray, device) -> torch.Tensor:
    """uint8 NxHxWx3 -> float NCHW in [-1, 1]."""
    tensor = torch.from_numpy(np.array(images, copy=True)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class Validator:
    """PSNR of 1-step enhancement on held-out images at one quality, against the codec."""

    def __init__(self, paths: list[Path], degradation, quality: int, limit: int):
        rng = np.random.default_rng(0)
        self.quality = quality
        self.pairs = []
        for path in paths[:limit]:
            image = load_rgb(path)
            height, width = (s - s % 16 for s in image.shape[:2])
            image = np.ascontiguousarray(image[:height, :width])
            # Force colour 4:2:0 (the common case) for a stable curve across runs.
            original = replace(degradation, greyscale_share=0.0, subsampling_420_share=1.0)
            target, decoded = original.degrade(image, quality, rng)
            self.pairs.append((target, decoded))

    def __call__(self, pipeline: DiracPipeline) -> dict:
        """PSNR and fine-band energy (against the original's) at 1 step and at the model's default steps."""
        stops = sorted({1, pipeline.config.default_steps})
        scores = {"psnr_base": [], "hf_base": []}
        generator = torch.Generator().manual_seed(0)
        for target, decoded in self.pairs:
            x_hat = to_unit(decoded[None], pipeline.device)
            noise = torch.randn(x_hat.shape, generator=generator)
            scores["psnr_base"].append(psnr_rgb(target, decoded))
            scores["hf_base"].append(hf_energy_ratio(target, decoded))
            for steps, residual in zip(stops, pipeline.residuals(x_hat, noise, self.quality, stops)):
                out = ((x_hat + residual).clamp(-1, 1).add(1).mul(127.5)).round().byte()
                out = out[0].permute(1, 2, 0).cpu().numpy()
                scores.setdefault(f"psnr_{steps}", []).append(psnr_rgb(target, out))
                scores.setdefault(f"hf_{steps}", []).append(hf_energy_ratio(target, out))
        return {"quality": self.quality, **{key: float(np.mean(values)) for key, values in scores.items()}}


def trained_network(config: DiracConfig, first_step: bool) -> DiracUNetConfig:
    """The network a run trains: the first step's own (a bundle without one: its only network,
    where the first step's starts) or the one that makes the later steps."""
    return (config.first_step_model or config.model) if first_step else config.model


def _with_trained_network(config: DiracConfig, network: DiracUNetConfig, first_step: bool) -> DiracConfig:
    return replace(config, first_step_model=network) if first_step else replace(config, model=network)


def _grown_config(options: TrainOptions) -> tuple[DiracConfig, tuple[str, ...], bool]:
    """The `init_from` bundle's config with the trained network grown as `options.model` asks,
    the prefixes of its new modules, and whether its trained refiner is to be widened."""
    config = DiracConfig.load(Path(options.init_from) / "config.json")
    first_step = options.first_step_network
    trained = trained_network(config, first_step)
    config = _with_trained_network(config, trained, first_step)
    if options.model is None or options.model == trained:
        return config, (), False
    new_modules = _growth(trained, options.model)
    if new_modules is None:
        raise EnhanceError(
            f"{options.init_from}: a bundle can only be grown by a refinement stage or by more residual blocks; "
            f"its model is {trained.to_dict()}"
        )
    widened = 0 < trained.refine_channels < options.model.refine_channels
    return _with_trained_network(config, options.model, first_step), new_modules, widened


def _growth(old: DiracUNetConfig, new: DiracUNetConfig) -> tuple[str, ...] | None:
    """Prefixes of the modules `new` adds to `old`, or None when `new` is not a growth of it.

    Each added module starts as the identity (a residual block's output convolution and the
    refiner's are zero-initialised), so the grown model first computes what the old one did.
    A wider refiner is a growth too: `_widen_refiner` places the trained one inside it.
    """
    same_shape = replace(
        new, blocks=old.blocks, mid_blocks=old.mid_blocks, refine_channels=old.refine_channels, refine_blocks=old.refine_blocks
    )
    deeper = all(b >= a for a, b in zip(old.blocks, new.blocks)) and new.mid_blocks >= old.mid_blocks
    refiner_grown = new.refine_channels >= old.refine_channels and new.refine_blocks >= old.refine_blocks
    if same_shape != old or not deeper or not refiner_grown:
        return None
    added = [f"mid.{i}." for i in range(old.mid_blocks, new.mid_blocks)]
    for level, (a, b) in enumerate(zip(old.blocks, new.blocks)):
        added += [f"{part}.{level}.{i}." for part in ("encoder", "decoder") for i in range(a, b)]
    if old.refine_channels == 0 and new.refine_channels:
        added.append("refiner.")
    added += [f"refiner.blocks.{i}." for i in range(old.refine_blocks, new.refine_blocks)]
    return tuple(added)


def _widen_refiner(state: dict[str, torch.Tensor], model: DiracUNet) -> dict[str, torch.Tensor]:
    """`state` with a trained refiner placed inside `model`'s wider one.

    The new channels keep their initialisation; the output convolution's weights from them
    are zero (it starts at zero), so the widened model first computes what the narrow one did.
    """
    target = model.state_dict()
    widened = dict(state)
    for key, trained in state.items():
        fresh = target.get(key)
        if not key.startswith("refiner.") or fresh is None or fresh.shape == trained.shape:
            continue
        fresh = fresh.clone()
        if key.startswith("refiner.film."):
            # FiLM's rows are (scales, shifts): each half keeps its trained rows first.
            old_half, new_half = trained.shape[0] // 2, fresh.shape[0] // 2
            fresh[:old_half] = trained[:old_half]
            fresh[new_half:new_half + old_half] = trained[old_half:]
        else:
            fresh[tuple(slice(0, n) for n in trained.shape)] = trained
        widened[key] = fresh
    return widened


class DiracTask:
    """The DIRAC residual-diffusion objective as a `TrainingTask`.

    A bundle may hold two networks: the first step's own and the one for the later steps.
    A run trains one of them; the other (its partner) stays frozen, travels in the
    checkpoint, and is written into each bundle beside the trained one.
    """

    legacy_checkpoint_formats = (LEGACY_CHECKPOINT_FORMAT,)

    def __init__(self, options: TrainOptions, log: Callable[[str], None] = print):
        if options.codec not in DEGRADATIONS:
            raise ValueError(f"no training degradation for codec {options.codec!r}; known: {sorted(DEGRADATIONS)}")
        self.options = options
        self.first_step = options.first_step_network
        # Another kind of checkpoint: one run's first-step network never resumes as another's later steps.
        self.kind = "dirac-first-step" if self.first_step else "dirac"
        self.checkpoint = Path(options.out) / "checkpoint.safetensors"
        self.dirac = DiracConfig(codec=options.codec, model=options.model or DiracUNetConfig())
        self.new_modules: tuple[str, ...] = ()
        self.widen_refiner = False
        self.init_from = options.init_from if not self.checkpoint.exists() else None
        if self.first_step and options.adversarial:
            raise EnhanceError("the first step's own network is the fidelity end: it is not trained adversarially")
        if self.first_step and self.init_from is None and not self.checkpoint.exists():
            raise EnhanceError("training a first step's own network needs the bundle whose later steps it joins (--init-from)")
        self.partner: DiracUNet | None = None
        if self.init_from is not None:
            self.dirac, self.new_modules, self.widen_refiner = _grown_config(options)
            self.partner = self._load_partner(Path(self.init_from))
            log(f"initialised from {options.init_from}")
        if options.schedule_steps is not None:
            self.dirac = _with_schedule_steps(self.dirac, options.schedule_steps)
        self.config = self.dirac.to_dict()
        if options.adversarial and options.batch < 2:
            raise EnhanceError(f"adversarial training needs a batch of at least 2 (a fidelity and a realism sample), not {options.batch}")
        _check_patch_levels(options)
        self.adversary = _Adversary(options, self.dirac) if options.adversarial else None
        degradation = DEGRADATIONS[options.codec]()
        log(f"loading training images from {', '.join(map(str, options.data))}")
        self.sampler = CropSampler(find_images(options.data), options.crop, degradation, seed=options.seed)
        self.validator = None
        if options.val:
            self.validator = Validator(find_images(options.val), degradation, options.val_quality, options.val_images)
        self._next_step: int | None = None
        self._set_schedule()

    def _set_schedule(self) -> None:
        self.schedule = LateStartDDIM(self.dirac.schedule)
        self.alphas = self.schedule.alphas_cumprod
        self.t_first = int(self.schedule.timesteps[0])

    def resume_config(self, stored: dict) -> dict:
        """A resume trains the run's own model: built from the checkpoint's config; asking for another is refused."""
        config = DiracConfig.from_dict(stored)
        trained = trained_network(config, self.first_step)
        if self.options.model is not None and self.options.model != trained:
            raise EnhanceError(f"{self.checkpoint}: this run trains the model {trained.to_dict()}, not the one asked for")
        self.dirac, self.init_from = config, None
        self._set_schedule()
        return stored

    def _partner_config(self) -> DiracUNetConfig | None:
        return self.dirac.model if self.first_step else self.dirac.first_step_model

    def _load_partner(self, bundle: Path) -> DiracUNet | None:
        """The `bundle`'s network this run does not train, frozen; None when it has none."""
        config = self._partner_config()
        if config is None:
            return None
        partner, path = DiracUNet(config), bundle / (WEIGHTS_FILE if self.first_step else FIRST_STEP_WEIGHTS_FILE)
        load_exact(partner, load_safetensors(path, error=BundleError), str(path), error=BundleError)
        return _frozen(partner, self.options)

    def _file_of_trained(self, bundle: Path) -> Path:
        """The trained network's weights in an `init_from` bundle: a first step starts from the
        bundle's own first-step network, or from its only one."""
        has_own = DiracConfig.load(bundle / "config.json").first_step_model is not None
        return bundle / (FIRST_STEP_WEIGHTS_FILE if self.first_step and has_own else WEIGHTS_FILE)

    def _checked_partner(self) -> DiracUNet | None:
        if self._partner_config() is not None and self.partner is None:
            raise EnhanceError(f"{self.checkpoint}: the checkpoint lacks the frozen network this run's bundle holds beside the trained one")
        return self.partner

    def build(self, config: dict) -> DiracUNet:
        model = DiracUNet(trained_network(DiracConfig.from_dict(config), self.first_step))
        if self.init_from is not None:
            path = self._file_of_trained(Path(self.init_from))
            state = load_safetensors(path, error=BundleError)
            if self.widen_refiner:
                state = _widen_refiner(state, model)
            load_exact(model, state, str(path), new_modules=self.new_modules, error=BundleError)
        return model.to(memory_format=torch.channels_last)

    def _noised(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy residual, timesteps): a share at the first sampling step, from noise alone."""
        n, device = residual.shape[0], residual.device
        t = torch.randint(0, self.t_first, (n,), device=device)
        share = 1.0 if self.first_step else self.options.start_step_share
        at_start = torch.rand(n, device=device) < share
        t = torch.where(at_start, torch.full_like(t, self.t_first), t)
        alpha = self.alphas.to(device)[t].view(-1, 1, 1, 1)
        # Sampling starts from noise alone (the residual is unknown), so the first step is
        # trained on exactly that; at 20% of the schedule a scaled residual would still
        # show through the noise and the model would learn to rely on it.
        signal_scale = torch.where(at_start.view(-1, 1, 1, 1), torch.zeros_like(alpha), alpha.sqrt())
        return signal_scale * residual + (1 - alpha).sqrt() * torch.randn_like(residual), t

    def loss(self, model: DiracUNet, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if self._next_step != step:
            # Reseeded where a run (re)starts, so a resumed run draws batches it has not seen.
            self.sampler.set_state(self.options.seed, step)
        self._next_step = step + 1
        device = next(model.parameters()).device
        crops = self.sampler.batch(self.options.batch)
        x, x_hat = to_unit(crops.targets, device), to_unit(crops.decoded, device)
        residual = (x - x_hat) * self.dirac.residual_scale
        rates = crops.rates
        rate_input = None
        if self.dirac.rate is not None:
            rate_input = torch.tensor([self.dirac.rate.normalise(r) for r in rates], device=device, dtype=torch.float32)
        full_chroma = torch.from_numpy(crops.full_chroma).to(device)
        if self.adversary is not None:
            return self._realism_loss(model, x_hat, residual, rate_input, rates, step, full_chroma)
        noisy, t = self._noised(residual)
        prediction = _call(model, noisy, x_hat, t, rate_input)
        return _mse(prediction, residual, full_chroma), {}

    def _realism_loss(self, model, x_hat, residual, rate_input, rates, step: int, full_chroma):
        """x0 MSE at the first step for a share of the batch (the fidelity end); for the rest, the
        prediction at a later step of the model's own sampling trajectory, judged by the discriminator."""
        n = residual.shape[0]
        first_step_network = self._checked_partner()
        # At least one sample of each kind, whatever the batch and share; none for the
        # fidelity end where the first step has its own network.
        n_fidelity = 0 if first_step_network else min(n - 1, max(1, round(n * self.options.adversarial.fidelity_share)))
        start = torch.randn_like(residual) * self.schedule.initial_noise_scale()
        first = torch.full((n,), self.t_first, device=residual.device)
        rate_of = lambda part: None if rate_input is None else rate_input[part]  # noqa: E731
        fidelity = slice(0, n_fidelity)
        scalars = {}
        fidelity_mse = residual.new_zeros(())
        if n_fidelity:
            prediction = _call(model, start[fidelity], x_hat[fidelity], first[fidelity], rate_of(fidelity))
            fidelity_mse = _mse(prediction, residual[fidelity], full_chroma[fidelity])
            scalars["fidelity_mse"] = fidelity_mse.item()
        realism = slice(n_fidelity, n)
        steps = int(np.random.default_rng([self.options.seed, step, 1]).integers(2, self.dirac.schedule.schedule_steps + 1))
        networks = (first_step_network or model, model)
        prediction = self._trajectory(networks, start[realism], x_hat[realism], rate_of(realism), rates[realism], steps)
        scaled = self.dirac.residual_scale
        losses = self.adversary.generator_losses(
            model, prediction, residual[realism], x_hat[realism], scaled, full_chroma[realism]
        )
        share = (n - n_fidelity) / n
        total = (1 - share) * fidelity_mse + share * losses.pop("total")
        return total, {**scalars, "steps": steps, **losses}

    def _trajectory(self, networks, sample, x_hat, rate_input, rates, steps: int) -> torch.Tensor:
        """The x0 prediction at step `steps` of the sampling trajectory from `sample`; earlier steps without gradients.

        `networks` are (first step's, later steps'), as the pipeline samples them."""
        clip = clip_range(self.dirac, list(rates), sample.device)
        timesteps = self.schedule.timesteps[:steps]
        first_network, model = networks
        with torch.no_grad():
            for index, timestep in enumerate(timesteps[:-1]):
                t = torch.full((sample.shape[0],), int(timestep), device=sample.device)
                prediction = _call(first_network if index == 0 else model, sample, x_hat, t, rate_input)
                if clip is not None:
                    prediction = prediction.clamp(*clip)
                sample = self.schedule.step(prediction, timestep, sample)
        t = torch.full((sample.shape[0],), int(timesteps[-1]), device=sample.device)
        return _call(model, sample, x_hat, t, rate_input)

    def extra_state(self) -> dict[str, torch.Tensor]:
        state = {} if self.adversary is None else self.adversary.state()
        partner = self._checked_partner()
        if partner is not None:
            state.update({f"{PARTNER}{k}": v for k, v in partner.state_dict().items()})
        return state

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.adversary is not None:
            self.adversary.load(tensors)
        config = self._partner_config()
        if config is not None:
            partner = DiracUNet(config)
            state = {k[len(PARTNER):]: v for k, v in tensors.items() if k.startswith(PARTNER)}
            load_exact(partner, state, str(self.checkpoint), error=EnhanceError)
            self.partner = _frozen(partner, self.options)

    def _networks(self, model: DiracUNet) -> tuple[DiracUNet, DiracUNet | None]:
        """(later steps' network, first step's own or None) for a bundle or a pipeline, given the trained one."""
        partner = self._checked_partner()
        return (partner, model) if self.first_step else (model, partner)

    def validate(self, model: DiracUNet) -> dict:
        if self.validator is None:
            return {}
        # Copies: the pipeline puts its networks in its own dtype.
        later, first = (_copy(network) if network is not None else None for network in self._networks(model))
        device = next(model.parameters()).device
        return self.validator(DiracPipeline(later, self.dirac, device=device, first_step=first))

    def save_bundle(self, model: DiracUNet, directory: Path) -> None:
        later, first = self._networks(model)
        save_bundle(directory, later, self.dirac, first_step=first)


def _training_device(options: TrainOptions) -> torch.device:
    return torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _frozen(network: DiracUNet, options: TrainOptions) -> DiracUNet:
    return network.to(_training_device(options), memory_format=torch.channels_last).eval().requires_grad_(False)


def _copy(network: DiracUNet) -> DiracUNet:
    copy = DiracUNet(network.config)
    copy.load_state_dict(network.state_dict())
    return copy


def _call(model: DiracUNet, noisy, x_hat, t, rate_input) -> torch.Tensor:
    channels_last = torch.channels_last
    prediction = model(noisy.contiguous(memory_format=channels_last), x_hat.contiguous(memory_format=channels_last), t, rate_input)
    return prediction.float()


def _mse(prediction: torch.Tensor, residual: torch.Tensor, full_chroma: torch.Tensor) -> torch.Tensor:
    """MSE blind to the finest chroma of crops whose source lacked it (`without_unknown_chroma`)."""
    return torch.mean(without_unknown_chroma(prediction - residual, full_chroma) ** 2)


def _with_schedule_steps(config: DiracConfig, steps: int) -> DiracConfig:
    """The config sampling the same late-start span in `steps` steps, its default the realism end."""
    schedule = replace(config.schedule, schedule_steps=steps)
    try:
        schedule.validate()
    except ValueError as error:
        raise EnhanceError(f"cannot sample in {steps} steps: {error}") from None
    return replace(config, schedule=schedule, default_steps=steps)


def _check_patch_levels(options: TrainOptions) -> None:
    """Refuses patch-distribution bands too coarse to hold one 7x7 patch of a training crop."""
    adversarial = options.adversarial
    if adversarial is None or not adversarial.patch_distribution_weight:
        return
    coarsest = options.crop // 2 ** (adversarial.patch_distribution_levels - 1)
    if coarsest < PATCH:
        raise EnhanceError(
            f"the patch-distribution term's band {adversarial.patch_distribution_levels} of a {options.crop} px crop"
            f" is {coarsest} px, smaller than its {PATCH} px patches: use fewer levels or a larger --crop"
        )


class _Adversary:
    """The discriminator, its optimiser, and the generator's realism losses."""

    def __init__(self, options: TrainOptions, config: DiracConfig):
        self.options = options.adversarial
        device = _training_device(options)
        self.discriminator = PatchDiscriminator(config.model.image_channels, self.options.channels).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.options.lr, betas=(0.5, 0.9))

    def generator_losses(self, model: DiracUNet, prediction, residual, x_hat, scale: float, full_chroma) -> dict:
        """Updates the discriminator on this batch, then returns the generator's losses (key "total" has the gradient).

        Every term, the discriminator's too, sees the residuals through `without_unknown_chroma`."""
        prediction, residual = without_unknown_chroma(prediction, full_chroma), without_unknown_chroma(residual, full_chroma)
        output, original = x_hat + prediction / scale, x_hat + residual / scale
        disc = self.discriminator
        disc.requires_grad_(True)
        real_logits, real_features = disc(original, x_hat)
        fake_logits, _ = disc(output.detach(), x_hat)
        d_loss = discriminator_loss(real_logits.float(), fake_logits.float())
        self.optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizer.step()
        disc.requires_grad_(False)
        fake_logits, fake_features = disc(output, x_hat)
        energy = texture_energy_loss(output, original, chroma_weight=self.options.energy_chroma_weight)
        distribution = (
            patch_distribution_loss(
                output, original, levels=self.options.patch_distribution_levels, ycbcr=self.options.patch_distribution_ycbcr
            )
            if self.options.patch_distribution_weight else energy.new_zeros(())
        )
        reconstruction = (
            coarse_mse(prediction, residual)
            + self.options.fine_mse_weight * torch.mean((prediction - residual) ** 2)
            # In the residual's scaled units, as the two MSE terms are.
            + self.options.energy_weight * scale * energy
            + self.options.patch_distribution_weight * distribution
        )
        adversarial = generator_loss(fake_logits.float()) + self.options.feature_matching * feature_matching_loss(real_features, fake_features)
        last = (model.refiner.conv2 if model.refiner is not None else model.head).weight
        weight = self.options.weight * adaptive_weight(reconstruction, adversarial, last)
        return {
            "total": reconstruction + weight * adversarial,
            "reconstruction": reconstruction.item(), "adversarial": adversarial.item(),
            "energy": energy.item(), "patch_distribution": distribution.item(),
            "adaptive_weight": weight.item(), "d_loss": d_loss.item(),
            "d_real": real_logits.float().mean().item(), "d_fake": fake_logits.float().mean().item(),
        }

    def state(self) -> dict[str, torch.Tensor]:
        tensors = {f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()}
        return {**tensors, **adam_tensors(self.optimizer, self.discriminator)}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        prefix = "discriminator."
        self.discriminator.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        restore_adam(self.optimizer, self.discriminator, tensors)


def train(options: TrainOptions, log: Callable[[str], None] = print) -> Path:
    """Trains (or resumes) a DIRAC model; returns the bundle directory of the EMA weights."""
    Path(options.out).mkdir(parents=True, exist_ok=True)
    return Trainer(DiracTask(options, log=log), options.trainer_options(), log=log).run()
