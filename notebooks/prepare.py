"""Write the shared setup cell into every notebook, and generate the students' versions.

    python notebooks/prepare.py stamp              # setup_cell.py -> first code cell of each
    python notebooks/prepare.py student OUT_DIR    # copies without outputs or answers

The setup cell is kept once, in `notebooks/setup_cell.py`, and written into each notebook by
`stamp` (tests/test_notebooks.py checks that every notebook carries it unchanged). A student's
version of a notebook has no outputs and none of the cells tagged `answer` (the exercises'
answers): generated from the committed notebook every time, never kept by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOKS_DIR = Path(__file__).resolve().parent
SETUP_CELL = NOTEBOOKS_DIR / "setup_cell.py"
ANSWER_TAG = "answer"
SETUP_TAG = "setup"


def notebooks() -> list[Path]:
    """Every notebook of the course, in order: 00_..., 01_..., ..."""
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def setup_source() -> str:
    return SETUP_CELL.read_text().rstrip("\n")


def setup_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook's setup cell: its first code cell."""
    return next(cell for cell in notebook.cells if cell.cell_type == "code")


def stamp(notebook: nbformat.NotebookNode) -> bool:
    """Put setup_cell.py into the notebook's first code cell; True if that changed it."""
    cell = setup_cell(notebook)
    tags = cell.metadata.setdefault("tags", [])
    changed = cell.source != setup_source() or SETUP_TAG not in tags
    cell.source = setup_source()
    if SETUP_TAG not in tags:
        tags.append(SETUP_TAG)
    return changed


def student_version(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs, execution counts or cells tagged `answer`."""
    copy = nbformat.from_dict(notebook)
    copy.cells = [cell for cell in copy.cells if ANSWER_TAG not in cell.metadata.get("tags", [])]
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    copy.metadata["sublim_toy"] = {"student": True}
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("stamp", help="write setup_cell.py into every notebook")
    student = commands.add_parser("student", help="write the students' versions into OUT_DIR")
    student.add_argument("out", type=Path, metavar="OUT_DIR")
    args = parser.parse_args(argv)
    for path in notebooks():
        notebook = nbformat.read(path, as_version=4)
        if args.command == "stamp":
            if stamp(notebook):
                nbformat.write(notebook, path)
                print(f"{path.name}: setup cell written (re-execute it: make notebooks)")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_version(notebook), args.out / path.name)
        print(f"{args.out / path.name}: student version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
