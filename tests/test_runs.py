import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import BROKEN_KINDS, JPEG_VARIANTS, make_broken, make_jpeg, make_tiny_bundle
from enhance import cli
from enhance.errors import BadInput, EnhanceError
from enhance.image import TEMP_SUFFIX, load_image
from enhance.enhance_one import MODEL_ENV
from enhance.outputs import is_claim, is_output_record
from enhance.runs import Settings, enhance_file, plan, run

CLI = [sys.executable, "-c", "from enhance.cli import main; main()"]
# One torch thread: on a busy machine, spinning OpenMP threads cost far more than they give
# to images this small.
SINGLE_THREADED = {**os.environ, "OMP_NUM_THREADS": "1"}


def make_tree(root: Path, good: int, broken: int, seed: int = 0) -> tuple[dict[Path, tuple[int, int]], list[Path]]:
    """`good` JPEG variants and `broken` bad files in nested folders; returns {input: displayed (h, w)} and the bad ones."""
    rng = np.random.default_rng(seed)
    extensions = (".jpg", ".JPG", ".jpeg", ".jpe")
    goods: dict[Path, tuple[int, int]] = {}
    for index in range(good):
        kind = JPEG_VARIANTS[index % len(JPEG_VARIANTS)]
        height, width = (int(v) for v in rng.integers(24, 65, size=2))
        path = root / f"d{index % 7}" / f"s{index % 3}" / f"{kind}-{index:03d}{extensions[index % len(extensions)]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_jpeg(kind, height, width, seed=index))
        orientation = load_image(path).orientation
        goods[path] = (width, height) if orientation >= 5 else (height, width)
    bad = []
    for index in range(broken):
        path = root / f"d{index % 4}" / f"bad-{BROKEN_KINDS[index % len(BROKEN_KINDS)]}-{index:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_broken(BROKEN_KINDS[index % len(BROKEN_KINDS)], seed=index))
        bad.append(path)
    return goods, bad


def expected_output(tree: Path, out: Path, path: Path, extension: str = ".png") -> Path:
    relative = path.relative_to(tree)
    return out / relative.parent / f"{path.stem}{extension}"


def files_under(root: Path) -> set[Path]:
    """Every file under `root` but the records of what made each output."""
    return {p for p in root.rglob("*") if p.is_file() and not is_output_record(p.name)}


# --- planning ---------------------------------------------------------------------


def test_plan_mirrors_the_tree_and_refuses_unsafe_outputs(tmp_path):
    tree = tmp_path / "photos"
    for name in ["a.jpg", "b.JPEG", "sub/c.jpg", "sub/deep/d.jpe", ".hidden/e.jpg", "sub/.f.jpg", "notes.txt", "twin.jpg", "twin.jpeg"]:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(b"x")
    tasks, failures = plan([tree, tmp_path / "missing.jpg"], tmp_path / "out", suffix="_e")
    outputs = {task.input.relative_to(tree).as_posix(): task.output.relative_to(tmp_path / "out").as_posix() for task in tasks}
    assert outputs == {
        "a.jpg": "a_e.png",
        "b.JPEG": "b_e.png",
        "sub/c.jpg": "sub/c_e.png",
        "sub/deep/d.jpe": "sub/deep/d_e.png",
        "twin.jpeg": "twin_e.png",
    }
    reasons = sorted(failure.reason for failure in failures)
    assert any("missing.jpg" in r and "no such file" in r for r in reasons)
    assert any("twin_e.png" in r and "already the output of" in r for r in reasons)

    # An output that resolves to an input (same folder, JPEG output) is refused.
    tasks, failures = plan([tree / "a.jpg"], tree, output_format="jpeg")
    assert not tasks and "would overwrite an input" in failures[0].reason
    # An output folder inside the input folder is not searched for inputs.
    (tree / "out").mkdir()
    (tree / "out" / "old.jpg").write_bytes(b"x")
    tasks, _ = plan([tree], tree / "out", globs=("*.jpg",), output_format="jpeg", suffix="_e")
    assert all("out" not in task.input.relative_to(tree).parts for task in tasks)


def test_plan_rejects_unknown_formats_and_suffixes_with_separators(tmp_path):
    with pytest.raises(EnhanceError, match="output format"):
        plan([tmp_path], tmp_path / "out", output_format="gif")
    with pytest.raises(EnhanceError, match="separator"):
        plan([tmp_path], tmp_path / "out", suffix="x/y")


# --- running in-process -------------------------------------------------------------


def test_a_mixed_tree_is_enhanced_with_metadata_and_bad_files_reported(tmp_path, tiny_bundle):
    tree, out = tmp_path / "tree", tmp_path / "out"
    goods, bad = make_tree(tree, good=len(JPEG_VARIANTS), broken=len(BROKEN_KINDS))
    events = []
    summary = run([tree], out, model=tiny_bundle, consistent=True, report_path=tmp_path / "run.json", progress_callback=lambda *event: events.append(event))

    assert len(summary.done) == len(goods) and len(summary.failed) == len(bad) and not summary.skipped
    assert [event[1:] for event in events] == [(i + 1, len(goods) + len(bad)) for i in range(len(events))]
    for path, size in goods.items():
        written = Image.open(expected_output(tree, out, path))
        assert (written.height, written.width) == size
        assert written.mode == ("L" if "grey" in path.name else "RGB")
        assert written.getexif().get(0x0112, 1) == 1
        if "icc" in path.name:
            assert written.info["icc_profile"] == load_image(path).metadata.icc_profile
    reasons = {Path(result.input).name: result.reason for result in summary.failed}
    for path in bad:
        assert str(path) in reasons[path.name]
    assert "empty file" in reasons["bad-empty-01.jpg"]
    assert "not a JPEG" in reasons["bad-png_named_jpg-04.jpg"]
    assert "decompression bomb" in reasons["bad-bomb-03.jpg"]
    notes = {Path(result.input).name.split("-")[0]: result.note for result in summary.done}
    assert "without the JPEG consistency projection" in notes["cmyk"] and notes["420"] is None

    report = json.loads((tmp_path / "run.json").read_text())
    assert report["format"] == "enhance.run-report" and report["version"] == 1
    assert report["counts"] == {"done": len(goods), "skipped": 0, "failed": len(bad), "redone": 0}
    assert {f["status"] for f in report["files"]} == {"done", "failed"}


def test_a_rerun_skips_without_loading_the_model_and_overwrite_never_touches_inputs(tmp_path, tiny_bundle, monkeypatch):
    tree, out = tmp_path / "tree", tmp_path / "out"
    goods, _ = make_tree(tree, good=3, broken=0)
    inputs_before = {path: path.read_bytes() for path in goods}
    first = run([tree], out, model=tiny_bundle)
    assert len(first.done) == 3
    # A stale temporary file from a killed run is removed, never taken for an output.
    target = expected_output(tree, out, next(iter(goods)))
    stale = target.parent / f".{target.name}.0123456789ab{TEMP_SUFFIX}"
    stale.write_bytes(b"partial")

    def no_model(self):
        raise AssertionError("the model was loaded")

    with monkeypatch.context() as patched:
        patched.setattr(Settings, "load_enhancer", no_model)
        again = run([tree], out, model=tiny_bundle)
    assert len(again.skipped) == 3 and not again.done and not stale.exists()

    stamps = {path: expected_output(tree, out, path).stat().st_mtime_ns for path in goods}
    redone = run([tree], out, model=tiny_bundle, overwrite=True)
    assert len(redone.done) == 3
    assert all(expected_output(tree, out, path).stat().st_mtime_ns >= stamps[path] for path in goods)
    assert {path: path.read_bytes() for path in goods} == inputs_before


@pytest.mark.parametrize("output_format, extension, mode", [("webp", ".webp", "RGB"), ("jpeg", ".jpg", "RGB"), ("tiff", ".tif", "RGB")])
def test_other_output_formats_and_suffix(tmp_path, tiny_bundle, output_format, extension, mode):
    source = tmp_path / "photo.jpg"
    source.write_bytes(make_jpeg("icc", 33, 47))
    summary = run([source], tmp_path / "out", model=tiny_bundle, output_format=output_format, suffix="_enhanced")
    written = Image.open(tmp_path / "out" / f"photo_enhanced{extension}")
    assert summary.ok and written.mode == mode and written.size == (47, 33)
    assert written.info["icc_profile"] == load_image(source).metadata.icc_profile


def test_enhance_file_refuses_to_overwrite_its_input_and_reads_the_model_env(tmp_path, tiny_bundle, monkeypatch):
    source = tmp_path / "photo.jpg"
    source.write_bytes(make_jpeg("rotated", 33, 47, seed=4))  # orientation 6: turned a quarter
    with pytest.raises(BadInput, match="overwrite its input"):
        enhance_file(source, tmp_path / "photo.jpg", model=tiny_bundle)
    monkeypatch.setenv(MODEL_ENV, str(tiny_bundle))
    written = enhance_file(source, tmp_path / "photo.png")
    assert Image.open(written).size == (33, 47)


def test_a_bad_tile_or_step_count_stops_the_run_before_any_file(tmp_path, tiny_bundle):
    source = tmp_path / "a.jpg"
    source.write_bytes(make_jpeg("420"))
    with pytest.raises(EnhanceError, match="--tile 100"):
        run([source], tmp_path / "out", model=tiny_bundle, tile=100)
    with pytest.raises(EnhanceError, match="--steps 999"):
        run([source], tmp_path / "out", model=tiny_bundle, steps=999)
    assert not (tmp_path / "out").exists()


def test_jobs_split_the_work_across_worker_processes(tmp_path, tiny_bundle):
    tree, out = tmp_path / "tree", tmp_path / "out"
    goods, bad = make_tree(tree, good=3, broken=1)
    summary = run([tree], out, model=tiny_bundle, jobs=2)
    assert len(summary.done) == 3 and len(summary.failed) == 1
    assert all(expected_output(tree, out, path).is_file() for path in goods)
    # Same pixels as a single-process run: workers change nothing but speed.
    single = run([tree], tmp_path / "single", model=tiny_bundle)
    for path in goods:
        np.testing.assert_array_equal(
            np.asarray(Image.open(expected_output(tree, out, path))), np.asarray(Image.open(expected_output(tree, tmp_path / "single", path)))
        )
    assert len(single.failed) == 1


# --- the command line ------------------------------------------------------------------


def test_cli_run_prints_one_json_line_per_file_and_exits_1_on_failure(tmp_path, tiny_bundle):
    tree = tmp_path / "tree"
    make_tree(tree, good=2, broken=1)
    result = CliRunner().invoke(cli.app, ["run", str(tree), "-o", str(tmp_path / "out"), "--model", str(tiny_bundle), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["status"] for line in lines) == ["done", "done", "failed"]
    assert lines[-1]["completed"] == lines[-1]["total"] == 3
    assert "done 2, skipped 0, failed 1" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["failed"] == 1


def test_a_run_killed_halfway_resumes_without_duplicate_or_partial_files(tmp_path):
    """200 mixed files; SIGKILL after about half; the rerun finishes every good file exactly once."""
    bundle = make_tiny_bundle(tmp_path / "bundle")
    tree, out = tmp_path / "tree", tmp_path / "out"
    goods, bad = make_tree(tree, good=180, broken=20)
    command = CLI + ["run", str(tree), "-o", str(out), "--model", str(bundle), "--report", str(tmp_path / "run.json")]

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=SINGLE_THREADED)
    finished_before_kill = 0
    for line in process.stdout:
        finished_before_kill += json.loads(line)["status"] == "done"
        if json.loads(line)["completed"] >= 100:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert 0 < finished_before_kill < len(goods)
    for path in files_under(out):
        # The killed run's temporaries and its claim on the output in progress are what a rerun clears.
        if not path.name.endswith(TEMP_SUFFIX) and not is_claim(path.name):
            Image.open(path).load()  # whatever exists is complete

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900, env=SINGLE_THREADED)
    assert rerun.returncode == 1, rerun.stderr  # the broken files fail again
    expected = {expected_output(tree, out, path): size for path, size in goods.items()}
    assert files_under(out) == set(expected)  # no temporaries, duplicates or outputs of bad files
    for path, size in expected.items():
        image = Image.open(path)
        image.load()
        assert (image.height, image.width) == size
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["counts"]["failed"] == len(bad)
    assert report["counts"]["done"] + report["counts"]["skipped"] == len(goods)
    assert report["counts"]["skipped"] >= finished_before_kill
