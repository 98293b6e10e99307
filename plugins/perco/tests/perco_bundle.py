"""A PerCo bundle with the shipped TAEF2 and tiny random networks."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from enhance.priors import LatentPrior, PriorConfig
from enhance.priors.prior import build_unet
from enhance.train.prior import SCHEDULER
from enhance.train.trainer import atomic_save
from enhance_perco.codec import _EncoderSide
from enhance_perco.config import PercoConfig
from enhance_perco.model import PercoModel, extend_prior

REPO = Path(__file__).resolve().parents[3]


def tiny_prior(channels: int = 32) -> LatentPrior:
    unet = build_unet({
        "_class_name": "UNet2DModel", "in_channels": channels, "out_channels": channels,
        "block_out_channels": [8, 16], "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 8, "norm_num_groups": 4,
    })
    return LatentPrior(unet, SCHEDULER, PriorConfig("taef2", [0.0] * channels, [1.0] * channels))


def make_bundle(directory: Path, seed: int = 0, guidance: float = 2.0) -> Path:
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "weights" / "taef2", directory / "taef2")
    config = PercoConfig(code_dim=4, trunk_width=8, global_codebook=16, guidance=guidance)
    model = PercoModel(config, extend_prior(tiny_prior(), config.code_dim))
    with torch.no_grad():
        # Non-zero conditioning weights, so the codes visibly steer the random decoder.
        for parameter in (model.level_embedding.weight, model.global_projection.weight):
            parameter.normal_(0, 0.5)
    config.save(directory / "perco.json")
    atomic_save(dict(_EncoderSide(model).state_dict()), directory / "model.safetensors", {"format": "test"})
    model.decoder.save_pretrained(directory / "decoder")
    return directory

