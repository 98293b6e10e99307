"""Late-start, early-stop DDIM sampling over diffusers' DDIMScheduler."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from diffusers import DDIMScheduler


@dataclass(frozen=True)
class ScheduleConfig:
    """The diffusion schedule a DIRAC model was trained with, saved beside its weights."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    # Sampling starts at this training timestep (20% of the schedule) ...
    t_start: int = 200
    # ... and walks down it in this many evenly spaced DDIM steps; `steps` may stop early.
    schedule_steps: int = 20

    @classmethod
    def from_dict(cls, data: dict) -> "ScheduleConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown schedule config keys: {sorted(unknown)}")
        config = cls(**data)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if not 0 < self.t_start <= self.num_train_timesteps:
            raise ValueError("t_start must lie in (0, num_train_timesteps]")
        if self.schedule_steps < 1 or self.t_start % self.schedule_steps:
            raise ValueError("schedule_steps must divide t_start")
        if self.num_train_timesteps % (self.t_start // self.schedule_steps):
            raise ValueError("the step spacing must divide num_train_timesteps")


class LateStartDDIM:
    """DDIM over the last `t_start` timesteps, stoppable after any step.

    diffusers' DDIM steps by a fixed stride of num_train_timesteps // num_inference_steps,
    so the late-start schedule is the tail of a "trailing" schedule with that stride:
    for t_start=200 and 20 steps, timesteps 199, 189, ..., 9, each stepping 10 down.
    """

    def __init__(self, config: ScheduleConfig):
        config.validate()
        self.config = config
        self.scheduler = DDIMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            beta_schedule="linear",
            prediction_type="sample",
            clip_sample=False,
            set_alpha_to_one=True,
            timestep_spacing="trailing",
        )
        stride = config.t_start // config.schedule_steps
        self.scheduler.set_timesteps(config.num_train_timesteps // stride)
        self.timesteps = self.scheduler.timesteps[-config.schedule_steps :]

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    def initial_noise_scale(self) -> float:
        """Standard deviation of the noise that starts sampling at the first timestep."""
        alpha_bar = self.alphas_cumprod[int(self.timesteps[0])]
        return float((1 - alpha_bar).sqrt())

    def step(self, predicted_residual: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, generator=None):
        """One DDIM step (eta=0) from `sample` at `timestep`, given the clipped x0 prediction."""
        return self.scheduler.step(predicted_residual, timestep, sample, eta=0.0, generator=generator).prev_sample
