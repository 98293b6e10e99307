"""A decode hook for viewers: enhanced JPEGs as PIL images or PNG bytes, cached by content.

`open` and `open_array` enhance a JPEG as `enhance run` does (orientation applied
once, greyscale kept, ICC/EXIF/XMP attached) and cache the resulting PNG under
`<cache>/decoded` ($ENHANCE_CACHE, else $XDG_CACHE_HOME/enhance, else
~/.cache/enhance). The key hashes the file's bytes, the enhancer's identity (weights,
device, dtype), the tile size, steps, seed and consistency, so a changed file or model
never returns a stale result. Entries are written atomically; nothing evicts them.

The cache is consulted before the model is loaded: for DIRAC the enhancer's identity
is a hash of its bundle's files, known without loading it, so a cache hit costs a file
read. (A plugin enhancer is loaded first, since only it knows its identity.)

`write_thumbnail` and the XDG thumbnailer entry (`enhance/data/enhance.thumbnailer`)
make file managers show enhanced thumbnails.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shlex
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from .enhance_one import (
    DEFAULT_ENHANCER, CodedImage, Enhanced, check_options, check_steps, enhance_bytes, enhancer_identity, load_enhancer, model_setting,
)
from .errors import BadInput
from .image import DEFAULT_MAX_PIXELS, _icc_colour_space, encode_image, read_file, write_atomic
from .outputs import refuse_overwrite, write_output
from .preview import INFO_KEY, decoded, fit, plan_for

CACHE_VERSION = 2
THUMBNAILER_FILE = "enhance.thumbnailer"


def cache_directory() -> Path:
    from .weights import cache_dir

    return cache_dir() / "decoded"


@functools.lru_cache(maxsize=4)
def _enhancer(model: str | None, device: str | None, tile: int | None, name: str = DEFAULT_ENHANCER):
    return load_enhancer("jpeg", model=model, name=name, device=device, tile=tile)


@functools.lru_cache(maxsize=4)
def _identity(model: str | None, device: str | None, name: str) -> str | None:
    # Once per process, as the loaded enhancer is kept (`_enhancer`): hashing the bundle costs ~50 ms.
    return enhancer_identity("jpeg", model=model, name=name, device=device)


def cache_key(data: bytes, *, enhancer, steps: int | None, seed: int, consistent: bool, tile: int | None = None) -> str:
    """The entry for `data` enhanced by `enhancer` (an instance, or its identity string) with these settings.

    Steps and tile are keyed as given (None: the model's default), so the key is known
    before the model is loaded.
    """
    identity = enhancer if isinstance(enhancer, str) else enhancer.identity
    fields = {
        "version": CACHE_VERSION,
        "file": hashlib.sha256(data).hexdigest(),
        "enhancer": identity,
        "tile": tile,
        "steps": steps,
        "seed": seed,
        "consistent": consistent,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _cached_or_enhanced(
    path: Path | str,
    *,
    steps: int | None = None,
    seed: int = 0,
    consistent: bool = False,
    model: Path | str | None = None,
    enhancer_name: str = DEFAULT_ENHANCER,
    device: str | None = None,
    tile: int | None = None,
    cache: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[Path, bytes | None, Enhanced | None]:
    """(cache entry, its PNG when the cache holds it, else the image enhanced now)."""
    check_options(device=device, steps=steps, seed=seed, tile=tile, consistent=consistent)
    data = read_file(path)
    if not data:  # refused before the model loads
        raise BadInput(f"{path}: empty file (0 bytes)")
    # The cache is consulted before the model loads: the key needs only the bundle's hash.
    identity = _identity(model_setting(model, "jpeg"), device, enhancer_name)
    enhancer = None
    if identity is None:  # a plugin enhancer: only the loaded one knows its identity
        enhancer = _enhancer(model_setting(model, "jpeg"), device, tile, enhancer_name)
        identity = enhancer.identity
    key = cache_key(data, enhancer=identity, steps=steps, seed=seed, consistent=consistent, tile=tile)
    cached = cache_directory() / key[:2] / f"{key}.png"
    if cache and cached.is_file():
        return cached, cached.read_bytes(), None
    if enhancer is None:
        enhancer = _enhancer(model_setting(model, "jpeg"), device, tile, enhancer_name)
    check_steps(enhancer, steps)
    enhanced = enhance_bytes(data, path=path, enhancer=enhancer, steps=steps, seed=seed, consistent=consistent, max_pixels=max_pixels)
    return cached, None, enhanced


def _png(enhanced: Enhanced) -> bytes:
    return encode_image(enhanced.pixels, enhanced.metadata, "png", greyscale=enhanced.greyscale)


def enhanced_png(path: Path | str, *, cache: bool = True, **options) -> bytes:
    """The enhanced image as PNG bytes (oriented, with its metadata), from the cache when it holds them.

    Options: steps, seed, consistent, model, enhancer_name (a registered enhancer), device, tile, max_pixels.
    """
    return _png_and_hit(path, cache=cache, **options)[0]


def _png_and_hit(path: Path | str, *, cache: bool = True, **options) -> tuple[bytes, bool]:
    entry, png, enhanced = _cached_or_enhanced(path, cache=cache, **options)
    if png is not None:
        return png, True
    png = _png(enhanced)
    if cache:
        _fill_cache(entry, png)
    return png, False


def _fill_cache(entry: Path, png: bytes) -> None:
    # The cache only saves time: a full disk or a read-only cache folder must not fail the image.
    try:
        write_atomic(entry, png)
    except OSError:
        pass


def _fast(path: Path | str, size: int | None, options: dict) -> tuple[Enhanced | None, dict, str | None]:
    """The fast modes' plan (`enhance.preview.fast_plan`) for `open` and `open_array`.

    (the image decoded, when the plan does not enhance it; the options for the enhancing
    path, with the plan's steps; the plan's reason). Steps named at full size are the
    caller's choice: no plan, enhanced as asked.
    """
    if size is None and options.get("steps") is not None:
        return None, options, None
    data = read_file(path)
    if not data:
        raise BadInput(f"{path}: empty file (0 bytes)")
    coded = CodedImage.read(data, path=path)
    chosen = plan_for(coded, size, steps=options.get("steps"))  # BadInput for what is not a JPEG, before any model
    if not chosen.enhance:
        return decoded(coded, chosen, size, max_pixels=options.get("max_pixels", DEFAULT_MAX_PIXELS)), options, chosen.reason
    return None, {**options, "steps": chosen.steps}, chosen.reason


def _pil(enhanced: Enhanced) -> Image.Image:
    # As the PNG path gives it: "L" for greyscale, ICC only when it describes the pixels.
    pixels = enhanced.pixels[..., 0] if enhanced.greyscale else enhanced.pixels
    image = Image.fromarray(np.ascontiguousarray(pixels), "L" if enhanced.greyscale else "RGB")
    metadata = enhanced.metadata
    if metadata.icc_profile and _icc_colour_space(metadata.icc_profile) == (b"GRAY" if enhanced.greyscale else b"RGB "):
        image.info["icc_profile"] = metadata.icc_profile
    for key, value in (("exif", metadata.exif), ("xmp", metadata.xmp)):
        if value:
            image.info[key] = value
    return image


def open(path: Path | str, *, size: int | None = None, **options) -> Image.Image:
    """The enhanced JPEG as a loaded PIL image ("RGB", or "L" for greyscale files); ICC, EXIF and XMP are in `.info`.

    Takes `enhanced_png`'s options (steps, seed, consistent, model, device, tile, cache).
    `.info["enhance"]` says what made an enhanced image (settings, enhancer, source, cache hit).
    By default, and with `size` (the largest side the viewer shows, the image fitted
    inside size x size), it is the fast mode of `enhance.preview`: enhanced at 1 step only
    when that is quick and shows, else decoded (DCT-scaled to `size`) without the model;
    `info["enhance_fast"]` says which. `steps` without `size` enhances at full size as asked.
    """
    fast, options, reason = _fast(path, size, options)
    if fast is not None:
        image = _pil(fast)
    else:
        png, hit = _png_and_hit(path, **options)
        image = Image.open(io.BytesIO(png))
        image.load()
        image.info["enhance"] = {
            "source": str(path),
            "steps": options.get("steps"),
            "seed": options.get("seed", 0),
            "consistent": options.get("consistent", False),
            "enhancer": options.get("enhancer_name", DEFAULT_ENHANCER),
            "model": model_setting(options.get("model"), "jpeg"),
            "cached": hit,
        }
        if size is not None:
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
    if reason is not None:
        image.info[INFO_KEY] = reason
    return image


def open_array(path: Path | str, *, cache: bool = True, size: int | None = None, **options) -> np.ndarray:
    """The enhanced JPEG as uint8 HxWx3 RGB, oriented for display (no PNG round trip unless the cache is written).

    `size` and the default fast mode as for `open`.
    """
    fast, options, _ = _fast(path, size, options)
    if fast is not None:
        return fast.pixels
    if size is not None:
        return fit(open_array(path, cache=cache, **options), size)  # options name the plan's steps
    entry, png, enhanced = _cached_or_enhanced(path, cache=cache, **options)
    if png is None and not cache:
        return enhanced.pixels
    if png is None:
        _fill_cache(entry, _png(enhanced))
        return enhanced.pixels
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def write_thumbnail(input_path: Path | str, output_path: Path | str, size: int, **options) -> Path:
    """A PNG no larger than size x size of the enhanced image, written atomically (XDG thumbnailer protocol)."""
    if size < 1:
        raise BadInput(f"thumbnail size must be at least 1, not {size}")
    refuse_overwrite(input_path, output_path)
    image = open(input_path, size=size, **options)  # the fast mode: a DCT-scaled decode of a large JPEG
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return write_output(Path(output_path), buffer.getvalue(), source=input_path)


def thumbnailer_entry(executable: str = "enhance") -> str:
    """The XDG thumbnailer entry, running `executable` (a name on PATH or an absolute path)."""
    template = resources.files("enhance").joinpath("data", THUMBNAILER_FILE).read_text()
    lines = []
    for line in template.splitlines():
        if line.startswith("TryExec="):
            line = f"TryExec={executable}"
        elif line.startswith("Exec="):
            arguments = line[len("Exec=") :].partition(" ")[2]
            line = f"Exec={shlex.quote(executable)} {arguments}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def install_thumbnailer(*, data_home: Path | str | None = None, executable: str = "enhance") -> Path:
    """Writes the thumbnailer entry into $XDG_DATA_HOME/thumbnailers (default ~/.local/share/thumbnailers)."""
    if data_home is None:
        data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    target = Path(data_home).expanduser() / "thumbnailers" / THUMBNAILER_FILE
    write_atomic(target, thumbnailer_entry(executable).encode())
    return target
