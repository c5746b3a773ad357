"""The notebooks run top to bottom in a fresh kernel, and the committed ones are clean full runs.

Each notebook executes in quick mode (SUBLIM_TOY_QUICK=1) through `notebooks/execute.py`, the
same function `make notebooks` uses, into a temporary copy: the committed notebooks are never
modified here. 00 and 01 are the same in both modes (01's run is the lab preset), and their
runs must show the effect by a margin a broken pipeline (a student that does not share the
teacher's init) could not reach. Every notebook starts with the one setup cell
(notebooks/setup_cell.py), and the students' versions lose outputs and answers.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = (
    "00_lecture.ipynb",
    "01_reproduce_mnist.ipynb",
    "02_theorem_check.ipynb",
    "03_mechanism.ipynb",
    "04_exercises.ipynb",
)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"notebooks_{name}", NOTEBOOKS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


execute = _load("execute")
prepare = _load("prepare")


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _errors(notebook) -> list[str]:
    return [
        f"cell {cell.execution_count}: {output.ename}: {output.evalue}"
        for cell in _code_cells(notebook)
        for output in cell.outputs
        if output.output_type == "error"
    ]


def _text(notebook) -> str:
    return "".join(
        output.get("text", "") for cell in _code_cells(notebook) for output in cell.outputs
    )


def test_every_notebook_is_listed():
    assert sorted(path.name for path in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    assert [path.name for path in prepare.notebooks()] == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_starts_with_the_setup_cell(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    cell = prepare.setup_cell(notebook)
    assert cell is _code_cells(notebook)[0]
    assert cell.source == (NOTEBOOKS_DIR / "setup_cell.py").read_text().rstrip("\n"), (
        "run `python notebooks/prepare.py stamp` (make notebooks)"
    )
    assert "setup" in cell.metadata["tags"]
    assert not prepare.stamp(notebook), "stamping a stamped notebook changes nothing"


def test_student_version_has_no_outputs_and_no_answers():
    notebook = nbformat.read(NOTEBOOKS_DIR / "04_exercises.ipynb", as_version=4)
    answers = [c for c in notebook.cells if prepare.ANSWER_TAG in c.metadata.get("tags", [])]
    exercises = [c for c in notebook.cells if re.match(r"## \d · ", c.source)]
    assert len(exercises) == len(answers) == 7
    assert all(cell.source.startswith("<details><summary>Answer") for cell in answers)

    student = prepare.student_version(notebook)
    nbformat.validate(student)
    assert len(student.cells) == len(notebook.cells) - len(answers)
    assert not any("<summary>Answer" in cell.source for cell in student.cells)
    assert [c.source for c in student.cells if re.match(r"## \d · ", c.source)] == [
        c.source for c in exercises
    ]
    assert all(c.outputs == [] and c.execution_count is None for c in _code_cells(student))
    assert any(cell.outputs for cell in _code_cells(notebook)), "the original keeps its outputs"


def test_each_exercise_asks_for_a_prediction_before_its_code():
    cells = nbformat.read(NOTEBOOKS_DIR / "04_exercises.ipynb", as_version=4).cells
    for index, cell in enumerate(cells):
        if re.match(r"## \d · ", cell.source):
            assert cells[index + 1].source.startswith("*Your prediction"), cell.source[:40]
            assert cells[index + 2].cell_type == "code"
            assert prepare.ANSWER_TAG in cells[index + 3].metadata.get("tags", [])


def _effect_01(text: str) -> float:
    """The lower bound of the paired gain's 95 % interval, as notebook 01 prints it."""
    match = re.search(r"mean paired difference [+-][\d.]+, 95% CI \[([+-][\d.]+),", text)
    return float(match[1])


def _effect_00(text: str) -> float:
    """Shared-init minus cross-model student's accuracy, as notebook 00's last cell prints it."""
    shared = float(re.search(r"student \(shared init\)\s+([\d.]+)", text)[1])
    cross = float(re.search(r"cross-model student\s+([\d.]+)", text)[1])
    return shared - cross


EFFECT = {"00_lecture.ipynb": _effect_00, "01_reproduce_mnist.ipynb": _effect_01}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_quick_mode(name, tmp_path, mnist_cache):
    source = NOTEBOOKS_DIR / name
    committed = source.read_bytes()
    env = {**os.environ, "SUBLIM_TOY_CACHE": str(mnist_cache)}
    output = tmp_path / name

    execute.execute_notebook(source, output, quick=True, env=env)  # raises on a failing cell

    executed = nbformat.read(output, as_version=4)
    assert _errors(executed) == []
    assert [cell.execution_count for cell in _code_cells(executed)] == list(
        range(1, len(_code_cells(executed)) + 1)
    )
    assert executed.metadata["sublim_toy"] == {"quick": True}
    assert execute.volatile_metadata(executed) == []
    assert source.read_bytes() == committed, "executing must not touch the committed notebook"
    if name in EFFECT:  # what CI runs is what a class sees: the effect, clearly
        assert EFFECT[name](_text(executed)) > 0.1


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_a_clean_full_run(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(notebook)
    cells = _code_cells(notebook)
    # executed top to bottom in one fresh kernel, in full mode, without errors
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert notebook.metadata.get("sublim_toy") == {"quick": False}
    assert _errors(notebook) == []
    if name != "04_exercises.ipynb":  # the exercises print tables; the others draw figures
        assert any("image/png" in out.get("data", {}) for cell in cells for out in cell.outputs)
    if name in EFFECT:
        assert EFFECT[name](_text(notebook)) > 0.1
    # readable diffs: no timestamps, widget state or other per-run metadata
    assert execute.volatile_metadata(notebook) == []


def test_volatile_metadata_is_found_and_stripped():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("1 + 1")]
    notebook.metadata["widgets"] = {"state": {}}
    notebook.cells[0].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    assert execute.volatile_metadata(notebook) == [
        "metadata.widgets",
        "cells[0].metadata.execution",
    ]
    execute.strip_volatile_metadata(notebook)
    assert execute.volatile_metadata(notebook) == []


def _run_setup_cell(*python_flags: str, cwd: Path, env: dict, after: str = ""):
    code = (NOTEBOOKS_DIR / "setup_cell.py").read_text() + after
    return subprocess.run(
        [sys.executable, *python_flags, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def test_setup_cell_outside_a_clone_without_the_package_says_what_to_set(tmp_path):
    # -S: no site-packages, so neither sublim_toy nor its dependencies can be imported
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SUBLIM_TOY_"))}
    done = _run_setup_cell("-S", cwd=tmp_path, env=env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("RuntimeError: sublim_toy is not installed")
        and "SUBLIM_TOY_INSTALL" in last
    )


def test_setup_cell_reads_mnist_from_a_lab_bundle(tmp_path):
    (tmp_path / "bundle" / "wheels").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBLIM_TOY_")}
    env["SUBLIM_TOY_INSTALL"] = str(tmp_path / "bundle")
    done = _run_setup_cell(cwd=tmp_path, env=env, after="\nprint(os.environ['SUBLIM_TOY_CACHE'])\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"sublim-toy {version('sublim-toy')}, quick mode: False",
        str(tmp_path / "bundle" / "cache"),
    ]
