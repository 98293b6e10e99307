"""`enhance train-latent`: latents cached once, the prior trained and resumed, plugin trainers found."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from enhance.cli import app
from enhance.train.prior import PriorTask


def write_photos(folder, count=3, size=(72, 88), seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{index}.png")


def test_prior_trains_from_images_and_resumes(tmp_path, monkeypatch):
    tiny = {"widths": (8, 16, 16)}
    original = PriorTask.__init__

    def small(self, options):
        options.widths = tiny["widths"]
        original(self, options)
        self.config["unet"]["norm_num_groups"] = 4
        self.config["unet"]["attention_head_dim"] = 8

    monkeypatch.setattr(PriorTask, "__init__", small)
    write_photos(tmp_path / "data")
    write_photos(tmp_path / "val", count=1)
    out = tmp_path / "runs" / "prior"
    arguments = ["train-latent", "prior", "--data", str(tmp_path / "data"), "--val", str(tmp_path / "val"),
                 "--out", str(out), "--crop", "4", "--batch", "2"]
    result = CliRunner().invoke(app, [*arguments, "--steps", "2", "--val-every", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val" in r] == [1, 2]  # --val-every reaches the trainer
    cache = tmp_path / "runs" / "latents-taef2"
    assert len(list(cache.glob("*.safetensors"))) == 3
    mtimes = {p: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")}
    result = CliRunner().invoke(app, [*arguments, "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")} == mtimes  # encoded once
    from enhance.train.trainer import read_checkpoint_metadata

    assert read_checkpoint_metadata(out / "checkpoint.safetensors", "latent-prior")["step"] == "3"
    assert (out / "bundle" / "prior.json").is_file()

    # Started from that bundle on other photos, a run keeps the bundle's normalisation: its UNet
    # (and every codec built on the prior) works in that space.
    write_photos(tmp_path / "other", seed=1, size=(64, 64))
    again = ["train-latent", "prior", "--data", str(tmp_path / "other"), "--out", str(tmp_path / "runs" / "again"),
             "--crop", "4", "--batch", "2", "--steps", "1", "--init-from", str(out / "bundle")]
    result = CliRunner().invoke(app, again)
    assert result.exit_code == 0, result.output
    before, after = (json.loads((folder / "bundle" / "prior.json").read_text()) for folder in (out, tmp_path / "runs" / "again"))
    assert (after["mean"], after["std"]) == (before["mean"], before["std"])


def test_an_unknown_trainer_is_a_clear_error(tmp_path):
    write_photos(tmp_path / "data", count=1)
    result = CliRunner().invoke(app, ["train-latent", "nonesuch", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "nonesuch" in result.output + str(result.exception)


def test_the_snr_floor_keeps_the_noisiest_steps_in_the_loss():
    import torch

    from enhance.testing import tiny_prior
    from enhance.train.prior import min_snr_loss

    prior = tiny_prior(channels=4)
    clean, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    predict_nothing = lambda noisy, t: torch.zeros_like(noisy)  # noqa: E731
    for timestep, least_ratio in ((999, 50.0), (0, 1.0)):
        timesteps = torch.full((2,), timestep)
        plain = min_snr_loss(prior, clean, noise, timesteps, predict_nothing)
        floored = min_snr_loss(prior, clean, noise, timesteps, predict_nothing, snr_floor=1.0)
        assert float(floored) >= least_ratio * float(plain) * 0.999
    # Where snr is above the floor the floor changes nothing.
    assert torch.allclose(floored, plain)


def test_pixel_sensitivity_is_each_channels_squared_gain():
    """Through a linear decoder that scales channel c by a_c, a unit of latent MSE in c costs a_c^2 of pixel MSE."""
    import torch

    from enhance.latent.sensitivity import pixel_sensitivity

    scale = torch.tensor([0.1, 1.0, 3.0, 0.5])
    decode = lambda latent: (latent * scale.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)
    assert torch.allclose(pixel_sensitivity(decode, torch.randn(2, 4, 16, 16)), scale**2, rtol=1e-4)


def test_every_nth_image_of_each_folder_is_cached_with_the_names_a_full_run_uses(tmp_path):
    from enhance.train.latent_request import cached_latents

    write_photos(tmp_path / "data" / "a", count=5, size=(32, 32))
    write_photos(tmp_path / "data" / "b", count=2, size=(32, 32), seed=1)
    third = cached_latents([tmp_path / "data"], tmp_path / "cache", "taef2", every=3, log=lambda line: None)
    assert [p.name for p in third] == ["a__p0.safetensors", "a__p3.safetensors", "b__p0.safetensors"]
    everything = cached_latents([tmp_path / "data"], tmp_path / "cache", "taef2", log=lambda line: None)
    assert len(everything) == 7 and set(third) <= set(everything)
    result = CliRunner().invoke(app, ["train-latent", "prior", "--data", str(tmp_path / "data"), "--every", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "--every" in result.output
