"""A codec bundle with the shipped TAEF2, a tiny random prior and random codec weights."""

from __future__ import annotations

from pathlib import Path

import torch

from enhance.testing import bundle_folder_with_taef2, tiny_prior
from enhance.train.trainer import atomic_save
from enhance_latent_diffusion.config import CodecConfig
from enhance_latent_diffusion.model import LatentDiffusionCodecModel


def make_bundle(directory: Path, levels: int = 6, seed: int = 0, *, empty_prompt: torch.Tensor | None = None) -> Path:
    """With `empty_prompt` (1 x tokens x 16), the prior is a text-conditioned UNet2DConditionModel
    run on that fixed prompt embedding, as Stable Diffusion 2.1 is run unconditionally."""
    torch.manual_seed(seed)
    bundle_folder_with_taef2(directory)
    if empty_prompt is None:
        tiny_prior().save_pretrained(directory / "prior-taef2")
    else:
        tiny_prior(cross_attention_dim=empty_prompt.shape[-1], context=empty_prompt).save_pretrained(directory / "prior-taef2")
    torch.manual_seed(seed)
    config = CodecConfig(
        lambdas=[0.5 * 2**k for k in range(levels)], code_channels=16, transform_width=16, hyper_channels=8, hyper_width=16, gamma_width=8, embed_dim=4, offset_group=2,
    )
    model = LatentDiffusionCodecModel(config)
    with torch.no_grad():
        # As a trained model has: a coarser step at lower levels.
        model.base_log_step.copy_(torch.linspace(-1, -6, levels).view(-1, 1).expand(levels, config.code_channels))
    model.hyperprior.density.freeze_tables()
    config.save(directory / "codec.json")
    atomic_save(dict(model.state_dict()), directory / "model.safetensors", {"format": "test"})
    return directory
