"""The lab bundle's offline parts: its INSTALL.txt commands, its checksums, its platform note,
its notebooks.

Building a bundle downloads hundreds of MB and installing one takes a minute, so neither runs
here: `.ci/run` runs `make lab-bundle lab-bundle-check` after `make package` (tools/lab_bundle.py).
"""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import nbformat
import pytest

from sublim_toy.cli import build_parser

TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"


def _load_lab_bundle():
    spec = importlib.util.spec_from_file_location("lab_bundle", TOOLS_DIR / "lab_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lab_bundle = _load_lab_bundle()


def test_install_txt_runs_the_lab_preset_from_the_bundled_cache_with_real_flags():
    commands = [shlex.split(line) for line in lab_bundle.install_commands()]
    pip = next(words for words in commands if "pip" in words[0])
    assert pip[1:] == ["install", "--no-index", "--find-links", lab_bundle.WHEELS] + [
        "sublim-toy[lab]"  # the package and Jupyter
    ]
    reproduce = next(words for words in commands if words[1:2] == ["reproduce"])
    args = build_parser().parse_args(reproduce[1:])  # a renamed flag fails here
    assert args.lab and args.cache_dir == Path(lab_bundle.CACHE)
    assert f"--cache-dir {lab_bundle.CACHE}" in lab_bundle.install_text("w.whl", [], [])


@pytest.mark.parametrize(
    "name, glibc",
    [
        ("jaxlib-0.10.2-cp311-cp311-manylinux_2_27_x86_64.whl", (2, 27)),
        # a wheel tagged several ways runs on the oldest glibc any of its tags names
        ("simplejson-4.3.0-cp311-cp311-manylinux1_x86_64.manylinux_2_28_x86_64.whl", (2, 5)),
        ("protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl", (2, 17)),
        ("jax-0.10.2-py3-none-any.whl", None),
        ("numpy-2.5.5-cp312-cp312-macosx_14_0_arm64.whl", None),
    ],
)
def test_the_glibc_a_wheel_needs_is_read_from_its_platform_tags(name, glibc):
    assert lab_bundle._glibc(name) == glibc


def test_the_platform_note_names_the_newest_glibc_any_wheel_needs():
    names = [
        "a-1-cp311-cp311-manylinux2014_x86_64.whl",
        "b-1-cp311-cp311-manylinux_2_27_x86_64.whl",
    ]
    assert "glibc >= 2.27" in lab_bundle.describe_target(names, [])


def test_checksums_catch_a_changed_a_missing_and_an_unlisted_file(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels/a.whl").write_bytes(b"a")
    (tmp_path / "wheels/b.whl").write_bytes(b"b")
    (tmp_path / lab_bundle.SUMS).write_text(lab_bundle.sums_text(tmp_path))
    assert lab_bundle.verify_sums(tmp_path) == []
    (tmp_path / "wheels/a.whl").write_bytes(b"A")
    (tmp_path / "wheels/b.whl").unlink()
    (tmp_path / "wheels/c.whl").write_bytes(b"c")
    assert lab_bundle.verify_sums(tmp_path) == ["wheels/a.whl", "wheels/b.whl", "wheels/c.whl"]


def test_build_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a lab bundle"):
        lab_bundle.build(Path("sublim_toy.whl"), tmp_path, None, [])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_bundle_carries_every_notebook_and_its_students_version(tmp_path):
    folder = tmp_path / lab_bundle.NOTEBOOKS
    lab_bundle.copy_notebooks(folder)
    committed = sorted(path.name for path in (TOOLS_DIR.parent / "notebooks").glob("*.ipynb"))
    assert sorted(path.name for path in folder.glob("*.ipynb")) == committed
    assert sorted(path.name for path in (folder / lab_bundle.STUDENT).glob("*.ipynb")) == committed
    assert lab_bundle.CHECKED_NOTEBOOK in committed
    for name in committed:
        original = (TOOLS_DIR.parent / "notebooks" / name).read_bytes()
        assert (folder / name).read_bytes() == original  # the instructor's copy, as committed
        student = nbformat.read(folder / lab_bundle.STUDENT / name, as_version=4)
        assert student.metadata["sublim_toy"] == {"student": True}
        assert not any(cell.get("outputs") for cell in student.cells)
        assert not any("<summary>Answer" in cell.source for cell in student.cells)
