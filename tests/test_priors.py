"""The latent prior: strict bundles, DDIM from a late timestep, and the trainer's resume."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from enhance.errors import WeightsError
from enhance.priors import LatentPrior
from enhance.priors.prior import ddim_timesteps
from enhance.train.prior import PriorTask, PriorTaskOptions
from enhance.train.trainer import Trainer, TrainerOptions, learning_rate


def tiny_unet(channels: int = 4) -> dict:
    return {
        "_class_name": "UNet2DModel",
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 8,
        "norm_num_groups": 4,
    }


@pytest.fixture
def latent_files(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for index in range(3):
        latent = torch.from_numpy(rng.normal(0.5, 2.0, (4, 11 + index, 13)).astype(np.float16))
        path = tmp_path / f"l{index}.safetensors"
        save_file({"latent": latent, "latent_mirrored": latent.flip(-1).contiguous()}, str(path))
        files.append(path)
    return files


def make_task(latent_files, **kwargs) -> PriorTask:
    options = PriorTaskOptions(latent_files=latent_files, val_files=latent_files[:1], crop=8, batch=2, **kwargs)
    task = PriorTask(options)
    task.config["unet"] = tiny_unet(4)
    return task


def test_ddim_timesteps_start_late_and_end_above_zero():
    assert ddim_timesteps(99, 1) == [99]
    assert ddim_timesteps(99, 4) == [99, 74, 49, 24]
    assert ddim_timesteps(999, 20)[-1] == 49


def test_statistics_normalise_the_latents(latent_files):
    task = make_task(latent_files)
    prior = task.build(task.config)
    normalised = prior.normalise(task.sampler.batch(64))
    assert abs(float(normalised.mean())) < 0.2
    assert 0.8 < float(normalised.std()) < 1.2


def test_training_resumes_and_the_bundle_loads_strictly(latent_files, tmp_path):
    out = tmp_path / "run"
    Trainer(make_task(latent_files), TrainerOptions(out=out, steps=3, log_every=1, val_every=2, checkpoint_every=1)).run()
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert any("val" in r for r in records)
    Trainer(make_task(latent_files), TrainerOptions(out=out, steps=5, log_every=1)).run()
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-2:] == [4, 5]
    prior = LatentPrior.from_pretrained(out / "bundle")
    x = torch.randn(1, 4, 5, 7)
    clean = prior.denoise(prior.normalise(x), start=200, steps=3)
    assert clean.shape == x.shape and torch.isfinite(clean).all()
    # Same input, same output: DDIM with eta = 0 is deterministic.
    assert torch.equal(clean, prior.denoise(prior.normalise(x), start=200, steps=3))


def test_the_learning_rate_warms_up_holds_then_cools_down_to_zero_at_the_last_step(latent_files, tmp_path):
    options = TrainerOptions(out=tmp_path, steps=10, lr=1.0, warmup=2, cooldown=4)
    rates = [learning_rate(options, step) for step in range(10)]
    assert rates == pytest.approx([0.5, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25])
    assert learning_rate(TrainerOptions(out=tmp_path, steps=10, lr=1.0, warmup=1), 9) == 1.0
    # The optimiser is given that rate, by the step a resumed run is at.
    out = tmp_path / "run"
    cooled = TrainerOptions(out=out, steps=3, lr=1e-3, warmup=1, cooldown=2, log_every=1)
    Trainer(make_task(latent_files), replace(cooled, steps=2, cooldown=0)).run()
    Trainer(make_task(latent_files), cooled).run()
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records if "loss" in r] == pytest.approx([1e-3, 1e-3, 0.5e-3])


def test_a_resumed_run_refuses_another_model(latent_files, tmp_path):
    out = tmp_path / "run"
    Trainer(make_task(latent_files), TrainerOptions(out=out, steps=1)).run()
    other = make_task(latent_files)
    other.config["unet"]["block_out_channels"] = [8, 8]
    with pytest.raises(Exception, match="this run trains the UNet"):
        Trainer(other, TrainerOptions(out=out, steps=2)).run()


def test_a_bundle_with_a_missing_tensor_is_refused(latent_files, tmp_path):
    out = tmp_path / "run"
    Trainer(make_task(latent_files), TrainerOptions(out=out, steps=1)).run()
    weights = out / "bundle" / "unet" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    tensors = load_file(str(weights))
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, str(weights))
    with pytest.raises(WeightsError, match="weights do not match"):
        LatentPrior.from_pretrained(out / "bundle")


def test_timestep_for_noise_matches_the_schedule(latent_files):
    task = make_task(latent_files)
    prior = task.build(task.config)
    alpha = prior.alphas_cumprod
    for t in (10, 300, 900):
        sigma = float(((1 - alpha[t]) / alpha[t]).sqrt())
        assert int(prior.timestep_for_noise(sigma)[0]) == t


def test_a_text_conditioned_prior_keeps_its_empty_prompt_through_save_and_load(tmp_path):
    from enhance.priors.text_encoder import TextEncoder
    from enhance.testing import tiny_prior, tiny_text_encoder

    text_encoder = TextEncoder.from_pretrained(tiny_text_encoder(tmp_path / "text"))
    prior = tiny_prior(cross_attention_dim=text_encoder.hidden_size, context=text_encoder.encode([""]))
    prior.save_pretrained(tmp_path / "prior")
    loaded = LatentPrior.from_pretrained(tmp_path / "prior")
    noisy, timesteps = torch.randn(1, 32, 6, 5), torch.tensor([500])
    with torch.no_grad():
        expected = prior.model_output(noisy, timesteps)
        # The bundle stores the UNet in float16.
        assert torch.allclose(loaded.model_output(noisy, timesteps), expected, atol=2e-3)
        other_prompt = loaded.model_output(noisy, timesteps, encoder_hidden_states=text_encoder.encode(["a boat"]))
    assert not torch.allclose(other_prompt, expected, atol=2e-2)


def test_text_encoder_bundles_load_strictly_and_name_the_bad_file(tmp_path):
    from safetensors.torch import load_file

    from enhance.priors.text_encoder import TextEncoder
    from enhance.testing import tiny_text_encoder

    bundle = tiny_text_encoder(tmp_path / "text")
    weights = bundle / "text_encoder" / "model.safetensors"
    tensors = load_file(str(weights))
    # Older transformers releases saved the position ids; they are accepted and ignored.
    save_file({**tensors, "text_model.embeddings.position_ids": torch.arange(16)[None]}, str(weights))
    assert TextEncoder.from_pretrained(bundle).encode(["hi"]).shape == (1, 16, 16)
    tensors.pop("text_model.final_layer_norm.weight")
    save_file(tensors, str(weights))
    with pytest.raises(WeightsError, match="model.safetensors: weights do not match.*final_layer_norm"):
        TextEncoder.from_pretrained(bundle)
    (bundle / "tokenizer" / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(WeightsError, match="merges.txt: each merge is two symbols"):
        TextEncoder.from_pretrained(bundle)
    (bundle / "tokenizer" / "vocab.json").write_text("[1, 2]")
    with pytest.raises(WeightsError, match="vocab.json: the vocabulary must map"):
        TextEncoder.from_pretrained(bundle)
