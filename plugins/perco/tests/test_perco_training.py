"""`enhance train-latent perco`: a tiny PerCo trains from a tiny prior, its bundle codes images, and its options are checked."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from enhance.cli import app
from enhance.testing import bundle_folder_with_taef2, tiny_prior
from enhance_perco import PercoCodec
from enhance_perco.config import PercoConfig
from enhance_perco.train import PercoTask, PercoTaskOptions

TINY = PercoConfig(code_dim=4, trunk_width=8, global_codebook=16)


def write_photos(folder, count=3, size=(72, 88)):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"p{index}.png")


def train(tmp_path, *extra):
    write_photos(tmp_path / "data")
    tiny_prior().save_pretrained(tmp_path / "prior")
    TINY.save(tmp_path / "perco.json")
    out = tmp_path / "runs" / "perco"
    result = CliRunner().invoke(app, [
        "train-latent", "perco", "--data", str(tmp_path / "data"), "--val", str(tmp_path / "data"), "--out", str(out),
        "--prior", str(tmp_path / "prior"), "--config", str(tmp_path / "perco.json"),
        "--crop", "8", "--batch", "2", "--steps", "2", "--val-every", "2", *extra,
    ])
    return result, out


def test_a_tiny_perco_trains_and_its_bundle_codes_images(tmp_path):
    result, out = train(tmp_path, "--option", "probe_weight=4")
    assert result.exit_code == 0, result.output
    assert PercoConfig.load(out / "bundle" / "perco.json") == TINY

    bundle = bundle_folder_with_taef2(tmp_path / "bundle")
    shutil.copytree(out / "bundle" / "decoder", bundle / "decoder")
    for name in ("perco.json", "model.safetensors"):
        shutil.copy(out / "bundle" / name, bundle / name)
    codec = PercoCodec(bundle=bundle, device="cpu")
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(image, 7), steps=2).shape == image.shape


@pytest.mark.parametrize("setting", ["probe_weight=-1", "probe_weight=nan", "drop_global=1.5", "drop_global=-0.1"])
def test_out_of_range_options_are_refused_before_training(tmp_path, setting):
    result, out = train(tmp_path, "--option", setting)
    assert result.exit_code != 0
    assert f"--option {setting.split('=')[0]}" in result.output + str(result.exception)
    assert not (out / "checkpoint.safetensors").exists()


def test_the_probe_weight_scales_the_probe_term_alone(tmp_path):
    from safetensors.torch import save_file

    files = []
    for index in range(2):  # what the latent cache holds for each photo
        files.append(tmp_path / f"l{index}.safetensors")
        save_file({"latent": torch.randn(32, 12, 12), "latent_mirrored": torch.randn(32, 12, 12)}, files[-1])
    prior_dir = tmp_path / "prior"
    tiny_prior().save_pretrained(prior_dir)
    totals = {}
    for weight in (1.0, 3.0):
        options = PercoTaskOptions(latent_files=files, prior=prior_dir, crop=8, batch=2, config=TINY, probe_weight=weight)
        task = PercoTask(options)
        torch.manual_seed(0)
        model = task.build(TINY.to_dict())
        totals[weight] = task.loss(model, step=5)
    (one, parts), (three, _) = totals[1.0], totals[3.0]
    assert float((three - one).detach()) == pytest.approx(2 * parts["probe"], rel=1e-4)
    assert parts["probe"] > 0
