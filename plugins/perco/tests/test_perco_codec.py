"""PerCo end to end with tiny random networks: every level, any size, byte budget, seeds, bad streams."""

from __future__ import annotations

import json

import numpy as np
import pytest

from enhance.errors import EnhanceError, WeightsError
from enhance.testing import sample_image
from enhance_perco import PercoCodec
from enhance_perco.config import PercoConfig
from perco_bundle import make_bundle


@pytest.fixture(scope="module")
def perco_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("perco") / "bundle")


@pytest.fixture(scope="module")
def codec(perco_bundle):
    return PercoCodec(bundle=perco_bundle, device="cpu")


@pytest.mark.parametrize("size", [(33, 47), (9, 17)])
def test_every_level_round_trips_small_images(codec, size):
    image = sample_image(*size)
    for level in range(1, 8):
        decoded = codec.decode(codec.encode(image, level), steps=2)
        assert decoded.shape == image.shape and decoded.dtype == np.uint8


def test_bytes_follow_the_rate_table(codec):
    image = sample_image(512, 768)
    sizes = [len(codec.encode(image, level)) for level in range(1, 8)]
    assert sizes == sorted(sizes)
    # 12 x 8 cells x 8 bits + 2 global codes x 4 bits + a 6-byte header + 32 channel statistics, lowest level
    assert sizes[0] == 96 + 1 + 6 + 32


def test_the_lowest_rate_file_of_a_768x512_image_fits_in_160_bytes(perco_bundle):
    from functools import partial

    from enhance import api, container, registry

    with registry.use_plugins(full_codecs={"perco": partial(PercoCodec, bundle=perco_bundle, device="cpu")}):
        data = api.encode_bitstream(sample_image(512, 768), "perco", 1)
    # 135 payload bytes; the container adds 16 (its CRC32 included), no parameters: the level is in the payload
    assert container.unpack(data).params == b""
    assert len(data) == 151


def test_seeds_are_deterministic_and_matter(codec):
    data = codec.encode(sample_image(40, 56), 3)
    first = codec.decode(data, steps=3, seed=1)
    assert np.array_equal(first, codec.decode(data, steps=3, seed=1))
    assert not np.array_equal(first, codec.decode(data, steps=3, seed=2))


def test_eta_draws_fresh_noise_between_steps_and_only_there(tmp_path):
    stochastic = PercoCodec(bundle=make_bundle(tmp_path / "eta1", eta=1.0), device="cpu")
    deterministic = PercoCodec(bundle=make_bundle(tmp_path / "eta0", eta=0.0), device="cpu")
    data = stochastic.encode(sample_image(40, 56), 3)
    assert data == deterministic.encode(sample_image(40, 56), 3)
    # One step goes straight to the clean estimate: no step to add noise between.
    assert np.array_equal(stochastic.decode(data, steps=1), deterministic.decode(data, steps=1))
    drawn = stochastic.decode(data, steps=3, seed=4)
    assert np.array_equal(drawn, stochastic.decode(data, steps=3, seed=4))
    assert not np.array_equal(drawn, deterministic.decode(data, steps=3, seed=4))


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan")])
def test_an_eta_outside_0_to_1_is_refused(tmp_path, eta):
    path = tmp_path / "perco.json"
    PercoConfig(eta=eta).save(path)
    with pytest.raises(WeightsError, match="eta"):
        PercoConfig.load(path)


def test_a_version_1_config_is_refused_not_read_with_a_new_default(tmp_path):
    path = tmp_path / "perco.json"
    document = PercoConfig().to_dict()
    del document["eta"]
    path.write_text(json.dumps({**document, "version": 1}))
    with pytest.raises(WeightsError, match="not a version 2"):
        PercoConfig.load(path)


def test_the_codec_passes_the_full_codec_conformance_kit(codec):
    from enhance import testing

    testing.check_full_codec(codec, rates=[1, 7], steps=[1, 3])


def test_default_steps_follow_the_reference():
    config = PercoConfig()
    assert [config.default_steps(level) for level in range(7)] == [20, 20, 20, 20, 20, 5, 5]


def test_a_caption_travels_compressed(perco_bundle):
    codec = PercoCodec(bundle=perco_bundle, device="cpu")
    image = sample_image(64, 64)
    with_caption = codec.encode(image, 2, caption="a red boat on a lake at dusk")
    assert len(with_caption) > len(codec.encode(image, 2))
    from enhance_perco import bitstream

    payload = bitstream.read(
        with_caption, grid=lambda level, h, w: (1, 1), levels=7, channels=32, global_codes=2, global_bits=4, local_bits=lambda level: 10, max_pixels=10**8
    )
    assert payload.caption == "a red boat on a lake at dusk"


def test_a_decoder_without_text_cross_attention_leaves_the_caption_unread(codec):
    image = sample_image(40, 56)
    plain = codec.decode(codec.encode(image, 2), steps=2)
    assert np.array_equal(plain, codec.decode(codec.encode(image, 2, caption="a red boat"), steps=2))


def test_a_text_conditioned_decoder_reads_the_caption(tmp_path):
    codec = PercoCodec(bundle=make_bundle(tmp_path / "bundle", reads_captions=True), device="cpu")
    image = sample_image(40, 56)
    boat = codec.decode(codec.encode(image, 2, caption="a red boat"), steps=2)
    assert np.array_equal(boat, codec.decode(codec.encode(image, 2, caption="a red boat"), steps=2))
    assert not np.array_equal(boat, codec.decode(codec.encode(image, 2, caption="a snowy mountain"), steps=2))
    # No caption is the empty prompt, which is also what guidance's unconditional branch sees.
    assert np.array_equal(codec.decode(codec.encode(image, 2), steps=2), codec.decode(codec.encode(image, 2, caption=""), steps=2))


def test_a_text_encoder_of_another_width_than_the_decoder_attends_to_is_refused(tmp_path):
    import shutil

    from enhance.errors import WeightsError
    from enhance.testing import tiny_text_encoder
    from perco_bundle import TEXT_ENCODER

    bundle = make_bundle(tmp_path / "bundle", reads_captions=True)
    shutil.rmtree(bundle / TEXT_ENCODER)
    tiny_text_encoder(bundle / TEXT_ENCODER, hidden_size=8)
    with pytest.raises(WeightsError, match="cross-attends to 16 channels.*gives 8"):
        PercoCodec(bundle=bundle, device="cpu").encode(sample_image(16, 16), 1)


def test_the_decode_takes_its_colour_from_the_sent_channel_statistics(codec):
    # The tiny random decoder knows nothing of colour; the statistics alone must carry it.
    red, blue = np.zeros((64, 96, 3), np.uint8), np.zeros((64, 96, 3), np.uint8)
    red[..., 0], red[..., 2], blue[..., 0], blue[..., 2] = 200, 40, 40, 200
    for source in (red, blue):
        decoded = codec.decode(codec.encode(source, 3), steps=3).astype(float)
        assert np.sign(decoded[..., 0].mean() - decoded[..., 2].mean()) == np.sign(int(source[0, 0, 0]) - int(source[0, 0, 2]))
        assert abs(decoded.mean() - source.mean()) < 40


def test_version_1_streams_without_statistics_still_decode(codec):
    from enhance_perco import bitstream

    image = sample_image(40, 56)
    data = codec.encode(image, 3)
    header = 1 + 1 + 1 + 1  # version, height and width varints (< 128), level
    version_1 = bytes([1]) + data[1:header] + data[header + 32 :]
    read = lambda stream: bitstream.read(  # noqa: E731
        stream, grid=lambda level, h, w: codec._grid(codec._parts()[0], level, h, w, 8), levels=7, channels=32,
        global_codes=2, global_bits=4, local_bits=lambda level: codec._local_bits(codec._parts()[0], level), max_pixels=10**8,
    )
    old, new = read(version_1), read(data)
    assert old.statistics is None and new.statistics.shape == (32,)
    assert np.array_equal(old.local_indices, new.local_indices) and np.array_equal(old.global_indices, new.global_indices)
    assert codec.decode(version_1, steps=2).shape == image.shape


@pytest.mark.parametrize("rate", [0, 8, 1.5, "2"])
def test_rates_outside_the_levels_are_clear_errors(codec, rate):
    with pytest.raises(EnhanceError, match="rate must be a level from 1 to 7"):
        codec.encode(sample_image(16, 16), rate)


def test_a_thousand_mutated_or_truncated_streams_fail_cleanly(codec):
    rng = np.random.default_rng(0)
    good = codec.encode(sample_image(40, 64), 5)
    errors = 0
    for case in range(1000):
        data = bytearray(good)
        if case % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        try:
            codec.decode(bytes(data), steps=1)
        except EnhanceError:
            errors += 1
    assert errors > 300


def test_the_cli_round_trips_a_small_and_a_768x512_image_at_every_rate_and_1920x1080_at_every_grid(perco_bundle, tmp_path):
    from functools import partial

    from enhance import testing

    factory = partial(PercoCodec, bundle=perco_bundle, device="cpu")
    testing.check_cli_round_trip("perco", factory, range(1, 8), [(33, 47), (512, 768)], tmp_path, steps=1)
    # One level of each grid (1/64, 1/32, 1/16, 1/8): a 1920x1080 round trip costs about 30 s on 2 cores.
    testing.check_cli_round_trip("perco", factory, [1, 3, 5, 7], [(1080, 1920)], tmp_path, steps=1)


def _caption_of(path) -> str | None:
    from enhance import container
    from enhance_perco import bitstream

    payload = container.unpack(path.read_bytes()).payload
    return bitstream.read(
        payload, grid=lambda level, h, w: (1, 1), levels=7, channels=32, global_codes=2, global_bits=4, local_bits=lambda level: 8, max_pixels=10**8
    ).caption


def test_the_caption_comes_from_the_cli_or_from_the_files_own_description(perco_bundle, tmp_path):
    from functools import partial

    from PIL import Image
    from typer.testing import CliRunner

    from enhance import registry
    from enhance.cli import app

    exif = Image.Exif()
    exif[0x010E] = "boats in a harbour"
    source = tmp_path / "described.jpg"
    Image.fromarray(sample_image(33, 47)).save(source, quality=95, exif=exif.tobytes())
    runner = CliRunner()
    with registry.use_plugins(full_codecs={"perco": partial(PercoCodec, bundle=perco_bundle, device="cpu")}):
        for extra, expected in (([], "boats in a harbour"), (["--caption", "a lighthouse"], "a lighthouse")):
            result = runner.invoke(app, ["encode", str(source), "-c", "perco", "-q", "1", "-o", str(tmp_path / "x.enh"), *extra])
            assert result.exit_code == 0, result.output
            assert _caption_of(tmp_path / "x.enh") == expected
        result = runner.invoke(app, ["encode", str(source), "-c", "perco", "-q", "1", "-o", str(tmp_path / "y.enh"), "--caption", "x" * 5000])
        assert isinstance(result.exception, EnhanceError) and "longer than 4096 bytes" in str(result.exception)
