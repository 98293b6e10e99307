"""Late-start, early-stop DDIM sampling (the shared `enhance.ddim` step)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from ...ddim import ddim_step, linear_alphas_cumprod


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

    The late-start schedule is the tail of diffusers' "trailing" DDIM schedule with a stride of
    t_start // schedule_steps: for t_start=200 and 20 steps, timesteps 199, 189, ..., 9, each
    stepping 10 down, and the last one to the clean sample (diffusers' `set_alpha_to_one`).
    """

    def __init__(self, config: ScheduleConfig):
        config.validate()
        self.config = config
        self.alphas_cumprod = linear_alphas_cumprod(config.num_train_timesteps, config.beta_start, config.beta_end)
        self.stride = config.t_start // config.schedule_steps
        self.timesteps = torch.arange(config.t_start - 1, -1, -self.stride)[: config.schedule_steps]

    def initial_noise_scale(self) -> float:
        """Standard deviation of the noise that starts sampling at the first timestep."""
        alpha_bar = self.alphas_cumprod[int(self.timesteps[0])]
        return float((1 - alpha_bar).sqrt())

    def step(self, predicted_residual: torch.Tensor, timestep, sample: torch.Tensor) -> torch.Tensor:
        """One DDIM step (eta=0) from `sample` at `timestep`, given the clipped x0 prediction."""
        previous = int(timestep) - self.stride
        alpha_prev = self.alphas_cumprod[previous] if previous >= 0 else torch.tensor(1.0)
        return ddim_step(sample, predicted_residual, self.alphas_cumprod[int(timestep)], alpha_prev)
