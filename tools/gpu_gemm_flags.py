"""Compile and run time of the paper's full recipe on a GPU, with and without XLA's Triton GEMMs.

    python tools/gpu_gemm_flags.py --data-source idx:DIR --out results.jsonl [--seeds 100]

Importing sublim_toy turns XLA's Triton GEMMs off (sublim_toy/__init__.py) unless XLA_FLAGS
already sets --xla_gpu_enable_triton_gemm. This runs the full recipe twice, each in a fresh
process (the bench's own child, `sublim_toy.bench_child`), with the flag set to true (XLA's
default) and to false (sublim-toy's), and writes one JSON line per run as `bench.full_recipe`
reports it (compile and run time, GFLOP/s, peak memory) with its accuracies, after one for an
8192^2 fp32 matmul timed here first. docs/performance.md quotes the committed results
(docs/performance/h200/gemm-flags.jsonl), which this tool's first version wrote: the same
runs and arithmetic, with the compile time also split by phase.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax

from sublim_toy.bench import SQUARE_N, full_recipe, square_matmul_gflops
from sublim_toy.config import Config
from sublim_toy.data import load_dataset
from sublim_toy.experiment import at_experiment_precision
from sublim_toy.results import environment

SETTINGS = {
    "triton_gemms (XLA's default)": "--xla_gpu_enable_triton_gemm=true",
    "cublas_gemms (sublim-toy's)": "--xla_gpu_enable_triton_gemm=false",
}


@at_experiment_precision
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-source", default="pypi")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5, help="teacher and student epochs")
    args = parser.parse_args()
    dataset = load_dataset(args.data_source, None, name="mnist")
    config = Config(seeds=args.seeds, teacher_epochs=args.epochs, student_epochs=args.epochs)
    square_n = SQUARE_N[jax.default_backend() == "cpu"]
    _append(
        args.out,
        what="square_matmul",
        n=square_n,
        gflops=square_matmul_gflops(square_n),
        device=str(jax.devices()[0].device_kind),
        environment=environment(),
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    for label, flag in SETTINGS.items():
        os.environ["XLA_FLAGS"] = flag  # read by the fresh process's JAX
        run = full_recipe(config, dataset, None)
        summary = run.pop("summary")
        accuracy = {name: row["mean"] for name, row in summary.items()}
        _append(args.out, what=label, xla_flags=flag, **run, accuracy=accuracy)


def _append(path: str, **row) -> None:
    """One JSON line, written as soon as it is measured (a run cut short keeps the earlier)."""
    with open(path, "a") as out:
        out.write(json.dumps(row) + "\n")
    print(json.dumps(row)[:300], flush=True)


if __name__ == "__main__":
    main()
