"""The comparison cache: every encoded, decoded and enhanced image, and every metric, once.

Entries live under `<output>/cache/v<VERSION>/<kind>/<key[:2]>/<key>.<suffix>`. A key is the
SHA-256 of the canonical JSON of everything that determines the entry (image content hash,
codec, its options, quality, enhancer identity, steps, seed...), so a new quality or step
count adds entries and never invalidates the others.

Only formats that are safe to read from untrusted files are used: JSON records, PNG images
(decoded by Pillow with the format pinned and the shape checked) and raw bitstreams (handed
to the codec's own decoder, which already treats its input as untrusted). Each file is
written atomically; an entry's JSON record is written after its other files, so a record
that exists names complete files. Anything unreadable, of another format version or for
another key is a miss and is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..image import write_atomic

VERSION = 1
RECORD_FORMAT = "enhance.compare-cache"
# Cached PNGs are intermediate files read back by this program only: fast compression.
PNG_COMPRESS_LEVEL = 1


def cache_key(fields: dict) -> str:
    """A stable key for `fields` (JSON-serialisable, compared after sorting keys)."""
    # repr() stands for option values JSON cannot hold (a library caller's objects).
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


def content_hash(pixels: np.ndarray) -> str:
    """Identifies an image by its pixels, so renamed or re-saved copies share cache entries."""
    digest = hashlib.sha256(f"{pixels.shape}:{pixels.dtype}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


class ResultCache:
    """Reads and writes cache entries under `root`; counts hits and misses by kind."""

    def __init__(self, *, root: Path):
        self.root = Path(root) / f"v{VERSION}"
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def count(self, kind: str, hit: bool) -> None:
        counter = self.hits if hit else self.misses
        counter[kind] = counter.get(kind, 0) + 1

    def read_record(self, kind: str, key: str) -> dict | None:
        try:
            record = json.loads(self._path(kind, key, ".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(record, dict)
            or record.get("format") != RECORD_FORMAT
            or record.get("version") != VERSION
            or record.get("key") != key
            or not isinstance(record.get("data"), dict)
        ):
            return None
        return record["data"]

    def write_record(self, kind: str, key: str, data: dict) -> None:
        record = {"format": RECORD_FORMAT, "version": VERSION, "key": key, "data": data}
        write_atomic(self._path(kind, key, ".json"), json.dumps(record, sort_keys=True).encode())

    def read_bytes(self, kind: str, key: str) -> bytes | None:
        try:
            return self._path(kind, key, ".bin").read_bytes()
        except OSError:
            return None

    def write_bytes(self, kind: str, key: str, data: bytes) -> None:
        write_atomic(self._path(kind, key, ".bin"), data)

    def read_image(self, kind: str, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """The cached RGB PNG of `key` if it exists and has `shape`, else None."""
        try:
            data = self._path(kind, key, ".png").read_bytes()
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                if image.mode != "RGB" or image.size != (shape[1], shape[0]):
                    return None
                pixels = np.array(image, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
            return None
        return pixels if pixels.shape == tuple(shape) else None

    def write_image(self, kind: str, key: str, pixels: np.ndarray) -> None:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
        write_atomic(self._path(kind, key, ".png"), buffer.getvalue())

    def statistics(self) -> dict:
        kinds = sorted(set(self.hits) | set(self.misses))
        return {kind: {"hits": self.hits.get(kind, 0), "misses": self.misses.get(kind, 0)} for kind in kinds}
