"""The DDIM step that DIRAC and the latent priors share, on a discrete noise schedule.

A few lines of arithmetic, kept here rather than taken from diffusers' DDIMScheduler because
importing diffusers costs about 2 s on the 2-core CPU, which a viewer or thumbnailer running
DIRAC on one small JPEG would pay every time; a test checks DIRAC's schedule against it.
"""

from __future__ import annotations

import torch


def linear_alphas_cumprod(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Cumulative signal fractions of a linear beta schedule, as diffusers' `beta_schedule="linear"`."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_step(x: torch.Tensor, clean: torch.Tensor, alpha, alpha_prev, *, eta: float = 0.0, generator=None) -> torch.Tensor:
    """x at the earlier noise level alpha_prev, from x at alpha and the predicted clean sample.

    `eta` = 0 is deterministic DDIM, 1 is DDPM-like (fresh noise from `generator`)."""
    alpha, alpha_prev = torch.as_tensor(alpha), torch.as_tensor(alpha_prev)
    noise = (x - alpha.sqrt() * clean) / (1 - alpha).sqrt()
    sigma = eta * ((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)).sqrt()
    moved = alpha_prev.sqrt() * clean + (1 - alpha_prev - sigma**2).clamp(min=0).sqrt() * noise
    if eta > 0:
        moved = moved + sigma * torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x)
    return moved
