"""A decode hook for viewers: enhanced JPEGs as PIL images or PNG bytes, cached by content.

`open` and `open_array` enhance a JPEG as `enhance run` does (orientation applied
once, greyscale kept, ICC/EXIF/XMP attached) and cache the resulting PNG under
`<cache>/decoded` ($ENHANCE_CACHE, else $XDG_CACHE_HOME/enhance, else
~/.cache/enhance). The key hashes the file's bytes, the enhancer's identity (weights,
device, dtype), the tile size, steps, seed and consistency, so a changed file or model
never returns a stale result. Entries are written atomically; nothing evicts them.

A cache hit still loads the model once per process, because the enhancer's identity
is part of the key; a viewer that calls `open` repeatedly keeps the model loaded.

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

from .errors import BadInput
from .image import DEFAULT_MAX_PIXELS, decode_image, encode_image, read_file, write_atomic
from .runs import check_steps, enhance_loaded, load_jpeg_enhancer

CACHE_VERSION = 1
THUMBNAILER_FILE = "enhance.thumbnailer"


def cache_directory() -> Path:
    from .weights import cache_dir

    return cache_dir() / "decoded"


@functools.lru_cache(maxsize=4)
def _enhancer(model: str | None, device: str | None, tile: int | None):
    return load_jpeg_enhancer(model, device=device, tile=tile)


def cache_key(data: bytes, *, enhancer, steps: int | None, seed: int, consistent: bool) -> str:
    fields = {
        "version": CACHE_VERSION,
        "file": hashlib.sha256(data).hexdigest(),
        "enhancer": enhancer.identity,
        "tile": enhancer.tile,
        "steps": steps if steps is not None else enhancer.default_steps,
        "seed": seed,
        "consistent": consistent,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def enhanced_png(
    path: Path | str,
    *,
    steps: int | None = None,
    seed: int = 0,
    consistent: bool = False,
    model: Path | str | None = None,
    device: str | None = None,
    tile: int | None = None,
    cache: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """The enhanced image as PNG bytes (oriented, with its metadata), from the cache when it holds them."""
    data = read_file(path)
    enhancer = _enhancer(str(model) if model is not None else os.environ.get("ENHANCE_DIRAC_JPEG") or None, device, tile)
    check_steps(enhancer, steps)
    key = cache_key(data, enhancer=enhancer, steps=steps, seed=seed, consistent=consistent)
    cached = cache_directory() / key[:2] / f"{key}.png"
    if cache and cached.is_file():
        return cached.read_bytes()
    loaded = decode_image(data, path=path, max_pixels=max_pixels)
    enhanced = enhance_loaded(loaded, enhancer=enhancer, steps=steps, seed=seed, consistent=consistent)
    png = encode_image(enhanced.pixels, loaded.metadata.for_oriented_pixels(), "png", greyscale=enhanced.greyscale)
    if cache:
        write_atomic(cached, png)
    return png


def open(path: Path | str, **options) -> Image.Image:
    """The enhanced JPEG as a loaded PIL image ("RGB", or "L" for greyscale files); ICC, EXIF and XMP are in `.info`.

    Takes `enhanced_png`'s options (steps, seed, consistent, model, device, tile, cache).
    """
    image = Image.open(io.BytesIO(enhanced_png(path, **options)))
    image.load()
    return image


def open_array(path: Path | str, **options) -> np.ndarray:
    """The enhanced JPEG as uint8 HxWx3 RGB, oriented for display."""
    return np.asarray(open(path, **options).convert("RGB"))


def write_thumbnail(input_path: Path | str, output_path: Path | str, size: int, **options) -> Path:
    """A PNG no larger than size x size of the enhanced image, written atomically (XDG thumbnailer protocol)."""
    if size < 1:
        raise BadInput(f"thumbnail size must be at least 1, not {size}")
    image = open(input_path, **options)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    write_atomic(Path(output_path), buffer.getvalue())
    return Path(output_path)


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
