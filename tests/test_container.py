import random
import zlib

import pytest

from enhance import container
from enhance.container import CODEC_IDS, Container, decode_params, encode_params, is_container, pack, unpack
from enhance.errors import BadInput, ContainerError


def test_codec_ids_are_never_renumbered():
    # Append-only: extend this dict when adding a codec, never edit an existing entry.
    pinned = {
        "bpg": 1,
        "vtm": 2,
        "bmshj2018-factorized": 3,
        "bmshj2018-hyperprior": 4,
        "mbt2018-mean": 5,
        "mbt2018": 6,
        "cheng2020-anchor": 7,
        "cheng2020-attn": 8,
        "perco": 9,
        "latent-diffusion": 10,
    }
    assert {name: CODEC_IDS[name] for name in pinned} == pinned
    assert len(set(CODEC_IDS.values())) == len(CODEC_IDS)
    assert container.NAMED_CODEC_ID not in CODEC_IDS.values()


def test_exact_bytes_of_version_1_are_stable():
    assert container.crc8(b"123456789") == 0xF4  # the CRC-8/ATM check value
    without_crc = pack("perco", 33, 47, b"\x01\x02", crc=False)
    assert without_crc.hex() == "454e48" "01" "09" "21" "2f" "00" "00" "8f" "0102"
    with_crc = pack("a-b", 300, 1, b"", params=b"q")
    assert with_crc[:-4].hex() == "454e48" "01" "00" "03" "612d62" "ac02" "01" "01" "01" "71" + f"{container.crc8(with_crc[:-5]):02x}"
    assert with_crc[-4:] == zlib.crc32(with_crc[:-4]).to_bytes(4, "big")


@pytest.mark.parametrize("crc", [True, False])
@pytest.mark.parametrize("codec", ["perco", "vtm", "acme-neural-v2", "ünïcode codec"])
def test_round_trip(codec, crc):
    payload = bytes(range(256)) * 3
    params = encode_params({"quality": "3", "model": "x"})
    data = pack(codec, 33, 47, payload, params=params, crc=crc)
    assert is_container(data)
    parsed = unpack(data)
    assert parsed == Container(codec=codec, width=33, height=47, params=params, payload=payload, crc=crc, file_size=len(data))
    assert decode_params(parsed.params) == {"quality": "3", "model": "x"}


def test_overhead_and_bpp():
    payload = bytes(150)
    with_crc = unpack(pack("perco", 768, 512, payload))
    without_crc = unpack(pack("perco", 768, 512, payload, crc=False))
    assert without_crc.file_size - len(payload) == 12
    assert with_crc.file_size - len(payload) == 16
    assert with_crc.payload_bpp == pytest.approx(150 * 8 / (768 * 512))
    assert with_crc.file_bpp == pytest.approx(166 * 8 / (768 * 512))
    assert with_crc.file_bpp > with_crc.payload_bpp


def test_large_sizes_and_empty_payload():
    parsed = unpack(pack("bpg", container.MAX_SIDE, 1, b""))
    assert (parsed.width, parsed.height, parsed.payload) == (container.MAX_SIDE, 1, b"")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(codec="bpg", width=0, height=5),
        dict(codec="bpg", width=5, height=container.MAX_SIDE + 1),
        dict(codec="", width=5, height=5),
        dict(codec="x" * 65, width=5, height=5),
        dict(codec="bad\nname", width=5, height=5),
    ],
)
def test_pack_rejects_what_unpack_would_refuse(kwargs):
    with pytest.raises(ValueError):
        pack(payload=b"x", **kwargs)


def _rewrite_header(data: bytes, index: int, value: int) -> bytes:
    """Changes one header byte and repairs the header check, as a buggy or malicious writer would."""
    header_end = data.index(b"\xaa\xbb") - 1
    mutated = bytearray(data)
    mutated[index] = value
    mutated[header_end] = container.crc8(bytes(mutated[:header_end]))
    return bytes(mutated)


@pytest.mark.parametrize(
    "index, value, reason",
    [
        (3, 2, "version 2 is not supported"),
        (4, 0x7F, "unknown codec id 127"),
        (5, 0, "empty"),
        (7, 0x02, "unknown flags"),
    ],
)
def test_clear_reasons(index, value, reason):
    data = pack("perco", 33, 47, b"\xaa\xbb", crc=False)
    with pytest.raises(ContainerError, match=reason):
        unpack(_rewrite_header(data, index, value))


def test_clear_reasons_for_framing():
    data = pack("perco", 33, 47, b"\xaa\xbb")
    with pytest.raises(ContainerError, match="bad magic"):
        unpack(b"\xff\xd8\xff\xe0" + data[4:])
    with pytest.raises(ContainerError, match="truncated"):
        unpack(data[:5])
    with pytest.raises(ContainerError, match="CRC32 mismatch"):
        unpack(data[:-1])
    with pytest.raises(ContainerError, match="header check"):
        unpack(data[:5] + b"\x22" + data[6:])
    with pytest.raises(ContainerError, match="not minimally encoded"):
        unpack(b"ENH\x01\x89\x00")
    with pytest.raises(ContainerError, match="too long|exceeds"):
        unpack(b"ENH\x01\x09" + b"\x80" * 100)
    assert issubclass(ContainerError, BadInput)


def test_clearing_the_crc_flag_is_caught():
    data = pack("perco", 33, 47, b"\xaa\xbb")
    flags_index = 7
    assert data[flags_index] == container.FLAG_CRC
    with pytest.raises(ContainerError, match="header check"):
        unpack(data[:flags_index] + b"\x00" + data[flags_index + 1 :])


def _mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    mutated = bytearray(data)
    if kind == 0:
        return bytes(mutated[: rng.randrange(len(data))])
    if kind == 1:
        for _ in range(rng.randint(1, 3)):
            index = rng.randrange(len(mutated))
            mutated[index] = (mutated[index] + rng.randint(1, 255)) % 256
        return bytes(mutated)
    if kind == 2:
        index = rng.randrange(len(mutated))
        mutated[index] ^= 1 << rng.randrange(8)
        return bytes(mutated)
    if kind == 3:
        index = rng.randrange(len(mutated) + 1)
        return bytes(mutated[:index]) + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) + bytes(mutated[index:])
    start = rng.randrange(len(mutated))
    return bytes(mutated[:start] + mutated[start + rng.randint(1, 4) :])


@pytest.mark.parametrize("crc", [True, False])
def test_fuzzed_input_raises_container_error_only(crc):
    rng = random.Random(1234 + crc)
    originals = [
        pack(codec, rng.randint(1, 5000), rng.randint(1, 5000), rng.randbytes(rng.randint(0, 300)), params=encode_params({"q": str(rng.random())}), crc=crc)
        for codec in ("perco", "mbt2018-mean", "third-party-codec")
    ]
    harmless = 0
    for case in range(1000):
        original = originals[case % len(originals)]
        mutated = _mutate(original, rng)
        if mutated == original:
            continue
        try:
            parsed = unpack(mutated)
        except ContainerError:
            continue
        # Only a CRC-less payload is unchecked: a header change must always be caught.
        assert not crc, f"case {case}: corrupt input {mutated.hex()} parsed"
        reference = unpack(original)
        assert (parsed.codec, parsed.width, parsed.height, parsed.params) == (
            reference.codec,
            reference.width,
            reference.height,
            reference.params,
        )
        harmless += 1
    assert crc or harmless > 0


def test_random_bytes_raise_container_error_only():
    rng = random.Random(7)
    for _ in range(1000):
        data = b"ENH\x01" + rng.randbytes(rng.randint(0, 40))
        try:
            unpack(data)
        except ContainerError:
            pass


def test_params_encoding():
    assert decode_params(b"") == {}
    values = {"quality": "0.0018", "model": "mbt2018-mean", "é": ""}
    assert decode_params(encode_params(values)) == values
    one = encode_params({"b": "2", "a": "1"})
    with pytest.raises(ContainerError, match="out of order"):
        decode_params(one[4:] + one[:4])
    with pytest.raises(ContainerError, match="truncated"):
        decode_params(one[:-1])
    with pytest.raises(ContainerError, match="UTF-8"):
        decode_params(b"\x01\xff\x00")
