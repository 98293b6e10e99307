"""Conformance checks a codec, full-codec or enhancer plugin runs in its own tests.

Each function takes an instance (and what the check needs), raises AssertionError saying
what is wrong, and returns nothing. They run on CPU in seconds with small images; odd
sizes (33x47 and a few smaller) catch padding bugs. For example, in a plugin's tests::

    from enhance import testing

    def test_conformance():
        codec = MyCodec(bundle=tiny_bundle)
        testing.check_full_codec(codec, rates=[codec.rate_range[0], codec.rate_range[1]])

`check_codec` / `check_full_codec` / `check_enhancer` run every check for that kind; the
single checks can be called alone. `tiny_prior` and `bundle_folder_with_taef2` are the parts
of the tiny random bundles the latent codec plugins test with.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import limits
from .errors import BadInput, EnhanceError

SIZES = ((33, 47), (1, 1), (2, 3), (16, 16), (7, 19))  # (height, width)


def sample_image(height: int = 33, width: int = 47, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture (codecs behave on it as on photos), uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([128 + 90 * np.sin(x / 7.0 + c) * np.cos(y / 9.0 - c) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _check_pixels(pixels, shape: tuple[int, int], what: str) -> None:
    assert isinstance(pixels, np.ndarray), f"{what}: returned {type(pixels).__name__}, not a numpy array"
    assert pixels.dtype == np.uint8, f"{what}: returned {pixels.dtype}, not uint8"
    assert pixels.shape == (*shape, 3), f"{what}: returned shape {pixels.shape}, expected {(*shape, 3)}"


def _decode(codec, data: bytes, *, full: bool, steps: int | None = None, seed: int = 0) -> np.ndarray:
    return codec.decode(data, steps=steps, seed=seed) if full else codec.decode(data)


def _encode_checked(codec, image: np.ndarray, rate: float) -> bytes:
    data = codec.encode(image, rate)
    assert isinstance(data, (bytes, bytearray)), f"{codec.name}: encode returned {type(data).__name__}, not bytes"
    assert len(data) > 0, f"{codec.name}: encode returned no bytes"
    return bytes(data)


def check_round_trip(codec, rate: float, *, full: bool = False, sizes: Sequence[tuple[int, int]] = SIZES) -> None:
    """Every size encodes to bytes and decodes back to a uint8 image of that size."""
    for height, width in sizes:
        data = _encode_checked(codec, sample_image(height, width), rate)
        _check_pixels(_decode(codec, data, full=full), (height, width), f"{codec.name} decode of {width}x{height}")


def check_deterministic(codec, rate: float, *, full: bool = False, seed: int = 0) -> None:
    """The same image gives the same bytes, and the same bytes (and seed) the same pixels."""
    image = sample_image()
    first, second = _encode_checked(codec, image, rate), _encode_checked(codec, image, rate)
    assert first == second, f"{codec.name}: encoding the same image twice gave different bytes"
    decoded = [_decode(codec, first, full=full, seed=seed) for _ in range(2)]
    assert np.array_equal(*decoded), f"{codec.name}: decoding the same bytes twice (seed {seed}) gave different pixels"


def check_rate_orders_size(codec, rates: Sequence[float], *, higher_is_larger: bool = True) -> None:
    """Bytes do not fall as the rate goes towards better quality (rates sorted as given)."""
    image = sample_image(64, 96)
    sizes = [len(_encode_checked(codec, image, rate)) for rate in rates]
    ordered = sizes if higher_is_larger else sizes[::-1]
    pairs = list(zip(rates, sizes))
    assert all(a <= b for a, b in zip(ordered, ordered[1:])), f"{codec.name}: sizes do not follow the rate: {pairs}"


def check_bad_bitstreams(codec, rate: float, *, full: bool = False, mutations: int = 24, seed: int = 0) -> None:
    """Truncated and mutated bitstreams raise `enhance.errors` errors (or decode), never anything else."""
    data = _encode_checked(codec, sample_image(), rate)
    rng = random.Random(seed)
    candidates = [b"", data[:1], data[: len(data) // 2], data[:-1]]
    for _ in range(mutations):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        candidates.append(bytes(mutated))
    for candidate in candidates:
        try:
            pixels = _decode(codec, candidate, full=full)
        except EnhanceError:
            continue
        except Exception as error:  # noqa: BLE001 - the point of the check
            raise AssertionError(
                f"{codec.name}: a {len(candidate)}-byte damaged bitstream raised {type(error).__name__}: {error} "
                "(expected an enhance.errors error)"
            ) from error
        assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8, f"{codec.name}: damaged input decoded to {pixels!r}"


@contextmanager
def _pixel_limit(megapixels: float):
    before = os.environ.get(limits.ENV_VAR)
    os.environ[limits.ENV_VAR] = str(megapixels)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(limits.ENV_VAR, None)
        else:
            os.environ[limits.ENV_VAR] = before


def check_pixel_limit(codec, rate: float, *, steps: int | None = None) -> None:
    """A full codec's payload that declares more pixels than the user's limit (`ENHANCE_MAX_MEGAPIXELS`)
    is refused with the limit's own message before decoding; one within the limit decodes. A bare
    payload has no container header to check: the codec reads the size and must check it itself."""
    data = _encode_checked(codec, sample_image(), rate)  # 33 x 47 = 1,551 pixels
    with _pixel_limit(0.0015):
        try:
            codec.decode(data, steps=steps, seed=0)
        except BadInput as error:
            assert limits.ENV_VAR in str(error), f"{codec.name}: the refusal does not say how to raise the limit: {error}"
        else:
            raise AssertionError(f"{codec.name}: decoded a 47x33 payload over a limit of 1,500 pixels")
    with _pixel_limit(0.0016):
        _check_pixels(codec.decode(data, steps=steps, seed=0), (33, 47), f"{codec.name} decode within the pixel limit")


def check_available(codec_class) -> None:
    """`available()` is a classmethod answering (bool, str) without raising."""
    answer = codec_class.available()
    assert isinstance(answer, tuple) and len(answer) == 2, f"{codec_class}: available() returned {answer!r}"
    usable, reason = answer
    assert isinstance(usable, bool) and isinstance(reason, str), f"{codec_class}: available() returned {answer!r}"
    assert usable or reason, f"{codec_class}: unavailable without a reason"


def check_codec(codec, rates: Sequence[float] | None = None) -> None:
    """Every check for a base codec (`enhance.codecs.base.Codec`)."""
    check_available(type(codec))
    low, high = codec.rate_range
    rates = list(rates) if rates is not None else [low, high]
    check_round_trip(codec, rates[-1])
    check_deterministic(codec, rates[0])
    check_rate_orders_size(codec, sorted(rates), higher_is_larger=codec.higher_rate_is_better)
    check_bad_bitstreams(codec, rates[0])
    if not codec.needs_container:
        head = _encode_checked(codec, sample_image(), rates[0])[:64]
        assert type(codec).recognises(head), f"{codec.name}: does not recognise its own files (recognises)"


def check_full_codec(codec, rates: Sequence[float], *, steps: Sequence[int | None] = (None,)) -> None:
    """Every check for a full codec (`enhance.protocols.FullCodec`); `rates` low to high."""
    from .container import checked_codec_id

    check_available(type(codec))
    for attribute in ("name", "rate_range", "rate_unit"):
        assert hasattr(codec, attribute), f"{type(codec).__name__}: no `{attribute}`"
    checked_codec_id(codec.name, getattr(codec, "container_id", None))
    identity = getattr(codec, "identity", None)
    assert identity is None or (isinstance(identity, str) and identity), f"{codec.name}: `identity` must be a non-empty string"
    check_round_trip(codec, rates[-1], full=True)
    check_deterministic(codec, rates[0], full=True)
    check_rate_orders_size(codec, rates)
    check_bad_bitstreams(codec, rates[0], full=True)
    check_pixel_limit(codec, rates[0], steps=steps[0])
    data = _encode_checked(codec, sample_image(), rates[0])
    for count in steps:
        _check_pixels(codec.decode(data, steps=count, seed=0), (33, 47), f"{codec.name} decode with steps={count}")


def check_cli_round_trip(
    name: str, factory, rates: Sequence[float], sizes: Sequence[tuple[int, int]], directory: Path, *, steps: int | None = None
) -> None:
    """`enhance encode -c NAME -q R` then `enhance decode` round-trip every size at every rate (low to
    high), with `factory` (for example the codec class bound to a tiny bundle) registered as NAME;
    files grow with the rate at every size."""
    from PIL import Image
    from typer.testing import CliRunner

    from . import registry
    from .cli import app

    runner = CliRunner()
    with registry.use_plugins(full_codecs={name: factory}):
        for height, width in sizes:
            source = directory / f"{width}x{height}.png"
            Image.fromarray(sample_image(height, width)).save(source)
            sizes_on_disk = []
            for rate in rates:
                encoded, decoded = directory / f"{width}x{height}-{rate}.enh", directory / f"{width}x{height}-{rate}.png"
                for args in (["encode", str(source), "-c", name, "-q", str(rate), "-o", str(encoded)],
                             ["decode", str(encoded), "-o", str(decoded)] + ([] if steps is None else ["--steps", str(steps)])):
                    result = runner.invoke(app, args)
                    assert result.exit_code == 0, f"enhance {' '.join(args)}: exit {result.exit_code}: {result.output}"
                with Image.open(decoded) as image:
                    assert image.size == (width, height), f"{name} at {rate}: decoded {image.size}, not {(width, height)}"
                sizes_on_disk.append(encoded.stat().st_size)
            assert sizes_on_disk == sorted(sizes_on_disk), f"{name} at {width}x{height}: file sizes {sizes_on_disk} do not grow with the rate"


def check_enhancer(enhancer, *, rate: float | None = None, stops: Sequence[int] | None = None) -> None:
    """Every check for an enhancer (`enhance.protocols.Enhancer`)."""
    for attribute in ("name", "identity", "default_steps", "step_range"):
        assert hasattr(enhancer, attribute), f"{type(enhancer).__name__}: no `{attribute}`"
    low, high = enhancer.step_range
    assert 1 <= low <= enhancer.default_steps <= high, f"{enhancer.name}: default steps outside {low}..{high}"
    for height, width in SIZES:
        out = enhancer.enhance(sample_image(height, width), rate=rate, steps=low, seed=0)
        _check_pixels(out, (height, width), f"{enhancer.name} enhance of {width}x{height}")
    image = sample_image()
    once = enhancer.enhance(image, rate=rate, steps=low, seed=3)
    assert np.array_equal(once, enhancer.enhance(image, rate=rate, steps=low, seed=3)), f"{enhancer.name}: not deterministic for a seed"
    stops = sorted(set(stops or [low, min(high, low + 1)]))
    outputs = enhancer.enhance_stops(image, rate=rate, stops=stops, seed=3)
    assert sorted(outputs) == stops, f"{enhancer.name}: enhance_stops gave {sorted(outputs)} for {stops}"
    for count in stops:
        alone = enhancer.enhance(image, rate=rate, steps=count, seed=3)
        assert np.array_equal(outputs[count], alone), f"{enhancer.name}: stop {count} of one trajectory differs from {count} steps alone"


def tiny_prior(channels: int = 32, *, cross_attention_dim: int | None = None, context=None):
    """A `LatentPrior` over TAEF2 latents with a tiny random UNet and the identity normalisation.

    With `cross_attention_dim`, the UNet is a text-conditioned UNet2DConditionModel (Stable
    Diffusion's kind), given `context` (1 x tokens x dim: the empty prompt) as its fixed input."""
    from .priors import LatentPrior, PriorConfig
    from .priors.prior import build_unet
    from .train.prior import SCHEDULER

    if cross_attention_dim is None:
        blocks = {"_class_name": "UNet2DModel", "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}
    else:
        blocks = {
            "_class_name": "UNet2DConditionModel", "cross_attention_dim": cross_attention_dim,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        }
    unet = build_unet({
        **blocks, "in_channels": channels, "out_channels": channels,
        "block_out_channels": [8, 16], "layers_per_block": 1, "attention_head_dim": 8, "norm_num_groups": 4,
    })
    return LatentPrior(unet, SCHEDULER, PriorConfig("taef2", [0.0] * channels, [1.0] * channels), context=context)


def tiny_text_encoder(directory: Path, hidden_size: int = 16) -> Path:
    """A text-encoder bundle (`enhance.priors.text_encoder` layout) with a tiny random CLIP text
    model and a byte-level vocabulary without merges (each byte a token); returns `directory`."""
    import json

    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from .train.trainer import atomic_save

    symbols = _byte_symbols()
    vocab = {token: index for index, token in enumerate(symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"])}
    (directory / "tokenizer").mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (directory / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(0)
    model = CLIPTextModel(config)
    (directory / "text_encoder").mkdir(exist_ok=True)
    (directory / "text_encoder" / "config.json").write_text(config.to_json_string())
    # Named as the published files name them (see enhance.priors.text_encoder).
    state = {f"text_model.{key}": value for key, value in model.state_dict().items()}
    atomic_save(state, directory / "text_encoder" / "model.safetensors", {"format": "pt"})
    return directory


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, which byte-level BPE vocabularies use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    stand_in = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    return [stand_in[b] for b in range(256)]


def bundle_folder_with_taef2(directory: Path) -> Path:
    """`directory`, made, with the shipped TAEF2 bundle copied in as `taef2/`."""
    from . import weights

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(weights.resolve_bundle("taef2"), directory / "taef2")
    return directory


__all__ = [
    "SIZES",
    "bundle_folder_with_taef2",
    "check_available",
    "check_bad_bitstreams",
    "check_codec",
    "check_deterministic",
    "check_enhancer",
    "check_full_codec",
    "check_rate_orders_size",
    "check_round_trip",
    "sample_image",
    "tiny_prior",
    "tiny_text_encoder",
]
