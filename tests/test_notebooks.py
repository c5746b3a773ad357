"""The notebooks run top to bottom in a fresh kernel, and the committed ones are clean full runs.

Each notebook executes in quick mode (SUBLIM_TOY_QUICK=1, about a minute) through
`notebooks/execute.py`, the same function `make notebooks` uses, into a temporary copy: the
committed notebooks are never modified here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ("01_reproduce_mnist.ipynb", "02_theorem_check.ipynb", "03_mechanism.ipynb")


def _load_execute():
    spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOKS_DIR / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


execute = _load_execute()


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _errors(notebook) -> list[str]:
    return [
        f"cell {cell.execution_count}: {output.ename}: {output.evalue}"
        for cell in _code_cells(notebook)
        for output in cell.outputs
        if output.output_type == "error"
    ]


def test_every_notebook_is_listed():
    assert sorted(path.name for path in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


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


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_a_clean_full_run(name):
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(notebook)
    cells = _code_cells(notebook)
    # executed top to bottom in one fresh kernel, in full mode, without errors
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert notebook.metadata.get("sublim_toy") == {"quick": False}
    assert _errors(notebook) == []
    assert any("image/png" in output.get("data", {}) for cell in cells for output in cell.outputs)
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
