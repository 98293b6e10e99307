"""Enhancers: models that restore what a base codec removed.

The built-in enhancer is DIRAC; one trained bundle per codec family is listed in
weights.lock and resolved through `enhance.weights` (the repo, the cache, a mirror,
then upstream).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import EnhanceError

# codec family -> weights.lock bundle of its default DIRAC model
DEFAULT_BUNDLES = {"jpeg": "dirac-jpeg"}


def bundle_directory(codec: str) -> Path:
    """The directory holding the default bundle for `codec`, resolved through weights.lock."""
    from .. import weights

    if codec not in DEFAULT_BUNDLES:
        raise EnhanceError(f"no trained enhancer for codec {codec!r}; trained: {', '.join(sorted(DEFAULT_BUNDLES))}")
    return weights.resolve_bundle(DEFAULT_BUNDLES[codec])


WEIGHTS_FILE = "model.safetensors"
# The first step's own network, in the bundles whose config names a first_step_model.
FIRST_STEP_WEIGHTS_FILE = "first_step.safetensors"
BUNDLE_FILES = ("config.json", WEIGHTS_FILE)


def dirac_identity(directory: Path, device_type: str | None = None, dtype_name: str | None = None) -> str:
    """A DIRAC bundle's identity: a hash of its files and, when given, the device type and dtype it runs in
    (callers pass `enhance.compute.fast_dtype` of the device).

    `DiracEnhancer.identity` is this with its device; with `device_type=None` it names the
    weights alone. Reads the files only (no torch), so callers can know it before loading.
    """
    digest = hashlib.sha256()
    for name in BUNDLE_FILES:
        digest.update((Path(directory) / name).read_bytes())
    first_step = Path(directory) / FIRST_STEP_WEIGHTS_FILE
    if first_step.exists():
        digest.update(FIRST_STEP_WEIGHTS_FILE.encode() + first_step.read_bytes())
    if device_type is not None:
        digest.update(f"{device_type}:{dtype_name}".encode())
    return digest.hexdigest()[:16]


def load_dirac(codec: str = "jpeg", *, bundle: Path | None = None, device=None, dtype=None, tile: int | None = None):
    """A ready `DiracEnhancer` (the "dirac" enhancer's factory): the default trained bundle for `codec`, or the bundle given.

    Applications get enhancers through `enhance.enhance_one.load_enhancer`, which finds this by name in the registry.
    """
    from .dirac import DiracEnhancer

    directory = Path(bundle) if bundle is not None else bundle_directory(codec)
    enhancer = DiracEnhancer.from_directory(directory, device=device, dtype=dtype, tile=tile)
    if enhancer.codec != codec:
        raise EnhanceError(f"{directory}: this enhancer was trained for {enhancer.codec!r}, not {codec!r}")
    return enhancer
