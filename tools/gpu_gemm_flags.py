"""Compile and run time of the paper's full recipe on a GPU, with and without XLA's Triton GEMMs.

    python tools/gpu_gemm_flags.py --data-source idx:DIR --out results.jsonl [--seeds 100]

Importing sublim_toy turns XLA's Triton GEMMs off (sublim_toy/__init__.py) unless XLA_FLAGS
already sets --xla_gpu_enable_triton_gemm. This runs the full recipe twice, each in a fresh
process (the bench's own child, `sublim_toy.bench_child`), with the flag set to true (XLA's
default) and to false (sublim-toy's), and writes one JSON line per run: its phase compile
times, run time, throughput against an 8192^2 fp32 matmul timed here first, device peak
memory and accuracies. docs/performance.md quotes the committed results.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax

from sublim_toy.bench import SQUARE_N, experiment_flops, square_matmul_gflops
from sublim_toy.bench_runs import run_ours
from sublim_toy.config import Config
from sublim_toy.data import load_dataset
from sublim_toy.experiment import MATMUL_PRECISION
from sublim_toy.results import environment

SETTINGS = {
    "triton_gemms (XLA's default)": "--xla_gpu_enable_triton_gemm=true",
    "cublas_gemms (sublim-toy's)": "--xla_gpu_enable_triton_gemm=false",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-source", default="pypi")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5, help="teacher and student epochs")
    args = parser.parse_args()
    dataset = load_dataset(args.data_source, None, name="mnist")
    config = Config(seeds=args.seeds, teacher_epochs=args.epochs, student_epochs=args.epochs)
    flops = experiment_flops(config, len(dataset.train_images), len(dataset.test_images))
    square_n = SQUARE_N[jax.default_backend() == "cpu"]
    with jax.default_matmul_precision(MATMUL_PRECISION), open(args.out, "a") as out:

        def write(**row):
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(json.dumps(row)[:300], flush=True)

        write(
            what="square_matmul",
            n=square_n,
            gflops=square_matmul_gflops(square_n),
            device=str(jax.devices()[0].device_kind),
            environment=environment(),
            when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        for label, flag in SETTINGS.items():
            os.environ["XLA_FLAGS"] = flag  # read by the fresh process's JAX
            child = run_ours(config, dataset, None)
            wall = child["wall_time"]
            run_s = wall["teacher_s"] + wall["students_s"] + wall["evaluation_s"]
            write(
                what=label,
                xla_flags=flag,
                seeds=config.seeds,
                epochs=[config.teacher_epochs, config.student_epochs],
                process_wall_s=child["process_wall_s"],
                compile_s=wall["compile_s"],
                run_s=run_s,
                gflops=flops["total"] / run_s / 1e9,
                tflop=flops["total"] / 1e12,
                device_peak_mb=child["device_peak_mb"],
                accuracy={name: row["mean"] for name, row in child["summary"].items()},
            )


if __name__ == "__main__":
    main()
