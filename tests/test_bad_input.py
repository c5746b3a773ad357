"""Never lose a run: every bad input, fault and interrupt a new user meets, through `main`.

Each case asserts the exit code, one line on stderr without a traceback, and that an earlier
run's files are byte for byte what they were. Almost every case fails before any compute
(the training is replaced by a function that fails the test if called); the few that need a
run use a canned results record, and one trains the tiny config until it diverges.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sublim_toy import data, experiment, files, plots, sweep, theorem, theorem_report, train
from sublim_toy.cli import main
from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.errors import (
    Interrupted,
    UserError,
    ctrl_c_held_back,
    ctrl_c_remembered,
    stop_if_interrupted,
)
from sublim_toy.probes import METRICS
from sublim_toy.results import MODELS, STUDENTS, record

TINY = ["--seeds", "2", "--epochs", "1", "--batch-size", "16", "--noise-images", "32"]
TINY += ["--set", "hidden=16", "--no-progress"]


def canned(config: Config, dataset: Dataset | None = None, *, probes: bool = True) -> dict:
    """A results record as run_experiment returns it, without training anything."""
    seeds, steps = config.seeds, [1, 2] if probes else []
    alignment = {"steps": steps, "probe_images": 1024}
    for name in STUDENTS:
        alignment[name] = {
            metric: [
                [[0.5] * (len(config.hidden) + 1) if metric == "cos_layers" else 0.5 for _ in steps]
                for _ in range(seeds)
            ]
            for metric in METRICS
        }
    dataset = dataset or Dataset(*(np.zeros(1),) * 4, source="test", sha256="0" * 64)
    accuracies = {name: [0.1 + 0.1 * i for i in range(seeds)] for name in MODELS}
    return record(
        config,
        dataset,
        accuracies,
        {"total_s": 1.0},
        devices_used=1,
        alignment=alignment,
        first_order={name: [0.2] * seeds for name in STUDENTS},
    )


@pytest.fixture
def never_train(monkeypatch):
    """Training, data loading and the theorem check all fail the test if reached."""

    def forbidden(*args, **kwargs):
        raise AssertionError("computed although the input was bad")

    for module, name in [
        (experiment, "run_experiment"),
        (sweep, "run_experiment"),
        (theorem, "mnist_check"),
        (data, "_fetch_pypi"),
        (data, "load_dataset"),
    ]:
        monkeypatch.setattr(module, name, forbidden)


@pytest.fixture
def fake_training(monkeypatch):
    """run_experiment returns a canned record of the config it gets, at once; the configs
    it got are in the returned list."""
    configs = []

    def run(config, dataset, **options):
        configs.append(config)
        return canned(config, dataset, probes=bool(config.probe_every))

    monkeypatch.setattr(experiment, "run_experiment", run)
    monkeypatch.setattr(sweep, "run_experiment", run)
    return configs


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str, *texts: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in texts:
        assert text in lines[0], lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def strict_json(path: Path):
    """json.loads that refuses NaN and Infinity tokens, as strict parsers do."""

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def earlier_run(tiny_idx_dir, tmp_path, capsys, fake_training):
    """OUT holding an earlier reproduce run with its alignment figure."""
    out = tmp_path / "run"
    code, _, err = run(
        capsys, "reproduce", *TINY, "--data-source", f"idx:{tiny_idx_dir}", "--out", out
    )
    assert code == 0, err
    assert sorted(snapshot(out)) == sorted(
        ["results.json", "figure10.png", "figure10.pdf", "alignment.png", "alignment.pdf"]
    )
    return out


# ---- 1. a rerun never destroys the previous result ---------------------------------------------


def test_a_rerun_into_an_earlier_run_is_refused_and_overwrite_leaves_nothing_stale(
    earlier_run, tiny_idx_dir, capsys
):
    before = snapshot(earlier_run)
    args = ["reproduce", *TINY, "--probe-every", "0", "--data-source", f"idx:{tiny_idx_dir}"]
    code, _, err = run(capsys, *args, "--out", earlier_run)
    assert code == 2
    one_line(err, f"--out {earlier_run} already holds an earlier run", "--overwrite", "--out")
    assert snapshot(earlier_run) == before

    code, _, err = run(capsys, *args, "--out", earlier_run, "--overwrite")
    assert code == 0, err
    # the new run draws no alignment figure: the old one must not survive beside it
    assert sorted(snapshot(earlier_run)) == ["figure10.pdf", "figure10.png", "results.json"]
    assert strict_json(earlier_run / "results.json")["config"]["probe_every"] == 0


def test_bench_into_a_directory_with_benchmarks_is_refused(tmp_path, capsys, never_train):
    (tmp_path / "BENCHMARKS.md").write_text("earlier numbers\n")
    code, _, err = run(capsys, "bench", "--out", tmp_path)
    assert code == 2
    one_line(err, "already holds an earlier run (BENCHMARKS.md)", "--overwrite")
    assert snapshot(tmp_path) == {"BENCHMARKS.md": b"earlier numbers\n"}


# ---- 2. a bad --out is found before any compute ------------------------------------------------


@pytest.mark.parametrize("command", [["reproduce"], ["theorem"], ["bench"], ["study", "aux"]])
def test_an_out_that_is_a_file_or_lies_under_one_fails_first(
    command, tmp_path, capsys, never_train
):
    regular = tmp_path / "a-file"
    regular.write_text("keep me\n")
    code, _, err = run(capsys, *command, "--out", regular)
    assert code == 2
    one_line(err, f"--out {regular}: exists and is not a directory")
    code, _, err = run(capsys, *command, "--out", regular / "sub" / "dir")
    assert code == 2
    one_line(err, f"cannot be created, {regular} is not a directory")
    assert regular.read_text() == "keep me\n"


def test_sweep_out_that_is_a_file_fails_first(tmp_path, capsys, never_train):
    regular = tmp_path / "a-file"
    regular.write_text("")
    code, _, err = run(capsys, "sweep", "--set", "aux=2,3", *TINY, "--out", regular)
    assert code == 2
    one_line(err, "exists and is not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: os.access says writable")
def test_an_unwritable_out_fails_first(tmp_path, capsys, never_train):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = run(capsys, "reproduce", "--out", locked / "run")
    assert code == 2
    one_line(err, f"cannot be created, {locked} is not writable")


def test_a_directory_where_results_json_goes_fails_first(tmp_path, capsys, never_train):
    (tmp_path / "results.json").mkdir()
    code, _, err = run(capsys, "reproduce", "--out", tmp_path, "--overwrite")
    assert code == 2
    one_line(err, "results.json is a directory where this command writes a file")


# ---- 3. non-finite floats and divergence ------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_learning_rates_are_refused(value, capsys, never_train):
    code, _, err = run(capsys, "reproduce", f"--learning-rate={value}")  # = lets -inf through
    assert code == 2
    one_line(err, f"--learning-rate {value}: must be a finite positive number")


def test_non_finite_values_through_set_are_refused(capsys, never_train):
    code, _, err = run(capsys, "reproduce", "--set", "temperature=nan")
    assert code == 2
    one_line(err, "--set temperature=nan: must be a finite positive number")


def test_a_diverging_run_says_so_and_writes_strict_json(tiny_idx_dir, tmp_path, capsys):
    out = tmp_path / "diverged"
    code, printed, err = run(
        capsys,
        "reproduce",
        *TINY,
        "--learning-rate",
        "1e20",
        "--probe-every",
        "1",
        "--data-source",
        f"idx:{tiny_idx_dir}",
        "--out",
        out,
    )
    assert code == 0, err
    assert "DIVERGED: Teacher on 2 of 2 seeds" in printed
    results = strict_json(out / "results.json")
    assert results["diverged"]["teacher"] == [0, 1]
    assert results["accuracy"]["teacher"] == [None, None]
    assert results["accuracy"]["reference"][0] is not None  # an init never diverges
    assert results["summary"]["teacher"] == {
        "n": 0,
        "mean": None,
        "sd": None,
        "ci_low": None,
        "ci_high": None,
    }
    assert results["first_order"]["accuracy"]["student_aux"] == [None, None]
    assert results["paired_difference"]["n"] == 0
    for path in out.glob("*.json"):
        strict_json(path)
    assert (out / "figure10.png").stat().st_size > 1000


def test_json_files_refuse_nan(tmp_path):
    with pytest.raises(ValueError):
        files.write_json(tmp_path / "x.json", {"a": float("nan")})
    assert not list(tmp_path.iterdir())


# ---- 4. seeds beyond 32 bits ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [str(2**32), "99999999999999999999", "-1"])
def test_seeds_outside_32_bits_are_refused(seed, capsys, never_train):
    code, _, err = run(capsys, "reproduce", "--seed", seed)
    assert code == 2
    one_line(err, f"--seed {seed}: must be an integer in [0, 4294967295]")
    code, _, err = run(capsys, "theorem", "--seed", seed)
    assert code == 2
    one_line(err, f"--seed {seed}: must be an integer in [0, 4294967295]")


# ---- 6. cache faults and warnings --------------------------------------------------------------


def test_a_cache_dir_that_is_a_file_is_refused_before_the_download(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "_fetch_pypi", pytest.fail)
    regular = tmp_path / "cache-file"
    regular.write_text("")
    code, _, err = run(capsys, "reproduce", "--cache-dir", regular, "--out", tmp_path / "o")
    assert code == 2
    one_line(err, f"--cache-dir {regular}: exists and is not a directory")
    code, _, err = run(capsys, "reproduce", "--cache-dir", regular / "sub", "--out", tmp_path / "o")
    assert code == 2
    one_line(err, f"cannot be created, {regular} is not a directory")
    monkeypatch.setenv("SUBLIM_TOY_CACHE", str(regular))
    code, _, err = run(capsys, "reproduce", "--out", tmp_path / "o")
    assert code == 2
    one_line(err, f"$SUBLIM_TOY_CACHE {regular}: exists and is not a directory")
    assert not (tmp_path / "o").exists()


def test_a_directory_where_the_cache_file_goes_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "_fetch_pypi", pytest.fail)
    (tmp_path / "mnist.npz").mkdir()
    code, _, err = run(capsys, "reproduce", "--cache-dir", tmp_path, "--out", tmp_path / "o")
    assert code == 2
    one_line(err, "mnist.npz there is not a file")


def test_warnings_are_one_plain_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "mnist.npz").write_bytes(b"not an npz")

    def offline():
        raise UserError("no network in this test")

    monkeypatch.setattr(data, "_fetch_pypi", offline)
    code, _, err = run(capsys, "reproduce", "--cache-dir", tmp_path, "--out", tmp_path / "o")
    assert code == 2
    warning, error = err.strip().splitlines()
    assert warning.startswith("sublim-toy: warning: ignoring corrupt mnist cache")
    assert "UserWarning" not in err and "warnings.warn" not in err
    assert error == "sublim-toy: error: no network in this test"


# ---- 7. wrong files for plot and theorem; theorem's exit codes --------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({}, "is not a sublim-toy results file: missing config, accuracy, summary"),
        ([1, 2], "is not a sublim-toy results file: it holds a JSON list"),
        ({"conditions": {}, "passed": True}, "(it is a theorem check's file): missing config"),
        ({"config": {}, "accuracy": {}, "summary": {}}, "missing accuracy.reference"),
    ],
)
def test_plot_of_a_file_of_the_wrong_shape(content, message, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(content))
    code, _, err = run(capsys, "plot", path)
    assert code == 2
    one_line(err, str(path), message)
    assert snapshot(tmp_path) == {"results.json": path.read_bytes()}


def test_plot_refuses_to_replace_figures_and_overwrite_drops_a_stale_one(earlier_run, capsys):
    results = strict_json(earlier_run / "results.json")
    results["alignment"]["steps"] = []  # as a run without probes
    (earlier_run / "results.json").write_text(json.dumps(results))
    before = snapshot(earlier_run)
    code, _, err = run(capsys, "plot", earlier_run / "results.json")
    assert code == 2
    one_line(err, "already holds an earlier run (figure10.png, figure10.pdf, alignment.png")
    assert snapshot(earlier_run) == before
    code, _, err = run(capsys, "plot", earlier_run / "results.json", "--overwrite")
    assert code == 0, err
    assert not (earlier_run / "alignment.png").exists()


@pytest.fixture
def fake_theorem(monkeypatch):
    """The theorem check replaced by one whose verdict the test sets."""
    verdict = {"passed": True}

    def check(dataset, **options):
        if verdict["passed"] is None:
            raise RuntimeError("a bug in the check")
        return {"passed": verdict["passed"], "conditions": {}}

    monkeypatch.setattr(theorem, "mnist_check", check)
    monkeypatch.setattr(theorem_report, "format_report", lambda report: "report")
    monkeypatch.setattr(plots, "theorem_figure", lambda report: plt.figure())
    return verdict


def test_theorem_exit_codes(fake_theorem, tiny_idx_dir, tmp_path, capsys):
    arguments = ["theorem", "--data-source", f"idx:{tiny_idx_dir}", "--overwrite"]
    code, _, err = run(capsys, *arguments, "--out", tmp_path / "a")
    assert code == 0, err
    fake_theorem["passed"] = False
    assert run(capsys, *arguments, "--out", tmp_path / "a")[0] == 1  # a condition failed
    code, _, err = run(capsys, *arguments, "--seed", "x", "--out", tmp_path / "a")
    assert code == 2  # bad input
    one_line(err, "--seed x: expected an integer")
    fake_theorem["passed"] = None
    code, _, err = run(capsys, *arguments, "--out", tmp_path / "b")
    assert code == 3  # a crash is neither a failed condition nor bad input
    assert "Traceback" in err and "RuntimeError: a bug in the check" in err
    assert err.strip().splitlines()[-1].startswith("sublim-toy: internal error")
    assert not (tmp_path / "b").exists()
    assert strict_json(tmp_path / "a" / "theorem.json") == {"passed": False, "conditions": {}}


def test_theorem_alignment_from_a_file_without_probes_fails_before_the_check(
    tmp_path, capsys, never_train
):
    results = canned(Config(seeds=2, hidden=(16,)), probes=False)
    path = files.write_json(tmp_path / "results.json", results)
    code, _, err = run(capsys, "theorem", "--alignment-from", path, "--out", tmp_path / "t")
    assert code == 2
    one_line(err, f"{path} has no alignment probes (rerun with --probe-every N > 0)")
    theorem_json = files.write_json(tmp_path / "theorem.json", {"passed": True, "conditions": {}})
    code, _, err = run(capsys, "theorem", "--alignment-from", theorem_json, "--out", tmp_path / "t")
    assert code == 2
    one_line(err, "(it is a theorem check's file): missing config")
    assert not (tmp_path / "t").exists()


# ---- 8. two sweeps, one directory ------------------------------------------------------------


def test_a_sweep_while_another_holds_the_directory_is_refused(
    tiny_idx_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(sweep, "run_experiment", pytest.fail)
    out = tmp_path / "sweep"
    out.mkdir()
    args = ["sweep", "--set", "aux=2,3", *TINY, "--data-source", f"idx:{tiny_idx_dir}"]
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running sweep holds it
        code, _, err = run(capsys, *args, "--out", out)
    assert code == 2
    one_line(err, "another sweep is running into this directory")
    assert snapshot(out) == {".lock": b""}


def test_another_grid_into_a_sweep_directory_is_refused(
    tiny_idx_dir, tmp_path, capsys, fake_training
):
    out = tmp_path / "sweep"
    base = ["sweep", *TINY, "--data-source", f"idx:{tiny_idx_dir}", "--out", out]
    code, _, err = run(capsys, *base, "--set", "aux=2,3")
    assert code == 0, err
    before = snapshot(out)
    code, _, err = run(capsys, *base, "--set", "aux=2,3,5")
    assert code == 2
    one_line(err, f"--out {out} holds another sweep (--set hidden=16 --set aux=2,3)", "--overwrite")
    code, _, err = run(capsys, *base, "--set", "aux=2,3", "--seed", "1")
    assert code == 2
    one_line(err, "holds another sweep (seed=0)")
    assert snapshot(out) == before
    assert len(fake_training) == 2

    code, _, err = run(capsys, *base, "--set", "aux=2,3,5", "--overwrite")
    assert code == 0, err
    assert len(fake_training) == 5  # the old sweep was discarded, not mixed in
    assert len(list((out / "points").iterdir())) == 3
    assert strict_json(out / "sweep.json")["set"] == {"hidden": [[16]], "aux": [2, 3, 5]}


# ---- 9. interrupts say what was kept ---------------------------------------------------------


def test_ctrl_c_while_drawing_the_figures_writes_nothing(
    earlier_run, tiny_idx_dir, capsys, monkeypatch
):
    def interrupted(results):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "figure10", interrupted)
    before = snapshot(earlier_run)
    args = ["reproduce", *TINY, "--data-source", f"idx:{tiny_idx_dir}", "--overwrite"]
    code, _, err = run(capsys, *args, "--out", earlier_run)
    assert code == 130
    one_line(err, "interrupted; nothing was written")
    assert snapshot(earlier_run) == before  # the earlier run is intact, and no temp file is left


def test_ctrl_c_while_the_files_are_renamed_waits_for_all(
    earlier_run, tiny_idx_dir, capsys, monkeypatch
):
    real_replace = os.replace
    signals = []

    def replace_after_ctrl_c(source, target):
        if not signals:
            signals.append(1)
            os.kill(os.getpid(), signal.SIGINT)
        real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", replace_after_ctrl_c)
    before = snapshot(earlier_run)
    args = ["reproduce", *TINY, "--probe-every", "0", "--data-source", f"idx:{tiny_idx_dir}"]
    code, _, err = run(capsys, *args, "--out", earlier_run, "--overwrite")
    assert code == 130
    one_line(err, f"the run's files were written to {earlier_run}")
    after = snapshot(earlier_run)
    assert sorted(after) == ["figure10.pdf", "figure10.png", "results.json"]  # all, none stale
    assert after["results.json"] != before["results.json"]


def test_ctrl_c_in_a_sweep_says_how_many_points_are_kept_and_how_to_resume(
    tiny_idx_dir, tmp_path, capsys, monkeypatch
):
    calls = []

    def second_point_interrupted(config, dataset, **options):
        calls.append(config.aux)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return canned(config, dataset, probes=False)

    monkeypatch.setattr(sweep, "run_experiment", second_point_interrupted)
    out = tmp_path / "sweep"
    args = ["sweep", "--set", "aux=2,3", *TINY, "--data-source", f"idx:{tiny_idx_dir}"]
    code, _, err = run(capsys, *args, "--out", out)
    assert code == 130
    one_line(err, f"1 of 2 points are kept in {out}; run the same command again to resume")
    code, printed, err = run(capsys, *args, "--out", out)
    assert code == 0, err
    assert calls == [2, 3, 3]
    assert "resuming: 1 of 2 points already finished" in printed + err


def test_a_real_ctrl_c_in_a_sweep_exits_130_with_the_message(tiny_idx_dir, tmp_path):
    """The signal itself, in a fresh process: the message, status 130 and no crash on the way
    out (finalising while XLA still runs the interrupted point used to segfault)."""
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "sublim_toy", "sweep", "--set", "aux=2,3,4,5,6,7,8,9"]
    command += [*TINY, "--data-source", f"idx:{tiny_idx_dir}", "--out", str(out)]
    with subprocess.Popen(
        command,
        # without the suite's compilation cache (conftest): points read from it finish too
        # fast for the Ctrl-C to land inside one
        env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_COMPILATION_CACHE": "false"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell starts background jobs with Ctrl-C ignored; this one must see it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as sweeping:
        deadline = time.monotonic() + 120
        while not list(out.glob("points/*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        sweeping.send_signal(signal.SIGINT)
        _, err = sweeping.communicate()
    kept = len(list(out.glob("points/*.json")))
    assert 1 <= kept < 8, "the Ctrl-C came too late to test anything"
    assert sweeping.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"sublim-toy: interrupted; {kept} of 8 points are kept in {out}; run the same command "
        "again to resume"
    )


class _CtrlCWhenCollected:
    """Sends this process a Ctrl-C from its `__del__`, where Python drops what the handler
    raises (as it does in JAX's garbage-collection callback); records whether it was raised
    there, the case under test, and not after `__del__` returned."""

    def __init__(self, raised_inside: list):
        self.raised_inside = raised_inside

    def __del__(self):
        self.raised_inside.append(True)
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pass  # Python runs the handler here, between two of these bytecodes
        self.raised_inside.pop()  # not reached when the handler raised inside `__del__`


def test_a_ctrl_c_that_python_drops_is_still_acted_on_and_not_printed(monkeypatch):
    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    handler_before = signal.getsignal(signal.SIGINT)
    raised_inside = []
    with ctrl_c_remembered():
        _CtrlCWhenCollected(raised_inside)  # collected at once
        assert raised_inside == [True], "the Ctrl-C was not raised inside __del__"
        raised_inside.clear()
        with pytest.raises(KeyboardInterrupt):
            stop_if_interrupted()
        stop_if_interrupted()  # acted on once
        _CtrlCWhenCollected(raised_inside)
        assert raised_inside == [True]
        with pytest.raises(Interrupted, match="^after the renames$"):
            with ctrl_c_held_back("after the renames"):
                pass  # the file writes hold a Ctrl-C back to their end, a dropped one too
        stop_if_interrupted()
        sys.unraisablehook(object())  # anything else still reaches the hook before
    assert len(printed) == 1 and not hasattr(printed[0], "exc_value")
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert sys.unraisablehook == printed.append


def test_a_dropped_ctrl_c_in_a_sweep_stops_it_after_the_epoch(
    tiny_idx_dir, tmp_path, capsys, monkeypatch
):
    """The real Ctrl-C test above shows the signal path; this one makes the drop happen (one
    run in twelve of that test met it, and the sweep then ran every point to the end)."""
    out = tmp_path / "sweep"
    raised_inside = []
    real_release = train.release_free_memory

    def release_and_ctrl_c_once_a_point_is_kept():
        if list(out.glob("points/*.json")) and not raised_inside:
            _CtrlCWhenCollected(raised_inside)
        return real_release()

    monkeypatch.setattr(train, "release_free_memory", release_and_ctrl_c_once_a_point_is_kept)
    args = ["sweep", "--set", "aux=2,3,4", *TINY, "--data-source", f"idx:{tiny_idx_dir}"]
    code, _, err = run(capsys, *args, "--out", out)
    assert raised_inside == [True]
    assert code == 130
    one_line(err, f"interrupted; 1 of 3 points are kept in {out}; run the same command again")


# ---- 10. one config surface --------------------------------------------------------------------


def test_set_on_reproduce_reaches_fields_without_a_flag(
    tiny_idx_dir, tmp_path, capsys, fake_training
):
    code, _, err = run(
        capsys,
        "reproduce",
        *TINY[:-3],  # without its --set hidden=16
        "--set",
        "init_angle=30",
        "--set",
        "hidden=64x64",
        "--set",
        "student_inputs=gaussian",
        "--data-source",
        f"idx:{tiny_idx_dir}",
        "--out",
        tmp_path / "o",
        "--no-progress",
    )
    assert code == 0, err
    (config,) = fake_training
    assert (config.init_angle, config.hidden, config.student_inputs) == (30.0, (64, 64), "gaussian")
    assert (config.seeds, config.teacher_epochs, config.batch_size) == (2, 1, 16)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "width=3"], "--set width=3: unknown config field 'width'; fields: seeds,"),
        (["--aux", "3", "--set", "aux=5"], "--set aux=5: aux is already set by --aux 3"),
        (["--set", "aux=2", "--set", "aux=3"], "--set aux=3: aux is already set by --set aux=2"),
        (["--set", "hidden=64,64"], "--set hidden=64,64: one value per field here"),
        (["--set", "hidden=wide"], "--set hidden=wide: expected widths like 256x256"),
        (["--aux", "two"], "--aux two: expected an integer"),
        (
            ["--batch-size", "100000"],
            "--batch-size 100000 with noise_images=60000 (the default): a student epoch needs",
        ),
        (["--quick", "--seeds", "0"], "--seeds 0: must be an integer >= 1"),
        (["--epochs", "-1"], "--epochs -1 (teacher_epochs=-1): must be an integer >= 0"),
    ],
)
def test_config_errors_name_what_the_user_typed(arguments, message, capsys, never_train):
    code, _, err = run(capsys, "reproduce", *arguments)
    assert code == 2
    one_line(err, f"sublim-toy: error: {message}")


def test_batch_size_beyond_the_training_set_names_the_flag(tiny_idx_dir, tmp_path, capsys):
    code, _, err = run(
        capsys,
        "reproduce",
        "--batch-size",
        "100",
        "--data-source",
        f"idx:{tiny_idx_dir}",
        "--out",
        tmp_path / "o",
    )
    assert code == 2
    one_line(err, "--batch-size 100: larger than the 64 training images")


def test_study_refuses_a_field_it_sweeps_and_reports_study_defaults(capsys, never_train):
    code, _, err = run(capsys, "study", "aux", "--set", "aux=5")
    assert code == 2
    one_line(err, "--set aux=5: study aux sweeps aux itself")
    code, _, err = run(capsys, "study", "aux", "--batch-size", "70000")
    assert code == 2
    one_line(err, "--batch-size 70000 with noise_images=60000 (the default)")


# ---- 11. first contact -----------------------------------------------------------------------


def test_bare_command_shows_the_commands(capsys):
    code, out, err = run(capsys)
    assert code == 2
    for command in ("reproduce", "sweep", "study", "plot", "theorem", "bench"):
        assert f"\n  {command} " in err
    assert "following arguments are required" not in err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"sublim-toy {metadata.version('sublim-toy')}"


def test_study_help_shows_its_own_seed_default(capsys):
    code, out, _ = run(capsys, "study", "--help")
    assert code == 0
    assert "runs side by side (default 8)" in " ".join(out.split())
    code, out, _ = run(capsys, "reproduce", "--help")
    assert "runs side by side (default 24)" in " ".join(out.split())
    assert "--set FIELD=VALUE" in out and "--overwrite" in out


def test_sweeps_show_the_epoch_bar_inside_a_point(monkeypatch, tiny_idx_dir, tmp_path):
    shown = []

    def run_point(config, dataset, **options):
        shown.append(options.get("progress"))
        return canned(config, dataset, probes=False)

    monkeypatch.setattr(sweep, "run_experiment", run_point)
    args = ["sweep", "--set", "aux=2,3", *TINY, "--data-source", f"idx:{tiny_idx_dir}"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert shown == [False, False]  # --no-progress is in TINY
    args.remove("--no-progress")
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert shown[2:] == [True, True]


def test_study_figure_stems_are_the_sweeps_own():
    stems = [stem for stem, _ in plots.STUDY_FIGURES.values()]
    assert set(stems) <= set(sweep.FIGURE_STEMS)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--against-authors", "x.py"], "--against-authors SCRIPT and --python PY go together"),
        (["--python", sys.executable], "--against-authors SCRIPT and --python PY go together"),
        (["--against-authors", "/no/such.py", "--python", sys.executable], "no such file"),
        (["--against-authors", __file__, "--python", "/no/python"], "not an executable file"),
        (["--against-authors", __file__, "--python", sys.executable, "--authors-seeds", "0"],
         "--authors-seeds '0': must be an integer >= 1"),
        (["--full-seeds", "many"], "--full-seeds 'many': must be an integer >= 1"),
    ],
)  # fmt: skip
def test_bench_flags_are_checked_before_any_measurement(
    arguments, message, tmp_path, capsys, never_train, monkeypatch
):
    from sublim_toy import bench

    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("measured anyway"))
    code, _, err = run(capsys, "bench", "--out", str(tmp_path), *arguments)
    assert code == 2
    one_line(err, message)
    assert not any(tmp_path.iterdir())
