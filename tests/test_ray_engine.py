"""`--engine ray`: the local engine's guarantees on a local Ray cluster (2 CPUs, loopback).

Skipped when Ray is not installed (`pip install -e '.[test,ray]'`). One Ray instance
serves the whole module; each run starts its own actors, which costs a few seconds.
"""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'enhance[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'enhance[ray]')")

from conftest import make_tiny_bundle  # noqa: E402
from test_runs import expected_output, files_under, make_tree  # noqa: E402
from enhance import cli  # noqa: E402
from enhance.engines.ray_engine import RayEngine  # noqa: E402
from enhance.errors import EnhanceError  # noqa: E402
from enhance.image import TEMP_SUFFIX  # noqa: E402
from enhance.runs import run  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("ray") / "tiny-dirac")


def _comparable(report: dict, out: Path) -> list[tuple]:
    return sorted(
        (f["input"], f.get("output", "").replace(str(out), "OUT"), f["status"], f.get("reason", "").replace(str(out), "OUT"), f.get("note"))
        for f in report["files"]
    )


def worker_pids() -> set[int]:
    """Processes of this engine's Ray actors (Ray titles them after the callable class)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"EnhanceFiles" in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
            except OSError:
                pass
    return pids


def test_ray_gives_the_local_engines_outputs_and_report(tmp_path, local_ray, bundle):
    tree = tmp_path / "tree"
    goods, bad = make_tree(tree, good=50, broken=10)
    inputs_before = {path: path.read_bytes() for path in [*goods, *bad]}
    events = []
    on_ray = run(
        [tree], tmp_path / "ray", model=bundle, consistent=True, report_path=tmp_path / "ray.json",
        engine=RayEngine(actors=2), progress_callback=lambda *event: events.append(event),
    )
    local = run([tree], tmp_path / "local", model=bundle, consistent=True, report_path=tmp_path / "local.json")

    assert on_ray.line().split(" in ")[0] == local.line().split(" in ")[0] == f"done {len(goods)}, skipped 0, failed {len(bad)}"
    assert [event[1:] for event in events] == [(i + 1, len(goods) + len(bad)) for i in range(len(goods) + len(bad))]
    ray_report, local_report = (json.loads((tmp_path / name).read_text()) for name in ("ray.json", "local.json"))
    assert ray_report["counts"] == local_report["counts"] and ray_report["settings"] == local_report["settings"]
    assert _comparable(ray_report, tmp_path / "ray") == _comparable(local_report, tmp_path / "local")
    for path in goods:
        np.testing.assert_array_equal(
            np.asarray(Image.open(expected_output(tree, tmp_path / "ray", path))),
            np.asarray(Image.open(expected_output(tree, tmp_path / "local", path))),
        )
    assert files_under(tmp_path / "ray") == {expected_output(tree, tmp_path / "ray", path) for path in goods}
    assert {path: path.read_bytes() for path in inputs_before} == inputs_before

    # A rerun with the same settings skips every finished output; only the broken files are tried (and fail) again.
    again = run([tree], tmp_path / "ray", model=bundle, consistent=True, engine=RayEngine(actors=1))
    assert len(again.skipped) == len(goods) and len(again.failed) == len(bad) and not again.done


def test_a_killed_worker_is_restarted_and_its_files_redone(tmp_path, local_ray, bundle):
    tree, out = tmp_path / "tree", tmp_path / "out"
    goods, bad = make_tree(tree, good=50, broken=4)
    killed, recorded, before, after = [], [], set(), set()

    def kill_one_worker(result, completed, total):
        recorded.append(result.input)
        if completed == 6 and not killed:
            before.update(worker_pids())
            os.kill(min(before), signal.SIGKILL)
            killed.append(min(before))
        elif killed:
            after.update(worker_pids())

    summary = run([tree], out, model=bundle, engine=RayEngine(actors=2, files_per_block=2), progress_callback=kill_one_worker)
    assert killed, "no worker was killed"
    assert after - before, "the killed worker was not restarted"
    assert len(summary.done) == len(goods) and len(summary.failed) == len(bad)
    assert sorted(recorded) == sorted(str(path) for path in [*goods, *bad])  # each file once
    # No partial, temporary or duplicate files: exactly one complete output per good input.
    assert files_under(out) == {expected_output(tree, out, path) for path in goods}
    for path in goods:
        Image.open(expected_output(tree, out, path)).load()
    assert not any(path.name.endswith(TEMP_SUFFIX) for path in out.rglob("*"))


def test_a_whole_run_error_on_a_worker_stops_the_run_as_itself(tmp_path, local_ray, bundle):
    tree = tmp_path / "tree"
    make_tree(tree, good=3, broken=0)
    with pytest.raises(EnhanceError, match="--tile 100"):
        run([tree], tmp_path / "out", model=bundle, tile=100, engine=RayEngine(actors=1))
    assert not files_under(tmp_path / "out") if (tmp_path / "out").exists() else True


def test_cli_run_on_ray_prints_the_same_lines_summary_and_exit_code(tmp_path, local_ray, bundle):
    tree = tmp_path / "tree"
    make_tree(tree, good=4, broken=1)
    command = ["run", str(tree), "-o", str(tmp_path / "out"), "--model", str(bundle), "--report", str(tmp_path / "r.json")]
    result = CliRunner().invoke(cli.app, [*command, "--engine", "ray", "--jobs", "2"])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # nothing but the JSON lines on stdout
    assert sorted(line["status"] for line in lines) == ["done"] * 4 + ["failed"]
    assert lines[-1]["completed"] == lines[-1]["total"] == 5
    assert "done 4, skipped 0, failed 1" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["counts"] == {"done": 4, "skipped": 0, "failed": 1, "redone": 0}


def test_a_rerun_after_a_killed_ray_run_finishes_only_what_was_left(tmp_path, local_ray, bundle):
    """The driver (the command) is killed with SIGKILL mid-run; the rerun does only the rest."""
    import subprocess

    from test_runs import CLI

    # Read now: ray.init set RAY_AUTH_MODE=token here, which a client of this cluster needs.
    single_threaded = {**os.environ, "OMP_NUM_THREADS": "1"}

    tree, out = tmp_path / "tree", tmp_path / "out"
    goods, _ = make_tree(tree, good=40, broken=0)
    address = local_ray.get_runtime_context().gcs_address
    command = CLI + ["run", str(tree), "-o", str(out), "--model", str(bundle), "--engine", "ray", "--address", address, "--jobs", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=single_threaded)
    done_before_kill = 0
    for line in process.stdout:
        if line.startswith("{"):
            done_before_kill += json.loads(line)["status"] == "done"
            if done_before_kill >= 5:
                break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    rerun = subprocess.run([*command, "--report", str(tmp_path / "run.json")], capture_output=True, text=True, timeout=600, env=single_threaded)
    assert rerun.returncode == 0, rerun.stderr
    counts = json.loads((tmp_path / "run.json").read_text())["counts"]
    assert counts["skipped"] >= done_before_kill and counts["done"] + counts["skipped"] == len(goods) and counts["failed"] == 0
    assert files_under(out) == {expected_output(tree, out, path) for path in goods}  # no temporaries, no duplicates


# --- compare ------------------------------------------------------------------------


def test_compare_on_ray_fills_the_cache_a_local_compare_resumes_from(tmp_path, local_ray, bundle, monkeypatch):
    from test_compare import write_dataset

    from enhance.comparison import compare

    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    data = tmp_path / "data"
    write_dataset(data)
    options = dict(codec="jpeg", steps=[1, 2], model=bundle, figures=False, consistent=True, metrics=["psnr-rgb", "psnr-y"])
    # A local run does quality 20; the Ray run adds 50 and leaves 20's entries as they were.
    compare(data, tmp_path / "out", qualities=[20], **options)
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "out" / "cache").rglob("*") if path.is_file()}
    on_ray = compare(data, tmp_path / "out", qualities=[20, 50], engine=RayEngine(actors=2), **options)
    after = {path: path.stat().st_mtime_ns for path in (tmp_path / "out" / "cache").rglob("*") if path.is_file()}
    assert {path: after[path] for path in before} == before and len(after) > len(before)
    # The workers computed everything new: the driver's pass found it all in the cache.
    assert all(counts["misses"] == 0 for counts in on_ray.cache.values()), on_ray.cache
    assert [label for label, _ in on_ray.skipped] == ["broken.png"]

    local = compare(data, tmp_path / "local", qualities=[20, 50], **options)
    for name, document in local.results.items():  # the same numbers, bar the times
        for metric in ("bpp", "psnr-rgb", "psnr-y"):
            assert on_ray.results[name]["results"][metric] == document["results"][metric]
