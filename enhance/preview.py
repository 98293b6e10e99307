"""Fast modes, for when a person is waiting: the viewer hook's default and the XDG thumbnailer.

One decision, `fast_plan`, made from what a JPEG's headers say (its size and the quality
its tables give) and the size it will be shown at:

- **Decode at the size shown.** libjpeg decodes a JPEG at 1/2, 1/4 or 1/8 of its size
  from fewer DCT coefficients (Pillow's `Image.draft`), several times faster than a full
  decode; the plan takes the largest of those scales that still gives at least the pixels
  shown, and Lanczos takes it the rest of the way. A 4000x3000 photo shown at 256 px is
  decoded at 500x375.
- **Enhance only a native decode.** The DIRAC model is trained on full-size decodes and is
  conditioned on the quality read from the file's tables: the artefacts it knows are those
  of 8x8 blocks quantized at that quality. A DCT-scaled decode has none of them in that
  form (at 1/8 each block is one pixel, its DC; at 1/2 a 4x4 inverse transform of the
  lowest coefficients), so feeding it to the model "at quality q" would ask for a
  restoration it never learnt, and its quality label would be false. The plan therefore
  never enhances a scaled decode (`FastPlan` refuses that combination), and a JPEG shown
  at half its size or less is shown from a scaled decode, which has no visible blocking,
  without the model: no torch import, no weights read.
- **Enhance what is small and shows artefacts, at 1 step.** A JPEG shown at more than
  half its size (so decoded at full size) is enhanced when its quality is at most
  `FAST_MAX_QUALITY` (the top of the model's training range; above it there is nothing a
  person sees at a glance) and it has at most `FAST_MAX_PIXELS` pixels, with `FAST_STEPS`
  steps (the fidelity end) unless the caller names the steps. Larger files are returned
  decoded, not enhanced: the cheapest network pass at full size costs about 1.5 s per
  megapixel on the 2-core development CPU, before the model is even loaded.

`FastPlan.reason` says what was done and why; the viewer puts it in `image.info["enhance_fast"]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .enhance_one import CodedImage, Enhanced
from .errors import BadInput
from .image import DEFAULT_MAX_PIXELS, apply_orientation, decode_image

DCT_SCALES = (8, 4, 2, 1)  # the scaled decodes libjpeg offers (Pillow's draft), largest first
FAST_STEPS = 1  # the fidelity end: one network evaluation
FAST_MAX_PIXELS = 1 << 20  # 1 MP: one step here costs about 1.5 s on the 2-core CPU (bench/results/speed.json)
FAST_MAX_QUALITY = 90  # the model is trained on qualities 5..90 (its card)

INFO_KEY = "enhance_fast"  # where `open` records FastPlan.reason in a PIL image's info


@dataclass(frozen=True)
class FastPlan:
    """What a fast mode does with one JPEG: the DCT scale it is decoded at, and whether it is enhanced."""

    scale: int  # 1 (native), 2, 4 or 8: libjpeg's scaled decode
    enhance: bool
    steps: int | None  # when enhanced
    reason: str

    def __post_init__(self):
        if self.scale not in DCT_SCALES:
            raise ValueError(f"DCT scale must be one of {DCT_SCALES}, not {self.scale}")
        if self.enhance and self.scale != 1:
            # The model knows native decodes at the file's quality, not scaled ones.
            raise ValueError("a DCT-scaled decode is never enhanced")


def fitted_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) fitted inside size x size, aspect kept, never enlarged (None: as it is)."""
    if size is None or max(width, height) <= size:
        return width, height
    ratio = size / max(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))


def fast_plan(width: int, height: int, quality: float | None, size: int | None = None, *, steps: int | None = None) -> FastPlan:
    """The fast mode's decision for a `width` x `height` JPEG at `quality` shown within `size` x `size` pixels.

    `size` None means shown at full size (the viewer hook's default). `steps`, when the
    caller names them, replace `FAST_STEPS` for an image that is enhanced. See the module
    docstring for the reasons.
    """
    if width < 1 or height < 1:
        raise BadInput(f"image size must be positive, not {width}x{height}")
    if size is not None and size < 1:
        raise BadInput(f"size must be at least 1, not {size}")
    shown_w, shown_h = fitted_size(width, height, size)
    scale = next(s for s in DCT_SCALES if s <= min(width, height) and -(-width // s) >= shown_w and -(-height // s) >= shown_h)
    megapixels = width * height / 1e6
    if scale > 1:
        return FastPlan(scale, False, None, f"not enhanced: shown at 1/{width / shown_w:.3g} of {width}x{height}, "
                        f"decoded at 1/{scale} by libjpeg's DCT scaling, which shows no blocking")
    if quality is not None and quality > FAST_MAX_QUALITY:
        return FastPlan(1, False, None, f"not enhanced: quality {quality:g} is above {FAST_MAX_QUALITY}, "
                        "where no JPEG artefact shows at a glance")
    if width * height > FAST_MAX_PIXELS:
        return FastPlan(1, False, None, f"not enhanced: {megapixels:.1f} MP is over the fast modes' "
                        f"{FAST_MAX_PIXELS / 1e6:.1f} MP; pass steps= to enhance it at full size")
    chosen = steps if steps is not None else FAST_STEPS
    return FastPlan(1, True, chosen, f"enhanced: {width}x{height} at quality {quality:g}, {chosen} step{'s' * (chosen != 1)}"
                    if quality is not None else f"enhanced: {width}x{height}, {chosen} step{'s' * (chosen != 1)}")


def plan_for(coded: CodedImage, size: int | None = None, *, steps: int | None = None) -> FastPlan:
    """`fast_plan` for a JPEG read with `CodedImage.read` (its declared size and the quality of its tables)."""
    if coded.jpeg is None:
        raise BadInput(
            f"{coded.path or 'the file'}: not a JPEG; the JPEG enhancer is conditioned on the quality read from a JPEG "
            "file's quantization tables"
        )
    return fast_plan(coded.jpeg.width, coded.jpeg.height, coded.rate, size, steps=steps)


def fit(pixels: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 HxWx3 pixels shrunk with Lanczos to fit size x size (as `Image.thumbnail`); unchanged when they fit."""
    height, width = pixels.shape[:2]
    if size is None or max(width, height) <= size:
        return pixels
    image = Image.fromarray(pixels, "RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image)


def decoded(coded: CodedImage, plan: FastPlan, size: int | None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Enhanced:
    """The JPEG decoded at the plan's DCT scale, turned for display and fitted to `size`; no model is involved."""
    loaded = decode_image(coded.data, path=coded.path or "<bytes>", max_pixels=max_pixels, scale=plan.scale)
    pixels = fit(apply_orientation(loaded.pixels, loaded.orientation), size)
    return Enhanced(pixels=pixels, greyscale=loaded.greyscale, metadata=loaded.metadata.for_oriented_pixels(), note=plan.reason)

