"""PerCo's trained parts: the hyper-encoder with its vector quantisers, and the conditioned decoder.

Hyper-encoder: a small trunk over the normalised latent, then one patchifying convolution per
rate level (kernel = stride = the level's grid factor) to a low-dimensional code, quantised by
cosine similarity to the level's codebook (l2-normalised codes and codebook entries, as in
Yu et al.'s improved VQGAN, which keeps small codebooks in use). A global code (a few indices
of a pooled image embedding) fills the slot the paper gives a caption. A linear probe from the
quantised codes to the mean latent of their cell is trained alongside: the decoder's new input
weights start at zero, so early on the diffusion loss barely reaches the encoder, and without a
direct reason to carry information its codes collapsed onto one entry (the first trained model).

Decoder: our latent prior's UNet with the local codes nearest-upsampled and concatenated to its
input (the new input weights start at zero) and a conditioning vector (level + global code)
added to its timestep embedding (starting at zero), so before fine-tuning it is the prior.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from enhance.latent.padding import pad_to_multiple
from enhance.priors import LatentPrior
from enhance.priors.prior import build_unet

from .config import PercoConfig

COMMITMENT = 0.25


class CosineQuantizer(nn.Module):
    """Nearest codebook entry by cosine similarity. In training, entries that no vector has
    chosen for a while are moved onto vectors of the current batch (dead-code restarts, as in
    SoundStream): without them the codes of a small model collapse onto a few entries and the
    decoder learns to ignore them."""

    def __init__(self, size: int, dim: int, restart_below: float = 0.1, usage_decay: float = 0.95):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(size, dim))
        self.restart_below, self.usage_decay = restart_below, usage_decay
        # How often each entry was chosen lately (a share of all choices); not saved with the weights.
        self.register_buffer("usage", torch.full((size,), 1.0 / size), persistent=False)

    def entries(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1)

    def indices(self, vectors: torch.Tensor) -> torch.Tensor:
        """vectors: ... x dim (any scale) -> nearest entry by cosine similarity."""
        return (F.normalize(vectors, dim=-1) @ self.entries().t()).argmax(dim=-1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.entries()[indices]

    def forward(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantised vectors, indices, codebook + commitment loss)."""
        normalised = F.normalize(vectors, dim=-1)
        indices = self.indices(normalised)
        if self.training:
            self._restart_dead_entries(normalised.detach().reshape(-1, normalised.shape[-1]), indices.reshape(-1))
            indices = self.indices(normalised)
        quantised = self.lookup(indices)
        loss = F.mse_loss(quantised, normalised.detach()) + COMMITMENT * F.mse_loss(normalised, quantised.detach())
        return normalised + (quantised - normalised).detach(), indices, loss


    @torch.no_grad()
    def _restart_dead_entries(self, vectors: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.usage.numel()).float()
        self.usage.mul_(self.usage_decay).add_(counts / counts.sum(), alpha=1 - self.usage_decay)
        dead = (self.usage < self.restart_below / self.usage.numel()).nonzero().flatten()
        if dead.numel() == 0:
            return
        choice = torch.randint(0, vectors.shape[0], (dead.numel(),), device=vectors.device)
        fresh = vectors[choice].to(self.codebook.dtype)
        self.codebook.data[dead] = fresh + 0.01 * torch.randn_like(fresh)
        self.usage[dead] = 1.0 / self.usage.numel()


class HyperEncoder(nn.Module):
    def __init__(self, config: PercoConfig):
        super().__init__()
        width, dim = config.trunk_width, config.code_dim
        self.trunk = nn.Sequential(
            nn.Conv2d(config.latent_channels, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU()
        )
        self.heads = nn.ModuleList(nn.Conv2d(width, dim, factor, stride=factor) for factor, _ in config.levels)
        self.quantizers = nn.ModuleList(CosineQuantizer(size, dim) for _, size in config.levels)
        self.global_head = nn.Sequential(nn.Linear(2 * width, 4 * width), nn.GELU(), nn.Linear(4 * width, max(1, config.global_codes) * dim))
        self.global_quantizer = CosineQuantizer(config.global_codebook, dim)
        self.probe = nn.Conv2d(dim, config.latent_channels, 1)  # training only: see the module's docstring
        self.config = config

    def probe_loss(self, local_codes: torch.Tensor, latent: torch.Tensor, level: int) -> torch.Tensor:
        """How badly the quantised local codes predict the mean latent of their cells (normalised units)."""
        factor = self.config.levels[level][0]
        cell_means = F.avg_pool2d(pad_to_multiple(latent, factor), factor)
        return F.mse_loss(self.probe(local_codes), cell_means)

    def forward(self, latent: torch.Tensor, level: int):
        """(local codes N x dim x h x w, local indices N x h x w, global codes N x G x dim, global indices N x G, VQ loss)."""
        factor = self.config.levels[level][0]
        features = self.trunk(pad_to_multiple(latent, factor))
        local = self.heads[level](features).permute(0, 2, 3, 1)
        local_q, local_indices, local_loss = self.quantizers[level](local)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        vectors = self.global_head(pooled).view(latent.shape[0], -1, self.config.code_dim)[:, : self.config.global_codes]
        if self.config.global_codes:
            global_q, global_indices, global_loss = self.global_quantizer(vectors)
        else:
            global_q, global_indices, global_loss = vectors, vectors.new_zeros(vectors.shape[:2], dtype=torch.long), 0.0
        return local_q.permute(0, 3, 1, 2), local_indices, global_q, global_indices, local_loss + global_loss


class PercoModel(nn.Module):
    def __init__(self, config: PercoConfig, decoder: LatentPrior):
        super().__init__()
        self.config = config
        self.encoder = HyperEncoder(config)
        self.decoder = decoder
        embed = decoder.unet.time_embedding.linear_2.out_features
        self.level_embedding = nn.Embedding(len(config.levels), embed)
        self.global_projection = nn.Linear(max(1, config.global_codes) * config.code_dim, embed)
        self.null_global = nn.Parameter(torch.zeros(max(1, config.global_codes), config.code_dim))
        for weight in (self.level_embedding.weight, self.global_projection.weight, self.global_projection.bias):
            nn.init.zeros_(weight)

    def condition_vector(self, level: int, global_codes: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The vector added to the UNet's timestep embedding; `global_codes=None` is the unconditional one."""
        if global_codes is None or not self.config.global_codes:
            global_codes = self.null_global.expand(batch, -1, -1)
        levels = torch.full((batch,), level, device=global_codes.device)
        return self.level_embedding(levels) + self.global_projection(global_codes.flatten(1))

    def local_features(self, codes: torch.Tensor, level: int, size: tuple[int, int]) -> torch.Tensor:
        factor = self.config.levels[level][0]
        return codes.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)[..., : size[0], : size[1]]

    def output(self, noisy, timesteps, features, condition, caption_states: torch.Tensor | None = None) -> torch.Tensor:
        """`caption_states`: a text encoder's output for the caption, for a text-conditioned decoder
        (without it, such a decoder sees its stored empty prompt)."""
        extra = {} if caption_states is None else {"encoder_hidden_states": caption_states.to(noisy)}
        return self.decoder.model_output(torch.cat([noisy, features.to(noisy)], dim=1), timesteps, class_labels=condition.to(noisy), **extra)


def extend_prior(prior: LatentPrior, extra_channels: int) -> LatentPrior:
    """A copy of `prior` whose UNet takes `extra_channels` more inputs (zero weights) and a class vector."""
    config = {"_class_name": type(prior.unet).__name__, **dict(prior.unet.config)}
    config["in_channels"] = prior.unet.config.in_channels + extra_channels
    config["class_embed_type"] = "identity"
    unet = build_unet(config)
    state = prior.unet.state_dict()
    weight = state["conv_in.weight"]
    state["conv_in.weight"] = torch.cat([weight, weight.new_zeros(weight.shape[0], extra_channels, *weight.shape[2:])], dim=1)
    unet.load_state_dict(state, strict=True)
    return LatentPrior(unet, prior.scheduler_config, prior.config, context=prior.context)


def nominal_bits(config: PercoConfig, level: int, height: int, width: int, factor: int = 8) -> int:
    grid, size = config.levels[level]
    cells = math.ceil(math.ceil(height / factor) / grid) * math.ceil(math.ceil(width / factor) / grid)
    return cells * int(math.log2(size)) + config.global_codes * int(math.log2(config.global_codebook))
