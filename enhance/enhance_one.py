"""Enhancing one image: the single road that `run`, the viewer hook and `compare` all take.

Everything about one image is decided here, once:

- **What the file says about itself** (`CodedImage`): the base codec whose format the bytes
  are in, and for a JPEG its headers parsed once (`enhance.jpeg.inspect_jpeg`: tables,
  quality, subsampling, colour space); its DCT coefficients are read on first use, from
  the file itself when it is one.
- **The rate** the enhancer is conditioned on: for a JPEG, the IJG quality estimated from
  its tables (what a receiver knows); for other codecs the rate the caller knows.
- **The consistency projection**: only onto a JPEG's own coefficients, and only for
  YCbCr and greyscale JPEGs (CMYK, YCCK and RGB files constrain other planes); a JPEG
  that cannot be projected is enhanced without it, with a note saying so.
- **Orientation**: pixels are enhanced as stored and turned for display once, after.
- **The model**: an enhancer from the registry (`dirac` unless named), trained for the
  codec: the bundle directory given, else `$ENHANCE_DIRAC_JPEG` for JPEG, else the
  shipped model.

Nothing here knows about archives, caches or reports; those stay with their applications.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import registry
from .consistency import PROJECTABLE_COLOUR_SPACES, project_to_jpeg
from .errors import BadInput, EnhanceError
from .image import DEFAULT_MAX_PIXELS, Metadata, apply_orientation, decode_image
from .jpeg import DctCoefficients, JpegInfo, inspect_jpeg, read_dct_coefficients

# A bundle directory to use instead of the shipped JPEG model (as `--model` does).
MODEL_ENV = "ENHANCE_DIRAC_JPEG"
DEFAULT_ENHANCER = "dirac"


# --- what the file says ------------------------------------------------------------


@dataclass
class CodedImage:
    """A coded image's bytes and what they say about how they were coded, read once."""

    data: bytes
    codec: str | None  # the base codec whose own format `data` is in; None if none recognises it
    jpeg: JpegInfo | None  # the parsed headers, for a JPEG
    rate: float | None  # the rate a receiver knows: a JPEG's estimated quality, else what the caller said
    path: Path | None = None  # the file holding `data`, when there is one

    @classmethod
    def read(cls, data: bytes, *, path: Path | str | None = None, rate: float | None = None) -> "CodedImage":
        """Parses `data` once. `rate` is used for codecs whose files do not say it (all but JPEG)."""
        codec = registry.native_codec(data)
        jpeg = None
        if codec == "jpeg":
            try:
                jpeg = inspect_jpeg(data)
            except BadInput as error:
                raise BadInput(_named(error, path)) from None
            rate = float(jpeg.estimated_quality)
        return cls(data=bytes(data), codec=codec, jpeg=jpeg, rate=rate, path=Path(path) if path is not None else None)

    @functools.cached_property
    def coefficients(self) -> DctCoefficients:
        """The JPEG's quantized DCT coefficients (libjpeg reads the file itself when there is one)."""
        if self.jpeg is None:
            raise BadInput("JPEG-consistent output needs the JPEG file itself")
        source = self.path if self.path is not None and self.path.is_file() else self.data
        return read_dct_coefficients(source, info=self.jpeg)


def _named(error: Exception, path: Path | str | None) -> str:
    # The JPEG parsers see bytes, not the file: name it here.
    message = str(error)
    return message if path is None or str(path) in message else f"{path}: {message}"


@dataclass(frozen=True)
class Plan:
    """What enhancing one coded image does: the rate it is conditioned on, and whether it is projected."""

    rate: float | None
    project: bool
    note: str | None = None


def plan(coded: CodedImage, *, consistent: bool) -> Plan:
    """The rate and the projection for `coded`; see the module docstring.

    `consistent` asks for the JPEG consistency projection: a file that is not a JPEG
    cannot have it (BadInput); a JPEG whose planes are not YCbCr or grey is enhanced
    without it, with a note.
    """
    if not consistent:
        return Plan(rate=coded.rate, project=False)
    if coded.jpeg is None:
        raise BadInput("JPEG-consistent output needs the JPEG file itself")
    colour_space = coded.jpeg.colour_space
    if colour_space not in PROJECTABLE_COLOUR_SPACES:
        return Plan(coded.rate, False, f"{colour_space} JPEG: enhanced without the JPEG consistency projection")
    return Plan(rate=coded.rate, project=True)


# --- the model ---------------------------------------------------------------------


def model_setting(model: Path | str | None, codec: str = "jpeg") -> str | None:
    """The bundle directory to use: `model`, else $ENHANCE_DIRAC_JPEG for JPEG, else None (the shipped model)."""
    if model is not None:
        return str(model)
    return (os.environ.get(MODEL_ENV) or None) if codec == "jpeg" else None


def load_enhancer(
    codec: str = "jpeg",
    *,
    model: Path | str | None = None,
    name: str = DEFAULT_ENHANCER,
    device: str | None = None,
    tile: int | None = None,
    steps: int | None = None,
):
    """The enhancer `name` from the registry, trained for `codec` (the bundle: see `model_setting`).

    An enhancer factory is called with `codec` and those of `bundle`, `device` and `tile`
    that are set. `tile` and `steps` are checked here, so a bad value stops a run before
    its first file instead of failing every file.
    """
    from .tiling import plan_tiles

    check_options(device=device, steps=steps, tile=tile)
    bundle = model_setting(model, codec)
    options = {"bundle": Path(bundle) if bundle is not None else None, "device": device, "tile": tile}
    enhancer = registry.create("enhancer", name, codec=codec, **{k: v for k, v in options.items() if v is not None})
    tile_size = getattr(enhancer, "tile", None)
    if tile_size is not None:
        try:
            plan_tiles(tile_size, tile_size, tile_size, getattr(enhancer, "overlap", 0))
        except ValueError as error:
            raise EnhanceError(f"--tile {tile_size}: {error}") from None
    check_steps(enhancer, steps)
    return enhancer


def enhancer_identity(
    codec: str = "jpeg", *, model: Path | str | None = None, name: str = DEFAULT_ENHANCER, device=None, with_device: bool = True
) -> str | None:
    """The `identity` `load_enhancer` would give, known without loading the model (a hash of the bundle's files).

    `with_device=False` names the weights alone. None when it cannot be known beforehand:
    a plugin enhancer, or a bundle that cannot be found or read (loading it will say why).
    """
    if name != DEFAULT_ENHANCER:
        return None
    from .enhancers import bundle_directory, dirac_identity

    try:
        bundle = model_setting(model, codec)
        directory = Path(bundle) if bundle is not None else bundle_directory(codec)
        if not with_device:
            return dirac_identity(directory)
        from .compute import fast_dtype

        device_type = _device_type(device)
        return dirac_identity(directory, device_type, str(fast_dtype(device_type)))
    except (OSError, EnhanceError):
        return None


def _device_type(device) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def find_enhancer(codec: str, *, model: Path | str | None = None, name: str = DEFAULT_ENHANCER, device: str | None = None):
    """(enhancer, None), or (None, why there is none) for a codec with no trained enhancer.

    A codec with a shipped model (JPEG) must load it: a missing or broken bundle raises.
    """
    from .enhancers import DEFAULT_BUNDLES

    shipped = name == DEFAULT_ENHANCER and codec in DEFAULT_BUNDLES
    if model_setting(model, codec) is None and name == DEFAULT_ENHANCER and not shipped:
        return None, f"no trained enhancer for codec {codec!r} (trained: {', '.join(sorted(DEFAULT_BUNDLES))})"
    try:
        return load_enhancer(codec, model=model, name=name, device=device), None
    except EnhanceError as error:
        if shipped:
            raise
        return None, f"no enhancer for codec {codec!r}: {error}"


def check_options(
    *, device=None, steps=None, seed=0, tile=None, consistent=False, output_format: str | None = None
) -> None:
    """Every option's type and range, and the device, checked before a model is loaded.

    A bad value is the user's error to fix (EnhanceError, one line); the step count's upper
    bound depends on the model and is checked by `check_steps` once it is loaded.
    """
    from .image import OUTPUT_FORMATS

    for name, value, low in (("steps", steps, 1), ("seed", seed, None), ("tile", tile, 16)):
        if value is None and name != "seed":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise EnhanceError(f"--{name} must be a whole number, got {value!r}")
        if low is not None and value < low:
            raise EnhanceError(f"--{name} {value}: must be at least {low}")
    if tile is not None and tile % 16:
        raise EnhanceError(f"--tile {tile}: must be a multiple of 16 (JPEG's 16-pixel grid)")
    if not isinstance(consistent, bool):
        raise EnhanceError(f"consistent must be true or false, got {consistent!r}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise EnhanceError(f"--format {output_format!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    check_device(device)


def check_device(device) -> None:
    """EnhanceError (one line) unless `device` is None or a device this torch has: cpu, cuda[:N], mps."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise EnhanceError(f"--device {device!r}: not a device; use cpu or cuda (or cuda:N for the N-th GPU)") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise EnhanceError(f"--device {device}: CUDA is not available ({build}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise EnhanceError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices (cuda:0..)")
        return
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return
    raise EnhanceError(f"--device {device}: not available here; use cpu or cuda")


def check_steps(enhancer, steps: int | None) -> None:
    """A step count outside the enhancer's `step_range` is the user's error to fix."""
    if steps is None:
        return
    low, high = enhancer.step_range
    if not low <= steps <= high:
        raise EnhanceError(f"--steps {steps}: steps must lie in {low}..{high} for this model")


# --- enhancing -----------------------------------------------------------------------


def enhance_stops(decoded: np.ndarray, plan: Plan, *, enhancer, stops: list[int], seed: int = 0) -> dict[int, np.ndarray]:
    """{steps: pixels} after each of `stops` steps of one trajectory, before any projection."""
    return enhancer.enhance_stops(decoded, rate=plan.rate, stops=stops, seed=seed)


def project(pixels: np.ndarray, coded: CodedImage, plan: Plan) -> np.ndarray:
    """`pixels` projected onto the file's quantization constraint set when the plan says so."""
    if not plan.project:
        return pixels
    return project_to_jpeg(pixels, coded.coefficients)


def enhance_decoded(
    decoded: np.ndarray, coded: CodedImage, *, enhancer, steps: int | None = None, seed: int = 0, consistent: bool = False
) -> np.ndarray:
    """Enhances decoded pixels (uint8 HxWx3, as stored) of `coded`, projected when asked and possible."""
    return _enhanced(decoded, coded, enhancer=enhancer, steps=steps, seed=seed, consistent=consistent)[0]


def _enhanced(decoded, coded: CodedImage, *, enhancer, steps, seed, consistent) -> tuple[np.ndarray, Plan]:
    chosen = plan(coded, consistent=consistent)
    pixels = enhancer.enhance(decoded, rate=chosen.rate, steps=steps, seed=seed)
    return project(pixels, coded, chosen), chosen


@dataclass(frozen=True)
class Enhanced:
    """One enhanced image file, ready to be written with its metadata."""

    pixels: np.ndarray  # uint8 HxWx3, oriented for display
    greyscale: bool
    metadata: Metadata  # the file's metadata, orientation reset for the turned pixels
    note: str | None = None


def enhance_bytes(
    data: bytes,
    *,
    path: Path | str,
    enhancer,
    steps: int | None = None,
    seed: int = 0,
    consistent: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Enhanced:
    """Enhances an image file's bytes (`path` names it) and turns the result for display, once.

    Only files that say their own rate can be enhanced: a JPEG, whose quality the model
    is conditioned on. Anything else fails with that reason rather than at a guessed rate.
    """
    loaded = decode_image(data, path=path, max_pixels=max_pixels)
    if loaded.format != "JPEG":
        raise BadInput(
            f"{loaded.path}: a {loaded.format} image, not a JPEG; the JPEG enhancer is conditioned on the quality "
            "read from a JPEG file's quantization tables"
        )
    coded = CodedImage.read(data, path=path)
    try:
        pixels, chosen = _enhanced(loaded.pixels, coded, enhancer=enhancer, steps=steps, seed=seed, consistent=consistent)
    except BadInput as error:
        raise BadInput(_named(error, path)) from None
    return Enhanced(
        pixels=apply_orientation(pixels, loaded.orientation),
        greyscale=loaded.greyscale,
        metadata=loaded.metadata.for_oriented_pixels(),
        note=chosen.note,
    )
