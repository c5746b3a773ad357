import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sublim_toy.cli import main


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--data-source", "kaggle"], "unknown data source 'kaggle'"),
        (["--aux", "0"], "--aux 0: must be an integer >= 1"),
        (["--aux", "1"], "--aux 1 with imitation_loss='kl' (the default): the softmax"),
        (["--epochs", "-1"], "--epochs -1 (teacher_epochs=-1): must be an integer >= 0"),
        (["--seeds", "abc"], "--seeds abc: expected an integer"),
        (["--seeds", "0"], "--seeds 0: must be an integer >= 1"),
        (["--init", "xavier"], "argument --init: invalid choice: 'xavier'"),
        (["--student-init", "head=pretrained"], "'head=pretrained' in 'head=pretrained': write"),
        (["--student-init", "body=shared"], "'body=shared' in 'body=shared': write hidden="),
        (["--student-init", "hidden=trained"], "'hidden=trained' in 'hidden=trained'"),
        (["--freeze", "all"], "argument --freeze: invalid choice: 'all'"),
        (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
        (["--dataset", "fashion-mnist", "--data-source", "pypi"], "'pypi' has no fashion-mnist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(arguments, message, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        code = main(["reproduce", *arguments, "--out", str(out)])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()  # nothing half-written


def test_truncated_idx_file_is_one_line_and_exit_code_2(tiny_idx_dir, tmp_path, capsys):
    path = tiny_idx_dir / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    code = main(["reproduce", "--data-source", f"idx:{tiny_idx_dir}", "--out", str(tmp_path / "o")])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr.startswith("sublim-toy: error: truncated IDX file") and stderr.count("\n") == 1


def test_student_init_and_freeze_flags_set_the_config():
    from sublim_toy.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        ["reproduce", "--student-init", "hidden=independent,head=trained", "--freeze", "head"]
    )
    config = config_from_args(args)
    assert (config.hidden_init, config.head_init, config.freeze) == (
        "independent",
        "trained",
        "head",
    )
    args = build_parser().parse_args(["reproduce", "--student-init", "head=independent"])
    assert (config_from_args(args).hidden_init, config_from_args(args).head_init) == (
        "shared",
        "independent",
    )


def test_the_command_line_names_every_figure_style():
    from sublim_toy import cli, plots

    assert cli.FIGURE_STYLES == tuple(plots.STYLES)


def test_module_entry_point_and_help():
    done = subprocess.run(
        [sys.executable, "-m", "sublim_toy", "reproduce", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for flag in ("--seeds", "--epochs", "--aux", "--data-source", "--out", "--quick"):
        assert flag in done.stdout


def test_reproduce_end_to_end_on_real_mnist(mnist_cache, tmp_path, capsys):
    """A small real run: the aux-only student must clear its cross-model twin on every seed.

    A pipeline that broke the shared init, fed students the wrong logits or never trained the
    teacher leaves the aux-only student at chance (~0.10), like the cross-model student.
    """
    out = tmp_path / "run"
    code = main(
        [
            "reproduce",
            "--seeds",
            "3",
            "--teacher-epochs",
            "1",
            "--student-epochs",
            "2",
            "--cache-dir",
            str(mnist_cache),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "Student (aux. only)" in printed and "paired student_aux - cross_aux" in printed
    results = json.loads((out / "results.json").read_text())
    for name in ("figure10.png", "figure10.pdf"):
        assert (out / name).stat().st_size > 10_000
    accuracy = {name: results["accuracy"][name] for name in results["accuracy"]}
    assert len(accuracy["student_aux"]) == 3
    assert min(accuracy["teacher"]) > 0.85
    assert max(accuracy["cross_aux"]) < 0.2
    assert all(
        s - c > 0.1 for s, c in zip(accuracy["student_aux"], accuracy["cross_aux"], strict=True)
    )
    assert results["paired_difference"]["ci_low"] > 0
    assert min(accuracy["student_all"]) > 0.6
    assert results["data"]["sha256"].startswith("06b0d1f1")
    assert results["config"]["teacher_epochs"] == 1

    # The figure is redrawn from the JSON alone.
    (out / "figure10.png").unlink()
    assert main(["plot", str(out / "results.json")]) == 2  # figure10.pdf is still there
    assert main(["plot", str(out / "results.json"), "--overwrite"]) == 0
    assert (out / "figure10.png").exists()


def test_plot_draws_for_a_projector_and_writes_svg_when_asked(tmp_path, capsys):
    results = tmp_path / "results.json"
    shutil.copy(Path(__file__).parents[1] / "docs" / "reproduce" / "results.json", results)
    svgs = {"figure10.svg", "alignment.svg"}
    assert main(["plot", str(results), "--style", "projector", "--svg"]) == 0
    written = {path.name for path in tmp_path.iterdir()}
    assert svgs <= written and {"figure10.png", "alignment.pdf"} <= written
    assert (tmp_path / "figure10.svg").read_text().startswith("<?xml")
    # a redraw without --svg leaves no SVG of the earlier one behind
    assert main(["plot", str(results), "--overwrite"]) == 0
    assert not svgs & {path.name for path in tmp_path.iterdir()}
    # reproduce owns the SVGs too: it refuses a directory that holds one
    (tmp_path / "figure10.svg").write_text("<svg/>")
    (tmp_path / "results.json").rename(tmp_path / "kept.json")
    for name in ("figure10.png", "figure10.pdf", "alignment.png", "alignment.pdf"):
        (tmp_path / name).unlink()
    capsys.readouterr()
    assert main(["reproduce", "--out", str(tmp_path)]) == 2
    assert "(figure10.svg)" in capsys.readouterr().err


def test_plot_of_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "none.json")]) == 2
    assert "cannot read results file" in capsys.readouterr().err
