"""`--engine ray`: the per-file work of `enhance run` and `enhance compare` on a Ray cluster.

The driver (this process) plans as the local engine does, then hands Ray Data the list of
file names, never the images: `map_batches` with a callable class, so each actor loads the
model once and then reads, enhances and writes its files itself (the workers must see the
paths, on the same machine or on a file system the cluster shares). What comes back is
one small result per file.

Guarantees, as for the local engine:
- Outputs go through `enhance.runs.process_task`, so through `write_atomic` (temporary
  file, fsync, rename); inputs are never opened for writing.
- A file that fails for its own reason (bad JPEG, disk full) comes back as a failed result
  with its reason, once; it is not retried.
- A worker that dies (killed, out of memory) is restarted by Ray and its block of files is
  redone on the new actor (`max_worker_deaths` times; then that block's files fail with
  that reason and the run goes on). The temporary files a dead worker left are removed
  at the end of the run, so only complete outputs remain; a rerun skips them.
- An error that concerns the whole run (the model cannot be loaded, a bad --tile) stops
  the run and is raised here as itself.

`compare_pass` distributes the per-image pass of `enhance compare` the same way: the actors
fill the comparison's result cache, and the local pass that follows finds every result
there. The cache is the same one a local run uses, so a compare interrupted on a cluster
resumes locally and the other way round.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..errors import EnhanceError

# Files per Ray Data block (at most): the unit of a Ray task, of the work a restarted
# worker redoes, and of progress. Larger blocks spend less on Ray's per-task overhead.
FILES_PER_BLOCK = 16
MAX_WORKER_DEATHS = 3
INSTALL_HINT = "--engine ray needs Ray: pip install 'enhance[ray]'"


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray without its Data library cannot run this engine)
    except ImportError as error:
        raise EnhanceError(f"{INSTALL_HINT} ({error})") from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Connects to Ray: the cluster at `address` ("auto", "HOST:PORT", "ray://..."), else a new
    local one on loopback. Returns whether this call started the connection (and should end it)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    # Workers' stdout must not reach ours: `enhance run` prints one JSON line per file there.
    common = {"log_to_driver": False, "logging_level": "WARNING"}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **common)
    except ConnectionError as error:
        raise EnhanceError(f"cannot connect to the Ray cluster at {address}: {error}") from None
    return True


def _quiet_data_context():
    from ray.data import DataContext

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own deprecated fields, on creation
        context = DataContext.get_current()
    context.enable_progress_bars = False  # the command line draws its own
    context.print_on_execution_start = False
    # A block whose worker died past its retries fails its own files, not the run.
    context.max_errored_blocks = -1
    return context


def _raise_fatal(row: dict) -> None:
    message = f"{row['fatal']}"
    if row.get("kind") == "EnhanceError":
        raise EnhanceError(message)
    raise RuntimeError(f"a Ray worker failed: {row.get('type')}: {message}")


def _fatal_row(error: Exception) -> str:
    kind = "EnhanceError" if isinstance(error, EnhanceError) else "other"
    return json.dumps({"fatal": str(error), "kind": kind, "type": type(error).__name__})


def _enter(cwd: str, threads: int) -> None:
    """An actor's start: the driver's working directory (relative names mean the same there,
    when the cluster shares it) and its share of the cores for torch."""
    import torch

    if os.path.isdir(cwd):
        os.chdir(cwd)
    torch.set_num_threads(threads)


def _cluster_slots(ray, num_cpus: float, num_gpus: float) -> int:
    resources = ray.cluster_resources()
    if num_gpus:
        return max(1, int(resources.get("GPU", 0) // num_gpus))
    return max(1, int(resources.get("CPU", 1) // max(num_cpus, 1e-9)))


# --- enhance run ----------------------------------------------------------------------


class EnhanceFiles:
    """The Ray Data callable class: loads the model once per actor, enhances a batch of files."""

    def __init__(self, settings: dict, threads: int, cwd: str):
        from ..runs import Settings

        _enter(cwd, threads)
        self.settings = Settings(**settings)
        self.enhancer = None

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from ..runs import Task, process_task

        rows = []
        try:
            # Loaded on the first batch rather than in __init__, so a model error comes
            # back as a result instead of an actor Ray restarts for ever.
            if self.enhancer is None:
                self.enhancer = self.settings.load_enhancer()
            for source, target in zip(batch["input"], batch["output"]):
                result = process_task(Task(Path(str(source)), Path(str(target))), self.settings, self.enhancer)
                rows.append(json.dumps(asdict(result)))
        except Exception as error:  # whole-run errors: the driver raises them
            rows = [_fatal_row(error)]
        return {"result": np.array(rows, dtype=object)}


@dataclass
class RayEngine:
    """An `enhance.runs.Engine` on Ray. `actors`: how many (default: the cluster's CPUs over
    `num_cpus`, or its GPUs over `num_gpus`); each actor gets `num_cpus` torch threads."""

    address: str | None = None
    actors: int | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    files_per_block: int = FILES_PER_BLOCK
    max_worker_deaths: int = MAX_WORKER_DEATHS

    def __call__(self, tasks, settings, record: Callable) -> None:
        from ..runs import FileResult, remove_stale_temporaries

        ray = _ray()
        started = connect(self.address)
        try:
            items = [{"input": str(task.input), "output": str(task.output)} for task in tasks]
            dataset = self._mapped(ray, items, EnhanceFiles, {"settings": asdict(settings)})
            waiting = {str(task.input): task for task in tasks}
            for row in dataset.iter_rows():
                fields_ = json.loads(row["result"])
                if "fatal" in fields_:
                    _raise_fatal(fields_)
                if waiting.pop(fields_["input"], None) is not None:  # a redone block reports once
                    record(FileResult(**fields_))
            for task in waiting.values():
                reason = f"{task.input}: the Ray worker enhancing it died {self.max_worker_deaths + 1} times (killed or out of memory)"
                record(FileResult(str(task.input), str(task.output), "failed", reason))
            # A worker killed while writing leaves a temporary file; its block was redone.
            remove_stale_temporaries(tasks)
        finally:
            if started:
                ray.shutdown()

    def _mapped(self, ray, items: list[dict], callable_class, constructor_kwargs: dict):
        """`items` (file names, a few per block) through an actor pool of `callable_class`."""
        _quiet_data_context()
        actors = max(1, min(self.actors or _cluster_slots(ray, self.num_cpus, self.num_gpus), len(items)))
        # Up to `files_per_block` files per block, but at least 4 blocks per actor, so a
        # short list still spreads over every actor and progress moves.
        per_block = max(1, min(self.files_per_block, math.ceil(len(items) / (4 * actors))))
        blocks = math.ceil(len(items) / per_block)
        with warnings.catch_warnings():
            # Ray 2.60 calls extra remote args deprecated, yet documents them as the way
            # to bound the retries (max_task_retries) of an actor pool.
            warnings.simplefilter("ignore", DeprecationWarning)
            return ray.data.from_items(items, override_num_blocks=blocks).map_batches(
                callable_class,
                fn_constructor_kwargs={**constructor_kwargs, "threads": max(1, int(self.num_cpus)), "cwd": os.getcwd()},
                batch_size=None, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_task_retries=self.max_worker_deaths,
            )

    def compare_pass(self, spec: dict, images: list[tuple[str, Path]], progress=None) -> dict[str, str]:
        """Fills the comparison cache `spec["cache"]` with every image's results (see `CompareImages`).

        Returns {label: reason} for the images the workers could not use; the local pass
        that follows reports them as `compare` always does.
        """
        ray = _ray()
        started = connect(self.address)
        skipped: dict[str, str] = {}
        try:
            items = [{"label": label, "path": str(path)} for label, path in images]
            dataset = self._mapped(ray, items, CompareImages, {"spec": spec})
            waiting = {label for label, _ in images}
            for row in dataset.iter_rows():
                fields_ = json.loads(row["result"])
                if "fatal" in fields_:
                    _raise_fatal(fields_)
                if fields_["label"] in waiting:
                    waiting.discard(fields_["label"])
                    if fields_["status"] == "skipped":
                        skipped[fields_["label"]] = fields_["reason"]
                    if progress is not None:
                        progress(len(images) - len(waiting), len(images), f"{fields_['label']} (on Ray)")
            # Images whose worker died past its retries are simply left to the local pass.
        finally:
            if started:
                ray.shutdown()
        return skipped


# --- enhance compare --------------------------------------------------------------------


class CompareImages:
    """The Ray Data callable class of `compare --engine ray`: one actor's share of the per-image pass.

    `spec` holds what `compare` decided on the driver (codec, options, configurations,
    qualities, per-image metric names, seed, projection, cache folder); the actor loads the
    codec, enhancer and metrics once, then runs `pipeline.process_image` on its images,
    which writes every result into the shared cache.
    """

    def __init__(self, spec: dict, threads: int, cwd: str):
        _enter(cwd, threads)
        self.spec = spec
        self.work = None

    def _load(self) -> None:
        from ..comparison.cache import ResultCache
        from ..comparison.pipeline import Work
        from ..comparison.scoring import plan_metrics
        from ..comparison.subject import Subject
        from ..enhance_one import load_enhancer

        spec = self.spec
        enhancer = None
        if any(configuration.kind == "enhanced" for configuration in spec["configurations"]):
            enhancer = load_enhancer(spec["codec"], model=spec["model"], name=spec["enhancer_name"], device=spec["device"])
            if enhancer.identity != spec["enhancer_identity"]:
                raise EnhanceError(f"a Ray worker loaded enhancer {enhancer.identity}, not the driver's {spec['enhancer_identity']}")
        self.plan = plan_metrics(spec["metrics"], [])
        self.work = Work(
            subject=Subject(name=spec["codec"], options=spec["codec_options"]), enhancer=enhancer,
            configurations=spec["configurations"], qualities=spec["qualities"], seed=spec["seed"],
            consistent=spec["consistent"], cache=ResultCache(root=Path(spec["cache"])),
        )

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from ..comparison.dataset import load_dataset_image
        from ..comparison.pipeline import process_image
        from ..errors import CodecUnavailable, WeightsError

        rows = []
        try:
            if self.work is None:
                self._load()
            for label, path in zip(batch["label"], batch["path"]):
                label = str(label)
                try:
                    image, pixels = load_dataset_image(label, Path(str(path)), self.spec["max_pixels"])
                    process_image(self.work, image, pixels, self.plan)
                except (CodecUnavailable, WeightsError):
                    raise
                except EnhanceError as error:  # as the local pass does: this image is skipped
                    rows.append(json.dumps({"label": label, "status": "skipped", "reason": str(error)}))
                    continue
                rows.append(json.dumps({"label": label, "status": "done"}))
        except Exception as error:  # whole-run errors: the driver raises them
            rows = [_fatal_row(error)]
        return {"result": np.array(rows, dtype=object)}
