"""The DIRAC training loop: resumable, logged, validated, bf16 on CPU, CUDA when present.

SIGTERM stops the run at the next step with a checkpoint (the previous handler is
restored when training returns or raises); the JSON-lines log is closed either way.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from ..enhancers.dirac.config import DiracConfig
from ..enhancers.dirac.model import DiracUNet, DiracUNetConfig
from ..enhancers.dirac.pipeline import DiracPipeline, load_state_dict_strict
from ..enhancers.dirac.scheduler import LateStartDDIM
from ..errors import EnhanceError
from ..image import write_atomic
from ..metrics.psnr import psnr_rgb
from ..image import find_images
from .data import DEGRADATIONS, CropSampler, load_rgb

CHECKPOINT_FORMAT = "enhance.dirac.checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class TrainOptions:
    codec: str
    data: list[Path]
    out: Path
    val: list[Path] | None = None
    steps: int = 100_000
    minutes: float | None = None
    batch: int = 16
    crop: int = 128
    lr: float = 2e-4
    warmup: int = 500
    ema_decay: float = 0.999
    # Share of samples drawn at the first sampling timestep: that step alone is the
    # fidelity mode, so it gets more than its uniform share of training.
    start_step_share: float = 0.25
    seed: int = 0
    device: str | None = None
    log_every: int = 50
    val_every: int = 1000
    checkpoint_every: int = 250
    val_quality: int = 10
    val_images: int = 12
    model: DiracUNetConfig | None = None
    # Without a checkpoint in `out`, start from these bundle weights (fresh optimiser):
    # how a run continues on a machine that kept only the committed bundle.
    init_from: Path | None = None


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    write_atomic(path, safetensors_bytes(tensors, metadata=metadata))


def save_checkpoint(path: Path, model, ema, optimizer, step: int, config: DiracConfig) -> None:
    """Model, EMA and AdamW moments as safetensors: no pickle anywhere."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().contiguous() for k, v in ema.state_dict().items()})
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            if state:
                name = names[id(param)]
                tensors[f"adam.{name}.exp_avg"] = state["exp_avg"].contiguous()
                tensors[f"adam.{name}.exp_avg_sq"] = state["exp_avg_sq"].contiguous()
                tensors[f"adam.{name}.step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "step": str(step),
        "config": json.dumps(config.to_dict()),
    }
    _atomic_save(tensors, path, metadata)


def _checkpoint_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != CHECKPOINT_FORMAT or int(metadata.get("version", 0)) != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a version {CHECKPOINT_VERSION} DIRAC checkpoint")
    return metadata


def checkpoint_config(path: Path) -> DiracConfig:
    """The config a checkpoint was trained with, read without loading its tensors."""
    return DiracConfig.from_dict(json.loads(_checkpoint_metadata(path)["config"]))


def load_training_state(path: Path, model, ema, optimizer) -> tuple[int, DiracConfig]:
    """Loads a training checkpoint into `model`, `ema` and `optimizer`; returns (step, config)."""
    metadata = _checkpoint_metadata(path)
    config = DiracConfig.from_dict(json.loads(metadata["config"]))
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
    for name, param in model.named_parameters():
        if f"adam.{name}.exp_avg" in tensors:
            optimizer.state[param] = {
                "exp_avg": tensors[f"adam.{name}.exp_avg"],
                "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"],
                "step": tensors[f"adam.{name}.step"].reshape(()),
            }
    return int(metadata["step"]), config


def save_bundle(directory: Path, model: DiracUNet, config: DiracConfig, dtype=torch.float16) -> None:
    """A loadable bundle: config.json plus half-precision weights (half the size, same output in bf16)."""
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / "config.json")
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    _atomic_save(tensors, directory / "model.safetensors", {"format": "enhance.dirac.weights", "version": "1"})


def to_unit(images: np.ndarray, device) -> torch.Tensor:
    """uint8 NxHxWx3 -> float NCHW in [-1, 1]."""
    tensor = torch.from_numpy(np.array(images, copy=True)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class Validator:
    """PSNR of 1-step enhancement on held-out images at one quality, against the codec."""

    def __init__(self, paths: list[Path], degradation, quality: int, limit: int):
        rng = np.random.default_rng(0)
        self.quality = quality
        self.pairs = []
        for path in paths[:limit]:
            image = load_rgb(path)
            height, width = (s - s % 16 for s in image.shape[:2])
            image = np.ascontiguousarray(image[:height, :width])
            # Force colour 4:2:0 (the common case) for a stable curve across runs.
            original = replace(degradation, greyscale_share=0.0, subsampling_420_share=1.0)
            target, decoded = original.degrade(image, quality, rng)
            self.pairs.append((target, decoded))

    def __call__(self, pipeline: DiracPipeline) -> dict:
        base, enhanced = [], []
        generator = torch.Generator().manual_seed(0)
        for target, decoded in self.pairs:
            x_hat = to_unit(decoded[None], pipeline.device)
            noise = torch.randn(x_hat.shape, generator=generator)
            residual = pipeline.residual(x_hat, noise, rate=self.quality, steps=1)
            out = ((x_hat + residual).clamp(-1, 1).add(1).mul(127.5)).round().byte()
            out = out[0].permute(1, 2, 0).cpu().numpy()
            base.append(psnr_rgb(target, decoded))
            enhanced.append(psnr_rgb(target, out))
        return {"quality": self.quality, "psnr_base": float(np.mean(base)), "psnr_enhanced": float(np.mean(enhanced))}


@dataclass
class _State:
    """What a run trains and resumes: the model, its EMA, the optimiser, the step and the config."""

    model: DiracUNet
    ema: DiracUNet
    optimizer: torch.optim.Optimizer
    step: int
    config: DiracConfig


def _initial_state(options: TrainOptions, checkpoint: Path, log: Callable[[str], None]) -> _State:
    """A fresh model, else the run's checkpoint (built from its own config), else `init_from`'s bundle."""
    config = DiracConfig(codec=options.codec, model=options.model or DiracUNetConfig())
    # Built first in every case, so the random state after set-up does not depend on the path taken.
    model = DiracUNet(config.model)
    ema = _copy_for_eval(model, config)
    if checkpoint.exists():
        stored = checkpoint_config(checkpoint).model
        if options.model is not None and options.model != stored:
            raise EnhanceError(f"{checkpoint}: this run trains the model {stored.to_dict()}, not the one asked for")
        model, ema = DiracUNet(stored), DiracUNet(stored)
        optimizer = _optimizer(model, options)
        step, config = load_training_state(checkpoint, model, ema, optimizer)
        log(f"resumed from {checkpoint} at step {step}")
        return _State(model, ema, optimizer, step, config)
    if options.init_from is not None:
        config, model = _grown_from_bundle(options)
        log(f"initialised from {options.init_from}")
        return _State(model, _copy_for_eval(model, config), _optimizer(model, options), 0, config)
    return _State(model, ema, _optimizer(model, options), 0, config)


def _optimizer(model: DiracUNet, options: TrainOptions) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.0)


def _grown_from_bundle(options: TrainOptions) -> tuple[DiracConfig, DiracUNet]:
    """The `init_from` bundle's config and weights, grown by a refinement stage when `options.model` asks."""
    config = DiracConfig.load(Path(options.init_from) / "config.json")
    new_modules: tuple[str, ...] = ()
    if options.model is not None and options.model != config.model:
        if replace(options.model, refine_channels=0) != config.model or config.model.refine_channels:
            raise EnhanceError(
                f"{options.init_from}: a bundle can only be grown by a refinement stage; "
                f"its model is {config.model.to_dict()}"
            )
        config = replace(config, model=options.model)
        new_modules = ("refiner.",)
    model = DiracUNet(config.model)
    load_state_dict_strict(model, Path(options.init_from) / "model.safetensors", new_modules=new_modules)
    return config, model


def _to_device(state: _State, device: torch.device) -> None:
    state.model.to(device, memory_format=torch.channels_last)
    state.ema.to(device)
    for moments in state.optimizer.state.values():
        for key, value in moments.items():
            if torch.is_tensor(value) and key != "step":
                moments[key] = value.to(device)


@contextmanager
def _stop_on_sigterm() -> Iterator[dict]:
    """{"now": bool} set by SIGTERM while the block runs; the previous handler is restored after."""
    stop = {"now": False}
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    except ValueError:  # not the main thread: signals cannot be caught here
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Objective:
    """One optimiser step of DIRAC's objective: predict the scaled residual from its noised version."""

    def __init__(self, options: TrainOptions, state: _State, device: torch.device):
        self.options, self.state, self.device = options, state, device
        schedule = LateStartDDIM(state.config.schedule)
        self.alphas = schedule.alphas_cumprod.to(device)
        self.t_first = int(schedule.timesteps[0])
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def noised(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy residual, timesteps): a share at the first sampling step, from noise alone."""
        n, device = residual.shape[0], self.device
        t = torch.randint(0, self.t_first, (n,), device=device)
        at_start = torch.rand(n, device=device) < self.options.start_step_share
        t = torch.where(at_start, torch.full_like(t, self.t_first), t)
        alpha = self.alphas[t].view(-1, 1, 1, 1)
        # Sampling starts from noise alone (the residual is unknown), so the first step is
        # trained on exactly that; at 20% of the schedule a scaled residual would still
        # show through the noise and the model would learn to rely on it.
        signal_scale = torch.where(at_start.view(-1, 1, 1, 1), torch.zeros_like(alpha), alpha.sqrt())
        return signal_scale * residual + (1 - alpha).sqrt() * torch.randn_like(residual), t

    def step(self, targets: np.ndarray, decoded: np.ndarray, rates: np.ndarray) -> tuple[float, float]:
        """Trains on one batch; returns (loss, learning rate)."""
        state, options, device = self.state, self.options, self.device
        x, x_hat = to_unit(targets, device), to_unit(decoded, device)
        residual = (x - x_hat) * state.config.residual_scale
        noisy, t = self.noised(residual)
        rate_spec = state.config.rate
        rate_input = None
        if rate_spec is not None:
            rate_input = torch.tensor([rate_spec.normalise(r) for r in rates], device=device, dtype=torch.float32)
        lr = options.lr * min(1.0, (state.step + 1) / options.warmup)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            channels_last = torch.channels_last
            prediction = state.model(noisy.contiguous(memory_format=channels_last), x_hat.contiguous(memory_format=channels_last), t, rate_input)
        loss = torch.mean((prediction.float() - residual) ** 2)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {state.step}")
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), 1.0)
        state.optimizer.step()
        with torch.no_grad():
            decay = min(options.ema_decay, (1 + state.step) / (10 + state.step))
            for e, p in zip(state.ema.parameters(), state.model.parameters()):
                e.lerp_(p, 1 - decay)
        state.step += 1
        return loss.item(), lr


def train(options: TrainOptions, log: Callable[[str], None] = print) -> Path:
    """Trains (or resumes) a DIRAC model; returns the bundle directory of the EMA weights."""
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(options.device) if options.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(options.seed)
    if options.codec not in DEGRADATIONS:
        raise ValueError(f"no training degradation for codec {options.codec!r}; known: {sorted(DEGRADATIONS)}")
    degradation = DEGRADATIONS[options.codec]()
    checkpoint = out / "checkpoint.safetensors"
    state = _initial_state(options, checkpoint, log)
    _to_device(state, device)
    log(f"loading training images from {', '.join(map(str, options.data))}")
    sampler = CropSampler(find_images(options.data), options.crop, degradation, seed=options.seed)
    sampler.set_state(options.seed, state.step)
    validator = None
    if options.val:
        validator = Validator(find_images(options.val), degradation, options.val_quality, options.val_images)
    with _stop_on_sigterm() as stop, open(out / "train.jsonl", "a") as log_file:
        _run(options, state, _Objective(options, state, device), sampler, validator, out, stop, log_file, log)
    save_checkpoint(checkpoint, state.model, state.ema, state.optimizer, state.step, state.config)
    save_bundle(out / "bundle", state.ema, state.config)
    log(f"stopped at step {state.step}; checkpoint {checkpoint}")
    return out / "bundle"


def _run(options, state: _State, objective: _Objective, sampler, validator, out: Path, stop: dict, log_file, log) -> None:
    """Steps until the step count, the time budget or SIGTERM; logs, checkpoints and validates on the way."""
    started = time.monotonic()
    losses: list[float] = []
    last_checkpoint = state.step

    def record(fields: dict) -> None:
        log_file.write(json.dumps(fields) + "\n")
        log_file.flush()
        log(json.dumps(fields))

    while state.step < options.steps and not stop["now"]:
        if options.minutes is not None and time.monotonic() - started > options.minutes * 60:
            break
        loss, lr = objective.step(*sampler.batch(options.batch))
        losses.append(loss)
        step = state.step
        if step % options.log_every == 0:
            record({"step": step, "loss": float(np.mean(losses)), "lr": lr, "elapsed_s": round(time.monotonic() - started, 1)})
            losses.clear()
        if step - last_checkpoint >= options.checkpoint_every:
            save_checkpoint(out / "checkpoint.safetensors", state.model, state.ema, state.optimizer, step, state.config)
            last_checkpoint = step
        if validator is not None and step % options.val_every == 0:
            device = next(state.ema.parameters()).device
            record({"step": step, "val": validator(DiracPipeline(_copy_for_eval(state.ema, state.config), state.config, device=device))})
            save_bundle(out / "bundle", state.ema, state.config)


def _copy_for_eval(model: DiracUNet, config: DiracConfig) -> DiracUNet:
    copy = DiracUNet(config.model)
    copy.load_state_dict(model.state_dict())
    return copy
