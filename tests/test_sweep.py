import json
import os
import signal
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import pytest

from sublim_toy import sweep
from sublim_toy.config import Config
from sublim_toy.data import load_mnist
from sublim_toy.errors import UserError
from sublim_toy.plots import study_figure
from sublim_toy.sweep import STUDIES, Study, grid, parse_assignment, point_name, run_sweep

TINY = ["--seeds", "2", "--epochs", "1", "--batch-size", "16", "--noise-images", "32",
        "--probe-every", "0"]  # fmt: skip


def test_values_are_typed_like_the_field():
    assert parse_assignment("aux=2,3,10") == ("aux", (2, 3, 10))
    assert parse_assignment("init=normal,he") == ("init", ("normal", "he"))
    assert parse_assignment("hidden=256x256,64") == ("hidden", ((256, 256), (64,)))
    assert parse_assignment("init_angle=0,45") == ("init_angle", (0.0, 45.0))
    assert parse_assignment("learning_rate=1e-3") == ("learning_rate", (1e-3,))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("aux", "write FIELD=VALUE"),
        ("width=3", "unknown config field 'width'"),
        ("aux=two", "aux='two': expected int"),
        ("hidden=256xwide", "expected widths like 256x256"),
    ],
)
def test_bad_assignments_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        parse_assignment(text)


def test_grid_is_the_product_and_is_validated():
    points = grid(Config(), [("aux", (2, 3)), ("init", ("normal", "he", "torch"))])
    assert [(c.aux, c.init) for c in points] == [
        (2, "normal"), (2, "he"), (2, "torch"), (3, "normal"), (3, "he"), (3, "torch"),
    ]  # fmt: skip
    with pytest.raises(UserError, match="aux=0"):
        grid(Config(), [("aux", (0, 2))])
    with pytest.raises(UserError, match="set twice"):
        grid(Config(), [("aux", (2,)), ("aux", (3,))])


def test_point_names_follow_the_whole_config():
    assert point_name(Config(aux=2)) == point_name(Config(aux=2))
    assert point_name(Config(aux=2)) != point_name(Config(aux=2, seed=1))


def test_finished_points_are_read_back_not_redone(tiny_idx_dir, tmp_path, monkeypatch):
    dataset = load_mnist(f"idx:{tiny_idx_dir}")
    base = Config(seeds=2, hidden=(8,), teacher_epochs=1, student_epochs=1, batch_size=16,
                  noise_images=32, probe_every=0)  # fmt: skip
    calls = []
    real_run = sweep.run_experiment

    def counting_run(config, data):
        calls.append(config.aux)
        return real_run(config, data)

    monkeypatch.setattr(sweep, "run_experiment", counting_run)
    first = run_sweep(base, [("aux", (2, 3))], tmp_path, dataset, progress=False)
    assert calls == [2, 3]
    again = run_sweep(base, [("aux", (2, 3, 4))], tmp_path, dataset, progress=False)
    assert calls == [2, 3, 4]  # only the new point ran
    assert again[:2] == json.loads(json.dumps(first))  # as stored: JSON types
    lines = (tmp_path / "points.csv").read_text().splitlines()
    assert lines[0] == "point,aux,model,n,mean,sd,ci_low,ci_high"
    assert len(lines) == 1 + 3 * 7  # six models and the paired difference per point
    changed = run_sweep(base.replace(seed=1), [("aux", (2,))], tmp_path, dataset, progress=False)
    assert calls == [2, 3, 4, 2]  # a changed config is a new point
    assert changed[0]["config"]["seed"] == 1

    fig = study_figure("aux", Study("?", (("aux", (2, 3, 4)),)), again)
    assert len(fig.axes[0].get_xticklabels()) == 3
    plt.close(fig)


def test_a_killed_sweep_resumes_without_losing_or_redoing_a_point(tiny_idx_dir, tmp_path):
    out = tmp_path / "study"
    command = [
        sys.executable, "-m", "sublim_toy", "sweep", "--set", "aux=2,3,4", *TINY,
        "--data-source", f"idx:{tiny_idx_dir}", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
        deadline = time.monotonic() + 120
        while not list((out / "points").glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
    finished = {path.name: path.read_bytes() for path in (out / "points").glob("*.json")}
    assert 1 <= len(finished) < 3, "the kill came too late to test anything"
    assert not list((out / "points").glob("*.tmp"))  # nothing half-written
    mtimes = {name: (out / "points" / name).stat().st_mtime_ns for name in finished}

    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resuming: {len(finished)} of 3 points already finished" in done.stdout + done.stderr
    files = {path.name for path in (out / "points").glob("*.json")}
    assert len(files) == 3
    for name, content in finished.items():  # untouched: neither lost nor recomputed
        assert (out / "points" / name).read_bytes() == content
        assert (out / "points" / name).stat().st_mtime_ns == mtimes[name]
    auxes = sorted(json.loads((out / "points" / f).read_text())["config"]["aux"] for f in files)
    assert auxes == [2, 3, 4]


def test_every_shipped_study_is_a_valid_grid():
    for name, study in STUDIES.items():
        points = grid(Config(), list(study.assignments))
        assert len(points) >= 5, name
