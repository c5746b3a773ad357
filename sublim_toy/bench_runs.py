"""Whole runs in fresh processes, measured from outside: ours, and the authors' script beside it.

A fresh process, because peak memory is a high-water mark (the benchmark's own earlier work
would otherwise set it) and because a user's run starts from nothing: imports, data loading and
compilation count in its wall time, as they do in the authors' script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.errors import UserError

# The authors' public script: scripts/run_mnist_experiment.py of MinhxLe/subliminal-learning.
AUTHORS_SCRIPT = "https://github.com/MinhxLe/subliminal-learning (scripts/run_mnist_experiment.py)"
_AUTHORS_MODELS = re.compile(r"^N_MODELS = \d+$", re.MULTILINE)
_AUTHORS_ROW = re.compile(r"^(\S.*?)\s+(\d\.\d+)\s+(\S+)$")


class Measured(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    wall_s: float  # from start to exit, seen from outside
    peak_rss_mb: float | None  # the largest VmHWM seen in /proc while it ran (None off Linux)


def run_measured(command: list[str], *, env=None, cwd=None, poll_s: float = 0.05) -> Measured:
    """Run `command` to completion, timing it and watching its peak resident memory.

    The peak is read from the child's own /proc/PID/status (VmHWM, a high-water mark, reset at
    exec): `os.wait4`'s ru_maxrss would report this process's peak instead, since Linux carries
    the forking process's high-water mark across exec.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd, text=True)
        peak = None
        while process.poll() is None:
            peak = max(peak or 0.0, _vm_hwm_mb(process.pid) or 0.0) or None
            time.sleep(poll_s)
        wall_s = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Measured(process.returncode, out.read(), err.read(), wall_s, peak)


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def run_ours(config: Config, dataset: Dataset, cache_dir: str | None) -> dict:
    """`run_experiment(config)` in a fresh process (`python -m sublim_toy.bench_child`): its
    phase times as it records them, its own peak memory, and its wall time seen from outside."""
    fields = json.dumps({**config.to_dict(), "hidden": list(config.hidden)})
    where = [dataset.source, str(cache_dir or ""), dataset.name]
    # The bench's own process already holds the accelerator: JAX's default of taking 75 % of its
    # memory up front would leave a child too little.
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    done = run_measured([sys.executable, "-m", "sublim_toy.bench_child", fields, *where], env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {done.stderr.strip().splitlines()[-1:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {**report, "process_wall_s": done.wall_s}


def run_ours_across(
    config: Config, dataset: Dataset, cache_dir: str | None, *, processes: int, devices: int
) -> dict:
    """`run_experiment(config)` as one run across `processes` local processes with `devices`
    CPU devices each (JAX's distributed runtime over localhost): process 0's phase times, and
    the wall time of the whole run seen from outside."""
    fields = json.dumps({**config.to_dict(), "hidden": list(config.hidden)})
    where = [dataset.source, str(cache_dir or ""), dataset.name]
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    command = [sys.executable, "-m", "sublim_toy.bench_child", fields, *where]
    started = time.perf_counter()
    if processes == 1:
        children = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)]
    else:
        port = _free_port()
        children = [
            subprocess.Popen(
                [*command, f"127.0.0.1:{port}", str(processes), str(index)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(processes)
        ]
    outputs = [child.communicate()[0] for child in children]
    wall_s = time.perf_counter() - started
    if any(child.returncode != 0 for child in children):
        raise RuntimeError(f"a benchmark child of the {processes}-process run failed")
    return {**json.loads(outputs[0].strip().splitlines()[-1]), "process_wall_s": wall_s}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_authors(script: Path, python: str, models: int, dataset: Dataset) -> dict:
    """The authors' script for `models` models (its own name for seeds) in a fresh process.

    Runs a copy whose only change is the `N_MODELS = 100` line, in a temporary directory with
    MPLBACKEND=Agg (its closing plt.show() then draws nothing) and MNIST_NPZ pointing at this
    dataset as uint8 arrays, for an offline stand-in of the torchvision download it makes
    (put it first on PYTHONPATH; with the real torchvision it downloads MNIST itself).
    """
    text = Path(script).read_text()
    if len(_AUTHORS_MODELS.findall(text)) != 1:
        raise UserError(
            f"{str(script)!r} has no line 'N_MODELS = <int>': not the authors' MNIST script "
            f"({AUTHORS_SCRIPT})"
        )
    with tempfile.TemporaryDirectory(prefix="sublim-toy-authors-") as tmp:
        copy = Path(tmp) / Path(script).name
        copy.write_text(_AUTHORS_MODELS.sub(f"N_MODELS = {models}", text))
        arrays = Path(tmp) / "mnist.npz"
        np.savez(
            arrays,
            x_train=dataset.train_images,
            y_train=dataset.train_labels,
            x_test=dataset.test_images,
            y_test=dataset.test_labels,
        )
        env = {**os.environ, "MPLBACKEND": "Agg", "MNIST_NPZ": str(arrays)}
        done = run_measured([python, str(copy)], env=env, cwd=tmp)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"the authors' script failed under {python!r}: {last}")
    return {"wall_s": done.wall_s, "peak_rss_mb": done.peak_rss_mb, "table": _authors_table(done)}


def _authors_table(done: Measured) -> dict[str, float]:
    """Its printed table (pandas: label, mean, ci_95) as {label: mean}."""
    table = {}
    for line in done.stdout.splitlines():
        match = _AUTHORS_ROW.match(line.strip())
        if match:
            table[match.group(1)] = float(match.group(2))
    return table
