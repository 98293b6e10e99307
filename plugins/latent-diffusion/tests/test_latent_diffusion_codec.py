"""The latent-diffusion codec end to end with tiny random models: sizes, rates, determinism, bad streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enhance.errors import EnhanceError
from enhance.testing import sample_image
from enhance_latent_diffusion import LatentDiffusionCodec
from enhance_latent_diffusion import bitstream
from enhance_latent_diffusion.codec import block_mean_anchor
from ldm_bundle import make_bundle


@pytest.fixture(scope="module")
def codec_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("latent-diffusion") / "bundle")


@pytest.fixture(scope="module")
def codec(codec_bundle):
    return LatentDiffusionCodec(bundle=codec_bundle, device="cpu")


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (17, 9)])
def test_every_level_round_trips_any_size(codec, size):
    image = sample_image(*size)
    for level in range(1, 7):
        data = codec.encode(image, level)
        for steps in (0, 2):
            decoded = codec.decode(data, steps=steps, seed=1)
            assert decoded.shape == image.shape and decoded.dtype == np.uint8


def test_bytes_fall_with_the_level_below(codec):
    image = sample_image(96, 128)
    sizes = [len(codec.encode(image, level)) for level in range(1, 7)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_the_same_seed_gives_the_same_image(codec):
    data = codec.encode(sample_image(40, 56), 3)
    assert np.array_equal(codec.decode(data, steps=3, seed=5), codec.decode(data, steps=3, seed=5))


def test_the_naive_decode_differs_from_the_diffused_one(codec):
    data = codec.encode(sample_image(40, 56), 2)
    assert not np.array_equal(codec.decode(data, steps=0), codec.decode(data, steps=2))


def test_fresh_noise_makes_the_seed_matter(codec):
    data = codec.encode(sample_image(40, 56), 2)
    assert not np.array_equal(codec.decode(data, steps=2, seed=1), codec.decode(data, steps=2, seed=2))


@pytest.mark.parametrize("pool", [1, 2, 3])
def test_the_anchor_keeps_every_block_mean_and_only_those(pool):
    reference, clean = torch.randn(2, 1, 4, 7, 9)  # 7 x 9: partial blocks at two edges
    projected = block_mean_anchor(reference, pool)(clean)

    def means(latent):
        return torch.nn.functional.avg_pool2d(latent, pool, ceil_mode=True)

    assert torch.allclose(means(projected), means(reference), atol=1e-5)
    assert torch.allclose(projected - means(projected).repeat_interleave(pool, -2).repeat_interleave(pool, -1)[..., :7, :9],
                          clean - means(clean).repeat_interleave(pool, -2).repeat_interleave(pool, -1)[..., :7, :9], atol=1e-5)


def test_a_text_conditioned_prior_run_on_its_empty_prompt_drives_the_decode(tmp_path):
    import torch

    from enhance.priors.text_encoder import TextEncoder
    from enhance.testing import tiny_text_encoder

    empty_prompt = TextEncoder.from_pretrained(tiny_text_encoder(tmp_path / "text")).encode([""])
    decodes = []
    for name, prompt in (("a", empty_prompt), ("b", torch.randn_like(empty_prompt))):
        codec = LatentDiffusionCodec(bundle=make_bundle(tmp_path / name, empty_prompt=prompt), device="cpu")
        data = codec.encode(sample_image(40, 56), 2)
        decodes.append(codec.decode(data, steps=2, seed=1))
        assert np.array_equal(decodes[-1], codec.decode(data, steps=2, seed=1))
        assert not np.array_equal(decodes[-1], codec.decode(data, steps=0))
    # The codec weights are the same (same seed): only the prior's stored prompt differs.
    assert not np.array_equal(*decodes)


def test_header_is_a_few_bytes(codec):
    data = codec.encode(sample_image(33, 47), 1)
    payload = bitstream.read(data, offset_count=8, levels=6, max_pixels=10**8)  # 16 channels in groups of 2
    strings = sum(len(s) for s in payload.strings)
    assert len(data) - strings <= 1 + 2 + 1 + 1 + 1 + 8 // 2 + 1 + 2 * 2


@pytest.mark.parametrize("rate", [0, 7, 2.5, True, "3"])
def test_a_rate_outside_the_levels_is_a_clear_error(codec, rate):
    with pytest.raises(EnhanceError, match="rate must be a level from 1 to 6"):
        codec.encode(sample_image(16, 16), rate)


@pytest.mark.parametrize("steps", [-1, 101, 1.5])
def test_bad_step_counts_are_refused(codec, steps):
    data = codec.encode(sample_image(16, 16), 1)
    with pytest.raises(EnhanceError, match="steps must be an integer from 0 to 100"):
        codec.decode(data, steps=steps)


def test_a_thousand_mutated_or_truncated_streams_fail_cleanly(codec):
    rng = np.random.default_rng(0)
    good = codec.encode(sample_image(24, 32), 3)
    outcomes = {"error": 0, "image": 0}
    for case in range(1000):
        data = bytearray(good)
        if case % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        try:
            image = codec.decode(bytes(data), steps=0)
        except EnhanceError:
            outcomes["error"] += 1
        else:
            assert image.dtype == np.uint8 and image.ndim == 3
            outcomes["image"] += 1
    assert outcomes["error"] > 300


def test_a_payload_declaring_a_huge_image_is_refused_before_decoding(codec):
    data = bytearray(codec.encode(sample_image(16, 16), 1))
    forged = bytes([1]) + bytes([0xFF, 0xFF, 0x03]) * 2 + bytes(data[3:])
    with pytest.raises(EnhanceError):
        codec.decode(forged, steps=0)


def test_the_codec_passes_the_full_codec_conformance_kit(codec):
    from enhance import testing

    testing.check_full_codec(codec, rates=[1, codec.rate_range[1]], steps=[0, 2])


def test_the_cli_round_trips_a_small_and_a_768x512_image_at_every_rate(codec_bundle, tmp_path):
    from functools import partial

    from enhance import testing

    factory = partial(LatentDiffusionCodec, bundle=codec_bundle, device="cpu")
    levels = int(LatentDiffusionCodec(bundle=codec_bundle, device="cpu").rate_range[1])
    testing.check_cli_round_trip("latent-diffusion", factory, range(1, levels + 1), [(33, 47), (512, 768)], tmp_path, steps=1)


def test_compare_keys_its_cache_on_the_weights(codec_bundle, tmp_path):
    """Retrained weights in the same folder must not be served another model's cached outputs."""
    from functools import partial

    from enhance import registry
    from enhance.comparison.subject import Subject

    other = make_bundle(tmp_path / "bundle", seed=1)

    def key(folder):
        with registry.use_plugins(full_codecs={"latent-diffusion": partial(LatentDiffusionCodec, bundle=folder, device="cpu")}):
            return Subject(name="latent-diffusion").key_fields()

    keys = [key(codec_bundle), key(codec_bundle), key(other)]
    assert keys[0] == keys[1]
    assert keys[0]["identity"] != keys[2]["identity"]
    # An edited model card changes no output; an edited config does.
    (other / "MODEL_CARD.md").write_text("measured again\n")
    assert key(other) == keys[2]
    (other / "codec.json").write_text((other / "codec.json").read_text() + "\n")
    assert key(other) != keys[2]
