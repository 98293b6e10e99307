"""BPG and VTM: external binaries driven through CompressAI's bench wrappers.

`compressai.utils.bench.codecs` knows the command lines of these tools, but its classes
take an argparse Namespace, print and `sys.exit` on failure, and run encode and decode
as one step. Here its classes only build command lines and resolve binary paths (from
a namespace made internally); enhance runs the commands itself, keeps their output,
and turns failures into EnhanceError (encoding) or BadInput (decoding).

Where the binaries come from (see "Installing BPG and VTM" in the README):

* BPG: `encoder_path`/`decoder_path`, else $ENHANCE_BPGENC / $ENHANCE_BPGDEC, else
  `bpgenc` / `bpgdec` on PATH.
* VTM: `build_dir`, else $ENHANCE_VTM_DIR, else the directory of `EncoderAppStatic` on
  PATH; the directory holds EncoderAppStatic and DecoderAppStatic (DecoderApp/EncoderApp
  on macOS), as VTM's `bin/` does. The encoder configuration is `config`, else
  $ENHANCE_VTM_CONFIG, else `cfg/encoder_intra_vtm.cfg` beside that `bin/` directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import types
from pathlib import Path

import numpy as np
from PIL import Image

from .._compressai import import_compressai
from ..errors import BadInput, CodecUnavailable, EnhanceError
from .base import BuiltinCodec, check_pixel_count, class_or_instance_method, decode_with_pillow, find_executable, run_executable
from ..framing import ByteReader, ByteWriter

BPG_MAGIC = b"BPG\xfb"


def bpg_declared_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a BPG header: magic, two flag bytes, then picture_width and picture_height as ue7 varints."""
    position = len(BPG_MAGIC) + 2
    values = []
    for field in ("width", "height"):
        value = 0
        for index in range(5):  # ue7(32): at most 5 bytes
            if position >= len(data):
                raise BadInput(f"codec bpg: truncated inside the picture {field}")
            byte = data[position]
            position += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        else:
            raise BadInput(f"codec bpg: the picture {field} is longer than 32 bits")
        values.append(value)
    return values[0], values[1]


def _bench_codecs() -> types.ModuleType:
    import_compressai()
    import compressai.utils.bench.codecs as bench_codecs

    return bench_codecs


def _compressai_available() -> tuple[bool, str]:
    try:
        import_compressai()
    except CodecUnavailable as error:
        return False, str(error)
    return True, ""


class BpgCodec(BuiltinCodec):
    """BPG (HEVC intra in Fabrice Bellard's file format); the quality is the QP, 0 (best) .. 51.

    Options follow bpgenc: `subsampling` "444" or "420", `bit_depth` 8 or 10,
    `colour_space` "ycbcr" or "rgb", `hevc_encoder` "x265" or "jctvc".
    """

    name = "bpg"
    family = "classical"
    rate_range = (0, 51)
    higher_rate_is_better = False
    rate_unit = "QP"
    rate_meaning = "QP (bpgenc -q): 0 best, 51 worst"
    file_extension = ".bpg"
    # Class-level defaults, so `BpgCodec.available()` answers for the default options.
    encoder_path: str | None = None
    decoder_path: str | None = None

    def __init__(
        self,
        *,
        encoder_path: str | None = None,
        decoder_path: str | None = None,
        subsampling: str = "444",
        bit_depth: int = 8,
        colour_space: str = "ycbcr",
        hevc_encoder: str = "x265",
    ):
        choices = {
            "subsampling": (subsampling, ("444", "420")),
            "bit_depth": (bit_depth, (8, 10)),
            "colour_space": (colour_space, ("ycbcr", "rgb")),
            "hevc_encoder": (hevc_encoder, ("x265", "jctvc")),
        }
        for option, (value, allowed) in choices.items():
            if value not in allowed:
                raise EnhanceError(f"codec {self.name}: {option} must be one of {allowed}, got {value!r}")
        self.encoder_path = encoder_path
        self.decoder_path = decoder_path
        self.subsampling = subsampling
        self.bit_depth = bit_depth
        self.colour_space = colour_space
        self.hevc_encoder = hevc_encoder

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        return head.startswith(BPG_MAGIC)

    @class_or_instance_method
    def _executables(self) -> tuple[str | None, str | None, str]:
        encoder, encoder_reason = find_executable(self.encoder_path, "ENHANCE_BPGENC", "bpgenc")
        decoder, decoder_reason = find_executable(self.decoder_path, "ENHANCE_BPGDEC", "bpgdec")
        return encoder, decoder, "; ".join(reason for reason in (encoder_reason, decoder_reason) if reason)

    @class_or_instance_method
    def available(self) -> tuple[bool, str]:
        encoder, decoder, reason = self._executables()
        if encoder is None or decoder is None:
            return False, f"{reason} (BPG: https://bellard.org/bpg/)"
        return _compressai_available()

    def _wrapper(self):
        encoder, decoder, _ = self._executables()
        settings = types.SimpleNamespace(
            m=self.subsampling,
            b=str(self.bit_depth),
            c=self.colour_space,
            e=self.hevc_encoder,
            encoder_path=encoder,
            decoder_path=decoder,
        )
        return _bench_codecs().BPG(settings)

    def encode(self, image: np.ndarray, rate: float) -> bytes:
        self._require_available()
        qp = int(self._checked_rate(rate))
        pixels = self._checked_image(image)
        wrapper = self._wrapper()
        with tempfile.TemporaryDirectory(prefix="enhance-bpg-") as directory:
            source, target = Path(directory, "input.png"), Path(directory, "output.bpg")
            Image.fromarray(pixels).save(source, compress_level=1)
            run_executable(wrapper._get_encode_cmd(str(source), qp, str(target)), self.name, EnhanceError)
            return target.read_bytes()

    def decode(self, data: bytes) -> np.ndarray:
        self._require_available()
        data = self._checked_bytes(data)
        if not data.startswith(BPG_MAGIC):
            raise BadInput(f"codec {self.name}: not a BPG file (no BPG signature)")
        check_pixel_count(*bpg_declared_size(data), self.name)
        wrapper = self._wrapper()
        with tempfile.TemporaryDirectory(prefix="enhance-bpg-") as directory:
            source, target = Path(directory, "input.bpg"), Path(directory, "output.png")
            source.write_bytes(data)
            run_executable(wrapper._get_decode_cmd(str(source), str(target)), self.name, BadInput)
            if not target.is_file():
                raise BadInput(f"codec {self.name}: bpgdec wrote no image")
            return decode_with_pillow(target.read_bytes(), "PNG", self.name)


# VTM payload, version 1: version byte, width and height as varints, flags byte (bit 0:
# RGB coding), then VTM's bitstream. VTM's decoder writes raw planes, so the payload
# carries the size needed to read them back.
VTM_PAYLOAD_VERSION = 1
VTM_FLAG_RGB = 0x01
VTM_MAX_SIDE = 1 << 16


class VtmCodec(BuiltinCodec):
    """VVC intra coding with VTM, the reference software; the quality is the QP, 0 (best) .. 63.

    The image goes in as 8-bit 4:4:4, converted to YCbCr with BT.709 weights as
    CompressAI's bench does, or coded as GBR with `rgb=True`.
    """

    name = "vtm"
    family = "classical"
    rate_range = (0, 63)
    higher_rate_is_better = False
    rate_unit = "QP"
    rate_meaning = "QP (VTM EncoderApp -q): 0 best, 63 worst"
    file_extension = ".enh"
    needs_container = True
    # Class-level defaults, so `VtmCodec.available()` answers for the default options.
    build_dir: str | None = None
    config: str | None = None
    rgb: bool = False

    def __init__(self, *, build_dir: str | None = None, config: str | None = None, rgb: bool = False):
        self.build_dir = build_dir
        self.config = config
        self.rgb = bool(rgb)

    @class_or_instance_method
    def _locations(self) -> tuple[Path | None, Path | None, str]:
        """(binary directory, encoder config, "") or Nones with why they were not found."""
        build_dir = self.build_dir or os.environ.get("ENHANCE_VTM_DIR") or None
        if build_dir is None:
            encoder = shutil.which("EncoderAppStatic")
            if encoder is None:
                return None, None, "EncoderAppStatic is not on PATH; build VTM and set ENHANCE_VTM_DIR to its bin/ directory"
            build_dir = os.path.dirname(encoder)
        build = Path(build_dir)
        config = self.config or os.environ.get("ENHANCE_VTM_CONFIG") or None
        config_path = Path(config) if config else build.parent / "cfg" / "encoder_intra_vtm.cfg"
        if not config_path.is_file():
            return None, None, f"no VTM encoder config at {config_path}; set ENHANCE_VTM_CONFIG to encoder_intra_vtm.cfg"
        return build, config_path, ""

    @class_or_instance_method
    def _wrapper_at(self, build: Path, config: Path):
        settings = types.SimpleNamespace(build_dir=str(build), config=str(config), rgb=self.rgb)
        # Raises RuntimeError where CompressAI does not know the binaries' names (not Linux or macOS).
        return _bench_codecs().VTM(settings)

    def _wrapper(self):
        build, config, _ = self._locations()
        return self._wrapper_at(build, config)

    @class_or_instance_method
    def available(self) -> tuple[bool, str]:
        build, config, reason = self._locations()
        if build is None:
            return False, reason
        usable, reason = _compressai_available()
        if not usable:
            return False, reason
        try:
            wrapper = self._wrapper_at(build, config)
        except RuntimeError as error:
            return False, str(error)
        for path in (wrapper.encoder_path, wrapper.decoder_path):
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                return False, f"{path} is not an executable file; build VTM or set ENHANCE_VTM_DIR"
        return True, ""

    def _to_planes(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 RGB to the 3xHxW planes VTM reads (YCbCr, or RGB that VTM reorders to GBR)."""
        import torch
        from compressai.transforms.functional import rgb2ycbcr

        planes = pixels.transpose(2, 0, 1)
        if self.rgb:
            return np.ascontiguousarray(planes)
        ycbcr = rgb2ycbcr(torch.from_numpy(planes.astype(np.float32) / 255.0)).numpy()
        return np.round(np.clip(ycbcr, 0.0, 1.0) * 255.0).astype(np.uint8)

    def _from_planes(self, planes: np.ndarray, rgb: bool) -> np.ndarray:
        import torch
        from compressai.transforms.functional import ycbcr2rgb

        if not rgb:
            rgb_planes = ycbcr2rgb(torch.from_numpy(planes.astype(np.float32) / 255.0)).numpy()
            planes = np.round(np.clip(rgb_planes, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.ascontiguousarray(planes.transpose(1, 2, 0))

    def encode(self, image: np.ndarray, rate: float) -> bytes:
        self._require_available()
        qp = int(self._checked_rate(rate))
        pixels = self._checked_image(image)
        height, width = pixels.shape[:2]
        if max(height, width) > VTM_MAX_SIDE:
            raise BadInput(f"codec {self.name}: {width}x{height} is larger than {VTM_MAX_SIDE} pixels a side")
        wrapper = self._wrapper()
        with tempfile.TemporaryDirectory(prefix="enhance-vtm-") as directory:
            planes_path, stream_path = Path(directory, "input.yuv"), Path(directory, "output.bin")
            planes_path.write_bytes(self._to_planes(pixels).tobytes())
            # The flags CompressAI's VTM bench passes, with the stream and planes in our directory.
            command = [
                wrapper.encoder_path, "-i", planes_path, "-c", wrapper.config_path, "-q", qp,
                "-o", os.devnull, "-b", stream_path, "-wdt", width, "-hgt", height, "-fr", 1, "-f", 1,
                "--InputChromaFormat=444", "--InputBitDepth=8", "--ConformanceWindowMode=1",
            ]  # fmt: skip
            if self.rgb:
                command += [
                    "--InputColourSpaceConvert=RGBtoGBR",
                    "--SNRInternalColourSpace=1",
                    "--OutputInternalColourSpace=0",
                ]
            run_executable(command, self.name, EnhanceError)
            stream = stream_path.read_bytes()
        header = ByteWriter()
        header.u8(VTM_PAYLOAD_VERSION)
        header.varint(width)
        header.varint(height)
        header.u8(VTM_FLAG_RGB if self.rgb else 0)
        return header.getvalue() + stream

    def decode(self, data: bytes) -> np.ndarray:
        self._require_available()
        reader = ByteReader(self._checked_bytes(data), f"codec {self.name} payload")
        version = reader.u8("version")
        if version != VTM_PAYLOAD_VERSION:
            raise BadInput(f"codec {self.name}: payload version {version} is not {VTM_PAYLOAD_VERSION}")
        width = reader.varint("width", 1, VTM_MAX_SIDE)
        height = reader.varint("height", 1, VTM_MAX_SIDE)
        flags = reader.u8("flags")
        if flags & ~VTM_FLAG_RGB:
            raise BadInput(f"codec {self.name}: unknown flags {flags:#04x}")
        rgb = bool(flags & VTM_FLAG_RGB)
        check_pixel_count(width, height, self.name)
        stream = reader.rest()
        if not stream:
            raise BadInput(f"codec {self.name}: the payload holds no VVC stream")
        wrapper = self._wrapper()
        with tempfile.TemporaryDirectory(prefix="enhance-vtm-") as directory:
            stream_path, planes_path = Path(directory, "input.bin"), Path(directory, "output.yuv")
            stream_path.write_bytes(stream)
            command = [wrapper.decoder_path, "-b", stream_path, "-o", planes_path, "-d", 8]
            if rgb:
                command.append("--OutputInternalColourSpace=GBRtoRGB")
            run_executable(command, self.name, BadInput)
            planes = np.fromfile(planes_path, dtype=np.uint8) if planes_path.is_file() else np.empty(0, np.uint8)
        if planes.size != 3 * height * width:
            raise BadInput(
                f"codec {self.name}: the decoder wrote {planes.size} bytes, not the {3 * height * width} "
                f"of a {width}x{height} 4:4:4 picture"
            )
        return self._from_planes(planes.reshape(3, height, width), rgb)
