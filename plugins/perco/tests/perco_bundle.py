"""A PerCo bundle with the shipped TAEF2 and tiny random networks."""

from __future__ import annotations

from pathlib import Path

import torch

from enhance.testing import bundle_folder_with_taef2, tiny_prior, tiny_text_encoder
from enhance.train.trainer import atomic_save
from enhance_perco.codec import _EncoderSide
from enhance_perco.config import PercoConfig
from enhance_perco.model import PercoModel, extend_prior

TEXT_ENCODER = "clip-text"


def make_bundle(directory: Path, seed: int = 0, guidance: float = 2.0, *, reads_captions: bool = False, eta: float = 1.0) -> Path:
    """With `reads_captions`, the decoder cross-attends to a tiny text encoder's output (SD 2.1's
    kind of decoder), its stored empty prompt being that encoder's encoding of ""."""
    torch.manual_seed(seed)
    bundle_folder_with_taef2(directory)
    config = PercoConfig(code_dim=4, trunk_width=8, global_codebook=16, guidance=guidance, eta=eta)
    prior = tiny_prior()
    if reads_captions:
        from enhance.priors.text_encoder import TextEncoder

        text_encoder = TextEncoder.from_pretrained(tiny_text_encoder(directory / TEXT_ENCODER))
        prior = tiny_prior(cross_attention_dim=text_encoder.hidden_size, context=text_encoder.encode([""]))
        config.text_encoder = TEXT_ENCODER
    model = PercoModel(config, extend_prior(prior, config.code_dim))
    with torch.no_grad():
        # Non-zero conditioning weights, so the codes visibly steer the random decoder.
        for parameter in (model.level_embedding.weight, model.global_projection.weight):
            parameter.normal_(0, 0.5)
    config.save(directory / "perco.json")
    atomic_save(dict(_EncoderSide(model).state_dict()), directory / "model.safetensors", {"format": "test"})
    model.decoder.save_pretrained(directory / "decoder")
    return directory
