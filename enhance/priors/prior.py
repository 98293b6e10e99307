"""`LatentPrior`: predicts clean latents from noisy ones, and runs DDIM from any timestep down to 0."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..ddim import ddim_step
from ..errors import WeightsError
from ..latent.padding import pad_to_multiple
from ..weights import load_file_exact

FORMAT = "enhance.latent-prior"
VERSION = 1
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")


@dataclass
class PriorConfig:
    """Everything `prior.json` says; `mean`/`std` normalise the autoencoder's latents per channel."""

    autoencoder: str
    mean: list[float]
    std: list[float]
    prediction_type: str = "v_prediction"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "PriorConfig":
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise WeightsError(f"{where}: not a version {VERSION} {FORMAT} index")
        try:
            config = cls(
                autoencoder=str(data["autoencoder"]),
                mean=[float(v) for v in data["mean"]],
                std=[float(v) for v in data["std"]],
                prediction_type=str(data.get("prediction_type", "v_prediction")),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise WeightsError(f"{where}: bad prior index ({type(error).__name__}: {error})") from None
        if config.prediction_type not in PREDICTION_TYPES:
            raise WeightsError(f"{where}: prediction_type must be one of {PREDICTION_TYPES}")
        if len(config.mean) != len(config.std) or not all(math.isfinite(v) for v in config.mean + config.std):
            raise WeightsError(f"{where}: mean and std must be finite lists of one length")
        if min(config.std) <= 0:
            raise WeightsError(f"{where}: std must be positive")
        return config


def _unet_class(name: str):
    import diffusers

    if name not in UNET_CLASSES:
        raise WeightsError(f"unet class {name!r} is not one of {UNET_CLASSES}")
    return getattr(diffusers, name)


class LatentPrior(nn.Module):
    """A denoiser of normalised latents: x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) noise."""

    def __init__(self, unet: nn.Module, scheduler_config: dict, config: PriorConfig, context: torch.Tensor | None = None):
        super().__init__()
        self.unet = unet
        self.config = config
        self.scheduler_config = dict(scheduler_config)
        self.register_buffer("alphas_cumprod", alphas_from_scheduler(scheduler_config), persistent=False)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)
        self.context = context  # fixed cross-attention input (the empty prompt), or None

    @property
    def num_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def normalise(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents - self.mean) / self.std

    def denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.std + self.mean

    def timestep_for_noise(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The timestep whose noise-to-signal ratio sqrt((1 - a)/a) is nearest `sigma`."""
        ratio = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        sigma = torch.as_tensor(sigma, dtype=ratio.dtype, device=ratio.device)
        return (ratio.view(1, -1) - sigma.view(-1, 1)).abs().argmin(dim=1)

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def model_output(self, noisy: torch.Tensor, timesteps: torch.Tensor, **conditioning) -> torch.Tensor:
        """The UNet's raw output; latents of any size are edge-padded to its multiple and cropped back."""
        kwargs = dict(conditioning)
        if self.context is not None and "encoder_hidden_states" not in kwargs:
            kwargs["encoder_hidden_states"] = self.context.to(noisy).expand(noisy.shape[0], -1, -1)
        height, width = noisy.shape[-2:]
        padded = pad_to_multiple(noisy, self.size_multiple)
        return self.unet(padded, timesteps, **kwargs).sample[..., :height, :width]

    def predict_clean(self, noisy: torch.Tensor, timesteps: torch.Tensor, output: torch.Tensor | None = None, **conditioning) -> torch.Tensor:
        """x_0 from x_t, whatever the UNet predicts."""
        if output is None:
            output = self.model_output(noisy, timesteps, **conditioning)
        alpha = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(noisy.dtype)
        output = output.to(noisy.dtype)
        if self.config.prediction_type == "sample":
            return output
        if self.config.prediction_type == "epsilon":
            return (noisy - (1 - alpha).sqrt() * output) / alpha.sqrt()
        return alpha.sqrt() * noisy - (1 - alpha).sqrt() * output

    def training_target(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        if self.config.prediction_type == "sample":
            return clean
        if self.config.prediction_type == "epsilon":
            return noise
        return alpha.sqrt() * noise - (1 - alpha).sqrt() * clean

    def add_noise(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        return alpha.sqrt() * clean + (1 - alpha).sqrt() * noise

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor, start: int, steps: int, *, eta: float = 0.0, generator=None, guide=None, project=None, **conditioning):
        """DDIM from timestep `start` to a clean latent in `steps` network calls.

        `eta` = 0 is deterministic DDIM, 1 is DDPM-like (fresh noise from `generator` each step).
        `guide(noisy, t, conditioning) -> model output` replaces the plain call (classifier-free
        guidance lives in the codec that knows its conditions). `project(clean) -> clean`
        constrains each step's clean estimate (to what the sender measured, for example)."""
        times = ddim_timesteps(start, steps)
        x = noisy
        for index, t in enumerate(times):
            timestep = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            output = guide(x, timestep, conditioning) if guide is not None else self.model_output(x, timestep, **conditioning)
            clean = self.predict_clean(x, timestep, output=output)
            if project is not None:
                clean = project(clean)
            previous = times[index + 1] if index + 1 < len(times) else -1
            x = clean if previous < 0 else ddim_step(x, clean, self.alphas_cumprod[t], self.alphas_cumprod[previous], eta=eta, generator=generator)
        return x

    def save_pretrained(self, directory: Path | str, dtype=torch.float16) -> None:
        from ..train.trainer import atomic_save

        directory = Path(directory)
        (directory / "unet").mkdir(parents=True, exist_ok=True)
        (directory / "scheduler").mkdir(parents=True, exist_ok=True)
        (directory / "prior.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        settings = {key: value for key, value in dict(self.unet.config).items() if not key.startswith("_")}
        unet_config = {"_class_name": type(self.unet).__name__, **settings}
        (directory / "unet" / "config.json").write_text(json.dumps(unet_config, indent=2, default=list) + "\n")
        tensors = {k: v.to(dtype) for k, v in self.unet.state_dict().items()}
        atomic_save(tensors, directory / "unet" / "diffusion_pytorch_model.safetensors", {"format": "pt"})
        (directory / "scheduler" / "scheduler_config.json").write_text(json.dumps(self.scheduler_config, indent=2) + "\n")
        if self.context is not None:
            atomic_save({"empty_prompt": self.context}, directory / "conditioning.safetensors", {"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory: Path | str, *, device="cpu", dtype=torch.float32) -> "LatentPrior":
        directory = Path(directory)
        config = PriorConfig.from_dict(_read_json(directory / "prior.json"), str(directory / "prior.json"))
        unet = build_unet(_read_json(directory / "unet" / "config.json"), str(directory / "unet" / "config.json"))
        load_file_exact(unet, directory / "unet" / "diffusion_pytorch_model.safetensors")
        scheduler_config = _read_json(directory / "scheduler" / "scheduler_config.json")
        context = None
        if (directory / "conditioning.safetensors").exists():
            from ..weights import load_safetensors

            context = load_safetensors(directory / "conditioning.safetensors", ["empty_prompt"])["empty_prompt"].float()
        prior = cls(unet, scheduler_config, config, context=context)
        return prior.to(device=device, dtype=dtype).eval().requires_grad_(False)


def build_unet(config: dict, where: str = "unet config") -> nn.Module:
    """A diffusers UNet from its config dict (its `_class_name` picks the class)."""
    if not isinstance(config, dict):
        raise WeightsError(f"{where}: not a JSON object")
    # diffusers' bookkeeping keys (such as `_use_default_values`) would override settings.
    unet_class = _unet_class(str(config.get("_class_name", "UNet2DModel")))
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    try:
        return unet_class.from_config(config)
    except (TypeError, ValueError, KeyError) as error:
        raise WeightsError(f"{where}: cannot build {unet_class.__name__} ({error})") from None


def alphas_from_scheduler(config: dict) -> torch.Tensor:
    """alphas_cumprod of a diffusers DDIMScheduler config."""
    from diffusers import DDIMScheduler

    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        return DDIMScheduler.from_config(clean).alphas_cumprod.clone()
    except (TypeError, ValueError, NotImplementedError) as error:
        raise WeightsError(f"scheduler config: {error}") from None


def ddim_timesteps(start: int, steps: int) -> list[int]:
    """`steps` evenly spaced timesteps from `start` down (the last one above 0)."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    spacing = (start + 1) / steps
    return sorted({max(0, round(start - i * spacing)) for i in range(steps)}, reverse=True)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: cannot read ({error})") from None


def load_prior(name: str, *, device="cpu", dtype=torch.float32) -> LatentPrior:
    """A prior bundle listed in weights.lock, by name (its files resolved and hash-checked)."""
    from .. import weights

    return LatentPrior.from_pretrained(weights.resolve_bundle(name), device=device, dtype=dtype)
