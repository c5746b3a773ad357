# Setup: the first cell of every notebook (notebooks/setup_cell.py; `make notebooks`
# writes it into each). Inside a clone of the repository, or where sublim-toy is installed,
# there is nothing to edit. Elsewhere (Colab, a bare kernel) set SUBLIM_TOY_INSTALL to where
# pip should install sublim-toy from: a lab-bundle folder (`make lab-bundle`: no network
# needed, its MNIST too), a wheel file, or any pip requirement (a git URL, say).
SUBLIM_TOY_INSTALL = ""

import importlib.util  # noqa: E402 (the one variable to edit stays on top)
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402
from pathlib import Path  # noqa: E402

# Quick mode (SUBLIM_TOY_QUICK=1 in the kernel's environment, as CI runs them): every run at
# the lab preset's size or smaller, about a minute a notebook on 2 CPU cores.
QUICK = os.environ.get("SUBLIM_TOY_QUICK") == "1"
INSTALL = SUBLIM_TOY_INSTALL or os.environ.get("SUBLIM_TOY_INSTALL", "")


def clone_root() -> Path | None:
    """The repository this notebook sits in (notebooks/ beside sublim_toy/), if any."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "pyproject.toml").is_file() and (folder / "sublim_toy").is_dir():
            return folder
    return None


def pip_install(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], check=True)
    importlib.invalidate_caches()


bundle = Path(INSTALL) if INSTALL and (Path(INSTALL) / "wheels").is_dir() else None
if bundle is not None:  # MNIST from the bundle too, unless a cache is already chosen
    os.environ.setdefault("SUBLIM_TOY_CACHE", str((bundle / "cache").resolve()))
if importlib.util.find_spec("sublim_toy") is None:
    root = clone_root()
    if bundle is not None:
        pip_install("--no-index", "--find-links", str(bundle / "wheels"), "sublim-toy")
    elif INSTALL:
        pip_install(INSTALL)
    elif root is None:
        raise RuntimeError(
            "sublim_toy is not installed and this notebook is not inside a clone of the "
            "repository: set SUBLIM_TOY_INSTALL in this cell to a lab-bundle folder, a wheel "
            "or a pip requirement (docs/notebooks.md, 'Setup')"
        )
    elif all(importlib.util.find_spec(name) for name in ("jax", "flax", "optax", "matplotlib")):
        sys.path.insert(0, str(root))  # the clone's code, with the dependencies already here
    else:
        pip_install(str(root))

# tqdm.auto warns when ipywidgets is missing; these notebooks draw no progress bars anyway.
warnings.filterwarnings("ignore", message="IProgress not found")
import sublim_toy  # noqa: E402, F401 (importable now, whichever way it came)

try:
    installed = f"sublim-toy {version('sublim-toy')}"
except PackageNotFoundError:
    installed = "sublim-toy from this clone (not installed)"
print(f"{installed}, quick mode: {QUICK}")
