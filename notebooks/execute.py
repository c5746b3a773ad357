"""Execute notebooks top to bottom in a fresh kernel: the one way the notebooks are run.

    python notebooks/execute.py [--quick] [--in-place | --output DIR] NOTEBOOK...

Each notebook gets a new `python3` kernel (the interpreter running this script) whose working
directory is the notebook's own folder, as when a user opens it in Jupyter. --quick sets
SUBLIM_TOY_QUICK=1 in the kernel, which every notebook reads in its first cell (setup_cell.py)
to shrink its runs (00 and 01 run the same either way); without it the variable is removed, so
a full run is always full.
Afterwards the volatile metadata (execution timestamps, widget state) is stripped, so a re-run
changes the diff only where an output changed, and `metadata.sublim_toy.quick` records the mode.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

KERNEL_NAME = "python3"
QUICK_ENV = "SUBLIM_TOY_QUICK"
# Per cell: the full Figure 10 run is a single cell of 10-15 minutes on 2 CPU cores.
CELL_TIMEOUT_S = 3600
# Metadata that changes on every run while what the notebook shows does not.
VOLATILE_NOTEBOOK_METADATA = ("widgets", "papermill")
VOLATILE_CELL_METADATA = ("execution", "papermill", "ExecuteTime")


def volatile_metadata(notebook: nbformat.NotebookNode) -> list[str]:
    """Where `notebook` holds volatile metadata, as readable paths (empty when clean)."""
    found = [f"metadata.{key}" for key in VOLATILE_NOTEBOOK_METADATA if key in notebook.metadata]
    for index, cell in enumerate(notebook.cells):
        found += [
            f"cells[{index}].metadata.{key}"
            for key in VOLATILE_CELL_METADATA
            if key in cell.get("metadata", {})
        ]
    return found


def strip_volatile_metadata(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove the metadata `volatile_metadata` reports, in place; returns the notebook."""
    for key in VOLATILE_NOTEBOOK_METADATA:
        notebook.metadata.pop(key, None)
    for cell in notebook.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
    return notebook


def execute_notebook(
    path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    quick: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: int = CELL_TIMEOUT_S,
) -> float:
    """Run notebook `path` in a fresh kernel and write it to `output` (default: in place).

    `env` is the kernel's environment (default: this process's). Returns the wall time in
    seconds. A failing cell raises `CellExecutionError`; the partly executed notebook is then
    written to `output` only when that is not `path` itself, so a failed run never overwrites
    the committed notebook.
    """
    path = Path(path).resolve()
    output = path if output is None else Path(output).resolve()
    notebook = nbformat.read(path, as_version=4)
    kernel_env = dict(os.environ if env is None else env)
    if quick:
        kernel_env[QUICK_ENV] = "1"
    else:
        kernel_env.pop(QUICK_ENV, None)
    # Let ipykernel choose its inline backend, whatever the caller's shell set.
    kernel_env.pop("MPLBACKEND", None)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=timeout,
        record_timing=False,
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.perf_counter()
    try:
        client.execute(env=kernel_env)
    except CellExecutionError:
        if output != path:
            _write(notebook, output, quick)
        raise
    wall_s = time.perf_counter() - started
    _write(notebook, output, quick)
    return wall_s


def _write(notebook: nbformat.NotebookNode, output: Path, quick: bool) -> None:
    strip_volatile_metadata(notebook)
    notebook.metadata["sublim_toy"] = {"quick": quick}
    nbformat.validate(notebook)
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", type=Path)
    parser.add_argument(
        "--quick", action="store_true", help=f"small runs ({QUICK_ENV}=1), about a minute each"
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--in-place", action="store_true", help="overwrite each notebook")
    where.add_argument("--output", type=Path, metavar="DIR", help="write executed copies here")
    args = parser.parse_args(argv)
    for notebook in args.notebooks:
        output = None if args.in_place else args.output / notebook.name
        mode = "quick" if args.quick else "full"
        print(f"{notebook}: executing ({mode}) ...", flush=True)
        try:
            wall_s = execute_notebook(notebook, output, quick=args.quick)
        except CellExecutionError as error:
            print(f"{notebook}: FAILED\n{error}", file=sys.stderr)
            return 1
        print(f"{notebook}: done in {wall_s:.0f} s -> {output or notebook}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
