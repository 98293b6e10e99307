"""Issue 14, `enhance run`: reruns that respect settings, outputs never inputs, interrupts, empty matches,
destinations checked before work, and two runs at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_jpeg, make_tiny_bundle
from enhance import cli, outputs, runs
from enhance.errors import EnhanceError
from enhance.image import TEMP_SUFFIX
from enhance.runs import RunInterrupted, run

CLI = [sys.executable, "-c", "from enhance.cli import main; main()"]
SINGLE_THREADED = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["enhance", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def photos(folder: Path, count: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"p{index}.jpg"
        path.write_bytes(make_jpeg("420", 24, 32, seed=index))
        paths.append(path)
    return paths


# --- newcomer 1: reruns skip only outputs made with the same settings --------------------------


def test_a_rerun_redoes_outputs_made_with_other_settings(tmp_path, tiny_bundle):
    tree, out = tmp_path / "in", tmp_path / "out"
    photos(tree)
    assert len(run([tree], out, model=tiny_bundle, steps=1).done) == 2
    same = run([tree], out, model=tiny_bundle, steps=1)
    assert len(same.skipped) == 2 and "made with the same settings" in same.skipped[0].reason

    for change in ({"steps": 2}, {"seed": 3}, {"consistent": True}, {"model": make_tiny_bundle(tmp_path / "other", seed=1)}):
        options = {"model": tiny_bundle, "steps": 1, **change}
        again = run([tree], out, **options)
        assert len(again.done) == 2 and len(again.redone) == 2, change
        key = next(iter(change))
        assert "made with other settings (" in again.done[0].redone and f"{key} " in again.done[0].redone
        assert "(2 redone: made before with other settings)" in again.line()
        assert run([tree], out, **options).skipped  # and now they are current
        assert json.loads(outputs.record_path(out / "p0.png").read_text())["settings"][key] is not None

    # An output with no record (made before records, or by something else) or edited since is redone.
    outputs.record_path(out / "p0.png").unlink()
    with Image.open(out / "p1.png") as image:
        image.rotate(90).save(out / "p1.png")
    redone = run([tree], out, model=tiny_bundle, steps=1)
    reasons = sorted(result.redone for result in redone.done)
    assert len(reasons) == 2 and all("redone:" in reason for reason in reasons)
    assert any("no record" in reason for reason in reasons)


# --- newcomer 3: outputs under OUTDIR are never inputs ------------------------------------------


def test_outdir_equal_to_the_input_folder_with_jpeg_output(tmp_path, tiny_bundle, monkeypatch, capsys):
    tree = tmp_path / "in"
    originals = {path: path.read_bytes() for path in photos(tree)}
    code, _, err = run_main(monkeypatch, capsys, "run", str(tree), "-o", str(tree), "-f", "jpeg", "--model", str(tiny_bundle))
    assert code == 2 and "outputs would replace their own inputs" in err and "--suffix" in err and err.count("\n") == 1
    first = run([tree], tree, model=tiny_bundle, output_format="jpeg", suffix="_x")
    assert len(first.done) == 2 and first.ok
    for _ in range(2):
        again = run([tree], tree, model=tiny_bundle, output_format="jpeg", suffix="_x")
        assert again.ok and len(again.skipped) == 2 and not again.done
    names = sorted(path.name for path in tree.iterdir() if not path.name.startswith("."))
    assert names == ["p0.jpg", "p0_x.jpg", "p1.jpg", "p1_x.jpg"]
    assert {path: path.read_bytes() for path in originals} == originals
    # Named explicitly (a shell glob), an earlier output is still not an input.
    named = run(sorted(tree.glob("*.jpg")), tree, model=tiny_bundle, output_format="jpeg", suffix="_x")
    assert named.ok and not named.done and sum("never an input" in (r.reason or "") for r in named.skipped) == 2


# --- newcomer 6: progress inside large images; interrupts say what was done ---------------------


def test_tiles_of_a_large_image_report_progress(tmp_path, tiny_bundle):
    photo = tmp_path / "big.jpg"
    photo.write_bytes(make_jpeg("420", 96, 96))
    events = []
    summary = run([photo], tmp_path / "out", model=tiny_bundle, steps=1, tile=80, tile_callback=lambda task, done, total: events.append((task.input.name, done, total)))
    assert summary.ok and events == [("big.jpg", done, 4) for done in range(1, 5)]


def test_an_interrupt_writes_the_report_and_says_a_rerun_resumes(tmp_path, tiny_bundle):
    tree = tmp_path / "in"
    photos(tree, 3)

    def stop_after_first(result, completed, total):
        if completed == 1:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as stopped:
        run([tree], tmp_path / "out", model=tiny_bundle, steps=1, report_path=tmp_path / "r.json", progress_callback=stop_after_first)
    summary = stopped.value.summary
    assert summary.interrupted and summary.not_started == 2 and not summary.ok
    assert "interrupted with 2 not done: rerun the same command to resume" in summary.line()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is True and report["not_started"] == 2 and report["counts"]["done"] == 1
    assert not [p for p in (tmp_path / "out").rglob("*") if outputs.is_claim(p.name) or p.name.endswith(TEMP_SUFFIX)]
    rerun = run([tree], tmp_path / "out", model=tiny_bundle, steps=1)
    assert len(rerun.skipped) == 1 and len(rerun.done) == 2


def test_sigterm_stops_the_cli_run_with_a_summary_and_a_report(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "bundle")
    tree = tmp_path / "in"
    photos(tree, 40)
    command = CLI + ["run", str(tree), "-o", str(tmp_path / "out"), "--model", str(bundle), "--report", str(tmp_path / "r.json")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SINGLE_THREADED)
    process.stdout.readline()  # one file done
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    assert "interrupted with" in err and "rerun the same command to resume" in err and "Traceback" not in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is True and report["counts"]["done"] >= 1


# --- newcomer 7: an empty match is an error ----------------------------------------------------------


def test_nothing_matching_the_glob_is_exit_2_naming_the_glob(tmp_path, monkeypatch, capsys):
    tree = tmp_path / "in"
    photos(tree)
    code, _, err = run_main(monkeypatch, capsys, "run", str(tree), "-o", str(tmp_path / "out"), "--glob", "*.png")
    assert code == 2 and "nothing to enhance: no file under" in err and "matched --glob *.png" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EnhanceError, match=r"matched --glob \*\.jpg \*\.jpeg"):
        run([empty], tmp_path / "out")


# --- hostile 7: destinations are checked before any work ---------------------------------------------


@pytest.fixture
def no_enhancing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an image was enhanced")

    monkeypatch.setattr(runs, "enhance_bytes", refuse)


def test_destinations_that_cannot_be_written_stop_the_run_before_work(tmp_path, tiny_bundle, monkeypatch, capsys, no_enhancing):
    tree = tmp_path / "in"
    photos(tree)
    (tmp_path / "reports").mkdir()
    code, _, err = run_main(monkeypatch, capsys, "run", str(tree), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "reports"))
    assert code == 2 and "--report" in err and "is a folder; give a file name" in err
    (tmp_path / "file").write_text("x")
    for outdir, message in ((tmp_path / "file", "OUTDIR is a file, not a folder"), (tmp_path / "file" / "sub", "which is a file, not a folder")):
        code, _, err = run_main(monkeypatch, capsys, "run", str(tree), "-o", str(outdir))
        assert code == 2 and message in err and err.count("\n") == 1, err
    with monkeypatch.context() as patched:
        patched.setattr(os, "access", lambda *args, **kwargs: False)
        with pytest.raises(EnhanceError, match="OUTDIR cannot be written"):
            run([tree], tmp_path / "out", model=tiny_bundle)

    def read_only(path, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(outputs, "write_atomic", read_only)
    with pytest.raises(EnhanceError, match=r"OUTDIR cannot be written \(Read-only file system\)"):
        run([tree], tmp_path / "out", model=tiny_bundle)


# --- hostile 8: two runs at once -----------------------------------------------------------------------


def test_an_output_claimed_by_a_live_run_is_left_to_it(tmp_path, tiny_bundle):
    tree, out = tmp_path / "in", tmp_path / "out"
    photos(tree)
    out.mkdir()
    claim = outputs.claim_path(out / "p0.png")
    # Another process claims p0.png through the same API and stays alive.
    holds = "import sys, time; from enhance import outputs; assert outputs.claim(sys.argv[1]) is None; print('held', flush=True); time.sleep(60)"
    other = subprocess.Popen([sys.executable, "-c", holds, str(out / "p0.png")], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "held\n"
        in_flight = out / f".p0.png.0123456789ab{TEMP_SUFFIX}"
        in_flight.write_bytes(b"the other run is writing this")
        summary = run([tree], out, model=tiny_bundle, steps=1)
        assert [Path(r.output).name for r in summary.done] == ["p1.png"]
        assert "being made by another run (pid" in summary.skipped[0].reason
        assert in_flight.exists() and claim.exists()
    finally:
        other.kill()
        other.wait()
    # Its process gone, the claim is stale: the next run takes the file over and cleans up.
    summary = run([tree], out, model=tiny_bundle, steps=1)
    assert [Path(r.output).name for r in summary.done] == ["p0.png"]
    assert not claim.exists() and not in_flight.exists()


def test_a_dead_runs_claim_naming_a_reused_pid_is_taken_over(tmp_path, tiny_bundle):
    """A killed run's pid can belong to another process by the time of the rerun (pids and thread
    ids are reused): a claim that no live process holds is dead whatever pid it names."""
    tree, out = tmp_path / "in", tmp_path / "out"
    photos(tree)
    out.mkdir()
    claim = outputs.claim_path(out / "p0.png")
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim.write_text(json.dumps({"pid": unrelated.pid, "host": os.uname().nodename, "since": time.time()}))
        summary = run([tree], out, model=tiny_bundle, steps=1)
    finally:
        unrelated.kill()
        unrelated.wait()
    assert sorted(Path(r.output).name for r in summary.done) == ["p0.png", "p1.png"]
    assert not claim.exists()


def test_two_runs_at_once_share_the_work(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "bundle")
    tree, out = tmp_path / "in", tmp_path / "out"
    photos(tree, 16)
    command = CLI + ["run", str(tree), "-o", str(out), "--model", str(bundle), "--steps", "1"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SINGLE_THREADED) for _ in range(2)]
    lines = []
    for process in both:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        lines += [json.loads(line) for line in stdout.splitlines()]
    done = [line["output"] for line in lines if line["status"] == "done"]
    assert len(done) == len(set(done)) == 16  # every file enhanced exactly once, by one of them
    assert {p.name for p in out.iterdir() if not outputs.is_output_record(p.name)} == {f"p{i}.png" for i in range(16)}
