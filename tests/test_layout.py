"""The package keeps its promises about what imports what, and cites only what it ships."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_data_loading_needs_no_jax():
    assert not {"jax", "flax", "optax"} & _imported_after("import sublim_toy.data")


@pytest.mark.parametrize("module", ["plots", "results"])
def test_records_and_figures_never_import_the_training_code(module):
    loaded = _imported_after(f"import sublim_toy.{module}")
    assert not {"sublim_toy.train", "sublim_toy.experiment", "flax", "optax"} & loaded


def test_the_theorem_report_words_numbers_without_training():
    loaded = _imported_after("import sublim_toy.theorem_report")
    assert not {"sublim_toy.train", "sublim_toy.experiment"} & loaded


def test_the_main_path_does_not_import_the_theorem_checker():
    loaded = _imported_after("import sublim_toy.experiment")
    assert "sublim_toy.theorem" not in loaded


def _xla_flags_after_import(flags: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    if flags is not None:
        env["XLA_FLAGS"] = flags
    code = "import os, sublim_toy; print(os.environ['XLA_FLAGS'])"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return done.stdout.strip()


def test_importing_the_package_turns_off_gpu_triton_gemms_unless_the_user_chose():
    # The flag must be in XLA_FLAGS before JAX starts its backend (a GPU compiles 8x longer
    # without it); the user's own flags are kept, and their choice of this one wins.
    assert _xla_flags_after_import(None) == "--xla_gpu_enable_triton_gemm=false"
    assert _xla_flags_after_import("--xla_dump_to=/tmp/x") == (
        "--xla_dump_to=/tmp/x --xla_gpu_enable_triton_gemm=false"
    )
    chosen = "--xla_gpu_enable_triton_gemm=true"
    assert _xla_flags_after_import(chosen) == chosen
    other = "--xla_gpu_enable_triton_gemm_int4=true"  # another flag, not a choice of this one
    assert _xla_flags_after_import(other) == f"{other} --xla_gpu_enable_triton_gemm=false"


def _repository_files():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / name for name in tracked if name.endswith((".py", ".md", ".ipynb", "Makefile"))]


def test_nothing_cites_files_our_users_do_not_have():
    offenders = [
        str(path.relative_to(ROOT))
        for path in _repository_files()
        if re.search(r"\.\./shared|PAPER\.md", path.read_text())
    ]
    assert offenders == []


def test_every_docs_path_cited_in_the_code_exists():
    cited = set()
    for path in (ROOT / "sublim_toy").glob("*.py"):
        cited |= set(re.findall(r"\b((?:docs|proofs)/[\w./-]+\w)", path.read_text()))
    missing = sorted(name for name in cited if not (ROOT / name).exists())
    assert cited and missing == []
