"""What the full codecs over a latent space (the latent-diffusion and PerCo plugins) share.

Their weights: a bundle folder (given, or the plugin's shipped one listed in its own
weights.lock) whose autoencoder and prior are sub-folders or, when it has none of that
name, the core bundles. Their inputs: rate levels 1..N, step counts, uint8 HxWx3 images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .. import weights
from ..errors import BadInput, EnhanceError
from ..priors import LatentPrior
from . import autoencoder_from_directory, encode_image


def default_device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def weights_available(bundle: str, lock: Path) -> tuple[bool, str]:
    """A full codec's `available()`: whether every file `lock` lists is here."""
    missing = [f"{row.bundle}/{row.path}" for row in weights.load_lock(lock) if weights.locate(row) is None]
    if missing:
        return False, f"weights missing: {', '.join(missing)} (enhance weights fetch {bundle})"
    return True, ""


def bundle_folder(given: Path | None, bundle: str, lock: Path) -> Path:
    """`given`, else the folder of the shipped bundle `bundle` (fetched as `lock` says)."""
    return given if given is not None else weights.resolve_bundle(bundle, lock=lock)


def component_folder(directory: Path, name: str) -> Path:
    """The folder of a bundle's autoencoder or prior `name`: its sub-folder, else the core bundle."""
    return directory / name if (directory / name).is_dir() else weights.resolve_bundle(name)


def bundled_autoencoder(directory: Path, name: str, device):
    return autoencoder_from_directory(component_folder(directory, name), device=device)


def bundled_prior(directory: Path, name: str, device):
    return LatentPrior.from_pretrained(component_folder(directory, name), device=device)


def weights_identity(folders: list[Path], device: torch.device) -> str:
    """A full codec's `identity`: a short hash of every file under `folders` and the device type
    (bf16 on one, fp32 on another), so `enhance compare`'s cache never serves another model's output.
    Markdown (model cards) is left out: editing a card changes no output, and should not make a
    benchmark decode everything again."""
    digest = hashlib.sha256(device.type.encode())
    for folder in folders:
        for path in sorted(path for path in Path(folder).rglob("*") if path.is_file() and path.suffix != ".md"):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def rate_level(rate, levels: int, what: str) -> int:
    """The 0-based level of a user's rate, a whole number from 1 to `levels`."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate != int(rate) or not 1 <= rate <= levels:
        raise EnhanceError(f"{what}: rate must be a level from 1 to {levels}, not {rate!r}")
    return int(rate) - 1


def step_count(steps, low: int, high: int, what: str) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not low <= steps <= high:
        raise EnhanceError(f"{what}: steps must be an integer from {low} to {high}, not {steps!r}")
    return steps


def image_latent(image: np.ndarray, autoencoder, device, *, max_side: int, what: str) -> torch.Tensor:
    """The latent of a uint8 HxWx3 image with sides of 1 to `max_side` pixels (edge-padded to the factor)."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise BadInput(f"{what}: the image must be uint8 HxWx3")
    if not 1 <= image.shape[0] <= max_side or not 1 <= image.shape[1] <= max_side:
        raise BadInput(f"{what}: sides must be 1..{max_side} pixels")
    return encode_image(autoencoder, image, device)
