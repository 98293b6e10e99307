import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import TINY_MODEL, make_tiny_bundle, natural_image
from enhance.consistency import project_to_jpeg
from enhance.jpeg import read_dct_coefficients
from enhance.enhance_one import CodedImage, enhance_decoded
from enhance.enhancers import load_dirac
from enhance.enhancers.dirac import (
    BundleError,
    DiracConfig,
    DiracUNet,
    DiracUNetConfig,
    LateStartDDIM,
    ScheduleConfig,
)
from enhance.enhancers.dirac.pipeline import load_state_dict_strict
from enhance.errors import BadInput, EnhanceError
from enhance.train import dirac as train_module
from enhance.train.adversarial import AdversarialOptions
from enhance.train.dirac import DiracTask, TrainOptions, save_bundle, train
from enhance.train.thresholds import write_thresholds


def psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def jpeg_bytes(image, quality, subsampling=2):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    return buffer.getvalue()


def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --- model and schedule -------------------------------------------------------


def test_model_predicts_a_residual_of_the_input_shape():
    torch.manual_seed(0)
    model = DiracUNet(TINY_MODEL)
    x = torch.randn(2, 3, 32, 48)
    out = model(x, x, torch.tensor([0, 199]), torch.tensor([0.1, 0.9]))
    assert out.shape == x.shape


def test_model_rejects_sizes_off_its_grid():
    model = DiracUNet(TINY_MODEL)
    x = torch.randn(1, 3, 30, 48)
    with pytest.raises(ValueError, match="multiple of 4"):
        model(x, x, torch.tensor([5]), torch.tensor([0.5]))


def test_model_config_round_trips_and_is_strict():
    config = DiracUNetConfig(channels=(8, 16, 32), blocks=(1, 2, 1))
    assert DiracUNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown"):
        DiracUNetConfig.from_dict({**config.to_dict(), "attention": True})
    with pytest.raises(ValueError):
        DiracUNetConfig.from_dict({**config.to_dict(), "blocks": [1]})


def test_schedule_starts_late_and_walks_down_evenly():
    schedule = LateStartDDIM(ScheduleConfig())
    assert [int(t) for t in schedule.timesteps] == list(range(199, 0, -10))
    alpha_bar = float(schedule.alphas_cumprod[199])
    assert schedule.initial_noise_scale() == pytest.approx((1 - alpha_bar) ** 0.5)
    assert 0.55 < schedule.initial_noise_scale() < 0.65  # linear betas: 20% of the schedule
    short = LateStartDDIM(ScheduleConfig(t_start=200, schedule_steps=4))
    assert [int(t) for t in short.timesteps] == [199, 149, 99, 49]
    with pytest.raises(ValueError):
        ScheduleConfig.from_dict({"t_start": 200, "schedule_steps": 7})


def test_ddim_step_with_a_perfect_prediction_recovers_the_residual():
    schedule = LateStartDDIM(ScheduleConfig(schedule_steps=4))
    residual = torch.randn(1, 3, 8, 8)
    noise = torch.randn(1, 3, 8, 8)
    alpha = schedule.alphas_cumprod[int(schedule.timesteps[0])]
    sample = alpha.sqrt() * residual + (1 - alpha).sqrt() * noise
    for timestep in schedule.timesteps:
        sample = schedule.step(residual, timestep, sample)
    assert torch.allclose(sample, residual, atol=1e-5)



@pytest.mark.parametrize("schedule_steps", [20, 4, 1])
def test_the_schedule_steps_as_diffusers_ddim_does(schedule_steps):
    from diffusers import DDIMScheduler

    schedule = LateStartDDIM(ScheduleConfig(schedule_steps=schedule_steps))
    reference = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", prediction_type="sample",
        clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing",
    )
    reference.set_timesteps(1000 // (200 // schedule_steps))
    assert torch.equal(schedule.timesteps, reference.timesteps[-schedule_steps:])
    assert torch.allclose(schedule.alphas_cumprod, reference.alphas_cumprod)
    generator = torch.Generator().manual_seed(0)
    ours = theirs = torch.randn(1, 3, 8, 8, generator=generator)
    for timestep in schedule.timesteps:
        prediction = torch.randn(1, 3, 8, 8, generator=generator)
        ours = schedule.step(prediction, timestep, ours)
        theirs = reference.step(prediction, timestep, theirs, eta=0.0).prev_sample
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_enhancing_with_dirac_does_not_import_diffusers(tiny_bundle):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from enhance.enhancers import load_dirac\n"
        f"load_dirac('jpeg', bundle={str(tiny_bundle)!r}).enhance(np.zeros((16, 16, 3), np.uint8), rate=20, steps=2)\n"
        "sys.exit('diffusers' in sys.modules)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # importing it costs ~2 s


# --- bundles ----------------------------------------------------------------------


def test_bundle_config_is_read_strictly(tiny_bundle):
    path = tiny_bundle / "config.json"
    data = json.loads(path.read_text())
    assert DiracConfig.from_dict(data).model == TINY_MODEL
    # Version 1 predates the refiner's blocks: such a bundle has none; version 2 must say so.
    # Version 2 predates the first step's own network: one network makes every step.
    version_2 = {k: v for k, v in data.items() if k != "first_step_model"} | {"version": 2}
    version_1_model = {k: v for k, v in data["model"].items() if k != "refine_blocks"}
    assert DiracConfig.from_dict({**version_2, "version": 1, "model": version_1_model}).model == TINY_MODEL
    assert DiracConfig.from_dict(version_2).first_step_model is None
    own_first_step = {**data, "first_step_model": {**data["model"], "mid_blocks": 2}}
    assert DiracConfig.from_dict(own_first_step).first_step_model == replace(TINY_MODEL, mid_blocks=2)
    bad_configs = (
        {**data, "version": 4}, {**data, "model": version_1_model}, {**version_2, "version": 1}, {**data, "extra": 1},
        {**data, "format": "other"}, {**data, "default_steps": 99}, {**version_2, "first_step_model": None},
        {k: v for k, v in data.items() if k != "first_step_model"},
        {**data, "first_step_model": {**data["model"], "image_channels": 1}},
        {**data, "first_step_model": {**data["model"], "mid_blocks": 2.0}},
        {**data, "first_step_model": {**data["model"], "rate_conditioned": False}},
    )
    for bad in bad_configs:
        path.write_text(json.dumps(bad))
        with pytest.raises(BundleError, match="config.json"):
            DiracConfig.load(path)
    path.write_text("{not json")
    with pytest.raises(BundleError, match="config.json"):
        load_dirac("jpeg", bundle=tiny_bundle)


def test_bundle_weights_are_loaded_strictly(tiny_bundle):
    weights = tiny_bundle / "model.safetensors"
    state = load_file(str(weights))
    name = next(iter(state))
    save_file({k: v for k, v in state.items() if k != name}, str(weights))
    with pytest.raises(BundleError, match="missing"):
        load_dirac("jpeg", bundle=tiny_bundle)
    save_file({**state, name: torch.zeros(3)}, str(weights))
    with pytest.raises(BundleError, match="shape"):
        load_dirac("jpeg", bundle=tiny_bundle)
    weights.write_bytes(b"\x80\x04pickle-looking bytes")
    with pytest.raises(BundleError, match="safetensors"):
        load_dirac("jpeg", bundle=tiny_bundle)


def test_enhancer_refuses_a_model_trained_for_another_codec(tiny_bundle):
    config = DiracConfig.load(tiny_bundle / "config.json")
    replace(config, codec="webp").save(tiny_bundle / "config.json")
    with pytest.raises(EnhanceError, match="trained for 'webp'"):
        load_dirac("jpeg", bundle=tiny_bundle)


# --- enhancement ------------------------------------------------------------------


def test_enhancement_is_deterministic_and_seeded(tiny_bundle):
    image = natural_image(33, 47)
    enhancer = load_dirac("jpeg", bundle=tiny_bundle)
    first = enhancer.enhance(image, rate=20, steps=3, seed=7)
    assert first.shape == image.shape and first.dtype == np.uint8
    again = load_dirac("jpeg", bundle=tiny_bundle).enhance(image, rate=20, steps=3, seed=7)
    assert np.array_equal(first, again)
    other = enhancer.enhance(image, rate=20, steps=3, seed=8)
    assert not np.array_equal(first, other)


def test_early_stops_of_one_trajectory_match_separate_runs(tiny_bundle):
    image = natural_image(40, 56, seed=1)
    enhancer = load_dirac("jpeg", bundle=tiny_bundle)
    stops = enhancer.enhance_stops(image, rate=30, stops=[1, 4], seed=3)
    assert np.array_equal(stops[1], enhancer.enhance(image, rate=30, steps=1, seed=3))
    assert np.array_equal(stops[4], enhancer.enhance(image, rate=30, steps=4, seed=3))
    assert not np.array_equal(stops[1], stops[4])
    with pytest.raises(ValueError, match="1..20"):
        enhancer.enhance(image, rate=30, steps=21)


def test_grey_input_gives_grey_output(tiny_bundle):
    grey = natural_image(40, 56, seed=4)[..., :1].repeat(3, axis=2)
    enhancer = load_dirac("jpeg", bundle=tiny_bundle)
    stops = enhancer.enhance_stops(grey, rate=20, stops=[1, 3], seed=2)
    for output in stops.values():
        assert np.array_equal(output[..., 0], output[..., 1]) and np.array_equal(output[..., 1], output[..., 2])
        assert not np.array_equal(output, grey)
    colour = natural_image(40, 56, seed=4)
    coloured = enhancer.enhance(colour, rate=20, steps=1, seed=2)
    assert not np.array_equal(coloured[..., 0], coloured[..., 1])


def test_tiles_blend_without_seams(tiny_bundle):
    image = natural_image(200, 333, seed=2)
    enhancer = load_dirac("jpeg", bundle=tiny_bundle)
    whole = enhancer.enhance(image, rate=20, steps=3, seed=1).astype(int)
    enhancer.tile = 96
    tiled = enhancer.enhance(image, rate=20, steps=3, seed=1).astype(int)
    assert np.abs(whole - tiled).max() <= 2
    assert np.abs(whole - tiled).mean() < 0.05


def test_rate_dependent_thresholds_bound_the_residual(tiny_bundle):
    config = DiracConfig.load(tiny_bundle / "config.json")
    narrow = replace(config.thresholds, lower=((-0.02,) * 3,) * 3, upper=((0.02,) * 3,) * 3)
    replace(config, thresholds=narrow).save(tiny_bundle / "config.json")
    image = natural_image(48, 64)
    out = load_dirac("jpeg", bundle=tiny_bundle).enhance(image, rate=10, steps=2).astype(int)
    bound = 0.02 / config.residual_scale * 127.5
    assert np.abs(out - image).max() <= np.ceil(bound) + 1
    lower, upper = config.thresholds.at(27.5)
    assert np.allclose(lower, -0.75) and np.allclose(upper, 0.75)  # halfway between rates 5 and 50


def test_rate_conditioned_model_needs_a_rate(tiny_bundle):
    enhancer = load_dirac("jpeg", bundle=tiny_bundle)
    with pytest.raises(ValueError, match="rate"):
        enhancer.enhance(natural_image(32, 32), rate=None)


def test_jpeg_rate_comes_from_the_file(tiny_bundle, monkeypatch):
    image = natural_image(48, 64)
    data = jpeg_bytes(image, 23)
    enhancer = load_dirac("jpeg", bundle=tiny_bundle)
    seen = {}
    original = enhancer.enhance

    def spy(decoded, *, rate, steps=None, seed=0):
        seen["rate"] = rate
        return original(decoded, rate=rate, steps=steps, seed=seed)

    monkeypatch.setattr(enhancer, "enhance", spy)
    enhance_decoded(decode(data), CodedImage.read(data), enhancer=enhancer, steps=1)
    assert seen["rate"] == pytest.approx(23, abs=0.5)


# --- JPEG consistency -------------------------------------------------------------


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_projection_reencodes_to_the_files_coefficients(subsampling):
    original = natural_image(133, 201)
    data = jpeg_bytes(original, 30, subsampling)
    decoded = decode(data)
    rng = np.random.default_rng(0)
    perturbed = np.clip(decoded + rng.normal(0, 6, decoded.shape), 0, 255).astype(np.uint8)
    projected = project_to_jpeg(perturbed, data)
    buffer = io.BytesIO()
    qtables = Image.open(io.BytesIO(data)).quantization
    Image.fromarray(projected).save(buffer, format="JPEG", qtables=qtables, subsampling=subsampling)
    source, again = read_dct_coefficients(data), read_dct_coefficients(buffer.getvalue())
    for a, b in ((source.y, again.y), (source.cb, again.cb), (source.cr, again.cr)):
        assert np.mean(a == b) > 0.995
    # Projection onto a convex set holding the original cannot move away from it.
    assert psnr(original, projected) >= psnr(original, perturbed) - 0.05


def test_projection_handles_greyscale_and_rejects_mismatches():
    grey = natural_image(40, 56)[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=20)
    data = buffer.getvalue()
    decoded = np.repeat(np.asarray(Image.open(io.BytesIO(data)))[..., None], 3, axis=2)
    projected = project_to_jpeg(decoded, data)
    assert np.array_equal(projected[..., 0], projected[..., 1])
    assert np.abs(projected.astype(int) - decoded).max() <= 2
    with pytest.raises(BadInput, match="40"):
        project_to_jpeg(decoded[:32], data)
    cmyk = io.BytesIO()
    Image.fromarray(natural_image(16, 16)).convert("CMYK").save(cmyk, format="JPEG")
    with pytest.raises(BadInput, match="YCbCr"):
        project_to_jpeg(natural_image(16, 16), cmyk.getvalue())
    with pytest.raises(BadInput):
        project_to_jpeg(decoded, data[: len(data) // 3])


def test_consistent_enhancement_keeps_the_files_evidence(tiny_bundle):
    data = jpeg_bytes(natural_image(64, 80), 15)
    decoded = decode(data)
    enhancer = load_dirac("jpeg", bundle=tiny_bundle)
    free = enhance_decoded(decoded, CodedImage.read(data), enhancer=enhancer, steps=2)
    consistent = enhance_decoded(decoded, CodedImage.read(data), enhancer=enhancer, steps=2, consistent=True)
    assert not np.array_equal(free, consistent)
    with pytest.raises(BadInput, match="JPEG"):
        png = io.BytesIO()
        Image.fromarray(decoded).save(png, format="PNG")
        enhance_decoded(decoded, CodedImage.read(png.getvalue(), rate=15), enhancer=enhancer, consistent=True)


# --- training ---------------------------------------------------------------------


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(3):
        Image.fromarray(natural_image(80, 96, seed=seed)).save(folder / f"p{seed}.png")
    return folder


def test_training_checkpoints_resumes_and_writes_a_loadable_bundle(photo_folder, tmp_path):
    out = tmp_path / "run"
    options = TrainOptions(
        codec="jpeg", data=[photo_folder], val=[photo_folder], out=out, steps=3, batch=2, crop=32,
        log_every=1, val_every=3, checkpoint_every=2, val_images=1, model=TINY_MODEL, device="cpu",
    )
    messages = []
    bundle = train(options, log=messages.append)
    log = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert any("val" in r for r in log)
    assert (out / "checkpoint.safetensors").read_bytes()[:8] != b"\x80\x04\x95"[:8]
    train(replace(options, steps=5), log=messages.append)
    assert any("resumed" in m and "step 3" in m for m in messages)
    log = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r][-2:] == [4, 5]
    enhancer = load_dirac("jpeg", bundle=bundle)
    assert enhancer.enhance(natural_image(33, 47), rate=50, steps=1).shape == (33, 47, 3)
    # A machine that kept only the committed bundle continues from its weights.
    fresh = replace(options, out=tmp_path / "continued", steps=1, init_from=bundle, val=None)
    train(fresh, log=messages.append)
    assert any(m.startswith("initialised from") for m in messages)


def test_a_first_step_share_of_one_trains_the_fidelity_end_alone_from_noise_alone(photo_folder, tmp_path):
    options = TrainOptions(codec="jpeg", data=[photo_folder], out=tmp_path / "run", crop=32, model=TINY_MODEL, device="cpu")
    residual = torch.full((64, 3, 8, 8), 0.5)
    for share, expected in ((1.0, 64), (0.25, 16)):
        task = DiracTask(replace(options, start_step_share=share), log=lambda message: None)
        torch.manual_seed(0)
        noisy, t = task._noised(residual)
        at_start = t == task.t_first
        assert abs(int(at_start.sum()) - expected) <= 8
        # Sampling starts from noise alone, so the first step sees no trace of the residual.
        assert abs(float(noisy[at_start].mean())) < 0.05
        assert (t <= task.t_first).all()
    # A first step's own network is trained at that step alone, whatever the share.
    first_step = replace(options, start_step_share=0.25, first_step_network=True, init_from=make_tiny_bundle(tmp_path / "base"))
    task = DiracTask(first_step, log=lambda message: None)
    assert (task._noised(residual)[1] == task.t_first).all()


def test_a_trained_bundle_grows_a_refiner_that_starts_as_the_identity(photo_folder, tmp_path):
    plain = replace(TINY_MODEL, refine_channels=0)
    base = tmp_path / "base"
    train(TrainOptions(codec="jpeg", data=[photo_folder], out=base, steps=1, batch=2, crop=32, model=plain, device="cpu"))
    grown = replace(plain, refine_channels=4)
    before = DiracUNet(plain)
    load_state_dict_strict(before, base / "bundle" / "model.safetensors")
    after = DiracUNet(grown)
    load_state_dict_strict(after, base / "bundle" / "model.safetensors", new_modules=("refiner.",))
    inputs = (torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32), torch.tensor([50]), torch.tensor([0.2]))
    assert torch.equal(before(*inputs), after(*inputs))
    with pytest.raises(BundleError, match="missing"):
        load_state_dict_strict(after, base / "bundle" / "model.safetensors")

    options = TrainOptions(
        codec="jpeg", data=[photo_folder], out=tmp_path / "grown", steps=2, batch=2, crop=32,
        model=grown, init_from=base / "bundle", device="cpu",
    )
    bundle = train(options)
    assert DiracConfig.load(bundle / "config.json").model.refine_channels == 4
    refined = load_file(str(bundle / "model.safetensors"))
    assert refined["refiner.conv2.weight"].abs().max() > 0
    wider = replace(options, out=tmp_path / "wider", model=replace(grown, channels=(8, 24)))
    with pytest.raises(EnhanceError, match="only be grown by a refinement stage"):
        train(wider)
    # A resume takes the run's own model; asking for another one is refused.
    resumed = train(replace(options, steps=3, model=None, init_from=None))
    assert DiracConfig.load(resumed / "config.json").model.refine_channels == 4
    with pytest.raises(EnhanceError, match="not the one asked for"):
        train(replace(options, steps=4, model=plain))


def test_a_trained_bundle_grows_deeper_and_starts_as_the_same_function(photo_folder, tmp_path):
    base = tmp_path / "base"
    train(TrainOptions(codec="jpeg", data=[photo_folder], out=base, steps=1, batch=2, crop=32, model=TINY_MODEL, device="cpu"))
    deeper = replace(TINY_MODEL, blocks=(1, 2), mid_blocks=3)
    options = TrainOptions(
        codec="jpeg", data=[photo_folder], out=tmp_path / "deeper", steps=0, batch=2, crop=32,
        model=deeper, init_from=base / "bundle", device="cpu",
    )
    task = DiracTask(options, log=lambda message: None)
    assert task.new_modules == ("mid.1.", "mid.2.", "encoder.1.1.", "decoder.1.1.")
    grown = task.build(task.config)
    before = DiracUNet(TINY_MODEL).to(memory_format=torch.channels_last)  # as the trainer builds it
    load_state_dict_strict(before, base / "bundle" / "model.safetensors")
    inputs = (torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32), torch.tensor([50]), torch.tensor([0.2]))
    assert torch.equal(before(*inputs), grown(*inputs))
    bundle = train(replace(options, steps=2))
    assert DiracConfig.load(bundle / "config.json").model == deeper
    assert load_file(str(bundle / "model.safetensors"))["mid.2.conv2.weight"].abs().max() > 0
    for shallower in (replace(TINY_MODEL, mid_blocks=0), replace(TINY_MODEL, blocks=(1, 0)), replace(TINY_MODEL, refine_channels=2)):
        with pytest.raises(EnhanceError, match="only be grown"):
            train(replace(options, out=tmp_path / "refused", model=shallower))


def test_a_trained_refiner_grows_wider_and_deeper_and_starts_as_the_same_function(photo_folder, tmp_path):
    base = tmp_path / "base"
    train(TrainOptions(codec="jpeg", data=[photo_folder], out=base, steps=2, batch=2, crop=32, model=TINY_MODEL, device="cpu"))
    grown = replace(TINY_MODEL, refine_channels=7, refine_blocks=2)
    options = TrainOptions(
        codec="jpeg", data=[photo_folder], out=tmp_path / "grown", steps=0, batch=2, crop=32,
        model=grown, init_from=base / "bundle", device="cpu",
    )
    task = DiracTask(options, log=lambda message: None)
    assert task.new_modules == ("refiner.blocks.0.", "refiner.blocks.1.")
    model = task.build(task.config)
    before = DiracUNet(TINY_MODEL).to(memory_format=torch.channels_last)
    load_state_dict_strict(before, base / "bundle" / "model.safetensors")
    inputs = (torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32), torch.tensor([50]), torch.tensor([0.2]))
    assert torch.allclose(before(*inputs), model(*inputs), atol=1e-6)
    # The new channels are live (their FiLM rows and input weights are fresh), not padding.
    assert model.refiner.film.weight[4:7].abs().max() > 0 and model.refiner.film.weight[11:].abs().max() > 0
    bundle = train(replace(options, steps=2))
    assert DiracConfig.load(bundle / "config.json").model == grown
    trained = load_file(str(bundle / "model.safetensors"))
    assert trained["refiner.conv2.weight"][:, 4:].abs().max() > 0
    assert trained["refiner.blocks.1.conv2.weight"].abs().max() > 0
    with pytest.raises(ValueError, match="refine_blocks needs"):
        replace(TINY_MODEL, refine_channels=0, refine_blocks=1).validate()


def _with_own_first_step(bundle, seed: int | None):
    """`bundle` given a first-step network: a copy of its own (seed None) or a random one."""
    config = DiracConfig.load(bundle / "config.json")
    later = DiracUNet(config.model)
    load_state_dict_strict(later, bundle / "model.safetensors")
    first = DiracUNet(config.model)
    first.load_state_dict(later.state_dict())
    if seed is not None:
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in first.parameters():
                p.normal_(0, 0.05)
    save_bundle(bundle, later, replace(config, first_step_model=config.model), first_step=first)
    return bundle


def test_a_bundle_with_its_own_first_step_network_samples_the_first_step_with_it_only(tmp_path):
    image = natural_image(40, 56, seed=1)
    single = load_dirac("jpeg", bundle=make_tiny_bundle(tmp_path / "single"))
    same = load_dirac("jpeg", bundle=_with_own_first_step(make_tiny_bundle(tmp_path / "same"), seed=None))
    own = load_dirac("jpeg", bundle=_with_own_first_step(make_tiny_bundle(tmp_path / "own"), seed=5))
    reference = single.enhance_stops(image, rate=30, stops=[1, 2, 4], seed=3)
    # Its own copy of the same weights changes nothing: the file is read and used as the first step.
    assert all(np.array_equal(reference[k], v) for k, v in same.enhance_stops(image, rate=30, stops=[1, 2, 4], seed=3).items())
    stops = own.enhance_stops(image, rate=30, stops=[1, 2, 4], seed=3)
    assert not np.array_equal(stops[1], reference[1]) and not np.array_equal(stops[2], reference[2])
    assert single.identity != same.identity
    # A later step's own prediction is the later network's: from the first step's sample it
    # equals the single-network bundle's, which shares that network.
    pipeline, config = own.pipeline, own.config
    decoded, noise = torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(1, 3, 32, 32)
    sample = noise * pipeline.schedule.initial_noise_scale()
    t, rate = torch.full((1,), int(pipeline.schedule.timesteps[1])), torch.full((1,), config.rate.normalise(30))
    fp32 = lambda network: network.float()(sample, decoded, t, rate)  # noqa: E731
    assert torch.equal(fp32(own.pipeline.model), fp32(single.pipeline.model))
    (tmp_path / "own" / "first_step.safetensors").unlink()
    with pytest.raises(BundleError, match="first_step.safetensors"):
        load_dirac("jpeg", bundle=tmp_path / "own")


def test_training_a_first_step_network_keeps_the_later_steps_and_resumes(photo_folder, tmp_path):
    base = make_tiny_bundle(tmp_path / "base")
    options = TrainOptions(
        codec="jpeg", data=[photo_folder], val=[photo_folder], out=tmp_path / "first", steps=2, batch=2, crop=32,
        val_every=2, val_images=1, init_from=base, first_step_network=True, device="cpu",
    )
    bundle = train(options)
    config = DiracConfig.load(bundle / "config.json")
    assert config.first_step_model == config.model == TINY_MODEL
    later, first = load_file(str(bundle / "model.safetensors")), load_file(str(bundle / "first_step.safetensors"))
    assert all(torch.equal(later[k], v) for k, v in load_file(str(base / "model.safetensors")).items())
    assert any(not torch.equal(first[k], later[k]) for k in later)
    assert load_dirac("jpeg", bundle=bundle).enhance(natural_image(33, 47), rate=50, steps=2).shape == (33, 47, 3)
    # It resumes with the later steps from its checkpoint alone, and only as a first-step run.
    resumed = train(replace(options, steps=3, init_from=None))
    assert torch.equal(load_file(str(resumed / "model.safetensors"))["head.weight"], later["head.weight"])
    with pytest.raises(EnhanceError, match="'dirac-first-step', not 'dirac'"):
        train(replace(options, steps=4, first_step_network=False))
    with pytest.raises(EnhanceError, match="--init-from"):
        train(replace(options, out=tmp_path / "alone", init_from=None))
    # The first step's network grows on its own (it alone decides the fidelity end's cost).
    deeper = train(replace(options, out=tmp_path / "deeper", steps=1, val=None, model=replace(TINY_MODEL, mid_blocks=2)))
    assert DiracConfig.load(deeper / "config.json").first_step_model.mid_blocks == 2
    assert DiracConfig.load(deeper / "config.json").model == TINY_MODEL
    # The realism steps of a bundle with its own first step train on that first step, which stays.
    first = load_file(str(resumed / "first_step.safetensors"))
    realism = replace(options, out=tmp_path / "realism", init_from=bundle, first_step_network=False, val=None, adversarial=AdversarialOptions())
    trained = train(realism)
    assert all(torch.equal(v, first[k]) for k, v in load_file(str(trained / "first_step.safetensors")).items())
    assert any(not torch.equal(v, later[k]) for k, v in load_file(str(trained / "model.safetensors")).items())
    log = [json.loads(line) for line in (tmp_path / "realism" / "train.jsonl").read_text().splitlines()]
    assert all("fidelity_mse" not in record for record in log)


def test_thresholds_are_measured_and_stored(photo_folder, tiny_bundle):
    table = write_thresholds(tiny_bundle, [photo_folder], crops_per_rate=8, crop=32)
    stored = DiracConfig.load(tiny_bundle / "config.json").thresholds
    assert stored == table
    lower, upper = np.asarray(table.lower), np.asarray(table.upper)
    assert (lower < 0).all() and (upper > 0).all()
    # Coarser quantization leaves larger residuals.
    assert (upper[0] - lower[0]).mean() > (upper[-1] - lower[-1]).mean()


def test_training_restores_the_sigterm_handler_it_installs():
    import os
    import signal

    from enhance.train.trainer import stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as request:
        os.kill(os.getpid(), signal.SIGTERM)
        assert request["stop"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_checkpoint_from_before_the_trainer_resumes(photo_folder, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    out = tmp_path / "run"
    options = TrainOptions(codec="jpeg", data=[photo_folder], out=out, steps=2, batch=2, crop=32, model=TINY_MODEL, device="cpu")
    train(options)
    checkpoint = out / "checkpoint.safetensors"
    with safe_open(str(checkpoint), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(checkpoint))
    # The metadata train/loop.py wrote: its own format, no task kind.
    legacy = {"format": "enhance.dirac.checkpoint", "version": "1", "step": metadata["step"], "config": metadata["config"]}
    save_file(tensors, str(checkpoint), metadata=legacy)
    messages = []
    train(replace(options, steps=3), log=messages.append)
    assert any("resumed" in m and "step 2" in m for m in messages)


def test_adversarial_training_samples_in_fewer_steps_and_resumes_its_discriminator(photo_folder, tmp_path):
    from safetensors import safe_open


    base = tmp_path / "base"
    train(TrainOptions(codec="jpeg", data=[photo_folder], out=base, steps=1, batch=2, crop=32, model=TINY_MODEL, device="cpu"))
    out = tmp_path / "realism"
    options = TrainOptions(
        codec="jpeg", data=[photo_folder], val=[photo_folder], out=out, steps=2, batch=4, crop=32, log_every=1,
        val_every=2, val_images=1, init_from=base / "bundle", schedule_steps=4, device="cpu",
        adversarial=AdversarialOptions(channels=8, patch_distribution_weight=1.0, patch_distribution_levels=3),
    )
    bundle = train(options)
    config = DiracConfig.load(bundle / "config.json")
    assert (config.schedule.schedule_steps, config.default_steps) == (4, 4)
    log = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert all(2 <= r["steps"] <= 4 and r["d_loss"] > 0 and r["patch_distribution"] > 0 for r in log if "loss" in r)
    assert {"psnr_1", "psnr_4", "hf_4"} <= set(next(r["val"] for r in log if "val" in r))
    with safe_open(str(out / "checkpoint.safetensors"), framework="pt") as handle:
        saved = {k: handle.get_tensor(k) for k in handle.keys() if k.startswith("task.discriminator.")}
    assert saved
    restored = []
    original_load = train_module._Adversary.load
    train_module._Adversary.load = lambda self, tensors: (restored.append(tensors), original_load(self, tensors))[1]
    try:
        train(replace(options, steps=3))
    finally:
        train_module._Adversary.load = original_load
    assert restored and all(torch.equal(restored[0][k[5:]], v) for k, v in saved.items())
    enhancer = load_dirac("jpeg", bundle=bundle)
    assert enhancer.enhance(natural_image(33, 47), rate=10, steps=4).shape == (33, 47, 3)
    with pytest.raises(EnhanceError, match="batch of at least 2"):
        train(replace(options, out=tmp_path / "alone", batch=1))
    with pytest.raises(EnhanceError, match="cannot sample in 3 steps"):
        train(replace(options, out=tmp_path / "odd", schedule_steps=3))
    coarse = AdversarialOptions(channels=8, patch_distribution_weight=1.0, patch_distribution_levels=4)
    with pytest.raises(EnhanceError, match="band 4 of a 32 px crop is 4 px"):
        train(replace(options, out=tmp_path / "coarse", adversarial=coarse))


def test_bf16_is_used_only_where_it_is_fast(monkeypatch):
    from enhance import compute

    monkeypatch.setattr(compute, "cpu_has_fast_bf16", lambda: False)
    assert compute.fast_dtype("cpu") == torch.float32
    with compute.autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(compute, "cpu_has_fast_bf16", lambda: True)
    assert compute.fast_dtype("cpu") == torch.bfloat16
    with compute.autocast("cpu"):
        assert torch.is_autocast_enabled("cpu")
    assert compute.fast_dtype("cuda") == torch.bfloat16


def test_the_discriminator_tells_fine_texture_from_its_absence_within_a_few_steps():
    """Texture a few hundredths of the range is what separates an original from an enhanced
    output; a discriminator that cannot see it gives the realism training no signal."""
    from enhance.train.adversarial import PatchDiscriminator, discriminator_loss

    generator = torch.Generator().manual_seed(0)
    decoded = torch.rand(8, 3, 1, 1, generator=generator).mul(1.6).sub(0.8).expand(8, 3, 32, 32).contiguous()
    original = decoded + 0.03 * torch.randn(8, 3, 32, 32, generator=generator)
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(channels=8)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for _ in range(30):
        loss = discriminator_loss(discriminator(original, decoded)[0], discriminator(decoded, decoded)[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 1.0, loss.item()  # ln 4 = 1.386 is chance


def test_the_train_command_passes_the_realism_weights_through(monkeypatch, photo_folder, tmp_path):
    from typer.testing import CliRunner

    from enhance.cli import app

    received = []
    monkeypatch.setattr(train_module, "train", lambda options, log: received.append(options) or tmp_path)
    arguments = ["train", "--data", str(photo_folder), "--out", str(tmp_path / "run"), "--schedule-steps", "4"]
    realism = ["--adversarial", "--adversarial-weight", "0.7", "--fine-mse-weight", "0.1", "--patch-distribution-weight", "2"]
    bands = ["--energy-chroma-weight", "1.5", "--patch-distribution-levels", "3", "--patch-distribution-ycbcr", "--fidelity-share", "0.5", "--mid-blocks", "3"]
    assert CliRunner().invoke(app, arguments + realism + bands).exit_code == 0
    assert CliRunner().invoke(app, arguments + ["--first-step-share", "1", "--cooldown", "300"]).exit_code == 0
    assert received[0].adversarial == AdversarialOptions(
        weight=0.7, fine_mse_weight=0.1, patch_distribution_weight=2.0, patch_distribution_levels=3, patch_distribution_ycbcr=True,
        fidelity_share=0.5, energy_chroma_weight=1.5,
    )
    assert received[0].model == replace(DiracUNetConfig(), mid_blocks=3)
    assert received[1].adversarial is None and received[1].schedule_steps == 4 and received[1].model is None
    assert received[0].start_step_share == 0.25 and received[1].start_step_share == 1.0
    # A first-step network grows from its own shape, not from the later steps' network.
    bundle = make_tiny_bundle(tmp_path / "bundle")
    config = DiracConfig.load(bundle / "config.json")
    replace(config, first_step_model=replace(TINY_MODEL, mid_blocks=2)).save(bundle / "config.json")
    grow = ["--init-from", str(bundle), "--first-step-network", "--refine-blocks", "1"]
    assert CliRunner().invoke(app, arguments + grow).exit_code == 0
    assert received[2].model == replace(TINY_MODEL, mid_blocks=2, refine_blocks=1) and received[2].first_step_network
    assert received[0].trainer_options().cooldown == 0 and received[1].trainer_options().cooldown == 300


def test_the_texture_energy_term_measures_the_fine_band_as_the_metric_does_and_where_it_is():
    from enhance.metrics.detail import hf_energy_ratio
    from enhance.train.adversarial import fine_band, texture_energy_loss

    original = natural_image(64, 96)
    blurred = np.asarray(Image.fromarray(original).resize((48, 32)).resize((96, 64), Image.Resampling.BICUBIC))
    unit = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float().div(127.5).sub(1)  # noqa: E731
    energy = lambda a: float((fine_band(unit(a)) ** 2).sum())  # noqa: E731
    assert energy(blurred) / energy(original) == pytest.approx(hf_energy_ratio(original, blurred), rel=1e-3)
    assert texture_energy_loss(unit(original), unit(original)).item() == pytest.approx(0.0, abs=1e-6)
    # Texture where the original has none is as wrong as none where it has some.
    texture = 0.2 * torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    flat = torch.zeros(1, 3, 32, 64)
    textured_right = torch.cat([flat[..., :32], texture[..., 32:]], dim=3)
    textured_left = torch.cat([texture[..., :32], flat[..., 32:]], dim=3)
    missing = texture_energy_loss(flat, textured_right)
    assert missing > 0.02
    assert texture_energy_loss(textured_left, textured_right) == pytest.approx(2 * missing.item(), rel=0.1)


def test_the_texture_energy_term_with_chroma_asks_for_the_originals_chroma_texture_as_strongly_as_its_luma():
    from enhance.train.adversarial import YCBCR, texture_energy_loss

    to_rgb = torch.linalg.inv(torch.tensor(YCBCR))
    rgb = lambda y, cb, cr: torch.einsum("ij,njhw->nihw", to_rgb, torch.cat([y, cb, cr], dim=1))  # noqa: E731
    texture = lambda seed, strength: strength * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    flat = torch.zeros(1, 1, 32, 32)
    # An original whose chroma texture is a quarter as strong as its luma texture, as in photos.
    luma, cb, cr = texture(0, 0.2), texture(1, 0.05), texture(2, 0.05)
    original = rgb(luma, cb, cr)
    without_chroma, without_luma = rgb(luma, flat, flat), rgb(flat, cb, cr)
    # Luma alone does not see lost chroma texture; with chroma at weight 1 it costs as much as lost luma texture.
    assert texture_energy_loss(without_chroma, original).item() < 1e-3
    lost_chroma = texture_energy_loss(without_chroma, original, chroma_weight=1.0).item()
    lost_luma = texture_energy_loss(without_luma, original, chroma_weight=1.0).item()
    assert lost_chroma == pytest.approx(lost_luma, rel=0.25) and lost_chroma > 0.02
    assert texture_energy_loss(original, original, chroma_weight=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_the_patch_distribution_term_prefers_the_originals_structure_to_blur_or_noise_and_ignores_position():
    from enhance.train.adversarial import patch_distribution_loss

    unit = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float().div(127.5).sub(1)  # noqa: E731
    photo = np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "astronaut-q15.jpg").convert("RGB"))
    original = photo[64:192, 128:256]
    blurred = np.asarray(Image.fromarray(original).resize((64, 64)).resize((128, 128), Image.Resampling.BICUBIC))
    torch.manual_seed(0)
    assert patch_distribution_loss(unit(original), unit(original)).item() == pytest.approx(0.0, abs=1e-6)
    # The same texture elsewhere (a circular shift) is close; blur is far; white noise of the
    # right strength on the blurred image does not bring it close.
    shifted = patch_distribution_loss(unit(np.roll(original, 24, axis=1)), unit(original)).item()
    blur = patch_distribution_loss(unit(blurred), unit(original)).item()
    missing = unit(original) - unit(blurred)
    noisy = unit(blurred) + missing.std() * torch.randn_like(missing)
    noise = patch_distribution_loss(noisy, unit(original)).item()
    assert shifted < 0.5 * blur
    assert noise > 0.6 * blur and noise > 2 * shifted
    # It trains: the gradient reaches the output.
    output = unit(blurred).requires_grad_(True)
    patch_distribution_loss(output, unit(original)).backward()
    assert output.grad.abs().sum() > 0


def test_the_patch_distribution_term_in_ycbcr_weighs_lost_chroma_detail_as_much_as_lost_luma_detail():
    from enhance.train.adversarial import YCBCR, patch_distribution_loss

    photo = np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "astronaut-q15.jpg").convert("RGB"))
    original = torch.from_numpy(photo[64:192, 128:256].copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1)
    to_ycc, to_rgb = torch.tensor(YCBCR), torch.linalg.inv(torch.tensor(YCBCR))
    ycc = torch.einsum("ij,njhw->nihw", to_ycc, original)
    blur = lambda planes: F.interpolate(F.avg_pool2d(planes, 4), scale_factor=4, mode="bilinear")  # noqa: E731
    rgb = lambda planes: torch.einsum("ij,njhw->nihw", to_rgb, planes)  # noqa: E731
    luma_lost = rgb(torch.cat([blur(ycc[:, :1]), ycc[:, 1:]], dim=1))
    chroma_lost = rgb(torch.cat([ycc[:, :1], blur(ycc[:, 1:])], dim=1))

    def chroma_over_luma(ycbcr: bool) -> float:
        loss = lambda output: patch_distribution_loss(output, original, directions=256, ycbcr=ycbcr).item()  # noqa: E731
        torch.manual_seed(0)
        return loss(chroma_lost) / loss(luma_lost)

    torch.manual_seed(0)
    assert patch_distribution_loss(original, original, ycbcr=True).item() == pytest.approx(0.0, abs=1e-6)
    # In R, G, B the chroma of a patch is the small difference of three similar channels.
    assert chroma_over_luma(ycbcr=False) < 0.5 * chroma_over_luma(ycbcr=True)
    grey = original[:, :1]
    assert patch_distribution_loss(grey, grey, ycbcr=True).item() == pytest.approx(0.0, abs=1e-6)


def test_crops_of_a_jpeg_source_with_subsampled_chroma_are_marked_as_lacking_fine_chroma(tmp_path):
    from enhance.train.data import CropSampler, JpegDegradation

    photo = Image.fromarray(natural_image(64, 64))
    photo.save(tmp_path / "lossless.png")
    photo.save(tmp_path / "full.jpg", quality=95, subsampling="4:4:4")
    photo.save(tmp_path / "subsampled.jpg", quality=95, subsampling="4:2:0")
    colour, grey = JpegDegradation(greyscale_share=0.0), JpegDegradation(greyscale_share=1.0)
    marks = lambda name, degradation: CropSampler([tmp_path / name], 32, degradation).batch(6).full_chroma  # noqa: E731
    assert marks("lossless.png", colour).all() and marks("full.jpg", colour).all()
    assert not marks("subsampled.jpg", colour).any()
    # A greyscale target's chroma is exactly known (none), whatever its source.
    assert marks("subsampled.jpg", grey).all()


def test_losses_do_not_see_the_finest_chroma_of_crops_whose_source_lacked_it():
    from enhance.train.adversarial import YCBCR, without_unknown_chroma

    to_rgb = torch.linalg.inv(torch.tensor(YCBCR))
    rgb = lambda y, cb, cr: torch.einsum("ij,njhw->nihw", to_rgb, torch.cat([y, cb, cr], dim=1))  # noqa: E731
    rows = torch.arange(32.0).view(1, 1, 32, 1).expand(1, 1, 32, 32)
    smooth = torch.sin(rows / 6).repeat(2, 1, 1, 1)
    checker = 0.1 * (-1.0) ** (rows + rows.transpose(2, 3)).repeat(2, 1, 1, 1)
    full_chroma = torch.tensor([True, False])
    # A prediction wrong only in the finest chroma band: an error for the crop whose source had
    # full chroma, none for the other; its luma and its coarse chroma are still compared.
    fine_chroma_error = rgb(torch.zeros_like(smooth), checker, -checker)
    seen = without_unknown_chroma(fine_chroma_error, full_chroma)
    assert torch.equal(seen[0], fine_chroma_error[0])
    assert seen[1].pow(2).mean() < 1e-4 * fine_chroma_error[1].pow(2).mean()
    coarse_errors = rgb(smooth, 0.5 * smooth, -smooth)
    seen = without_unknown_chroma(coarse_errors, full_chroma)
    assert (seen[1] - coarse_errors[1]).pow(2).mean() < 0.01 * coarse_errors[1].pow(2).mean()
