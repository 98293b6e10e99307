"""The adversarial part of DIRAC's realism training: a patch discriminator trained from scratch.

No pretrained perceptual network can be had here, so, as HiFiC and MS-ILLM do, the realism
signal comes from a discriminator learned alongside the enhancer. It judges small patches
of the output image given the decoded JPEG (so it can tell invented texture that fits the
file from texture that does not), at full resolution (the gap to the originals is in the
finest band). Spectral normalisation keeps it Lipschitz, which is what keeps a GAN trained
from scratch on a small batch stable.

It reads the residual (image minus decoded), amplified, beside the decoded image, not the
image itself: the texture that separates an original from an enhanced output is a few
hundredths of the [-1, 1] range, and a discriminator fed raw images stayed at chance for
hundreds of steps (measured: 300 steps of batch 16 on real and 1-step DIRAC crops, held-out
accuracy 0.70 with raw images, 0.88 with the amplified residual, which reached 0.81 by step
100).

The generator's adversarial weight is adaptive (Esser et al., VQGAN): the ratio of the
reconstruction and adversarial gradients at the enhancer's last layer, so neither term
drowns the other whatever their raw scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class AdversarialOptions:
    """How the realism steps are trained."""

    # Scales the adaptive weight of the adversarial + feature-matching term.
    weight: float = 0.5
    # Weight of the full-band MSE beside the MSE of the 4x4-averaged residual: the coarse
    # structure must match the original, the fine band is left mostly to the discriminator.
    fine_mse_weight: float = 0.25
    # Weight of feature matching (L1 between the discriminator's features of the original
    # and of the output): a paired, learned perceptual term.
    feature_matching: float = 1.0
    # Weight of the local fine-band energy term (`texture_energy_loss`): the output's texture
    # as strong as the original's, where the original has it. Without it, 1,750 steps of the
    # discriminator alone moved the fine-band energy at q10 only from 0.63 to 0.67 of the original's.
    energy_weight: float = 1.0
    # Adds the energy term on the chroma (Cb, Cr), each channel as heavy as the luma at 1.0
    # (`texture_energy_loss`); 0: luma alone.
    energy_chroma_weight: float = 0.0
    # Weight of the patch-distribution term (`patch_distribution_loss`): the output's local
    # structure distributed as the original's, band by band (0: off).
    patch_distribution_weight: float = 0.0
    # The finest Laplacian bands it compares (1: full resolution only; each more halves it).
    patch_distribution_levels: int = 2
    # Compare luma and chroma (YCbCr) patches, each band channel scaled to unit spread, instead of
    # R, G, B: in RGB the chroma of a patch is the small difference of three similar channels and
    # weighs little, yet swapping only the chroma of the finest band for the original's took that
    # band's SWD from 31.2 to 22.7 (q20, 33 val images, the session-16 model). Off by default:
    # fine-tuning with it made the output smoother and its SWD worse (weights/dirac-jpeg card).
    patch_distribution_ycbcr: bool = False
    lr: float = 1e-4
    # Samples of each batch trained at the first step with plain MSE (the fidelity end).
    fidelity_share: float = 0.25
    channels: int = 64


class PatchDiscriminator(nn.Module):
    """Logits per ~26 px patch of an image, conditioned on the decoded input; returns features too."""

    # Scales the residual to about the decoded image's magnitude (JPEG residuals at q5-90
    # have standard deviations of a few hundredths).
    residual_gain = 16.0

    def __init__(self, image_channels: int = 3, channels: int = 64):
        super().__init__()
        c = channels
        self.layers = nn.ModuleList(
            [
                spectral_norm(nn.Conv2d(2 * image_channels, c // 2, 4, stride=2, padding=1)),
                spectral_norm(nn.Conv2d(c // 2, c, 4, stride=2, padding=1)),
                spectral_norm(nn.Conv2d(c, 2 * c, 3, padding=1)),
                spectral_norm(nn.Conv2d(2 * c, 2 * c, 3, padding=1)),
            ]
        )
        self.head = spectral_norm(nn.Conv2d(2 * c, 1, 3, padding=1))

    def forward(self, image: torch.Tensor, decoded: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = torch.cat([(image - decoded) * self.residual_gain, decoded], dim=1)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.head(x), features


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the discriminator."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def feature_matching_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.l1_loss(f.float(), r.detach().float()) for r, f in zip(real, fake)) / len(real)


LUMA = (0.299, 0.587, 0.114)
YCBCR = (LUMA, (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def _binomial(planes: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """The 5x5 binomial smoothing of `enhance.metrics.pyramid` (mirrored borders), on N x 1 x H x W."""
    kernel = torch.tensor(BINOMIAL_5, dtype=planes.dtype, device=planes.device) / 16.0
    kernel = torch.outer(kernel, kernel)[None, None] * gain
    return F.conv2d(F.pad(planes, (2, 2, 2, 2), mode="reflect"), kernel)


def _luma(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True) if images.shape[1] == 3 else images


def _band_and_down(luma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(luma minus pyrUp(pyrDown(luma)), pyrDown(luma)): one Laplacian level and the next Gaussian one."""
    down = _binomial(luma)[..., ::2, ::2]
    up = torch.zeros_like(luma)
    up[..., ::2, ::2] = down
    return luma - _binomial(up, gain=4.0), down


def fine_band(images: torch.Tensor) -> torch.Tensor:
    """The finest Laplacian band of the luma, as `hf_energy_ratio` measures it."""
    return _band_and_down(_luma(images))[0]


def texture_energy_loss(
    output: torch.Tensor, original: torch.Tensor, window: int = 8, levels: int = 2, chroma_weight: float = 0.0
) -> torch.Tensor:
    """L1 between the local RMS of the output's and the original's Laplacian bands, over
    `window`-sample squares of each of the `levels` finest bands, summed over the bands.

    Phase-free: it asks for texture as strong as the original's in each square, not for its
    exact pixels (which the decoded image no longer determines). What that texture looks
    like is left to the discriminator; alone this term would be met by noise. Two bands,
    because with the finest alone the outputs were still smoother than JPEG at half
    resolution (SWD of that pyramid level 34.1 against JPEG's 30.0, q10).

    Luma alone by default. `chroma_weight` adds a term on Cb and Cr: L1 between the RMS of each
    band over the whole crop, scaled by the ratio of the originals' luma to chroma band strength
    over the batch (so at 1.0 a chroma channel counts as much as the luma). With luma alone the
    realism end's finest-band chroma was 57% as strong as the original's (q10, val) while its
    luma matched. Whole crops, not squares: chroma texture is sparse (most squares have almost
    none, a few colour edges much), so the L1 of local RMS, met by each square's median, made
    it weaker still (measured: 57% -> 53% in 500 steps).
    """
    output, original = output.float(), original.float()
    luma_out, luma_orig = _band_rms(_luma(output), window, levels), _band_rms(_luma(original), window, levels)
    loss = sum(F.l1_loss(a, b) for a, b in zip(luma_out, luma_orig, strict=True))
    if chroma_weight and output.shape[1] == 3:
        chroma_out = _band_rms(_ycbcr(output)[:, 1:], None, levels)
        chroma_orig = _band_rms(_ycbcr(original)[:, 1:], None, levels)
        for a, b, luma in zip(chroma_out, chroma_orig, luma_orig, strict=True):
            per_channel = (a - b).abs().mean(dim=(0, 2, 3))
            balance = luma.mean().detach() / b.mean(dim=(0, 2, 3)).detach().clamp_min(1e-6)
            loss = loss + chroma_weight * (per_channel * balance).mean()
    return loss


def _band_rms(planes: torch.Tensor, window: int | None, levels: int) -> list[torch.Tensor]:
    """RMS over `window`-sample squares (None: the whole band) of each of the `levels` finest
    Laplacian bands, per channel: N x C x squares down x squares across."""
    n, c = planes.shape[:2]
    planes = planes.reshape(n * c, 1, *planes.shape[2:])
    found = []
    for _ in range(levels):
        band, planes = _band_and_down(planes)
        power = band**2
        rms = (F.avg_pool2d(power, window) if window else power.mean(dim=(2, 3), keepdim=True)).add(1e-8).sqrt()
        found.append(rms.reshape(n, c, *rms.shape[2:]))
    return found


PATCH = 7


def _colour_bands(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The `levels` finest Laplacian bands of every channel (N x C x H x W each, finest first)."""
    n, c = images.shape[:2]
    planes = images.float().reshape(n * c, 1, *images.shape[2:])
    bands = []
    for _ in range(levels):
        band, planes = _band_and_down(planes)
        bands.append(band.reshape(n, c, *band.shape[2:]))
    return bands


def _sorted_projections(band: torch.Tensor, directions: torch.Tensor, stride: int, offset: tuple[int, int]) -> torch.Tensor:
    """Each image's 7x7xC patches on a grid of `stride` from `offset`, projected on the unit
    `directions` (D x C x 7 x 7, so a convolution) and sorted over the patches: N x D x patches."""
    projections = F.conv2d(band[..., offset[0] :, offset[1] :], directions, stride=stride)
    return torch.sort(projections.flatten(2), dim=2).values


def _ycbcr(images: torch.Tensor) -> torch.Tensor:
    """JPEG's YCbCr (BT.601, no offsets: only the bands matter) of N x 3 x H x W images."""
    matrix = torch.tensor(YCBCR, dtype=images.dtype, device=images.device)
    return torch.einsum("ij,njhw->nihw", matrix, images)


def without_unknown_chroma(images: torch.Tensor, full_chroma: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W images (or residuals) with the finest Laplacian band of Cb and Cr taken out
    where `full_chroma` is False: what a loss may compare for a crop whose source file had
    subsampled chroma. Applied to output and target alike, it leaves that band to the crops that
    hold it, so 4:2:0 sources no longer teach the enhancer that fine chroma is absent; their
    luma still teaches. Linear, so residuals and images can take it interchangeably."""
    if images.shape[1] != 3 or bool(full_chroma.all()):
        return images
    chroma_band = _colour_bands(_ycbcr(images.float())[:, 1:], 1)[0]
    from_chroma = torch.linalg.inv(torch.tensor(YCBCR, dtype=torch.float64))[:, 1:].to(chroma_band)
    fine_chroma = torch.einsum("ij,njhw->nihw", from_chroma, chroma_band).to(images.dtype)
    keep = full_chroma.to(images.device).view(-1, 1, 1, 1)
    return torch.where(keep, images, images - fine_chroma)


def patch_distribution_loss(
    output: torch.Tensor, original: torch.Tensor, levels: int = 2, directions: int = 32, patches: int = 1024,
    ycbcr: bool = False,
) -> torch.Tensor:
    """Sliced Wasserstein distance between the sets of 7x7 colour patches of the output's and the
    original's Laplacian bands, per image, summed over the `levels` finest bands.

    The texture loss of Heitz et al. ("A Sliced Wasserstein Loss for Neural Texture Synthesis",
    CVPR 2021), here on pyramid patches instead of VGG features (none can be had), and per
    training crop, so each output is held to its own original's local statistics. Position-free,
    like `texture_energy_loss`, but it asks for the original's patch structure (edges, their
    orientations, the joint statistics of neighbouring samples and colours), not only its
    strength: white noise of the right strength does not match it. Bands are divided by the
    original's per-channel spread over the batch, so every band counts alike. Fresh random
    directions at every call, and patches on a grid (random offset) coarse enough to keep at most
    `patches` of them per image: the cost is in the projections and above all in the sort
    (torch's CPU sort of 64 directions x 3,700 patches x 6 crops took 0.36 s, longer than the
    enhancer's own step). With `ycbcr`, colour images are compared in luma and chroma channels.
    """
    loss = output.new_zeros((), dtype=torch.float32)
    if ycbcr and output.shape[1] == 3:
        output, original = _ycbcr(output.float()), _ycbcr(original.float())
    for band_out, band_orig in zip(_colour_bands(output, levels), _colour_bands(original, levels), strict=True):
        scale = band_orig.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-4).detach()
        channels, height, width = band_out.shape[1:]
        basis = F.normalize(torch.randn(directions, channels * PATCH * PATCH, device=output.device), dim=1)
        basis = basis.view(directions, channels, PATCH, PATCH)
        stride = max(1, math.ceil(((height - PATCH + 1) * (width - PATCH + 1) / patches) ** 0.5))
        offset = tuple(int(i) for i in torch.randint(0, stride, (2,)))
        target = _sorted_projections(band_orig.detach() / scale, basis, stride, offset)
        loss = loss + (_sorted_projections(band_out / scale, basis, stride, offset) - target).abs().mean()
    return loss


def coarse_mse(prediction: torch.Tensor, target: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """MSE of the residual averaged over factor x factor blocks: the part texture must not change."""
    return F.mse_loss(F.avg_pool2d(prediction, factor), F.avg_pool2d(target, factor))


def adaptive_weight(reconstruction: torch.Tensor, adversarial: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """||grad reconstruction|| / ||grad adversarial|| at `last_layer`, clamped, without a gradient itself."""
    rec = torch.autograd.grad(reconstruction, last_layer, retain_graph=True)[0]
    adv = torch.autograd.grad(adversarial, last_layer, retain_graph=True)[0]
    return (rec.norm() / (adv.norm() + 1e-4)).clamp(0.0, 1e4).detach()
