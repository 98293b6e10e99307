import csv
import io
import json
import re
import shutil
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_bundle, natural_image
from enhance import cli, registry
from enhance.comparison import compare
from enhance.comparison.cache import ResultCache
from enhance.comparison.figures import detail_window
from enhance.enhancers import load_dirac
from enhance.enhancers.dirac import DiracEnhancer
from enhance.errors import BadInput, EnhanceError, WeightsError
from enhance.metrics import FULL_REFERENCE, swd

QUALITIES = [20, 50]
STEPS = [1, 2]
# Odd sizes catch padding bugs; one name needs escaping in HTML and quoting in links.
IMAGES = {"plain.png": (48, 64), "odd <name> & co.png": (33, 47), "nested/deep.png": (40, 56)}


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    # Backbone weights are not on this machine: the learned metrics must be skipped, fast.
    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    monkeypatch.setenv("ENHANCE_CACHE", str(tmp_path / "enhance-cache"))
    monkeypatch.delenv("ENHANCE_MIRROR", raising=False)
    monkeypatch.delenv("ENHANCE_DIRAC_JPEG", raising=False)


def write_dataset(folder: Path, images=IMAGES, broken=True) -> dict[str, np.ndarray]:
    pixels = {}
    for index, (name, (height, width)) in enumerate(images.items()):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels[name] = natural_image(height, width, seed=index)
        Image.fromarray(pixels[name]).save(path)
    if broken:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    return pixels


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny-dirac")


@pytest.fixture(scope="module")
def jpeg_run(tmp_path_factory, bundle):
    """One full comparison shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("jpeg-run")
    pixels = write_dataset(root / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENHANCE_OFFLINE", "1")
        patch.setenv("ENHANCE_CACHE", str(root / "enhance-cache"))
        comparison = compare(root / "data", root / "out", codec="jpeg", qualities=QUALITIES, steps=STEPS, model=bundle, consistent=True)
    return comparison, pixels


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


# --- outputs ----------------------------------------------------------------------


def test_writes_compressai_json_csv_plots_and_report(jpeg_run):
    comparison, pixels = jpeg_run
    out = comparison.output
    names = ["jpeg", "jpeg+dirac-1", "jpeg+dirac-2"]
    assert [c.name for c in comparison.configurations] == names
    for name in names:
        document = json.loads((out / f"{name}.json").read_text())
        assert document["name"] == name and document["description"]
        results = document["results"]
        assert results["quality"] == QUALITIES
        for key in ["bpp", *FULL_REFERENCE, "swd", "encoding_time", "decoding_time"]:
            assert len(results[key]) == len(QUALITIES), key
        # Tiny images have no MS-SSIM (it needs 161 px): null, with a note, not a failure.
        assert results["ms-ssim-rgb"] == [None, None]
        assert all(isinstance(value, float) for value in results["psnr-rgb"] + results["bpp"] + results["swd"])
        # Higher JPEG quality: more bits and a closer image.
        assert results["bpp"][0] < results["bpp"][1] and results["psnr-rgb"][0] < results["psnr-rgb"][1]
        stages = document["stages"]
        expected_stages = {"encode", "decode", "metrics"} | ({"enhance"} if "+" in name else set())
        assert set(stages) == expected_stages
        for stage in stages.values():
            assert stage["seconds"] >= 0 and stage["peak_rss_mib"] > 10
    assert "enhancement_time" in json.loads((out / "jpeg+dirac-2.json").read_text())["results"]

    rows = read_csv(out / "per-image.csv")
    assert len(rows) == len(pixels) * len(QUALITIES) * len(names)
    assert {row["image"] for row in rows} == set(pixels)
    assert {row["steps"] for row in rows} == {"", "1", "2"}
    assert all(float(row["seconds"]) > 0 and row["psnr-rgb"] and row["ms-ssim-rgb"] == "" for row in rows)

    assert ("broken.png", ) == tuple(label for label, _ in comparison.skipped)
    assert any("ms-ssim-rgb: not computed for 3 of 3 images" in note for note in comparison.notes)
    assert any(note.startswith("lpips skipped: backbone weights unavailable") for note in comparison.notes)
    assert any("fid, kid skipped" in note for note in comparison.notes)

    plots = sorted((out / "plots").glob("*.png"))
    assert {p.stem for p in plots} == {"psnr-rgb", "psnr-y", "psnr-b", "ssimulacra2", "hf-energy-ratio", "swd"}
    sheets = sorted((out / "crops").glob("*.png"))
    assert len(sheets) == len(pixels)
    for picture in plots + sheets:
        with Image.open(picture) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attributes):
        self.targets += [value for name, value in attributes if name in ("href", "src")]


def test_report_links_every_file_relatively_and_escapes_names(jpeg_run):
    comparison, _ = jpeg_run
    page = (comparison.output / "report.html").read_text()
    parser = Links()
    parser.feed(page)
    targets = {unquote(target) for target in parser.targets}
    assert all(not target.startswith(("/", "file:", "http")) for target in targets)
    for target in targets:
        assert (comparison.output / target).is_file(), target
    expected = {"jpeg.json", "jpeg+dirac-1.json", "per-image.csv", "bd-rate.json", "plots/psnr-rgb.png"}
    assert expected <= targets
    assert len([t for t in targets if t.startswith("crops/")]) == 3
    assert "odd &lt;name&gt; &amp; co.png" in page and "<name>" not in page
    assert "skipped broken.png" in page


def test_crop_is_the_most_detailed_window():
    flat = np.full((300, 400, 3), 128, np.uint8)
    flat[200:260, 40:120] = np.random.default_rng(0).integers(0, 255, (60, 80, 3))
    top, left, height, width = detail_window(flat)
    assert (height, width) == (256, 256)
    assert top <= 200 and top + 256 >= 260 and left <= 40 and left + 256 >= 120
    assert detail_window(flat[:50, :70]) == (0, 0, 50, 70)


# --- the numbers --------------------------------------------------------------------


def test_jpeg_rows_match_an_independent_computation(jpeg_run, bundle):
    """Pillow encodes and decodes, the enhancer and the metrics run directly: the JSON must agree."""
    from enhance.consistency import project_to_jpeg
    from enhance.enhance_one import CodedImage

    comparison, pixels = jpeg_run
    # SWD samples patches image after image: keep the dataset's order (a sorted walk).
    order = list(dict.fromkeys(o.image for o in comparison.outputs))
    assert sorted(order) == sorted(pixels)
    pixels = {label: pixels[label] for label in order}
    enhancer = load_dirac("jpeg", bundle=bundle)
    expected = {name: {key: [] for key in ["bpp", *FULL_REFERENCE, "swd"]} for name in ("jpeg", "jpeg+dirac-1", "jpeg+dirac-2")}
    for quality in QUALITIES:
        outputs = {name: [] for name in expected}
        bpps = []
        for original in pixels.values():
            buffer = io.BytesIO()
            Image.fromarray(original).save(buffer, "JPEG", quality=quality, subsampling=2)
            data = buffer.getvalue()
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            bpps.append(8 * len(data) / (original.shape[0] * original.shape[1]))
            outputs["jpeg"].append(decoded)
            for steps in STEPS:
                enhanced = enhancer.enhance(decoded, rate=CodedImage.read(data).rate, steps=steps, seed=0)
                outputs[f"jpeg+dirac-{steps}"].append(project_to_jpeg(enhanced, data))
        for name, images in outputs.items():
            expected[name]["bpp"].append(np.mean(bpps))
            for metric, function in FULL_REFERENCE.items():
                values = []
                for original, image in zip(pixels.values(), images):
                    try:
                        values.append(function(original, image))
                    except BadInput:
                        pass
                expected[name][metric].append(float(np.mean(values)) if values else None)
            expected[name]["swd"].append(swd(list(pixels.values()), images))
    for name, values in expected.items():
        results = json.loads((comparison.output / f"{name}.json").read_text())["results"]
        for key, series in values.items():
            assert [value is None for value in results[key]] == [value is None for value in series], (name, key)
            present = [(a, b) for a, b in zip(results[key], series) if b is not None]
            assert [a for a, _ in present] == pytest.approx([b for _, b in present], rel=1e-12, abs=1e-12), (name, key)


def test_bd_rate_is_zero_against_itself_and_in_the_report(jpeg_run):
    comparison, _ = jpeg_run
    table = json.loads((comparison.output / "bd-rate.json").read_text())
    assert table["anchor"] == "jpeg" and table["method"] == "pchip"
    assert "hf-energy-ratio" in table["not_compared"] and "psnr-rgb" in table["metrics"]
    for name in ("jpeg", "jpeg+dirac-1", "jpeg+dirac-2"):
        assert table["pairs"][name][name]["psnr-rgb"] == {"bd-rate": 0.0, "bd-metric": 0.0}
    other = table["pairs"]["jpeg"]["jpeg+dirac-2"]["psnr-rgb"]
    assert other["bd-rate"] != 0.0
    # Both directions of a pair describe the same gap from opposite sides.
    reverse = table["pairs"]["jpeg+dirac-2"]["jpeg"]["psnr-rgb"]
    assert reverse["bd-metric"] == pytest.approx(-other["bd-metric"])
    assert table["pairs"]["jpeg"]["jpeg"]["ms-ssim-rgb"]["bd-rate"] is None
    page = (comparison.output / "report.html").read_text()
    assert "BD-rate against jpeg" in page and f"{other['bd-rate']:.3g}" in page


# --- the cache ----------------------------------------------------------------------


def test_a_new_step_count_reuses_every_cached_result(jpeg_run, bundle, tmp_path, monkeypatch):
    comparison, pixels = jpeg_run
    out = tmp_path / "out"
    shutil.copytree(comparison.output, out)
    encodes, trajectories = [], []
    from enhance.codecs.pillow import JpegCodec

    original_encode, original_stops = JpegCodec.encode, DiracEnhancer.enhance_stops
    monkeypatch.setattr(JpegCodec, "encode", lambda self, *a, **k: encodes.append(1) or original_encode(self, *a, **k))

    def counting_stops(self, decoded, *, rate, stops, seed=0):
        trajectories.append(sorted(stops))
        return original_stops(self, decoded, rate=rate, stops=stops, seed=seed)

    monkeypatch.setattr(DiracEnhancer, "enhance_stops", counting_stops)
    # A cache file that no longer parses is a miss, recomputed, never an error.
    records = sorted((out / "cache").rglob("*.json"))
    records[0].write_text("{not json")

    assert records[0].relative_to(out / "cache").parts[1] == "encoded"
    data = comparison.output.parent / "data"
    again = compare(data, out, codec="jpeg", qualities=QUALITIES, steps=[1, 2, 3], model=bundle, figures=False, consistent=True)
    assert trajectories == [[3]] * (len(pixels) * len(QUALITIES))
    assert len(encodes) == 1  # the entry whose record was corrupted
    assert again.cache["enhanced"] == {"hits": 12, "misses": 6}
    for name in ("jpeg", "jpeg+dirac-1", "jpeg+dirac-2"):
        assert again.results[name]["results"]["psnr-rgb"] == comparison.results[name]["results"]["psnr-rgb"]
    assert "jpeg+dirac-3" in again.results

    # And a run adding a quality encodes only that quality.
    encodes.clear()
    compare(data, out, codec="jpeg", qualities=[*QUALITIES, 80], steps=[1], model=bundle, figures=False, consistent=True)
    assert len(encodes) == len(pixels)


def test_tampered_cache_records_are_recomputed_not_trusted(jpeg_run, bundle, tmp_path):
    comparison, _ = jpeg_run
    out = tmp_path / "out"
    shutil.copytree(comparison.output / "cache", out / "cache")
    nonsense = {"bytes": "x", "encode": [1], "decode": None, "enhance": 5, "values": [], "reasons": 3, "measurement": "no", "value": True}
    for path in (out / "cache").rglob("*.json"):
        record = json.loads(path.read_text())
        record["data"] = nonsense
        path.write_text(json.dumps(record))
    again = compare(comparison.output.parent / "data", out, qualities=QUALITIES, steps=STEPS, model=bundle, figures=False, consistent=True)
    for name, document in comparison.results.items():
        assert again.results[name]["results"]["psnr-rgb"] == document["results"]["psnr-rgb"]
        assert again.results[name]["results"]["swd"] == document["results"]["swd"]
    assert again.cache["encoded"]["hits"] == 0 and again.cache["sets"]["hits"] == 0


def test_cache_refuses_records_of_other_keys_and_broken_images(tmp_path):
    cache = ResultCache(root=tmp_path)
    cache.write_record("encoded", "ab" * 20, {"bytes": 3})
    assert cache.read_record("encoded", "ab" * 20) == {"bytes": 3}
    moved = cache._path("encoded", "cd" * 20, ".json")
    moved.parent.mkdir(parents=True)
    cache._path("encoded", "ab" * 20, ".json").rename(moved)
    assert cache.read_record("encoded", "cd" * 20) is None
    image = natural_image(9, 11)
    cache.write_image("enhanced", "ef" * 20, image)
    assert np.array_equal(cache.read_image("enhanced", "ef" * 20, image.shape), image)
    assert cache.read_image("enhanced", "ef" * 20, (11, 9, 3)) is None
    cache._path("enhanced", "ef" * 20, ".png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert cache.read_image("enhanced", "ef" * 20, image.shape) is None


# --- codecs -------------------------------------------------------------------------


def test_a_codec_without_an_enhancer_gives_base_rows_and_a_note(tmp_path, bundle):
    write_dataset(tmp_path / "data", broken=False)
    comparison = compare(tmp_path / "data", tmp_path / "out", codec="webp", qualities=[30, 70], steps=[1, 2], figures=False)
    assert [c.name for c in comparison.configurations] == ["webp"]
    assert any("no trained enhancer for codec 'webp'" in note and "--steps is ignored" in note for note in comparison.notes)
    results = json.loads((tmp_path / "out" / "webp.json").read_text())["results"]
    assert results["quality"] == [30, 70] and results["bpp"][0] < results["bpp"][1]
    # A JPEG model given for WebP is no WebP enhancer either: a note, not a failure.
    again = compare(tmp_path / "data", tmp_path / "out", codec="webp", qualities=[30, 70], model=bundle, figures=False)
    assert any("trained for 'jpeg', not 'webp'" in note for note in again.notes)


class ToyCodec:
    """A container codec standing for a neural one: `quality` bits per sample, zlib-packed."""

    name = "toy"
    rate_range = (1, 8)
    higher_rate_is_better = True
    file_extension = ".enh"
    needs_container = True

    def __init__(self, *, offset=128):
        self.offset = offset

    def available(self):
        return True, ""

    def encode(self, image, quality):
        shift = 8 - int(quality)
        header = image.shape[0].to_bytes(2, "big") + image.shape[1].to_bytes(2, "big") + bytes([shift])
        return header + zlib.compress((image >> shift).tobytes(), 9)

    def decode(self, data):
        height, width, shift = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big"), data[4]
        levels = np.frombuffer(zlib.decompress(data[5:]), np.uint8).reshape(height, width, 3)
        centre = (self.offset << shift) // 256
        return ((levels.astype(np.uint16) << shift) + centre).clip(0, 255).astype(np.uint8)


class ToyFullCodec:
    """A generative codec standing for PerCo: a 4x downscale, decoded with seeded detail that fades with steps."""

    name = "toy-full"
    rate_range = (1.0, 4.0)
    rate_unit = "downscale exponent"
    decodes: list = []

    @classmethod
    def available(cls):
        return True, ""

    def encode(self, image, rate):
        factor = 2 ** int(5 - rate)
        small = image[::factor, ::factor]
        header = b"".join(n.to_bytes(2, "big") for n in (*image.shape[:2], factor))
        return header + zlib.compress(small.tobytes())

    def decode(self, data, *, steps=None, seed=0):
        type(self).decodes.append((steps, seed))
        height, width, factor = (int.from_bytes(data[i : i + 2], "big") for i in (0, 2, 4))
        small = np.frombuffer(zlib.decompress(data[6:]), np.uint8).reshape(-(-height // factor), -(-width // factor), 3)
        big = small.repeat(factor, 0).repeat(factor, 1)[:height, :width].astype(np.float64)
        noise = np.random.default_rng(seed).normal(0, 12 / (steps or 4), big.shape)
        return np.clip(big + noise, 0, 255).astype(np.uint8)


def test_injected_base_and_full_codecs(tmp_path):
    write_dataset(tmp_path / "data", broken=False)
    with registry.use_plugins(codecs={"toy": ToyCodec}, full_codecs={"toy-full": ToyFullCodec}):
        base = compare(tmp_path / "data", tmp_path / "base", codec="toy", qualities=[2, 5], codec_options={"offset": 64}, figures=False)
        ToyFullCodec.decodes.clear()
        full = compare(tmp_path / "data", tmp_path / "full", codec="toy-full", qualities=[1, 3], steps=[1, 3], seed=7)
    assert [c.name for c in base.configurations] == ["toy"]
    assert any("no trained enhancer for codec 'toy'" in note for note in base.notes)
    assert "offset=64" in base.results["toy"]["description"]
    assert base.results["toy"]["results"]["psnr-rgb"][0] < base.results["toy"]["results"]["psnr-rgb"][1]

    assert [c.name for c in full.configurations] == ["toy-full-1", "toy-full-3"]
    assert sorted(set(ToyFullCodec.decodes)) == [(1, 7), (3, 7)] and len(ToyFullCodec.decodes) == 3 * 2 * 2
    # Fewer steps leave more noise in this toy: the BD table sees the 3-step decoder as better.
    assert full.bd["anchor"] == "toy-full-1"
    assert full.bd["pairs"]["toy-full-1"]["toy-full-3"]["psnr-rgb"]["bd-metric"] > 0
    rows = read_csv(tmp_path / "full" / "per-image.csv")
    assert {(row["configuration"], row["steps"]) for row in rows} == {("toy-full-1", "1"), ("toy-full-3", "3")}
    assert (tmp_path / "full" / "report.html").is_file() and len(list((tmp_path / "full" / "crops").glob("*.png"))) == 3


# --- learned metrics ------------------------------------------------------------------


def test_learned_metrics_are_used_when_their_weights_load(tmp_path, bundle, monkeypatch):
    import torch

    from enhance.metrics import lpips_alex, patch_fid

    torch.manual_seed(0)
    random_lpips = lpips_alex.LPIPS().eval()
    with torch.no_grad():
        # The published linear heads are non-negative, which keeps LPIPS a distance.
        for name, parameter in random_lpips.named_parameters():
            if name.startswith("lin"):
                parameter.uniform_(0, 1)
    # One feature: two patches per set give a covariance of rank one.
    projection = np.random.default_rng(0).normal(size=(3 * 4 * 4, 1))

    def colour_features(patches):
        # Stand-in for Inception pool3: 4x4 average colours, projected.
        n = len(patches)
        pooled = patches.reshape(n, 4, 64, 4, 64, 3).mean(axis=(2, 4)).reshape(n, -1)
        return pooled @ projection

    monkeypatch.setattr(lpips_alex, "default_lpips", lambda: random_lpips)
    monkeypatch.setattr(patch_fid, "default_inception_features", lambda: colour_features)
    write_dataset(tmp_path / "data", images={"a.png": (256, 264), "b.png": (260, 256)}, broken=False)
    comparison = compare(
        tmp_path / "data", tmp_path / "out", qualities=[10, 60], steps=[1], model=bundle,
        metrics=["psnr-rgb", "lpips", "fid", "kid"], figures=False,
    )
    results = comparison.results["jpeg"]["results"]
    assert set(results) >= {"psnr-rgb", "lpips", "fid", "kid"} and "ssimulacra2" not in results
    assert results["lpips"][0] > results["lpips"][1] > 0
    assert results["fid"][0] > 0 and all(isinstance(v, float) for v in results["kid"])
    assert not any("skipped" in note for note in comparison.notes)


def test_metrics_asked_for_by_name_must_load(tmp_path, bundle):
    write_dataset(tmp_path / "data", broken=False)
    with pytest.raises(WeightsError, match="lpips-alex"):
        compare(tmp_path / "data", tmp_path / "out", qualities=[20], metrics=["psnr-rgb", "lpips"], model=bundle)


# --- bad input ----------------------------------------------------------------------


def test_bad_inputs_are_clear_errors(tmp_path, bundle):
    with pytest.raises(BadInput, match="no-such-folder: no such file or folder"):
        compare(tmp_path / "no-such-folder", tmp_path / "out", qualities=[20], model=bundle)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no images under"):
        compare(tmp_path / "empty", tmp_path / "out", qualities=[20], model=bundle)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(BadInput, match=r"no usable image .*x\.jpg"):
        compare(tmp_path / "broken", tmp_path / "out", qualities=[20], model=bundle)
    write_dataset(tmp_path / "data", images={"a.png": (20, 24)}, broken=False)
    for options, message in [
        ({"qualities": [0]}, r"0 outside its range 1\.\.100"),
        ({"qualities": []}, "at least one quality"),
        ({"qualities": [20], "steps": [0]}, "step counts must be whole numbers"),
        ({"qualities": [20], "steps": [5000]}, "--steps 5000"),
        ({"qualities": [20], "metrics": ["psnr", "psnr-rgb"]}, "unknown metric 'psnr'"),
        ({"qualities": [20], "anchor": "webp"}, "--anchor 'webp' is not one of"),
        ({"qualities": [20], "codec": "no-such-codec"}, "no codec named 'no-such-codec'"),
    ]:
        with pytest.raises(EnhanceError, match=message):
            compare(tmp_path / "data", tmp_path / "out", model=bundle, **options)


# --- command line -------------------------------------------------------------------


def run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["enhance", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_command_line(tmp_path, bundle, monkeypatch, capsys):
    write_dataset(tmp_path / "data", images={"a.png": (24, 32), "b.png": (32, 24)}, broken=False)
    monkeypatch.setenv("ENHANCE_DIRAC_JPEG", str(bundle))
    code, out, err = run_main(
        monkeypatch, capsys, "compare", str(tmp_path / "data"), "-q", "15,45", "--steps", "1", "-o", str(tmp_path / "out"),
        "-O", "subsampling=4:4:4", "--metrics", "psnr-rgb,swd", "--no-figures",
    )
    assert code == 0, err
    assert f"jpeg+dirac-1: {tmp_path / 'out' / 'jpeg+dirac-1.json'} (BD-rate vs jpeg: psnr-rgb" in out
    assert "[2/2] scoring and writing" in err
    assert "subsampling=4:4:4" in json.loads((tmp_path / "out" / "jpeg.json").read_text())["description"]
    assert not (tmp_path / "out" / "report.html").exists()

    code, out, err = run_main(monkeypatch, capsys, "compare", str(tmp_path / "nowhere"), "-q", "10", "-o", str(tmp_path / "out"))
    assert code == 2 and re.fullmatch(r"enhance: \S*nowhere: no such file or folder\n", err)
