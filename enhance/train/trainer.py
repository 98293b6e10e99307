"""A reusable training loop: checkpoint and resume, EMA, a time budget, SIGTERM/SIGINT, a JSON-lines
log and periodic validation. What is trained, and how its loss is computed, is a `TrainingTask`.

A checkpoint is one safetensors file (model, EMA and AdamW moments; no pickle) whose metadata
records the task, its config and the step, so `Trainer.run` on the same `out` resumes where a
killed run stopped, and a fresh machine can start from committed weights (`init_from`).
"""

from __future__ import annotations

import json
import math
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from ..compute import autocast
from ..errors import EnhanceError
from ..image import write_atomic

CHECKPOINT_FORMAT = "enhance.checkpoint"
CHECKPOINT_VERSION = 1


class TrainingTask(Protocol):
    """One model to train. `config` is JSON-serialisable and fully describes the model."""

    kind: str  # recorded in checkpoints: a checkpoint of another kind is refused
    config: dict

    def build(self, config: dict) -> torch.nn.Module:
        """A fresh model for `config` (the task's own, or a checkpoint's when resuming)."""
        ...

    def loss(self, model: torch.nn.Module, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch (drawn by the task) and any scalars worth logging."""
        ...

    # Optional: `resume_config(stored) -> config` decides which of a checkpoint's settings a
    # resumed run keeps (raising EnhanceError when the asked-for model differs); without it
    # the stored config must equal the task's.

    def validate(self, model: torch.nn.Module) -> dict:
        """Metrics of the EMA model on held-out data; {} when there is none."""
        ...

    def save_bundle(self, model: torch.nn.Module, directory: Path) -> None:
        """Writes the loadable bundle (config with weights) of `model`."""
        ...


@dataclass
class TrainerOptions:
    out: Path
    steps: int = 100_000
    minutes: float | None = None
    lr: float = 2e-4
    warmup: int = 500
    # The last this many steps before `steps`, the learning rate falls linearly to zero
    # (a cool-down: the settled weights of a constant rate, without its last jitter).
    cooldown: int = 0
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    log_every: int = 50
    val_every: int = 1000
    checkpoint_every: int = 250
    seed: int = 0
    device: str | None = None
    # bf16 autocast where bf16 is fast (`enhance.compute`); False trains in fp32 everywhere.
    bf16: bool = True


def learning_rate(options: TrainerOptions, step: int) -> float:
    """The rate at optimiser step `step`: linear warm-up, constant, then the linear cool-down."""
    warm = min(1.0, (step + 1) / max(1, options.warmup))
    cool = min(1.0, (options.steps - step) / options.cooldown) if options.cooldown else 1.0
    return options.lr * warm * max(0.0, cool)


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Writes a safetensors file so that a reader sees the old file or the complete new one (`write_atomic`)."""
    data = safetensors_bytes({k: v.detach().contiguous() for k, v in tensors.items()}, metadata=metadata)
    write_atomic(Path(path), data)


def read_checkpoint_metadata(path: Path, kind: str, legacy_formats: tuple[str, ...] = ()) -> dict[str, str]:
    """A checkpoint's metadata, refused unless it is this version's and of `kind`.

    `legacy_formats` are the formats a task's checkpoints had before the Trainer (same
    tensor layout, no `kind`); their metadata is read as this kind's.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") in legacy_formats and metadata.get("version") == "1" and "kind" not in metadata:
        metadata = {**metadata, "format": CHECKPOINT_FORMAT, "version": str(CHECKPOINT_VERSION), "kind": kind}
    if metadata.get("format") != CHECKPOINT_FORMAT or metadata.get("version") != str(CHECKPOINT_VERSION):
        raise EnhanceError(f"{path}: not a version {CHECKPOINT_VERSION} enhance checkpoint")
    if metadata.get("kind") != kind:
        raise EnhanceError(f"{path}: a checkpoint of {metadata.get('kind')!r}, not {kind!r}")
    return metadata


def adam_tensors(optimizer: torch.optim.Optimizer, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An Adam(W) optimiser's moments and step counts, named after `module`'s parameters."""
    names = {id(p): n for n, p in module.named_parameters()}
    tensors = {}
    for param, state in optimizer.state.items():
        name = names[id(param)]
        tensors[f"adam.{name}.exp_avg"] = state["exp_avg"]
        tensors[f"adam.{name}.exp_avg_sq"] = state["exp_avg_sq"]
        tensors[f"adam.{name}.step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    return tensors


def restore_adam(optimizer: torch.optim.Optimizer, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Puts back what `adam_tensors` saved (parameters it has no moments for start fresh)."""
    for name, param in module.named_parameters():
        if f"adam.{name}.exp_avg" in tensors:
            optimizer.state[param] = {
                "exp_avg": tensors[f"adam.{name}.exp_avg"],
                "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"],
                "step": tensors[f"adam.{name}.step"].reshape(()).cpu(),
            }


@contextmanager
def stop_on_signals() -> Iterator[dict]:
    """Turns SIGTERM and SIGINT into a request to stop after the current step; restores the handlers."""
    request = {"stop": False}
    handler = lambda *_: request.update(stop=True)  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Runs a `TrainingTask` to `options.steps` or the time budget, whichever comes first."""

    def __init__(self, task: TrainingTask, options: TrainerOptions, log: Callable[[str], None] = print):
        self.task, self.options, self.log = task, options, log
        self.device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.out = Path(options.out)
        self.checkpoint = self.out / "checkpoint.safetensors"
        self.step = 0
        # Optional on a task: checkpoint formats it wrote before the Trainer (see `read_checkpoint_metadata`).
        self._legacy_formats = tuple(getattr(task, "legacy_checkpoint_formats", ()))

    def run(self) -> Path:
        """Trains (resuming from `out` if a checkpoint is there); returns the EMA bundle's directory."""
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.options.seed)
        self._prepare()
        with stop_on_signals() as request, open(self.out / "train.jsonl", "a") as log_file:
            self._log_file = log_file
            self._loop(request)
            self._save()
        self.log(f"stopped at step {self.step}; checkpoint {self.checkpoint}")
        return self.out / "bundle"

    def _prepare(self) -> None:
        config = self.task.config
        if self.checkpoint.exists():
            stored = json.loads(read_checkpoint_metadata(self.checkpoint, self.task.kind, self._legacy_formats)["config"])
            config = self.task.resume_config(stored) if hasattr(self.task, "resume_config") else stored
            if config != self.task.config and not hasattr(self.task, "resume_config"):
                raise EnhanceError(f"{self.checkpoint}: this run trains {stored}, not the model asked for ({self.task.config})")
            self.task.config = config
        self.model = self.task.build(config).to(self.device)
        self.ema = self.task.build(config).to(self.device)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=self.options.lr, weight_decay=self.options.weight_decay)
        if self.checkpoint.exists():
            self._load_checkpoint()
            self.log(f"resumed from {self.checkpoint} at step {self.step}")

    def _loop(self, request: dict) -> None:
        options, started = self.options, time.monotonic()
        self._started, sums, count, last_checkpoint = started, {}, 0, self.step
        while self.step < options.steps and not request["stop"]:
            if options.minutes is not None and time.monotonic() - started > options.minutes * 60:
                break
            scalars = self._train_step()
            for key, value in scalars.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            if self.step % options.log_every == 0:
                self._record({key: value / count for key, value in sums.items()})
                sums, count = {}, 0
            if self.step - last_checkpoint >= options.checkpoint_every:
                self._save_checkpoint()
                last_checkpoint = self.step
            if self.step % options.val_every == 0:
                self._validate()

    def _train_step(self) -> dict[str, float]:
        options = self.options
        lr = learning_rate(options, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device) if options.bf16 else nullcontext():
            loss, scalars = self.task.loss(self.model, self.step)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if options.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), options.grad_clip)
        self.optimizer.step()
        self._update_ema()
        self.step += 1
        return {"loss": loss.item(), "lr": lr, **scalars}

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Warm-up of the decay, so early EMA weights are not dominated by the random init.
        decay = min(self.options.ema_decay, (1 + self.step) / (10 + self.step))
        for average, param in zip(self.ema.parameters(), self.model.parameters()):
            average.lerp_(param.detach(), 1 - decay)
        for average, buffer in zip(self.ema.buffers(), self.model.buffers()):
            average.copy_(buffer)

    def _record(self, record: dict) -> None:
        record = {"step": self.step, **record, "elapsed_s": round(time.monotonic() - self._started, 1)}
        line = json.dumps(record)
        self._log_file.write(line + "\n")
        self._log_file.flush()
        self.log(line)

    def _validate(self) -> None:
        self.ema.eval()
        metrics = self.task.validate(self.ema)
        if metrics:
            self._record({"val": metrics})
        self.task.save_bundle(self.ema, self.out / "bundle")

    def _save(self) -> None:
        self._save_checkpoint()
        self.task.save_bundle(self.ema, self.out / "bundle")

    def _save_checkpoint(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        tensors.update(adam_tensors(self.optimizer, self.model))
        # Optional on a task: state of its own to resume with (a discriminator and its optimiser).
        if hasattr(self.task, "extra_state"):
            tensors.update({f"task.{k}": v for k, v in self.task.extra_state().items()})
        metadata = {
            "format": CHECKPOINT_FORMAT,
            "version": str(CHECKPOINT_VERSION),
            "kind": self.task.kind,
            "step": str(self.step),
            "config": json.dumps(self.task.config),
        }
        atomic_save(tensors, self.checkpoint, metadata)

    def _load_checkpoint(self) -> None:
        metadata = read_checkpoint_metadata(self.checkpoint, self.task.kind, self._legacy_formats)
        tensors = load_file(str(self.checkpoint), device=str(self.device))
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
        self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
        restore_adam(self.optimizer, self.model, tensors)
        task_state = {k[5:]: v for k, v in tensors.items() if k.startswith("task.")}
        if task_state and hasattr(self.task, "load_extra_state"):
            self.task.load_extra_state(task_state)
        self.step = int(metadata["step"])
