import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import TINY_CONFIG

from sublim_toy import sweep
from sublim_toy.config import PRESETS, Config, parse_assignment
from sublim_toy.data import load_dataset
from sublim_toy.errors import UserError
from sublim_toy.plots import first_order_gap_figure, study_figure
from sublim_toy.results import MODELS
from sublim_toy.sweep import STUDIES, Study, format_study, grid, point_name, run_sweep

TINY = [
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--noise-images",
    "32",
    "--probe-every",
    "0",
]


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
        ("aux=two", "aux='two': expected an integer"),
        ("learning_rate=fast", "learning_rate='fast': expected a number"),
        ("hidden=256xwide", "expected widths like 256x256"),
    ],
)
def test_bad_assignments_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        parse_assignment(text)


def test_grid_is_the_product_and_is_validated():
    points = grid(Config(), [("aux", (2, 3)), ("init", ("normal", "he", "torch"))])
    assert [(c.aux, c.init) for c in points] == [
        (2, "normal"),
        (2, "he"),
        (2, "torch"),
        (3, "normal"),
        (3, "he"),
        (3, "torch"),
    ]
    with pytest.raises(UserError, match="aux=0"):
        grid(Config(), [("aux", (0, 2))])
    with pytest.raises(UserError, match="set twice"):
        grid(Config(), [("aux", (2,)), ("aux", (3,))])


def test_point_names_follow_the_whole_config():
    assert point_name(Config(aux=2)) == point_name(Config(aux=2))
    assert point_name(Config(aux=2)) != point_name(Config(aux=2, seed=1))


def test_finished_points_are_read_back_not_redone(tiny_idx_dir, tmp_path, monkeypatch):
    dataset = load_dataset(f"idx:{tiny_idx_dir}")
    base = TINY_CONFIG
    calls = []
    real_run = sweep.run_experiment

    def counting_run(config, data, **options):
        calls.append(config.aux)
        return real_run(config, data, **options)

    monkeypatch.setattr(sweep, "run_experiment", counting_run)
    first = run_sweep(base, [[("aux", (2, 3, 4))]], tmp_path, dataset, progress=False)
    assert calls == [2, 3, 4]
    (tmp_path / "points" / f"{point_name(base.replace(aux=4))}.json").unlink()  # as if killed
    again = run_sweep(base, [[("aux", (2, 3, 4))]], tmp_path, dataset, progress=False)
    assert calls == [2, 3, 4, 4]  # only the missing point ran
    assert again[:2] == json.loads(json.dumps(first[:2]))  # as stored: JSON types
    lines = (tmp_path / "points.csv").read_text().splitlines()
    assert lines[0].startswith("point,aux,model,n,mean,sd,ci_low,ci_high,first_order_mean,")
    assert len(lines) == 1 + 3 * 7  # six models and the paired difference per point

    # another grid, base config or data is another sweep: refused, never mixed in
    stored = {path.name: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    other_data = dataclasses.replace(dataset, sha256="0" * 64)
    for other_base, assignments, data in [
        (base, [("aux", (2, 3))], dataset),
        (base.replace(seed=1), [("aux", (2, 3, 4))], dataset),
        (base, [("aux", (2, 3, 4))], other_data),
    ]:
        with pytest.raises(UserError, match="holds another sweep"):
            run_sweep(other_base, [assignments], tmp_path, data, progress=False)
    assert calls == [2, 3, 4, 4]
    assert {path.name: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == (
        stored
    )
    # overwrite discards the stored sweep whole: nothing of it survives beside the new one
    changed = run_sweep(base, [[("aux", (2,))]], tmp_path, dataset, progress=False, overwrite=True)
    assert calls == [2, 3, 4, 4, 2]
    assert [path.name for path in (tmp_path / "points").iterdir()] == [
        f"{changed[0]['point']}.json"
    ]
    assert len((tmp_path / "points.csv").read_text().splitlines()) == 1 + 7

    fig = study_figure("aux", Study("?", (("aux", (2, 3, 4)),)), again)
    assert len(fig.axes[0].get_xticklabels()) == 3
    plt.close(fig)


def test_a_killed_sweep_resumes_without_losing_or_redoing_a_point(tiny_idx_dir, tmp_path):
    out = tmp_path / "study"
    command = [
        sys.executable,
        "-m",
        "sublim_toy",
        "sweep",
        "--set",
        "aux=2,3,4",
        *TINY,
        "--data-source",
        f"idx:{tiny_idx_dir}",
        "--out",
        str(out),
        "--no-progress",
    ]
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
        points = sweep.union_grid(Config(), study.parts)
        assert len(points) >= 4, name  # causal: its four arms
        assert len({point_name(point) for point in points}) == len(points), name
        # --quick and --lab: a smaller grid of some of the same fields, valid under each preset
        quick = study.preset(quick=True)
        assert set(quick.fields) <= set(study.fields), name
        for preset in PRESETS.values():
            quick_points = sweep.union_grid(Config(**preset), quick.parts)
            assert len(quick_points) <= len(points), name
        assert study.preset(quick=False) is study


def test_the_new_studies_ask_what_the_issue_asks():
    perturb = dict(STUDIES["perturb"].assignments)
    assert set(perturb["perturb"]) == {"head", "hidden", "all"}
    assert perturb["perturb_std"][0] == 0.0 and perturb["perturb_std"][-1] == 1.0
    width = dict(STUDIES["width"].assignments)
    assert [w[-1] for w in width["hidden"]][0] == 16 and max(w[-1] for w in width["hidden"]) >= 4096
    assert set(width["freeze"]) == {"none", "head"} and 3 in width["aux"] and max(width["aux"]) > 3
    noise = grid(Config(), list(STUDIES["noise"].assignments))
    pools = sorted({config.pool_batches for config in noise})
    assert pools[0] == 1 and pools[-1] == 5 * 58  # one batch of 1024 ... fresh noise
    assert 58 in pools and any(p * 1024 >= 240_000 for p in pools[:-1])
    arch = grid(Config(), list(STUDIES["student-arch"].assignments))
    depths = {len(config.student_widths) for config in arch}
    assert depths == {1, 2, 3}  # one hidden layer less, the teacher's, one more
    assert {config.head_init for config in arch} == {"shared", "independent"}


def test_table_writes_widths_as_256x256_and_one_row_per_model(tmp_path):
    def point(hidden):
        row = {"n": 2, "mean": 0.5, "sd": 0.1, "ci_low": 0.4, "ci_high": 0.6}
        return {
            "point": "p" + "x".join(map(str, hidden)),
            "config": {**Config(hidden=hidden).to_dict()},  # as computed: a tuple
            "summary": dict.fromkeys(
                ("reference", "teacher", "student_aux", "student_all", "cross_aux", "cross_all"),
                row,
            ),
            "paired_difference": row,
        }

    stored = json.loads(json.dumps(point((64,))))  # as read back: a list
    stored["first_order"] = {
        "summary": {"student_aux": {"mean": 0.3, "ci_low": 0.2, "ci_high": 0.4}}
    }
    stored["start"] = {
        "summary": {"student_aux": {"mean": 0.1}},
        "gain": {"student_aux": {"mean": 0.4, "ci_low": 0.3, "ci_high": 0.5}},
    }
    sweep.write_table(tmp_path / "t.csv", [point((64, 64)), stored], ["hidden"])
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[0] == (
        "point,hidden,model,n,mean,sd,ci_low,ci_high,first_order_mean,first_order_ci_low,"
        "first_order_ci_high,start_mean,gain_over_start_mean,gain_over_start_ci_low,"
        "gain_over_start_ci_high"
    )
    assert rows[1] == "p64x64,64x64,reference,2,0.5,0.1,0.4,0.6,,,,,,,"
    assert rows[8] == "p64,64,reference,2,0.5,0.1,0.4,0.6,,,,,,,"
    assert rows[10] == "p64,64,student_aux,2,0.5,0.1,0.4,0.6,0.3,0.2,0.4,0.1,0.4,0.3,0.5"
    assert rows[-1].startswith("p64,64,student_aux - cross_aux,")


def test_study_layers_runs_in_one_command_with_its_figures(tiny_idx_dir, tmp_path, capsys):
    from sublim_toy.cli import main

    out = tmp_path / "layers"
    arguments = [
        "study",
        "layers",
        *TINY,
        "--data-source",
        f"idx:{tiny_idx_dir}",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "first-order prediction (aux-only student" in printed
    assert "mean within-point r = " in printed
    assert "pooled over all 12 seed-points: r = " in printed
    for stem in ("study", "first_order"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
    points = [json.loads(path.read_text()) for path in (out / "points").glob("*.json")]
    assert sorted((p["config"]["hidden_init"], p["config"]["head_init"]) for p in points) == [
        ("independent", "independent"),
        ("independent", "shared"),
        ("independent", "trained"),
        ("shared", "independent"),
        ("shared", "shared"),
        ("shared", "trained"),
    ]
    # all layers independent is the cross-model student itself: same init, teacher and noise
    (cross,) = [
        p for p in points if p["config"]["hidden_init"] == p["config"]["head_init"] == "independent"
    ]
    assert cross["accuracy"]["student_aux"] == cross["accuracy"]["cross_aux"]
    assert (
        cross["first_order"]["accuracy"]["student_aux"]
        == (cross["first_order"]["accuracy"]["cross_aux"])
    )
    assert main(arguments) == 0  # a second run resumes: every point already finished
    captured = capsys.readouterr()
    assert "resuming: 6 of 6 points already finished" in captured.out + captured.err


def _canned_run(config, dataset, **options):
    """What run_sweep stores of a point, without training: the grid's mechanics alone."""
    row = {"n": 2, "mean": 0.5, "sd": 0.1, "ci_low": 0.4, "ci_high": 0.6}
    return {
        "config": config.to_dict(),
        "data": {"name": dataset.name, "sha256": dataset.sha256},
        "summary": dict.fromkeys(MODELS, row),
        "paired_difference": row,
    }


def test_a_union_of_parts_runs_each_point_once_and_records_its_parts(
    tiny_idx_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(sweep, "run_experiment", _canned_run)
    dataset = load_dataset(f"idx:{tiny_idx_dir}")
    base = TINY_CONFIG
    parts = [[("aux", (2, 3))], [("aux", (3,)), ("init", ("normal", "he"))]]
    configs = sweep.union_grid(base, parts)
    assert [(c.aux, c.init) for c in configs] == [(2, "normal"), (3, "normal"), (3, "he")]
    results = run_sweep(base, parts, tmp_path, dataset, progress=False)
    assert len(results) == 3 and len(list((tmp_path / "points").glob("*.json"))) == 3
    stored = json.loads((tmp_path / "sweep.json").read_text())
    assert stored["parts"] == [{"aux": [2, 3]}, {"aux": [3], "init": ["normal", "he"]}]
    assert (tmp_path / "points.csv").read_text().splitlines()[0].startswith("point,aux,init,")
    with pytest.raises(UserError, match=r"holds another sweep \(--set aux=2,3 \| --set aux=3"):
        run_sweep(base, parts[:1], tmp_path, dataset, progress=False)
    study = Study("?", union=tuple(tuple(part) for part in parts))
    assert study.varied_fields == ["aux", "init"] and study.values("aux") == [2, 3]
    # a point of a union is named by its fields away from their defaults
    assert [study.point_label(r) for r in results] == ["aux=2", "defaults", "init=he"]


@pytest.mark.parametrize("name", ["optimizer", "causal"])
def test_the_optimizer_and_causal_studies_run_their_quick_grids(tiny_idx_dir, tmp_path, name):
    from sublim_toy.cli import main

    out = tmp_path / name
    arguments = ["study", name, "--quick", "--seeds", "2", "--epochs", "1", "--batch-size", "16"]
    arguments += ["--noise-images", "1024", "--set", "hidden=16", "--probe-every", "0"]
    arguments += ["--data-source", f"idx:{tiny_idx_dir}", "--out", str(out), "--no-progress"]
    assert main(arguments) == 0
    points = [json.loads(path.read_text()) for path in (out / "points").glob("*.json")]
    chosen = STUDIES[name].preset(quick=True)
    assert len(points) == len(sweep.union_grid(Config(), chosen.parts))
    rows = list(csv.DictReader((out / "points.csv").open()))
    assert all(
        row["first_order_mean"] and row["start_mean"]
        for row in rows
        if row["model"] == "student_aux"
    )
    assert all(len(point["updates"]["student_aux"]["cos_end"]) == 2 for point in points)
    for stem in ("study", "first_order", *(("causal",) if name == "causal" else ())):
        assert (out / f"{stem}.png").stat().st_size > 10_000
    if name == "causal":
        by_variant = {point["config"]["project_out"]: point for point in points}
        moved = by_variant["teacher_move"]["updates"]["student_aux"]
        assert len(moved["loss"][0]) == 1024 // 16  # every step logged (log_every=1)
        np.testing.assert_allclose(moved["cos"], 0.0, atol=1e-5)
        assert by_variant["none"]["updates"]["student_aux"]["removed_mean"] == [0.0, 0.0]


def _quick_study(name, tiny_idx_dir, out):
    from sublim_toy.cli import main

    arguments = ["study", name, "--quick", *TINY, "--data-source", f"idx:{tiny_idx_dir}"]
    assert main([*arguments, "--out", str(out), "--no-progress"]) == 0
    return [json.loads(path.read_text()) for path in (out / "points").glob("*.json")]


def test_study_student_arch_quick_shares_what_it_says(tiny_idx_dir, tmp_path):
    points = _quick_study("student-arch", tiny_idx_dir, tmp_path)
    assert len(points) == 4
    for point in points:
        widths, head = point["config"]["student_hidden"], point["config"]["head_init"]
        layers = point["student_layers"]
        assert layers["student_sizes"] == [784, *widths, 13]
        shares_first = widths[0] == 256
        assert (layers["sources"]["student_aux"][0] == "shared") == shares_first
        assert layers["sources"]["student_aux"][-1] == head
        if not shares_first and head == "independent":
            # nothing shared: the cross-model student exactly (same init, teacher and noise)
            assert point["accuracy"]["student_aux"] == point["accuracy"]["cross_aux"]
    for stem in ("study", "first_order"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 10_000


def test_study_perturb_quick_keeps_std_zero_the_shared_init(tiny_idx_dir, tmp_path):
    points = _quick_study("perturb", tiny_idx_dir, tmp_path)
    assert len(points) == 4
    zero = [p for p in points if p["config"]["perturb_std"] == 0]
    assert len(zero) == 2  # head and hidden at std 0: the same students, number for number
    assert zero[0]["accuracy"] == zero[1]["accuracy"]
    assert zero[0]["first_order"] == zero[1]["first_order"]
    noisy = [p for p in points if p["config"]["perturb_std"] > 0]
    for point in noisy:  # the control is untouched by the students' noise
        assert point["accuracy"]["cross_aux"] == zero[0]["accuracy"]["cross_aux"]
    # the width study's extra figure draws any grid: one series per value of the other fields
    fig = first_order_gap_figure("perturb", STUDIES["perturb"].preset(quick=True), points)
    assert [len(ax.get_xticklabels()) for ax in fig.axes] == [2, 2]
    assert len(fig.axes[1].get_legend_handles_labels()[1]) == 2  # perturb=head, perturb=hidden
    plt.close(fig)


def test_a_sweep_stored_before_a_config_field_existed_resumes_without_recomputing(
    tiny_idx_dir, tmp_path, monkeypatch
):
    # An older version's Config lacked today's last fields: its sweep.json base and its points'
    # configs lack them and its point names hash the fields it had. Upgrading must not orphan
    # those points (they are today's configs with the new fields at their defaults).
    monkeypatch.setattr(sweep, "run_experiment", _canned_run)
    dataset = load_dataset(f"idx:{tiny_idx_dir}")
    base = TINY_CONFIG
    parts = [[("aux", (2, 3))]]
    run_sweep(base, parts, tmp_path, dataset, progress=False)
    newer = ["project_out", "log_every"]  # fields the older version did not have
    stored = json.loads((tmp_path / "sweep.json").read_text())
    older_fields = [field for field in stored["base"] if field not in newer]
    stored["base"] = {field: stored["base"][field] for field in older_fields}
    (tmp_path / "sweep.json").write_text(json.dumps(stored))
    for path in list((tmp_path / "points").glob("*.json")):
        point = json.loads(path.read_text())
        point["config"] = {field: point["config"][field] for field in older_fields}
        config = Config(**{**base.to_dict(), "aux": point["config"]["aux"]})
        older_name = sweep.point_name(config, older_fields)
        path.unlink()
        (tmp_path / "points" / f"{older_name}.json").write_text(json.dumps(point))

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(sweep, "run_experiment", must_not_train)
    results = run_sweep(base, parts, tmp_path, dataset, progress=False)
    assert [r["config"]["aux"] for r in results] == [2, 3]
    names = {path.stem for path in (tmp_path / "points").glob("*.json")}
    assert names == {sweep.point_name(c) for c in sweep.union_grid(base, parts)}  # renamed
    assert all(r["config"]["project_out"] == "none" for r in results)
    # an older point is today's config only with the new fields at their defaults
    point = tmp_path / "points" / f"{names.pop()}.json"
    assert sweep._finished(point, Config(**json.loads(point.read_text())["config"]), dataset)
    moved = Config(**json.loads(point.read_text())["config"]).replace(log_every=1)
    assert sweep._finished(point, moved, dataset) is None


def test_a_study_table_names_a_point_the_same_trained_now_or_read_back():
    row = {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    summary = {"student_aux": row, "cross_aux": row}
    study = Study("?", (("hidden", ((256, 16), (256, 64))),))
    fresh = {"config": {"hidden": (256, 16)}, "summary": summary}  # as run_experiment returns it
    stored = json.loads(json.dumps(fresh))  # as a finished point is read back: a JSON list
    table = format_study(study, [fresh, stored]).splitlines()
    assert table[1] == table[2] and table[1].startswith("256x16 ")
