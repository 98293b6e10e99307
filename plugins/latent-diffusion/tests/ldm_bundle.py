"""A codec bundle with the shipped TAEF2, a tiny random prior and random codec weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from enhance.priors import LatentPrior, PriorConfig
from enhance.priors.prior import build_unet
from enhance.train.prior import SCHEDULER
from enhance.train.trainer import atomic_save
from enhance_latent_diffusion.config import CodecConfig
from enhance_latent_diffusion.model import LatentDiffusionCodecModel

REPO = Path(__file__).resolve().parents[3]


def tiny_prior(channels: int = 32) -> LatentPrior:
    unet = build_unet({
        "_class_name": "UNet2DModel", "in_channels": channels, "out_channels": channels,
        "block_out_channels": [8, 16], "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 8, "norm_num_groups": 4,
    })
    return LatentPrior(unet, SCHEDULER, PriorConfig("taef2", [0.0] * channels, [1.0] * channels))


def make_bundle(directory: Path, levels: int = 6, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "weights" / "taef2", directory / "taef2")
    tiny_prior().save_pretrained(directory / "prior-taef2")
    config = CodecConfig(lambdas=[0.5 * 2**k for k in range(levels)], hyper_channels=8, hyper_width=16, gamma_width=8, embed_dim=4)
    model = LatentDiffusionCodecModel(config)
    with torch.no_grad():
        # As a trained model has: a coarser step at lower levels.
        model.base_log_step.copy_(torch.linspace(3, -1, levels).view(-1, 1).expand(levels, config.latent_channels))
    model.hyperprior.density.freeze_tables()
    config.save(directory / "codec.json")
    atomic_save(dict(model.state_dict()), directory / "model.safetensors", {"format": "test"})
    return directory

