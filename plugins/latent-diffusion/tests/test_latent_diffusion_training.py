"""`enhance train-latent latent-diffusion`: a config file sets the model, and its bundle codes images."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from enhance.cli import app
from enhance.testing import bundle_folder_with_taef2, tiny_prior
from enhance_latent_diffusion import LatentDiffusionCodec
from enhance_latent_diffusion.config import CodecConfig


def write_photos(folder, count=3, size=(72, 88)):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"p{index}.png")


def test_a_config_file_sets_the_trained_model_and_its_bundle_codes_images(tmp_path):
    write_photos(tmp_path / "data")
    tiny_prior().save_pretrained(tmp_path / "prior")
    config = CodecConfig(
        lambdas=[0.5, 2.0, 8.0], code_channels=8, transform_width=8, hyper_channels=4, hyper_width=8,
        gamma_width=4, embed_dim=2, offset_group=4,
    )
    config.save(tmp_path / "codec.json")
    out = tmp_path / "runs" / "codec"
    result = CliRunner().invoke(app, [
        "train-latent", "latent-diffusion", "--data", str(tmp_path / "data"), "--val", str(tmp_path / "data"),
        "--out", str(out), "--prior", str(tmp_path / "prior"), "--config", str(tmp_path / "codec.json"),
        "--crop", "4", "--batch", "2", "--steps", "2", "--val-every", "2",
    ])
    assert result.exit_code == 0, result.output
    assert CodecConfig.load(out / "bundle" / "codec.json") == config

    bundle = bundle_folder_with_taef2(tmp_path / "bundle")
    shutil.copytree(tmp_path / "prior", bundle / "prior-taef2")
    for name in ("codec.json", "model.safetensors"):
        shutil.copy(out / "bundle" / name, bundle / name)
    codec = LatentDiffusionCodec(bundle=bundle, device="cpu")
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(image, 3), steps=0).shape == image.shape


def test_the_prior_trainer_refuses_a_config_file(tmp_path):
    write_photos(tmp_path / "data", count=1)
    (tmp_path / "x.json").write_text("{}")
    result = CliRunner().invoke(app, [
        "train-latent", "prior", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "x.json"),
    ])
    assert result.exit_code != 0
    assert "takes no config file" in result.output + str(result.exception)


def test_one_offset_moves_the_steps_of_its_channel_group_only():
    import torch

    from enhance_latent_diffusion.model import LatentDiffusionCodecModel

    model = LatentDiffusionCodecModel(CodecConfig(code_channels=8, offset_group=4, transform_width=8, hyper_channels=4, hyper_width=8, gamma_width=4, embed_dim=2))
    levels = torch.tensor([2])
    base = model.steps(levels, torch.zeros(1, 2)).flatten()
    moved = model.steps(levels, torch.tensor([[4.0, 0.0]])).flatten()
    assert torch.allclose(moved[:4], 2 * base[:4]) and torch.equal(moved[4:], base[4:])  # 4 quarter octaves double the step


def test_a_run_from_scratch_weighs_the_rate_in_and_a_continued_run_at_once():
    from types import SimpleNamespace

    from enhance_latent_diffusion.train import RATE_RAMP_STEPS, CodecTask

    scratch, continued = (SimpleNamespace(options=SimpleNamespace(init_from=value)) for value in (None, "bundle"))
    assert [CodecTask.rate_weight(scratch, step) for step in (0, RATE_RAMP_STEPS // 2, RATE_RAMP_STEPS, 10**6)] == [0.0, 0.5, 1.0, 1.0]
    assert CodecTask.rate_weight(continued, 0) == 1.0


def test_the_pixel_distortion_is_in_the_weighted_latent_distortions_units(tmp_path):
    """For small white latent errors the two agree to first order, so one set of lambdas serves both."""
    import torch

    from enhance.train.latent_request import cached_latents
    from enhance_latent_diffusion.train import CodecTask, CodecTaskOptions

    write_photos(tmp_path / "data", count=2, size=(96, 96))
    tiny_prior().save_pretrained(tmp_path / "prior")
    files = cached_latents([tmp_path / "data"], tmp_path / "cache", "taef2", log=lambda line: None)
    task = CodecTask(CodecTaskOptions(latent_files=files, prior=tmp_path / "prior", crop=8, distortion="pixels"))
    latent = task.prior.normalise(task.sampler.batch(4))
    noisy = latent + 0.05 * torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    ratio = task.distortion(noisy, latent).mean() / task.weighted_mse(noisy, latent).mean()
    assert 0.5 < ratio < 2, ratio


def test_trainer_options_are_checked_by_name_and_value(tmp_path):
    write_photos(tmp_path / "data", count=1)
    tiny_prior().save_pretrained(tmp_path / "prior")
    common = ["train-latent", "latent-diffusion", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--prior", str(tmp_path / "prior")]
    unknown = CliRunner().invoke(app, [*common, "--option", "colour=blue"])
    assert unknown.exit_code != 0 and "no such option" in unknown.output + str(unknown.exception)
    assert "distortion" in unknown.output + str(unknown.exception)  # it lists what it has
    bad = CliRunner().invoke(app, [*common, "--option", "distortion=ssim"])
    assert bad.exit_code != 0 and "must be one of latent, pixels" in bad.output + str(bad.exception)
    prior = CliRunner().invoke(app, ["train-latent", "prior", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "p"), "-o", "distortion=pixels"])
    assert prior.exit_code != 0 and "no options of its own" in prior.output + str(prior.exception)
