"""DIRAC sampling: wires the residual UNet to the late-start DDIM schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...compute import fast_dtype
from ...weights import load_exact, load_safetensors
from .. import FIRST_STEP_WEIGHTS_FILE, WEIGHTS_FILE
from .config import BundleError, DiracConfig
from .model import DiracUNet
from .scheduler import LateStartDDIM


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def clip_range(config: DiracConfig, rates: list[float | None], device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-sample, per-channel bounds (N x C x 1 x 1) for x0 predictions; None without thresholds.

    Sampling passes one rate, training one per sample of its batch.
    """
    thresholds = config.thresholds
    if thresholds is None:
        return None
    # With no rate known, the widest measured range is the safe choice.
    widest = np.min(np.asarray(thresholds.lower), axis=0), np.max(np.asarray(thresholds.upper), axis=0)
    lower, upper = zip(*(widest if rate is None else thresholds.at(float(rate)) for rate in rates))
    as_tensor = lambda v: torch.tensor(np.array(v), dtype=torch.float32, device=device)[:, :, None, None]  # noqa: E731
    return as_tensor(lower), as_tensor(upper)


def load_state_dict_strict(model: torch.nn.Module, path: Path, *, new_modules: tuple[str, ...] = ()) -> None:
    """Loads a bundle's safetensors weights, which must match the model exactly (`enhance.weights.load_exact`).

    `new_modules` names module prefixes the file may lack (a trained model grown by a
    stage that starts as the identity); they keep their initialisation.
    """
    state = load_safetensors(path, error=BundleError)
    load_exact(model, state, str(path), new_modules=new_modules, error=BundleError)


class DiracPipeline:
    """Enhances decoded images given as tensors; see `enhance.enhancers.dirac.DiracEnhancer` for arrays."""

    def __init__(self, model: DiracUNet, config: DiracConfig, device=None, dtype=None, first_step: DiracUNet | None = None):
        """`first_step` is the first step's own network, given exactly when the config names one."""
        if (first_step is None) != (config.first_step_model is None):
            raise ValueError("a first-step network is given exactly when the config names a first_step_model")
        self.config = config
        self.device = torch.device(device) if device is not None else default_device()
        # bf16 where it is fast (`enhance.compute`); the benchmark measures its PSNR cost
        # (under 0.01 dB for the shipped model).
        self.dtype = dtype or fast_dtype(self.device)
        place = lambda network: network.to(device=self.device, dtype=self.dtype, memory_format=torch.channels_last).eval()  # noqa: E731
        self.model = place(model)
        self.first_step = place(first_step) if first_step is not None else self.model
        self.schedule = LateStartDDIM(config.schedule)

    @classmethod
    def from_directory(cls, directory: Path, device=None, dtype=None) -> "DiracPipeline":
        directory = Path(directory)
        config = DiracConfig.load(directory / "config.json")
        model = DiracUNet(config.model)
        load_state_dict_strict(model, directory / WEIGHTS_FILE)
        first_step = None
        if config.first_step_model is not None:
            first_step = DiracUNet(config.first_step_model)
            load_state_dict_strict(first_step, directory / FIRST_STEP_WEIGHTS_FILE)
        return cls(model, config, device=device, dtype=dtype, first_step=first_step)

    def check_steps(self, steps: int) -> int:
        limit = self.config.schedule.schedule_steps
        if not 1 <= steps <= limit:
            raise ValueError(f"steps must lie in 1..{limit} for this model")
        return steps

    def residual(self, decoded: torch.Tensor, noise: torch.Tensor, rate: float | None, steps: int) -> torch.Tensor:
        """Predicted residual (image units, [-1, 1] scale) for decoded images in [-1, 1].

        `noise` is standard normal of the same shape; it is the only randomness, so the
        caller controls determinism (and tiles can share one noise field).
        """
        return self.residuals(decoded, noise, rate, [steps])[0]

    @torch.no_grad()
    def residuals(
        self,
        decoded: torch.Tensor,
        noise: torch.Tensor,
        rate: float | None,
        stops: list[int],
    ) -> list[torch.Tensor]:
        """Residual predictions after each of `stops` steps of one sampling trajectory.

        Early stopping returns the x0 prediction of the step it stops at, so every stop
        of one trajectory comes from a single run of max(stops) steps.
        """
        for steps in stops:
            self.check_steps(steps)
        cfg = self.config
        if cfg.rate is not None and rate is None:
            raise ValueError(f"this model needs the base codec's rate ({cfg.rate.name})")
        if cfg.rate is None:
            rate = None
        batch = decoded.shape[0]
        rate_input = None
        if cfg.rate is not None:
            rate_input = torch.full((batch,), cfg.rate.normalise(rate), device=self.device)
        clip = clip_range(cfg, [rate], self.device)
        decoded = decoded.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        sample = noise.to(self.device, torch.float32) * self.schedule.initial_noise_scale()
        results = {}
        for index, timestep in enumerate(self.schedule.timesteps[: max(stops)], start=1):
            t = torch.full((batch,), int(timestep), device=self.device)
            model_input = sample.to(self.dtype).contiguous(memory_format=torch.channels_last)
            network = self.first_step if index == 1 else self.model
            prediction = network(model_input, decoded, t, rate_input).float()
            if clip is not None:
                prediction = prediction.clamp(*clip)
            if index in stops:
                results[index] = prediction / cfg.residual_scale
            if index < max(stops):
                sample = self.schedule.step(prediction, timestep, sample)
        for steps in stops:
            if not bool(torch.isfinite(results[steps]).all()):
                raise BundleError("the DIRAC model produced non-finite values (NaN or infinity); its weights are broken")
        return [results[steps] for steps in stops]
