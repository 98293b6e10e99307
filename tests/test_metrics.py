"""Metrics: known values, published reference numbers, and structural checks of the backbones."""

import hashlib
import math

import numpy as np
import pytest
import torch
from conftest import natural_image
from scipy.ndimage import uniform_filter

import enhance.metrics as metrics
from enhance import weights
from enhance.errors import BadInput, WeightsError
from enhance.metrics import dists_vgg as dists_module
from enhance.metrics import inception as inception_module
from enhance.metrics import lpips_alex as lpips_module
from enhance.metrics.bdrate import bd_metric, bd_rate
from enhance.weights import load_exact
from enhance.metrics.detail import hf_energy_ratio
from enhance.metrics.dists_vgg import DISTS
from enhance.metrics.inception import BasicConv2d, FIDInceptionV3, InceptionFeatures
from enhance.metrics.lpips_alex import LPIPS
from enhance.metrics.multiscale_ssim import ms_ssim
from enhance.metrics.patch_fid import fid, frechet_distance, hific_patches, kernel_distance, kid
from enhance.metrics.psnr import blocking_effect_factor, psnr_b, psnr_rgb, psnr_y
from enhance.metrics.sliced_wasserstein import swd, swd_by_level
from enhance.metrics.ssimulacra import ssimulacra2


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Backbones run on one intra-op thread: on a 2-core machine shared with training, a second
    thread only contends (a tiny VGG forward goes from 0.2 s to several seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def noisy(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def blurred(image: np.ndarray, size: int = 5) -> np.ndarray:
    return uniform_filter(image.astype(np.float64), size=(size, size, 1), mode="reflect").round().astype(np.uint8)


def gray(value: float, height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


# ---------------------------------------------------------------- PSNR family


def test_identical_images_give_infinite_psnr():
    image = natural_image(33, 47)
    assert psnr_rgb(image, image) == math.inf
    assert psnr_y(image, image) == math.inf
    assert psnr_b(image, image) == math.inf
    assert psnr_b(image, image, channels="rgb") == math.inf


@pytest.mark.parametrize("shift", [1, 5, 17])
def test_constant_shift_gives_exact_psnr(shift):
    reference = np.clip(natural_image(33, 47), 0, 200)
    distorted = reference + np.uint8(shift)
    assert psnr_rgb(reference, distorted) == pytest.approx(20 * math.log10(255 / shift), abs=1e-10)
    # A gray shift of d moves BT.601 luma by d * 219/255.
    assert psnr_y(reference, distorted) == pytest.approx(20 * math.log10(255 / (shift * 219 / 255)), abs=1e-10)


def test_psnr_b_on_a_hand_computed_blocking_case():
    # Reference flat 100; distorted: left 8 columns 100, right 8 columns 108 (one block edge).
    reference = gray(100, 16, 16)
    distorted = reference.copy()
    distorted[:, 8:] = 108
    # MSE = 64 / 2 = 32. Across the one vertical block boundary every one of the 16 rows
    # differs by 8: D_B = 16 * 64 / (N_HB + N_VB) = 1024 / (16 + 16) = 32, D_B^c = 0,
    # eta = log2(8) / log2(16) = 3/4, so BEF = 24 and MSE-B = 56.
    assert blocking_effect_factor(distorted[..., 0].astype(np.float64)) == pytest.approx(24.0)
    assert psnr_rgb(reference, distorted) == pytest.approx(10 * math.log10(255**2 / 32))
    assert psnr_b(reference, distorted, channels="rgb") == pytest.approx(10 * math.log10(255**2 / 56))
    luma_scale = (219 / 255) ** 2
    assert psnr_b(reference, distorted) == pytest.approx(10 * math.log10(255**2 / (56 * luma_scale)))


def test_psnr_b_equals_psnr_without_blocking_and_is_lower_with_it():
    reference = natural_image(33, 47)
    smooth_error = noisy(reference, 4)
    # Random noise: boundary differences are no larger than elsewhere, so BEF = 0.
    assert blocking_effect_factor(smooth_error[..., 1].astype(np.float64)) == 0.0
    assert psnr_b(reference, smooth_error, channels="rgb") == pytest.approx(
        np.mean(
            [
                psnr_rgb(reference[..., c : c + 1].repeat(3, 2), smooth_error[..., c : c + 1].repeat(3, 2))
                for c in range(3)
            ]
        )
    )
    # Replace every 8x8 block (partial ones at the 33x47 edges included) by its mean.
    blocky = reference.astype(np.float64)
    for top in range(0, 33, 8):
        for left in range(0, 47, 8):
            block = blocky[top : top + 8, left : left + 8]
            block[...] = block.mean(axis=(0, 1))
    blocky = blocky.round().astype(np.uint8)
    assert blocking_effect_factor(blocky[..., 0].astype(np.float64)) > 0
    assert psnr_b(reference, blocky) < psnr_y(reference, blocky)


def test_pair_checks_reject_bad_inputs():
    image = natural_image(33, 47)
    with pytest.raises(BadInput, match="equal sizes"):
        psnr_rgb(image, image[:32])
    with pytest.raises(BadInput, match="uint8 HxWx3"):
        psnr_rgb(image, image.astype(np.float32))
    with pytest.raises(BadInput, match="channels"):
        psnr_b(image, image, channels="ycbcr")


# ---------------------------------------------------------------- MS-SSIM


def test_ms_ssim_identity_monotonicity_and_minimum_size():
    reference = natural_image(161, 170)
    assert ms_ssim(reference, reference) == pytest.approx(1.0, abs=1e-12)
    mild, strong = ms_ssim(reference, noisy(reference, 5)), ms_ssim(reference, noisy(reference, 25))
    assert 1.0 > mild > strong > 0.0
    with pytest.raises(BadInput, match="161"):
        ms_ssim(reference[:160], reference[:160])


def test_ms_ssim_matches_pytorch_msssim_as_compressai_calls_it():
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    reference = natural_image(163, 171, seed=2)  # odd sizes exercise the padded pooling
    distorted = blurred(noisy(reference, 8), 3)
    as_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255.0  # noqa: E731
    expected = pytorch_msssim.ms_ssim(as_tensor(reference), as_tensor(distorted), data_range=1.0).item()
    # pytorch-msssim builds its Gaussian window in float32; everything else is float64.
    assert ms_ssim(reference, distorted) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- SSIMULACRA2
#
# Reference scores printed by the C++ ssimulacra2 (libjxl tools/ssimulacra2.cc, v2.1) for
# synthetic pairs, as captured in imazen/ssimulacra2 `ssimulacra2/src/reference_data.rs`
# (generator: `examples/capture_cpp_reference.rs`). The images are rebuilt here bit for bit,
# which the SHA-256 of their raw RGB bytes (from the same file) proves. Uniform pairs with
# small shifts (1-10 levels) are left out: their scores sit near 100, where the final
# power law turns the reference's float32 rounding noise into score differences of up to
# 2 points, so they test float32 noise rather than the metric.


def lcg_noise(height: int, width: int, seed: int) -> np.ndarray:
    state, values = seed, bytearray()
    for _ in range(height * width * 3):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        values.append((state >> 33) & 0xFF)
    return np.frombuffer(bytes(values), dtype=np.uint8).reshape(height, width, 3)


def horizontal_gradient(height: int, width: int) -> np.ndarray:
    row = (np.arange(width) * 255 // (width - 1)).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], height, axis=0), 3, axis=2)


def raw_sha256(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def test_reference_images_are_rebuilt_exactly():
    assert raw_sha256(gray(128, 64, 64)) == "2203a98fd84adfbd3cbbfda33c94fcc2d33f0e1d6ebfa4e0ced17c5469ba54e5"
    assert raw_sha256(lcg_noise(64, 64, 42)) == "7f6be7f433ccb0a006e888f827df518a15c560c44b89852441183c2f61ea59f2"
    assert raw_sha256(horizontal_gradient(64, 64)) == "bfcfaa0618d282841d4469793253649ea6ddab2f1d0351548cb6f05a8fd79b87"
    assert raw_sha256(gray(178, 128, 128)) == "768e019eb1e7b74aa1a48443b3f484373881ce7070223ddc4e948fadf5cdaba1"


@pytest.mark.parametrize(
    "make_reference, make_distorted, expected, tolerance",
    [
        (lambda: lcg_noise(64, 64, 42), lambda: gray(128, 64, 64), -47.335725580000002, 0.01),
        (lambda: horizontal_gradient(64, 64), lambda: gray(128, 64, 64), -64.568721479999994, 0.01),
        (lambda: gray(128, 64, 64), lambda: gray(148, 64, 64), 56.058555839999997, 0.15),
        (lambda: gray(128, 64, 64), lambda: gray(178, 64, 64), -8.759422560000001, 0.1),
        (lambda: gray(128, 128, 128), lambda: gray(148, 128, 128), 54.278839169999998, 0.1),
        (lambda: gray(128, 128, 128), lambda: gray(178, 128, 128), -9.823833150000000, 0.1),
    ],
    ids=["noise-vs-uniform-64", "gradient-vs-uniform-64", "shift20-64", "shift50-64", "shift20-128", "shift50-128"],
)
def test_ssimulacra2_matches_the_cpp_reference(make_reference, make_distorted, expected, tolerance):
    assert ssimulacra2(make_reference(), make_distorted()) == pytest.approx(expected, abs=tolerance)


def test_ssimulacra2_identity_monotonicity_and_sizes():
    reference = natural_image(33, 47)
    assert ssimulacra2(reference, reference) == 100.0
    scores = [ssimulacra2(reference, noisy(reference, sigma)) for sigma in (2, 8, 24)]
    assert 100 > scores[0] > scores[1] > scores[2]
    # 12x12 is scored at 12x12 and at 6x6, as the reference does.
    small = natural_image(12, 12)
    assert ssimulacra2(small, small) == 100.0
    assert ssimulacra2(small, noisy(small, 10)) < 100.0
    with pytest.raises(BadInput, match="8x8"):
        ssimulacra2(small[:7], small[:7])


# ---------------------------------------------------------------- SWD and detail


def test_swd_identity_seed_monotonicity_and_levels():
    originals = [natural_image(64, 64, seed) for seed in range(3)]
    assert swd(originals, originals) == 0.0
    mild = [noisy(image, 6, seed=i) for i, image in enumerate(originals)]
    strong = [noisy(image, 30, seed=i) for i, image in enumerate(originals)]
    mild_levels = swd_by_level(originals, mild)
    assert len(mild_levels) == 3  # 64, 32 and 16 px levels
    assert swd_by_level(originals, mild, seed=1) != mild_levels
    assert 0 < np.mean(mild_levels) < swd(originals, strong)
    with pytest.raises(BadInput, match="equal-sized sets"):
        swd(originals, mild[:2])
    with pytest.raises(BadInput, match="16x16"):
        swd([natural_image(15, 40)], [natural_image(15, 40)])


def test_hf_energy_ratio_tracks_detail():
    reference = natural_image(48, 64)
    assert hf_energy_ratio(reference, reference) == pytest.approx(1.0)
    assert hf_energy_ratio(reference, blurred(reference)) < 0.5
    assert hf_energy_ratio(reference, noisy(reference, 20)) > 1.5
    assert hf_energy_ratio(gray(90, 20, 20), gray(200, 20, 20)) == 1.0
    assert hf_energy_ratio(gray(90, 20, 20), natural_image(20, 20)) == math.inf


# ---------------------------------------------------------------- BD-rate


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_rates_scaled_by_0_9_is_minus_10_percent(method):
    rates, psnr = [0.12, 0.25, 0.5, 0.9, 1.6], [28.1, 30.4, 33.0, 35.2, 37.9]
    assert bd_rate(rates, psnr, [0.9 * r for r in rates], psnr, method=method) == pytest.approx(-10.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_on_a_hand_computed_linear_case(method):
    # PSNR = 30 + 2 log2(rate / 100) for the anchor and one dB more for the test. At equal
    # quality the test needs rate / sqrt(2): BD-rate = 2^-0.5 - 1 = -29.289 %; BD-PSNR = 1 dB.
    rates = [100, 200, 400, 800]
    assert bd_rate(rates, [30, 32, 34, 36], rates, [31, 33, 35, 37], method=method) == pytest.approx(
        (2**-0.5 - 1) * 100, abs=1e-9
    )
    assert bd_metric(rates, [30, 32, 34, 36], rates, [31, 33, 35, 37], method=method) == pytest.approx(1.0, abs=1e-9)


def test_bd_matches_the_fau_bjontegaard_package_on_its_example():
    # The x265 example of FAU-LMS/bjontegaard's README; expected values computed with that
    # package (1.3.0), whose pchip variant matches the JVET CTC spreadsheet.
    anchor_rates, anchor_psnr = [9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]
    test_rates, test_psnr = [9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]
    assert bd_rate(anchor_rates, anchor_psnr, test_rates, test_psnr) == pytest.approx(-4.417485350589, abs=1e-9)
    assert bd_rate(anchor_rates, anchor_psnr, test_rates, test_psnr, method="cubic") == pytest.approx(
        -4.420462706, abs=1e-7
    )
    assert bd_metric(anchor_rates, anchor_psnr, test_rates, test_psnr) == pytest.approx(0.119692785425, abs=1e-9)
    assert bd_metric(anchor_rates, anchor_psnr, test_rates, test_psnr, method="cubic") == pytest.approx(
        0.1204094191, abs=1e-8
    )


def test_bd_rejects_unusable_curves():
    with pytest.raises(BadInput, match="do not overlap"):
        bd_rate([1, 2, 3, 4], [30, 31, 32, 33], [1, 2, 3, 4], [40, 41, 42, 43])
    with pytest.raises(BadInput, match="at least 4 points"):
        bd_rate([1, 2, 3], [30, 31, 32], [1, 2, 3], [30.5, 31.5, 32.5], method="cubic")
    with pytest.raises(BadInput, match="positive"):
        bd_rate([0, 2, 3, 4], [30, 31, 32, 33], [1, 2, 3, 4], [30, 31, 32, 33])


# ---------------------------------------------------------------- learned metrics (random backbones)


def random_head(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random non-negative learned heads (as the published ones are), on top of PyTorch's
    default random initialisation of the backbone (seeded by the caller)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.startswith("lin") or name in ("alpha", "beta"):
                parameter.copy_(torch.rand(parameter.shape, generator=generator))
    return module


# Key names and shapes of the upstream files, written out from torchvision's `alexnet()`
# and `vgg16()` and from the LPIPS / DISTS releases, independently of the modules under test.
ALEXNET_FILE_SHAPES = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}  # fmt: skip
LPIPS_LINEAR_FILE_SHAPES = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
VGG16_CONV_SHAPES = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
                     (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]  # fmt: skip
VGG16_FILE_SHAPES = {
    **{
        f"features.{index}.{kind}": shape
        for index, (out, inp) in zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), VGG16_CONV_SHAPES, strict=True)
        for kind, shape in (("weight", (out, inp, 3, 3)), ("bias", (out,)))
    },
    "classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}  # fmt: skip
DISTS_HEAD_FILE_SHAPES = {"alpha": (1, 1475, 1, 1), "beta": (1, 1475, 1, 1)}


def fake_checkpoint(path, shapes: dict, seed: int) -> None:
    """A file laid out like the upstream one. Tensors above 100k values are stored as broadcast
    views of one random value, so a 4096x9216 classifier costs a few bytes on disk."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if math.prod(shape) > 100_000:
            state[key] = torch.rand(1, generator=generator).expand(shape)
        else:
            state[key] = torch.rand(shape, generator=generator) * 0.1
    torch.save(state, path)


def test_lpips_on_random_weights():
    torch.manual_seed(0)
    model = random_head(LPIPS(), seed=0)
    reference = natural_image(48, 64)
    distance = lambda a, b: lpips_module.lpips(a, b, model=model)  # noqa: E731
    assert distance(reference, reference) == pytest.approx(0.0, abs=1e-7)
    mild, strong = noisy(reference, 8), noisy(reference, 40)
    assert distance(reference, mild) == pytest.approx(distance(mild, reference), rel=1e-5)
    assert 0 < distance(reference, mild) < distance(reference, strong)
    with pytest.raises(BadInput, match="31"):
        distance(reference[:30], reference[:30])


def test_lpips_loads_upstream_layout_strictly(tmp_path):
    alexnet, linear = tmp_path / "alexnet.pth", tmp_path / "alex.pth"
    fake_checkpoint(alexnet, ALEXNET_FILE_SHAPES, seed=1)
    fake_checkpoint(linear, LPIPS_LINEAR_FILE_SHAPES, seed=2)
    model = LPIPS.from_files(alexnet=alexnet, linear=linear)
    expected = torch.load(linear, weights_only=True)["lin2.model.1.weight"]
    assert torch.equal(model.lin2.model[1].weight, expected)
    image = natural_image(40, 40)
    assert lpips_module.lpips(image, noisy(image, 10), model=model) > 0

    fake_checkpoint(linear, {**LPIPS_LINEAR_FILE_SHAPES, "lin5.model.1.weight": (1, 8, 1, 1)}, seed=2)
    with pytest.raises(WeightsError, match="unexpected.*lin5"):
        LPIPS.from_files(alexnet=alexnet, linear=linear)
    without_head = {key: shape for key, shape in ALEXNET_FILE_SHAPES.items() if key != "classifier.6.bias"}
    fake_checkpoint(alexnet, without_head, seed=1)
    with pytest.raises(WeightsError, match="classifier.6.bias"):
        LPIPS.from_files(alexnet=alexnet, linear=linear)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth"):
        LPIPS.from_files(alexnet=tmp_path / "garbage.pth", linear=linear)


def test_dists_on_random_weights():
    torch.manual_seed(0)
    model = random_head(DISTS(), seed=3)
    reference = natural_image(40, 48)
    distance = lambda a, b: dists_module.dists(a, b, model=model)  # noqa: E731
    assert distance(reference, reference) == pytest.approx(0.0, abs=1e-6)
    mild, strong = noisy(reference, 8), noisy(reference, 40)
    assert distance(reference, mild) == pytest.approx(distance(mild, reference), rel=1e-4)
    assert 0 < distance(reference, mild) < distance(reference, strong)


def test_dists_loads_upstream_layout_strictly(tmp_path):
    vgg16, heads = tmp_path / "vgg16.pth", tmp_path / "weights.pt"
    fake_checkpoint(vgg16, VGG16_FILE_SHAPES, seed=3)
    fake_checkpoint(heads, DISTS_HEAD_FILE_SHAPES, seed=4)
    model = DISTS.from_files(vgg16=vgg16, alpha_beta=heads)
    assert torch.equal(model.features[28].bias, torch.load(vgg16, weights_only=True)["features.28.bias"])
    assert torch.equal(model.beta, torch.load(heads, weights_only=True)["beta"])

    fake_checkpoint(heads, {**DISTS_HEAD_FILE_SHAPES, "beta": (1, 1474, 1, 1)}, seed=4)
    with pytest.raises(WeightsError, match="wrong shape.*beta"):
        DISTS.from_files(vgg16=vgg16, alpha_beta=heads)


def test_inception_layout_and_strict_loading():
    with torch.device("meta"):
        model = FIDInceptionV3()
    state = model.state_dict()
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    # torchvision Inception3(num_classes=1008, aux_logits=False): 566 tensors, no AuxLogits.
    assert len(shapes) == 566 and not any(key.startswith("AuxLogits") for key in shapes)
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["fc.weight"] == (1008, 2048)
    with pytest.raises(WeightsError, match="missing.*fc.bias"):
        load_exact(model, {k: v for k, v in state.items() if k != "fc.bias"}, "partial.pth")
    with pytest.raises(WeightsError, match="unexpected.*AuxLogits"):
        load_exact(model, {**state, "AuxLogits.fc.weight": torch.zeros(1000, 768)}, "aux.pth")
    # Files saved before PyTorch 0.4.1 lack BatchNorm's counter; PyTorch loads them, so must we.
    block = BasicConv2d(3, 4, kernel_size=1)
    old_state = {k: torch.ones_like(v) for k, v in block.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_exact(block, old_state, "old.pth")
    assert torch.equal(block.bn.running_var, torch.ones(4))


def test_inception_pool3_on_random_weights():
    torch.manual_seed(0)
    model = FIDInceptionV3()
    # 75x75 is the smallest input the network accepts; the real pipeline feeds 299x299.
    batch = torch.rand(2, 3, 75, 75, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        features = model.pool3(batch)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])


class RecordingNetwork:
    """Stands in for the Inception to observe exactly what InceptionFeatures feeds it."""

    def __init__(self) -> None:
        self.inputs = []

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x)
        return x.mean(dim=(2, 3))


def test_inception_preprocessing_is_pytorch_fids():
    network = RecordingNetwork()
    images = np.stack([natural_image(40, 52, seed) for seed in range(3)])
    features = InceptionFeatures(model=network, batch_size=2)(images)
    assert features.shape == (3, 3) and features.dtype == np.float64
    fed = torch.cat(network.inputs)
    # pytorch-fid: ToTensor (x / 255), bilinear resize to 299 without antialias, then 2x - 1.
    expected = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    expected = 2 * torch.nn.functional.interpolate(expected, size=(299, 299), mode="bilinear", align_corners=False) - 1
    assert fed.shape == (3, 3, 299, 299) and torch.equal(fed, expected)


def test_every_backbone_file_is_in_the_lock():
    rows = {(row.bundle, row.path) for row in weights.load_lock()}
    assert (lpips_module.BUNDLE, lpips_module.ALEXNET_FILE) in rows
    assert (lpips_module.BUNDLE, lpips_module.LINEAR_FILE) in rows
    assert (dists_module.BUNDLE, dists_module.VGG16_FILE) in rows
    assert (dists_module.BUNDLE, dists_module.ALPHA_BETA_FILE) in rows
    assert (inception_module.BUNDLE, inception_module.WEIGHTS_FILE) in rows


def test_missing_backbone_offline_is_a_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    monkeypatch.setenv("ENHANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ENHANCE_MIRROR", raising=False)
    lpips_module.default_lpips.cache_clear()
    image = natural_image(40, 40)
    with pytest.raises(WeightsError):
        lpips_module.lpips(image, image)


# ---------------------------------------------------------------- FID / KID statistics


def cheap_features(patches: np.ndarray) -> np.ndarray:
    """Stand-in for Inception: mean and spread of each colour on a 4x4 grid of cells (96-d)."""
    n, height, width, _ = patches.shape
    cells = patches.reshape(n, 4, height // 4, 4, width // 4, 3).astype(np.float64) / 255.0
    return np.concatenate([cells.mean(axis=(2, 4)).reshape(n, -1), cells.std(axis=(2, 4)).reshape(n, -1)], axis=1)


def test_hific_patching():
    blank = lambda height, width: np.zeros((height, width, 3), dtype=np.uint8)  # noqa: E731
    assert len(hific_patches(blank(512, 768))) == 6 + 2  # 3x2 grid, then 2x1 shifted by 128
    assert len(hific_patches(blank(300, 300))) == 1  # too small for the shifted grid
    assert hific_patches(blank(255, 1000)) == []
    image = natural_image(384, 384)
    patches = hific_patches(image)
    assert len(patches) == 2 and np.array_equal(patches[1], image[128:384, 128:384])


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    samples = np.random.default_rng(0).normal(size=(400, 6))
    shift = np.array([0.5, -1.0, 0.0, 2.0, 0.25, 0.0])
    assert frechet_distance(samples, samples + shift) == pytest.approx(float(shift @ shift), abs=1e-8)
    assert frechet_distance(samples, samples) == pytest.approx(0.0, abs=1e-8)


def test_kernel_distance_is_the_unbiased_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 5)), rng.normal(0.3, 1.0, size=(30, 5))
    kernel = lambda a, b: (a @ b.T / 5 + 1) ** 3  # noqa: E731
    m = len(x)
    off_diagonal = lambda k: k.sum() - np.trace(k)  # noqa: E731
    expected = (off_diagonal(kernel(x, x)) + off_diagonal(kernel(y, y))) / (m * (m - 1)) - 2 * kernel(x, y).sum() / m**2
    # With subsets of every sample the estimate does not depend on the draw.
    assert kernel_distance(x, y, subsets=3, subset_size=30) == pytest.approx(expected, rel=1e-10)


def test_fid_and_kid_on_image_sets():
    originals = [natural_image(160, 160, seed) for seed in range(4)]
    mild = [noisy(image, 10, seed=i) for i, image in enumerate(originals)]
    strong = [blurred(noisy(image, 30, seed=i), 7) for i, image in enumerate(originals)]
    score = lambda metric, a, b: metric(a, b, patch_size=64, features=cheap_features)  # noqa: E731
    assert score(fid, originals, originals) == pytest.approx(0.0, abs=1e-6)
    assert 0 < score(fid, originals, mild) < score(fid, originals, strong)
    # The unbiased estimate of identical sets is slightly negative (it drops the diagonal).
    assert score(kid, originals, originals) < score(kid, originals, mild) < score(kid, originals, strong)
    with pytest.raises(BadInput, match="no image is at least 256x256"):
        fid([natural_image(200, 300)], [natural_image(200, 300)], features=cheap_features)


# ---------------------------------------------------------------- tables


def test_tables_cover_every_metric():
    assert set(metrics.FULL_REFERENCE) == {
        "psnr-rgb",
        "psnr-y",
        "psnr-b",
        "ms-ssim-rgb",
        "ssimulacra2",
        "hf-energy-ratio",
    }
    assert set(metrics.DISTRIBUTION) == {"swd", "fid", "kid"}
    assert set(metrics.GOAL) == set(metrics.FULL_REFERENCE) | set(metrics.LEARNED_FULL_REFERENCE) | set(
        metrics.DISTRIBUTION
    )
    reference = natural_image(161, 165)
    distorted = noisy(reference, 6)
    best = {
        "psnr-rgb": math.inf,
        "psnr-y": math.inf,
        "psnr-b": math.inf,
        "ms-ssim-rgb": 1.0,
        "ssimulacra2": 100.0,
        "hf-energy-ratio": 1.0,
    }
    for name, metric in metrics.FULL_REFERENCE.items():
        assert metric(reference, reference) == pytest.approx(best[name]), name
        value = metric(reference, distorted)
        assert isinstance(value, float) and math.isfinite(value) and value != pytest.approx(best[name]), name
