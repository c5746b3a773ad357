"""Build, or check, a folder that installs sublim-toy in a lab room with no network.

    python tools/lab_bundle.py build --wheel dist/sublim_toy-*.whl --out build/lab-bundle
    python tools/lab_bundle.py check build/lab-bundle

`build` writes the package's wheel and the wheels of all its runtime dependencies (`pip
download`, binary wheels only, for this Python and platform unless --python-version, --platform,
--implementation or --abi name another), the checked MNIST cache (the package's own loader reads
and checks it, fetching it first if the cache it comes from has none) and INSTALL.txt with the
commands a lab machine runs, with the `lab` extra (Jupyter) and the notebooks: the committed
ones (outputs and answers, for the instructor) and the students' versions (notebooks/prepare.py).
`check` installs a bundle into a fresh venv with pip's --no-index, pip's configuration ignored
and, where Linux allows it, no network at all, then runs `sublim-toy --version`, a tiny
reproduce from the bundled cache and the students' notebook 00 in Jupyter, and installs the
package a second time into a bare venv through the notebooks' setup cell, as on Colab. `make
lab-bundle` and `make lab-bundle-check` run them (docs/lab.md).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

# The MNIST loader and checksum are this tree's, the tree the bundled wheel is built from, whatever
# sublim_toy the running Python has installed (or none).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WHEELS = "wheels"
CACHE = "cache"
INSTALL = "INSTALL.txt"
SUMS = "SHA256SUMS"
NOTEBOOKS = "notebooks"
STUDENT = "student"  # the students' versions, in notebooks/student/
# Everything a bundle holds: an existing --out is replaced only if it holds nothing else.
CONTENTS = {WHEELS, CACHE, INSTALL, SUMS, NOTEBOOKS}
# The package with Jupyter: what a lab machine installs (pyproject.toml's `lab` extra).
REQUIREMENT = "sublim-toy[lab]"
# The notebook the check runs in Jupyter: the lecture, about 30 s on 2 CPU cores.
CHECKED_NOTEBOOK = "00_lecture.ipynb"
# pip download's flags for a bundle for another machine, passed through as given.
TARGET_FLAGS = ("--python-version", "--platform", "--implementation", "--abi")
# The tiny run of `make package`: seconds, and it reads all of MNIST.
TINY_RUN = "--seeds 2 --epochs 1 --set hidden=32 --noise-images 4096 --no-progress".split()
# Run as `python -c LOOPBACK_UP COMMAND...` inside a new network namespace: set the loopback
# interface up (SIOCGIFFLAGS/SIOCSIFFLAGS; no iproute2 needed), then become COMMAND.
LOOPBACK_UP = """
import fcntl, os, socket, struct, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
os.execvp(sys.argv[1], sys.argv[1:])
"""
# The glibc version of the old manylinux tags (PEP 600 spells the others manylinux_2_N).
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


# ---- build ------------------------------------------------------------------------------------


def build(wheel: Path, out: Path, cache_from: Path | None, target: list[str]) -> None:
    """Write the bundle into a fresh folder beside `out`, then put it in `out`'s place."""
    from sublim_toy.data import load_dataset

    if out.exists() and not (out.is_dir() and {p.name for p in out.iterdir()} <= CONTENTS):
        sys.exit(f"{out} exists and is not a lab bundle: choose another --out or move it away")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would keep a shared copy from the lab's accounts
    try:
        started = time.perf_counter()
        command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--quiet"]
        command += ["--dest", str(staging / WHEELS), f"{wheel}[lab]", *target]
        _run(command)
        print(f"wheels: {time.perf_counter() - started:.0f} s", flush=True)

        # The cache it comes from is read (fetched first if absent) and checked by the package's
        # own loader; the copy is read and checked again where the lab will read it.
        started = time.perf_counter()
        load_dataset("pypi", cache_from)
        cache_file = Path(cache_from or _default_cache_dir()) / "mnist.npz"
        (staging / CACHE).mkdir()
        shutil.copyfile(cache_file, staging / CACHE / "mnist.npz")
        copy = load_dataset("pypi", staging / CACHE)  # refuses arrays whose sha256 is not MNIST's
        print(f"cache: {cache_file} (sha256 {copy.sha256[:16]}..., checked)", flush=True)
        print(f"cache: {time.perf_counter() - started:.0f} s", flush=True)

        copy_notebooks(staging / NOTEBOOKS)
        wheel_names = sorted(path.name for path in (staging / WHEELS).glob("*.whl"))
        (staging / INSTALL).write_text(install_text(wheel.name, wheel_names, target))
        (staging / SUMS).write_text(sums_text(staging))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(
        f"wrote {out}: {len(wheel_names)} wheels, MNIST, {NOTEBOOKS}, {INSTALL}, {SUMS}; "
        f"{size / 1e6:.0f} MB"
    )


def _prepare():
    """notebooks/prepare.py of this tree: the notebooks and their students' versions."""
    spec = importlib.util.spec_from_file_location("prepare", ROOT / NOTEBOOKS / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_notebooks(folder: Path) -> None:
    """The committed notebooks into `folder`, their students' versions into `folder`/student."""
    import nbformat

    prepare = _prepare()
    paths = prepare.notebooks()
    (folder / STUDENT).mkdir(parents=True)
    for path in paths:
        shutil.copyfile(path, folder / path.name)
        notebook = nbformat.read(path, as_version=4)
        nbformat.write(prepare.student_version(notebook), folder / STUDENT / path.name)
    print(f"notebooks: {len(paths)}, with the students' versions", flush=True)


def _default_cache_dir() -> Path:
    from sublim_toy.data import default_cache_dir

    return default_cache_dir()


def describe_target(wheel_names: list[str], target: list[str]) -> str:
    """Which Python and platform the wheels are for, and the oldest glibc they accept."""
    if target:
        what = f"the Python and platform of: pip download {' '.join(target)}"
    else:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        what = f"{platform.python_implementation()} {version} on {sysconfig.get_platform()}"
    glibc = max(filter(None, map(_glibc, wheel_names)), default=None)
    if glibc:
        what += f" with glibc >= {glibc[0]}.{glibc[1]} (the newest its manylinux wheels need)"
    return textwrap.fill(f"Built for {what}.", width=96)


def _glibc(name: str) -> tuple[int, int] | None:
    """The oldest glibc a wheel runs on: its most accepting manylinux tag; None if not one."""
    versions = []
    platform_tags = name.removesuffix(".whl").split("-")[-1]  # PEP 427: the last field
    for tag in platform_tags.split("."):
        if match := re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag):
            versions.append((int(match[1]), int(match[2])))
        elif (legacy := tag.split("_")[0]) in LEGACY_MANYLINUX:
            versions.append(LEGACY_MANYLINUX[legacy])
    return min(versions, default=None)


def install_commands() -> list[str]:
    """What a lab machine runs, from inside the bundle folder."""
    return [
        "python3 -m venv ~/lab",
        f"~/lab/bin/pip install --no-index --find-links {WHEELS} '{REQUIREMENT}'",
        "~/lab/bin/sublim-toy --version",
        f"~/lab/bin/sublim-toy reproduce --lab --cache-dir {CACHE} --out ~/lab-results",
    ]


def install_text(package_wheel: str, wheel_names: list[str], target: list[str]) -> str:
    commands = "\n".join(f"    {command}" for command in install_commands())
    return f"""\
sublim-toy for a lab room with no network
=========================================

{describe_target(wheel_names, target)}
The `python3` below must be that Python.

Contents:
    {WHEELS}/      {package_wheel}, its runtime dependencies and Jupyter: {len(wheel_names)} wheels
    {CACHE}/       mnist.npz, MNIST as sublim-toy caches it (checked on every load)
    {NOTEBOOKS}/   the course's notebooks with their outputs and answers (the instructor's);
                 {NOTEBOOKS}/{STUDENT}/: the same without outputs or answers (the students')
    {SUMS}   the sha256 of every file: `sha256sum -c {SUMS}` checks a copy

Install and run, from this folder (pip's --no-index: nothing is downloaded):

{commands}

The last command is the lab preset (about a minute on 2 CPU cores). The notebooks, in Jupyter
(installed above), reading MNIST from this folder:

    SUBLIM_TOY_INSTALL=$PWD ~/lab/bin/jupyter lab {NOTEBOOKS}/{STUDENT}

(SUBLIM_TOY_INSTALL is what the notebooks' first cell reads: with it pointing here they install
sublim-toy from {WHEELS}/ if a kernel lacks it, and read MNIST from {CACHE}/.) Elsewhere, copy
the cache where sublim-toy looks by default:

    mkdir -p ~/.cache/sublim-toy && cp {CACHE}/mnist.npz ~/.cache/sublim-toy/

or point SUBLIM_TOY_CACHE at this folder's {CACHE}/ (read-only is fine).
"""


def sums_text(folder: Path) -> str:
    """`sha256sum` lines for every file under `folder` (paths relative to it)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.name != SUMS)
    return "".join(f"{_sha256(path)}  {path.relative_to(folder)}\n" for path in files)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- check ------------------------------------------------------------------------------------


def check(bundle: Path) -> None:
    """Install `bundle` into a fresh venv with no index and no network; run it from its cache."""
    from sublim_toy.data import MNIST_SHA256

    bundle = bundle.resolve()
    if not (bundle / SUMS).is_file():
        sys.exit(f"{bundle} is not a lab bundle (no {SUMS}): run `make lab-bundle` first")
    bad = verify_sums(bundle)
    if bad:
        sys.exit(f"{bundle}: files that do not match {SUMS}: {', '.join(bad)}")
    print(f"{bundle}: every file matches {SUMS}", flush=True)

    offline = _no_network_prefix()
    with tempfile.TemporaryDirectory(prefix="sublim-toy-lab-check-") as tmp:
        venv, run_dir = Path(tmp) / "lab", Path(tmp) / "run"
        run_dir.mkdir()
        env = _offline_env(Path(tmp))
        steps = [
            ([sys.executable, "-m", "venv", str(venv)], bundle),
            (
                [str(venv / "bin/pip"), "install", "--no-index", "--progress-bar", "off"]
                + ["--find-links", WHEELS, REQUIREMENT],
                bundle,
            ),
            ([str(venv / "bin/sublim-toy"), "--version"], run_dir),
            (
                [str(venv / "bin/sublim-toy"), "reproduce", *TINY_RUN]
                + ["--cache-dir", str(bundle / CACHE), "--out", "tiny"],
                run_dir,
            ),
        ]
        for command, cwd in steps:
            _timed_run(offline + command, cwd=cwd, env=env)
        _check_imported_from(venv, offline, cwd=run_dir, env=env)
        data = json.loads((run_dir / "tiny/results.json").read_text())["data"]
        if data["sha256"] != MNIST_SHA256 or data["source"] != "pypi":
            sys.exit(f"the run's data is {data}, not MNIST from the bundled cache")
        check_notebooks(bundle, Path(tmp), venv, offline, env)
    if verify_sums(bundle):
        sys.exit(f"the run changed {bundle}")
    how = "in a network namespace with loopback only" if offline else "pip with no index or config"
    print(f"{bundle} installed and ran offline ({how}); MNIST sha256 {MNIST_SHA256}")


def check_notebooks(bundle: Path, tmp: Path, venv: Path, offline: list[str], env: dict) -> None:
    """The students' lecture notebook runs in the lab venv's Jupyter from the bundle, and the
    notebooks' setup cell installs sublim-toy from the bundle into a bare venv (as on Colab)."""
    import nbformat

    notebook = bundle / NOTEBOOKS / STUDENT / CHECKED_NOTEBOOK
    work = tmp / "notebook"
    work.mkdir()
    shutil.copyfile(notebook, work / notebook.name)
    lab_env = env | {"SUBLIM_TOY_INSTALL": str(bundle)}
    _timed_run(
        offline + [str(venv / "bin/jupyter"), "execute", notebook.name], cwd=work, env=lab_env
    )

    setup = _prepare().setup_cell(nbformat.read(notebook, as_version=4))
    (work / "setup_cell.py").write_text(setup.source)
    bare = tmp / "bare"
    for command in (
        [sys.executable, "-m", "venv", str(bare)],
        [str(bare / "bin/python"), "setup_cell.py"],
    ):
        _timed_run(offline + command, cwd=work, env=lab_env)
    _check_imported_from(bare, offline, cwd=work, env=lab_env)


def _check_imported_from(venv: Path, offline: list[str], *, cwd: Path, env: dict) -> None:
    """Stop unless `venv`'s Python imports sublim_toy from `venv` itself."""
    command = [str(venv / "bin/python"), "-c", "import sublim_toy; print(sublim_toy.__file__)"]
    where = _run(offline + command, cwd=cwd, env=env, capture=True)
    if not Path(where).resolve().is_relative_to(venv.resolve()):
        sys.exit(f"{venv}'s Python imported sublim_toy from {where}, not from that venv")


def verify_sums(bundle: Path) -> list[str]:
    """Files listed in SHA256SUMS that are missing or differ, and files it does not list."""
    listed = {}
    for line in (bundle / SUMS).read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {str(path.relative_to(bundle)) for path in bundle.rglob("*") if path.is_file()}
    bad = [name for name, digest in listed.items() if not (bundle / name).is_file()]
    bad += [name for name in present - listed.keys() - {SUMS}]
    bad += [name for name in listed if name in present and _sha256(bundle / name) != listed[name]]
    return sorted(bad)


def _no_network_prefix() -> list[str]:
    """`unshare --net --map-root-user` where it works (Linux with user namespaces): the commands
    then see no network interface but loopback, which LOOPBACK_UP brings up first (Jupyter's
    kernel talks to its client over 127.0.0.1; nothing beyond the machine is reachable).
    Elsewhere nothing, and the check rests on pip's --no-index and the other fetches failing
    (_offline_env)."""
    prefix = ["unshare", "--net", "--map-root-user", sys.executable, "-c", LOOPBACK_UP]
    try:
        done = subprocess.run([*prefix, "true"], capture_output=True)
    except FileNotFoundError:
        return []
    return prefix if done.returncode == 0 else []


def _offline_env(tmp: Path) -> dict[str, str]:
    """The environment of the checked commands: nothing from this machine's pip configuration
    (a configured --find-links would otherwise be searched beside the bundle, an index
    consulted), no PYTHONPATH (the fresh venv's package must be the one run), no shared
    caches, and pip with no index should sublim-toy ever try to fetch MNIST."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PIP_", "PYTHON", "SUBLIM_TOY_", "JAX_", "VIRTUAL_ENV"))
    }
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_NO_CACHE_DIR": "1"}
    env |= {"XDG_CACHE_HOME": str(tmp / "cache"), "MPLCONFIGDIR": str(tmp / "matplotlib")}
    return env


def _run(command: list[str], *, cwd=None, env=None, capture: bool = False) -> str:
    """Print `command` as a shell would show it, run it, stop on failure."""
    shown = command
    if LOOPBACK_UP in command:  # shown as `unshare --net --map-root-user COMMAND...`
        at = command.index(LOOPBACK_UP)
        shown = command[: at - 2] + command[at + 1 :]
    print("$ " + shlex.join(shown), flush=True)
    done = subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=capture)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shlex.join(shown)}\n{done.stderr or ''}")
    return (done.stdout or "").strip()


def _timed_run(command: list[str], **run_args) -> str:
    """`_run`, then how long it took."""
    started = time.perf_counter()
    output = _run(command, **run_args)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return output


# ---- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="write a bundle")
    build_parser.add_argument("--wheel", type=Path, required=True, help="sublim-toy's wheel")
    build_parser.add_argument("--out", type=Path, required=True, help="the bundle's folder")
    build_parser.add_argument(
        "--cache-from",
        type=Path,
        help="the MNIST cache to copy (default sublim-toy's: $SUBLIM_TOY_CACHE or "
        "~/.cache/sublim-toy); fetched into it first if it has none",
    )
    for flag in TARGET_FLAGS:
        build_parser.add_argument(flag, action="append", help="passed to pip download")
    check_parser = commands.add_parser("check", help="install a bundle offline and run it")
    check_parser.add_argument("bundle", type=Path)
    args = parser.parse_args(argv)
    if args.command == "build":
        target = []
        for flag in TARGET_FLAGS:
            for value in getattr(args, flag[2:].replace("-", "_")) or []:
                target += [flag, value]
        build(args.wheel, args.out, args.cache_from, target)
    else:
        check(args.bundle)


if __name__ == "__main__":
    main()
