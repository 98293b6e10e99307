"""What an existing JPEG file says about how it was coded.

`inspect_jpeg` parses the marker segments itself (no decoder involved) and returns the
quantization tables, the IJG quality they correspond to, the chroma subsampling, the
coding process and the colour space. `read_dct_coefficients` reads the quantized DCT
coefficients with libjpeg (through jpeglib), for projections onto the set of images
that the file describes.

Quality estimate. libjpeg (and every tool built on it: Pillow, cjpeg, ImageMagick, most
phones' software encoders) scales its standard tables by the IJG quality q in 1..100:
scale = 5000/q below 50, else 200 - 2q; each entry is (base*scale + 50) // 100, clamped
to 1..255 (1..32767 without force_baseline). `estimated_quality` is the q whose tables
equal the file's (luma, and chroma when the file has a separate chroma table), with
`quality_is_exact` True; tables from other encoders get the q whose tables are nearest
in mean absolute log ratio, with `quality_is_exact` False. It is always an integer 1..100.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import BadInput

# libjpeg's jpeg_natural_order: the natural (row-major) index of each zig-zag position.
ZIGZAG_TO_NATURAL = np.array(
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
        12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ]
)  # fmt: skip

# ITU-T T.81 Annex K tables, as libjpeg's jcparam.c holds them (natural order).
IJG_LUMA_TABLE = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61,
        12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77,
        24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101,
        72, 92, 95, 98, 112, 100, 103, 99,
    ]
).reshape(8, 8)  # fmt: skip
IJG_CHROMA_TABLE = np.array(
    [
        17, 18, 24, 47, 99, 99, 99, 99,
        18, 21, 26, 66, 99, 99, 99, 99,
        24, 26, 56, 99, 99, 99, 99, 99,
        47, 66, 99, 99, 99, 99, 99, 99,
        99, 99, 99, 99, 99, 99, 99, 99,
        99, 99, 99, 99, 99, 99, 99, 99,
        99, 99, 99, 99, 99, 99, 99, 99,
        99, 99, 99, 99, 99, 99, 99, 99,
    ]
).reshape(8, 8)  # fmt: skip

# Start-of-frame markers by coding process. Lossless (SOF3/7/11/15) and hierarchical
# (SOF5/6/7, SOF13/14/15) JPEG have no DCT coefficients to enhance, and nothing reads them.
SOF_SEQUENTIAL = {0xC0: False, 0xC1: False, 0xC9: True}  # marker: arithmetic coding
SOF_PROGRESSIVE = {0xC2: False, 0xCA: True}
SOF_UNSUPPORTED = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}
DHT, DAC, DQT, DRI, SOS, SOI, EOI = 0xC4, 0xCC, 0xDB, 0xDD, 0xDA, 0xD8, 0xD9
APP0, APP14 = 0xE0, 0xEE
RST_MARKERS = range(0xD0, 0xD8)
TEM = 0x01

SUBSAMPLING_NAMES = {
    (1, 1): "4:4:4",
    (2, 1): "4:2:2",
    (2, 2): "4:2:0",
    (1, 2): "4:4:0",
    (4, 1): "4:1:1",
    (4, 2): "4:1:0",
}


def ijg_tables(quality: int, *, force_baseline: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The (luma, chroma) tables libjpeg's jpeg_set_quality(quality, force_baseline) writes."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    limit = 255 if force_baseline else 32767
    return tuple(
        np.clip((base * scale + 50) // 100, 1, limit).astype(np.uint16) for base in (IJG_LUMA_TABLE, IJG_CHROMA_TABLE)
    )


# Every table libjpeg can write: qualities 1..100, with and without force_baseline.
_CANDIDATE_QUALITIES = np.array([q for q in range(1, 101) for _ in (True, False)])
_CANDIDATE_LUMA, _CANDIDATE_CHROMA = (
    np.stack(tables)
    for tables in zip(*(ijg_tables(q, force_baseline=baseline) for q in range(1, 101) for baseline in (True, False)))
)


def _log_distance(table: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    return np.abs(np.log(candidates.astype(np.float64)) - np.log(table.astype(np.float64))).mean(axis=(1, 2))


def estimate_quality(luma: np.ndarray, chroma: np.ndarray | None = None) -> tuple[int, bool]:
    """(IJG quality 1..100, whether the tables are exactly libjpeg's for it); see the module docstring."""
    matches = (_CANDIDATE_LUMA == luma).all(axis=(1, 2))
    if chroma is not None:
        matches &= (_CANDIDATE_CHROMA == chroma).all(axis=(1, 2))
    if matches.any():
        return int(_CANDIDATE_QUALITIES[matches.argmax()]), True
    distance = _log_distance(luma, _CANDIDATE_LUMA)
    if chroma is not None:
        distance += _log_distance(chroma, _CANDIDATE_CHROMA)
    return int(_CANDIDATE_QUALITIES[distance.argmin()]), False


@dataclass(frozen=True)
class JpegInfo:
    """What a JPEG file's headers say. Tables are 8x8 uint16 arrays in natural (row-major) order."""

    width: int
    height: int
    precision: int  # bits per sample, 8 or 12
    component_ids: tuple[int, ...]
    sampling_factors: tuple[tuple[int, int], ...]  # (horizontal, vertical) per component
    # The table each component is quantized with, as latched at the component's first scan.
    component_tables: tuple[np.ndarray, ...] = field(repr=False)
    # Every table the file defines, by table slot (0..3); the last definition of a slot wins.
    quantization_tables: dict[int, np.ndarray] = field(repr=False)
    estimated_quality: int
    quality_is_exact: bool
    subsampling: str  # "4:2:0", "4:2:2", "4:4:4", "4:4:0", "4:1:1", "4:1:0", "grey" or "other"
    progressive: bool
    arithmetic: bool
    colour_space: str  # "YCbCr", "RGB", "grey", "CMYK" or "YCCK", as libjpeg would guess it
    jfif: bool
    adobe_transform: int | None  # the APP14 Adobe transform flag (0, 1 or 2), None without APP14
    restart_interval: int

    @property
    def components(self) -> int:
        return len(self.component_ids)

    @property
    def luma_table(self) -> np.ndarray:
        return self.component_tables[0]

    @property
    def chroma_table(self) -> np.ndarray | None:
        return self.component_tables[1] if self.components > 1 else None


class _Component(NamedTuple):
    """One component of the frame header: its id, sampling factors and quantization table slot."""

    id: int
    horizontal: int
    vertical: int
    table: int

    @property
    def factors(self) -> tuple[int, int]:
        return self.horizontal, self.vertical


class _Frame(NamedTuple):
    """The frame header (SOF)."""

    sof: int
    precision: int
    height: int
    width: int
    components: tuple[_Component, ...]


@dataclass
class _ParseState:
    """What the segments read so far say."""

    tables: dict[int, np.ndarray] = field(default_factory=dict)
    frame: _Frame | None = None
    latched: dict[int, np.ndarray] = field(default_factory=dict)
    scans: int = 0
    jfif: bool = False
    adobe_transform: int | None = None
    restart_interval: int = 0


class _Parser:
    """One pass over the marker segments; every read is bounds-checked and raises BadInput."""

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.source = source

    def fail(self, reason: str) -> BadInput:
        return BadInput(f"{self.source}: not a usable JPEG file: {reason}")

    def u16(self, position: int) -> int:
        if position + 2 > len(self.data):
            raise self.fail("truncated")
        return (self.data[position] << 8) | self.data[position + 1]

    def next_marker(self, position: int) -> tuple[int, int]:
        """(marker, position after it), skipping fill bytes, and junk bytes as libjpeg does."""
        data = self.data
        position = data.find(b"\xff", position)
        if position < 0:
            raise self.fail("truncated (no EOI marker)")
        while position < len(data) and data[position] == 0xFF:
            position += 1
        if position >= len(data):
            raise self.fail("truncated (no EOI marker)")
        return data[position], position + 1

    def skip_entropy_coded(self, position: int) -> int:
        """The position of the marker ending a scan's entropy-coded data (stuffed bytes and RSTn skipped)."""
        data = self.data
        while True:
            position = data.find(b"\xff", position)
            if position < 0 or position + 1 >= len(data):
                raise self.fail("truncated inside entropy-coded data (no EOI marker)")
            following = data[position + 1]
            if following == 0x00 or following in RST_MARKERS:
                position += 2
            elif following == 0xFF:
                position += 1
            else:
                return position

    def parse(self) -> JpegInfo:
        data = self.data
        if len(data) < 4 or data[0] != 0xFF or data[1] != SOI:
            raise self.fail("no SOI marker at the start")
        state = _ParseState()
        position = 2
        while True:
            marker, position = self.next_marker(position)
            if marker == EOI:
                break
            if marker in RST_MARKERS or marker == TEM:
                continue
            if marker in (SOI, 0x00):
                raise self.fail(f"unexpected marker 0xFF{marker:02X} at byte {position - 2}")
            length = self.u16(position)
            if length < 2 or position + length > len(data):
                raise self.fail(f"segment 0xFF{marker:02X} at byte {position - 2} is truncated or has length {length}")
            segment = data[position + 2 : position + length]
            position += length
            self.read_segment(marker, segment, state)
            if marker == SOS:
                position = self.skip_entropy_coded(position)
        return self.info(state)

    def read_segment(self, marker: int, segment: bytes, state: "_ParseState") -> None:
        """Takes what one marker segment says into `state`."""
        if marker == DQT:
            self.read_tables(segment, state.tables)
        elif marker in SOF_UNSUPPORTED:
            raise self.fail(f"lossless or hierarchical JPEG (SOF 0xFF{marker:02X}) is not supported")
        elif marker in SOF_SEQUENTIAL or marker in SOF_PROGRESSIVE:
            if state.frame is not None:
                raise self.fail("more than one frame header (SOF)")
            state.frame = _Frame(marker, *self.read_frame(segment))
        elif marker == SOS:
            self.latch_scan_tables(segment, state)
        elif marker == DRI:
            if len(segment) != 2:
                raise self.fail("DRI segment of the wrong length")
            state.restart_interval = (segment[0] << 8) | segment[1]
        elif marker == APP0 and segment.startswith(b"JFIF\x00"):
            state.jfif = True
        elif marker == APP14 and segment.startswith(b"Adobe") and len(segment) >= 12:
            state.adobe_transform = segment[11]

    def latch_scan_tables(self, segment: bytes, state: "_ParseState") -> None:
        """A scan latches, for each component it codes first, the table its slot holds then."""
        if state.frame is None:
            raise self.fail("scan (SOS) before the frame header (SOF)")
        components = state.frame.components
        for component_id in self.read_scan(segment, components):
            if component_id not in state.latched:
                slot = next(c.table for c in components if c.id == component_id)
                if slot not in state.tables:
                    raise self.fail(f"component {component_id} uses quantization table {slot}, never defined")
                state.latched[component_id] = state.tables[slot]
        state.scans += 1

    def info(self, state: "_ParseState") -> JpegInfo:
        frame = state.frame
        if frame is None or state.scans == 0:
            raise self.fail("no image data (missing frame header or scan)")
        components = frame.components
        missing = [c.id for c in components if c.id not in state.latched]
        if missing:
            raise self.fail(f"components {missing} are never coded in a scan")
        component_tables = tuple(state.latched[c.id] for c in components)
        chroma = component_tables[1] if len(components) >= 3 and components[1].table != components[0].table else None
        quality, exact = estimate_quality(component_tables[0], chroma)
        return JpegInfo(
            width=frame.width,
            height=frame.height,
            precision=frame.precision,
            component_ids=tuple(c.id for c in components),
            sampling_factors=tuple((c.horizontal, c.vertical) for c in components),
            component_tables=component_tables,
            quantization_tables=dict(sorted(state.tables.items())),
            estimated_quality=quality,
            quality_is_exact=exact,
            subsampling=_subsampling(components),
            progressive=frame.sof in SOF_PROGRESSIVE,
            arithmetic=SOF_SEQUENTIAL.get(frame.sof, SOF_PROGRESSIVE.get(frame.sof, False)),
            colour_space=_colour_space(components, state.jfif, state.adobe_transform),
            jfif=state.jfif,
            adobe_transform=state.adobe_transform,
            restart_interval=state.restart_interval,
        )

    def read_tables(self, segment: bytes, tables: dict[int, np.ndarray]) -> None:
        position = 0
        if not segment:
            raise self.fail("empty DQT segment")
        while position < len(segment):
            precision, slot = segment[position] >> 4, segment[position] & 0x0F
            if precision > 1 or slot > 3:
                raise self.fail(f"DQT table with precision {precision} in slot {slot}")
            size = 128 if precision else 64
            body = segment[position + 1 : position + 1 + size]
            if len(body) != size:
                raise self.fail("DQT segment is truncated")
            values = np.frombuffer(body, dtype=">u2" if precision else np.uint8).astype(np.uint16)
            if not values.all():
                raise self.fail(f"quantization table {slot} holds a zero")
            natural = np.empty(64, dtype=np.uint16)
            natural[ZIGZAG_TO_NATURAL] = values
            tables[slot] = natural.reshape(8, 8)
            position += 1 + size

    def read_frame(self, segment: bytes):
        if len(segment) < 6:
            raise self.fail("SOF segment is truncated")
        precision = segment[0]
        height = (segment[1] << 8) | segment[2]
        width = (segment[3] << 8) | segment[4]
        count = segment[5]
        if precision not in (8, 12):
            raise self.fail(f"{precision}-bit samples")
        if width == 0 or height == 0:
            raise self.fail(f"image size {width}x{height} (a height set by DNL is not supported)")
        if count not in (1, 3, 4) or len(segment) != 6 + 3 * count:
            raise self.fail(f"SOF segment with {count} components and length {len(segment) + 2}")
        components = []
        for index in range(count):
            component_id, factors, slot = segment[6 + 3 * index : 9 + 3 * index]
            horizontal, vertical = factors >> 4, factors & 0x0F
            if not (1 <= horizontal <= 4 and 1 <= vertical <= 4) or slot > 3:
                raise self.fail(f"component {component_id} has sampling {horizontal}x{vertical}, table {slot}")
            if any(component_id == other.id for other in components):
                raise self.fail(f"component id {component_id} appears twice")
            components.append(_Component(component_id, horizontal, vertical, slot))
        return precision, height, width, tuple(components)

    def read_scan(self, segment: bytes, components) -> list[int]:
        if not segment:
            raise self.fail("empty SOS segment")
        count = segment[0]
        if not 1 <= count <= 4 or len(segment) != 4 + 2 * count:
            raise self.fail(f"SOS segment with {count} components and length {len(segment) + 2}")
        ids = [segment[1 + 2 * index] for index in range(count)]
        known = {c.id for c in components}
        if any(component_id not in known for component_id in ids) or len(set(ids)) != count:
            raise self.fail(f"scan names components {ids}, the frame has {sorted(known)}")
        return ids


def _subsampling(components) -> str:
    if len(components) == 1:
        return "grey"
    luma, *chroma = components
    if any(c.factors != chroma[0].factors for c in chroma) or chroma[0].factors != (1, 1):
        return "other"
    return SUBSAMPLING_NAMES.get(luma.factors, "other")


def _colour_space(components, jfif: bool, adobe_transform: int | None) -> str:
    """libjpeg's guess (jdapimin.c default_decompress_parms)."""
    ids = tuple(c.id for c in components)
    if len(components) == 1:
        return "grey"
    if len(components) == 4:
        return "YCCK" if adobe_transform == 2 else "CMYK"
    if jfif:
        return "YCbCr"
    if adobe_transform is not None:
        return "RGB" if adobe_transform == 0 else "YCbCr"
    if ids == (ord("R"), ord("G"), ord("B")):
        return "RGB"
    return "YCbCr"


def _read_source(source: bytes | str | os.PathLike) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "JPEG data"
    try:
        return Path(source).read_bytes(), str(source)
    except OSError as error:
        raise BadInput(f"{source}: cannot read: {error.strerror or error}") from None


def inspect_jpeg(source: bytes | str | os.PathLike) -> JpegInfo:
    """Parses a JPEG file (its bytes or its path). Anything that is not a complete JPEG is BadInput."""
    data, name = _read_source(source)
    return _Parser(data, name).parse()


@dataclass(frozen=True)
class DctCoefficients:
    """A JPEG file's quantized DCT coefficients and the tables that dequantize them.

    `coefficients[i]` is component i's int16 array of shape (blocks down, blocks across,
    8, 8), each block in natural order; multiplied by `tables[i]` it gives the DCT of
    the level-shifted samples. Components are in file order; `colour_space` says what
    they are (Y, Cb, Cr for "YCbCr").
    """

    width: int
    height: int
    colour_space: str
    sampling_factors: tuple[tuple[int, int], ...]
    coefficients: tuple[np.ndarray, ...] = field(repr=False)
    tables: tuple[np.ndarray, ...] = field(repr=False)

    @property
    def y(self) -> np.ndarray:
        return self.coefficients[0]

    @property
    def cb(self) -> np.ndarray | None:
        return self.coefficients[1] if len(self.coefficients) > 1 else None

    @property
    def cr(self) -> np.ndarray | None:
        return self.coefficients[2] if len(self.coefficients) > 2 else None


def read_dct_coefficients(source: bytes | str | os.PathLike, *, info: JpegInfo | None = None) -> DctCoefficients:
    """Reads the quantized DCT coefficients of a grey or 3-component JPEG (its bytes or its path) with libjpeg.

    The file is parsed first (`inspect_jpeg`, or the `info` a caller already has), so
    truncated or corrupt files raise BadInput before libjpeg sees them; 4-component
    (CMYK/YCCK) files raise BadInput too. libjpeg (jpeglib) reads files only: bytes go
    through a temporary file, so pass the path when the JPEG is one already.
    """
    name = "JPEG data" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    if info is None:
        data, name = _read_source(source)
        info = _Parser(data, name).parse()
    if info.components == 4:
        raise BadInput(f"{name}: {info.colour_space} JPEG files are not supported, only grey and 3-component ones")
    if isinstance(source, (bytes, bytearray, memoryview)):
        with tempfile.TemporaryDirectory(prefix="enhance-jpeg-") as directory:
            path = Path(directory) / "coefficients.jpg"
            path.write_bytes(bytes(source))
            planes = _libjpeg_planes(path, info.components, name)
    else:
        planes = _libjpeg_planes(Path(source), info.components, name)
    return DctCoefficients(
        width=info.width,
        height=info.height,
        colour_space=info.colour_space,
        sampling_factors=info.sampling_factors,
        coefficients=planes,
        tables=info.component_tables,
    )


def _libjpeg_planes(path: Path, components: int, name: str) -> tuple[np.ndarray, ...]:
    import jpeglib

    try:
        dct = jpeglib.read_dct(str(path))
        planes = [dct.Y] + ([dct.Cb, dct.Cr] if components == 3 else [])
    except Exception as error:  # jpeglib reports libjpeg failures as OSError, RuntimeError and others
        raise BadInput(f"{name}: libjpeg cannot read the DCT coefficients: {error}") from None
    return tuple(np.ascontiguousarray(plane, dtype=np.int16) for plane in planes)
