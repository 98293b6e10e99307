"""Learned image codecs from CompressAI's zoo, producing real entropy-coded bitstreams.

`model.compress` turns an image into two lists of rANS-coded strings (the latent `y`
and the hyper-latent `z`); `model.decompress` needs those strings and the hyper-latent's
shape. The payload keeps what that needs, and what picks the weights, in a small format:

Payload, version 1 (varints are unsigned LEB128, minimal length)::

    version   1 byte   1
    metric    1 byte   index into METRICS (the weights the stream was coded with)
    quality   1 byte   the zoo's quality index
    width     varint   1 .. MAX_SIDE
    height    varint   1 .. MAX_SIDE
    groups    1 byte   number of string groups (2: y, then z)
    strings   per group: varint length + bytes

The image is padded (edge pixels repeated) to a multiple of 64, so the hyper-latent's
shape follows from the width and height and is not stored. Decoding reads nothing but
these fields: the architecture is the codec's own, never something named by the data.

Pretrained weights are CompressAI's published checkpoints, listed in weights.lock under
the bundle `compressai-<name>` with the upstream file names, and loaded with
`torch.load(weights_only=True)` into the architecture strictly. Encoding and decoding
must use the same weights on machines whose float arithmetic agrees (CompressAI's
entropy models derive each symbol's CDF index from floating-point scales).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np

from .._compressai import import_compressai
from ..errors import BadInput, CodecUnavailable, EnhanceError, WeightsError
from .base import BuiltinCodec, check_pixel_count, class_or_instance_method
from ..framing import ByteReader, ByteWriter
from .rans import CheckedRansDecoder, RansError

METRICS = ("mse", "ms-ssim")
PAYLOAD_VERSION = 1
MAX_SIDE = 1 << 16
# g_a downsamples by 16 and h_a by another 4 in every architecture here.
PAD_MULTIPLE = 64
STRING_GROUPS = 2
# Autoregressive models make their rANS decoder inside `_decompress_ar`, from a module
# global; it is swapped for the checked one while a stream is decoded.
_AUTOREGRESSIVE_PATCH = threading.Lock()


def install_checked_decoders(model) -> None:
    """Makes every entropy model in `model` decode with `CheckedRansDecoder` (see `enhance.codecs.rans`)."""
    from compressai.entropy_models import EntropyModel

    for module in model.modules():
        if isinstance(module, EntropyModel):
            coder = module.entropy_coder
            if getattr(coder, "name", None) != "ans":
                raise EnhanceError(f"CompressAI's entropy coder is {getattr(coder, 'name', coder)!r}; enhance streams use 'ans'")
            if not isinstance(coder._decoder, CheckedRansDecoder):
                coder._decoder = CheckedRansDecoder()


@contextmanager
def checked_autoregressive_decoding(model) -> Iterator[None]:
    """While active, `model._decompress_ar` (if it has one) decodes with `CheckedRansDecoder`, checked at the end."""
    decompress_ar = getattr(type(model), "_decompress_ar", None)
    namespace = getattr(decompress_ar, "__globals__", None)
    if namespace is None or "RansDecoder" not in namespace:
        yield
        return
    created: list[CheckedRansDecoder] = []

    def make_decoder() -> CheckedRansDecoder:
        created.append(CheckedRansDecoder())
        return created[-1]

    with _AUTOREGRESSIVE_PATCH:
        original = namespace["RansDecoder"]
        namespace["RansDecoder"] = make_decoder
        try:
            yield
        finally:
            namespace["RansDecoder"] = original
    for decoder in created:
        decoder.finish()


def image_to_tensor(pixels: np.ndarray):
    """uint8 HxWx3 to a 1x3xH'xW' float tensor in [0, 1], edge-padded to a multiple of PAD_MULTIPLE."""
    import torch
    import torch.nn.functional as F

    height, width = pixels.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).unsqueeze(0).float().div(255.0)
    pad_bottom, pad_right = -height % PAD_MULTIPLE, -width % PAD_MULTIPLE
    if pad_bottom or pad_right:
        x = F.pad(x, (0, pad_right, 0, pad_bottom), mode="replicate")
    return x


def tensor_to_image(x, height: int, width: int) -> np.ndarray:
    """A 1x3xH'xW' tensor in [0, 1] cropped to height x width, as uint8 HxWx3."""
    cropped = x[0, :, :height, :width].clamp(0.0, 1.0).mul(255.0).round().byte()
    return np.ascontiguousarray(cropped.permute(1, 2, 0).cpu().numpy())


class CompressAICodec(BuiltinCodec):
    """A CompressAI zoo architecture; the quality is the zoo's index (higher is better).

    `metric` picks the weights trained for "mse" or "ms-ssim" when encoding (a stream
    records its own). `model_loader(quality, metric) -> nn.Module` replaces the
    pretrained weights (tests use tiny random models); `weights_lock` reads the weights
    from another weights.lock.
    """

    family = "neural"
    higher_rate_is_better = True
    rate_unit = "model"
    rate_meaning = "CompressAI zoo model index: 1 lowest rate, the highest index best"
    file_extension = ".enh"
    needs_container = True
    # Class-level defaults, so `available()` on the class answers for the default options.
    weights_lock: str | Path | None = None
    _model_loader: Callable[[int, str], object] | None = None

    def __init__(
        self,
        *,
        metric: str = "mse",
        device: str = "cpu",
        weights_lock: str | Path | None = None,
        model_loader: Callable[[int, str], object] | None = None,
    ):
        if metric not in METRICS:
            raise EnhanceError(f"codec {self.name}: metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        self.device = device
        self.weights_lock = weights_lock
        self._model_loader = model_loader
        self._models: dict[tuple[int, str], object] = {}

    @class_or_instance_method
    def available(self) -> tuple[bool, str]:
        """Usable here: CompressAI imports, and (unless a `model_loader` replaces them) some of its weights are local."""
        try:
            import_compressai()
        except CodecUnavailable as error:
            return False, str(error)
        if self._model_loader is not None:
            return True, ""
        return self._weights_available()

    @class_or_instance_method
    def _weights_available(self) -> tuple[bool, str]:
        from .. import weights

        bundle = f"compressai-{self.name}"  # as `weights_bundle`, which the class alone cannot read
        try:
            rows = [row for row in weights.load_lock(self.weights_lock) if row.bundle == bundle]
        except WeightsError as error:
            return False, str(error)
        if not rows:
            return False, f"weights.lock lists no weights for it (bundle {bundle})"
        for row in rows:
            if weights.locate(row) is not None:
                return True, ""
            if row.url.startswith("file://") and Path(url2pathname(urlsplit(row.url).path)).is_file():
                return True, ""
        return False, f"its weights are not on this machine; {weights.download_help(rows[0])}"

    def _require_available(self) -> None:
        # Only the library: missing weights are downloaded when a model is loaded, or refused
        # there with what to do (`weights.resolve`).
        try:
            import_compressai()
        except CodecUnavailable as error:
            raise CodecUnavailable(f"codec {self.name} is unavailable: {error}") from None

    @property
    def weights_bundle(self) -> str:
        return f"compressai-{self.name}"

    def weights_file(self, quality: int, metric: str) -> str:
        """The upstream file name of the pretrained weights, which is their path in weights.lock."""
        import_compressai()
        from compressai.zoo.image import model_urls

        return model_urls[self.name][metric][quality].rsplit("/", 1)[1]

    def _load_pretrained(self, quality: int, metric: str):
        import torch
        from compressai.zoo.image import model_architectures
        from compressai.zoo.pretrained import load_pretrained

        from .. import weights

        path = weights.resolve(self.weights_bundle, self.weights_file(quality, metric), lock=self.weights_lock)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch reports unreadable or unsafe checkpoints with several types
            raise WeightsError(f"{path}: cannot read the checkpoint: {error}") from None
        if not isinstance(state, dict):
            raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
        try:
            return model_architectures[self.name].from_state_dict(load_pretrained(state))
        # A state dict with missing keys, wrong shapes or non-tensor values.
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as error:
            raise WeightsError(f"{path}: not {self.name} weights: {error}") from None

    def model(self, quality: int, metric: str | None = None):
        """The model for `quality` (and `metric`, default the codec's), eval mode, CDFs ready."""
        metric = metric or self.metric
        key = (int(quality), metric)
        if key not in self._models:
            self._require_available()
            model = self._model_loader(*key) if self._model_loader else self._load_pretrained(*key)
            model = model.eval().to(self.device)
            # Computes the entropy coder's CDF tables unless the checkpoint already holds them.
            model.update()
            install_checked_decoders(model)
            self._models[key] = model
        return self._models[key]

    def encode(self, image: np.ndarray, rate: float) -> bytes:
        import torch

        self._require_available()
        quality = int(self._checked_rate(rate))
        pixels = self._checked_image(image)
        height, width = pixels.shape[:2]
        if max(height, width) > MAX_SIDE:
            raise BadInput(f"codec {self.name}: {width}x{height} is larger than {MAX_SIDE} pixels a side")
        model = self.model(quality)
        x = image_to_tensor(pixels).to(self.device)
        with torch.no_grad():
            coded = model.compress(x)
        expected_shape = (x.shape[2] // PAD_MULTIPLE, x.shape[3] // PAD_MULTIPLE)
        if tuple(coded["shape"]) != expected_shape or len(coded["strings"]) != STRING_GROUPS:
            raise EnhanceError(f"codec {self.name}: the model's bitstream layout is not the one this payload stores")
        payload = ByteWriter()
        payload.u8(PAYLOAD_VERSION)
        payload.u8(METRICS.index(self.metric))
        payload.u8(quality)
        payload.varint(width)
        payload.varint(height)
        payload.u8(STRING_GROUPS)
        for group in coded["strings"]:
            (string,) = group  # a batch of one image
            payload.blob(string)
        return payload.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        import torch

        self._require_available()
        reader = ByteReader(self._checked_bytes(data), f"codec {self.name} payload")
        version = reader.u8("version")
        if version != PAYLOAD_VERSION:
            raise BadInput(f"codec {self.name}: payload version {version} is not {PAYLOAD_VERSION}")
        metric_index = reader.u8("metric")
        if metric_index >= len(METRICS):
            raise BadInput(f"codec {self.name}: unknown metric index {metric_index}")
        quality = reader.u8("quality")
        low, high = self.rate_range
        if not low <= quality <= high:
            raise BadInput(f"codec {self.name}: quality {quality} is outside {low}..{high}")
        width = reader.varint("width", 1, MAX_SIDE)
        height = reader.varint("height", 1, MAX_SIDE)
        check_pixel_count(width, height, self.name)
        groups = reader.u8("groups")
        if groups != STRING_GROUPS:
            raise BadInput(f"codec {self.name}: {groups} string groups, expected {STRING_GROUPS}")
        strings = [[reader.blob(f"string group {index}")] for index in range(groups)]
        reader.end()
        for index, (string,) in enumerate(strings):
            # rANS strings are whole 32-bit words, at least the two of the coder's final state.
            if len(string) < 8 or len(string) % 4:
                raise BadInput(f"codec {self.name}: string group {index} has {len(string)} bytes, not a whole number (>= 2) of 32-bit words")
        shape = (-(-height // PAD_MULTIPLE), -(-width // PAD_MULTIPLE))
        model = self.model(quality, METRICS[metric_index])
        try:
            with torch.no_grad(), checked_autoregressive_decoding(model):
                x_hat = model.decompress(strings, shape)["x_hat"]
        except RansError as error:
            raise BadInput(f"codec {self.name}: {error}") from None
        if not bool(torch.isfinite(x_hat).all()):
            raise BadInput(f"codec {self.name}: the stream decodes to non-finite values (corrupt)")
        return tensor_to_image(x_hat, height, width)


class Bmshj2018Hyperprior(CompressAICodec):
    """Ballé et al. 2018, scale hyperprior; qualities 1..8."""

    name = "bmshj2018-hyperprior"
    rate_range = (1, 8)


class Mbt2018Mean(CompressAICodec):
    """Minnen et al. 2018, mean-scale hyperprior without the context model; qualities 1..8."""

    name = "mbt2018-mean"
    rate_range = (1, 8)


class Cheng2020Anchor(CompressAICodec):
    """Cheng et al. 2020 anchor (autoregressive context model, slow to decode on CPU); qualities 1..6."""

    name = "cheng2020-anchor"
    rate_range = (1, 6)


NEURAL_CODECS: tuple[type[CompressAICodec], ...] = (Bmshj2018Hyperprior, Mbt2018Mean, Cheng2020Anchor)
