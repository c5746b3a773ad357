"""Where one student epoch's time goes, from XLA's own profile (docs/performance.md quotes it).

    python tools/profile_student_epoch.py --data-source pypi --out FILE.json [--seeds 8]

Builds the benchmark experiment's student epoch as `make bench` does (`bench.phases_alone`),
runs it once to warm up, then once under `jax.profiler`'s trace, and sums the traced time of
every XLA operation by kind; the FLOP model's work of the epoch and the square matmul, timed
in the same run, come with it. The GEMMs' traced durations are not their cost (the weight
gradients run as asynchronous library calls, and independent GEMMs of the four students overlap
on the cores), so they are reported apart; every other operation is one fusion run in place,
and its kind is read from the compiled HLO: its output shape and the JAX operation it came from.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import jax

from sublim_toy.bench import BENCH_CONFIG, phases_alone, square_matmul_gflops, step_flops
from sublim_toy.data import load_dataset
from sublim_toy.experiment import at_experiment_precision
from sublim_toy.model import network_for
from sublim_toy.results import STUDENTS, environment
from sublim_toy.train import compile_ahead

GEMMS = "GEMMs (traced durations: not their cost, see above)"
KINDS = (
    "parameter updates (Adam)",
    "bias add and ReLU, forward",
    "ReLU masks, backward",
    "drawing the noise images",
    "reductions (bias gradients, softmax sums)",
    "the rest",
)

# `%name = f32[8,1024,256]{2,1,0} fusion(...), calls=%fused_computation.13, metadata={...}`
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+) (\w[\w\-]*)\((.*)$", re.M)
_COMPUTATION = re.compile(r"^%([\w.\-]+) .*?\{\n(.*?)\n\}", re.M | re.S)


def hlo_operations(hlo_text: str) -> dict[str, dict]:
    """Instruction name -> {"shape": dims or None (a tuple), "op_name": the JAX operation, "gemm":
    whether it is a dot or a fusion around one}, for every instruction of a compiled module."""
    bodies = {m.group(1): m.group(2) for m in _COMPUTATION.finditer(hlo_text)}
    operations = {}
    for m in _INSTRUCTION.finditer(hlo_text):
        name, type_, opcode, rest = m.groups()
        dims = re.fullmatch(r"\w+\[([\d,]*)\](?:\{[\d,]*\})?", type_)
        calls = re.search(r"calls=%([\w.\-]+)", rest)
        op_name = re.search(r'op_name="([^"]*)"', rest)
        operations[name] = {
            "shape": tuple(int(d) for d in dims.group(1).split(",") if d) if dims else None,
            "op_name": op_name.group(1) if op_name else "",
            "gemm": opcode == "dot" or bool(calls and " dot(" in bodies.get(calls.group(1), "")),
        }
    return operations


def kind_of(operation: dict, input_shape: tuple, parameter_shapes: set) -> str:
    """Which of KINDS (or GEMMS) an operation of the student epoch is."""
    op_name, shape = operation["op_name"], operation["shape"]
    if operation["gemm"]:
        return GEMMS
    if shape == input_shape:  # only the noise batch has the inputs' shape
        return "drawing the noise images"
    if "relu" in op_name and "transpose(" not in op_name:
        return "bias add and ReLU, forward"
    if "select_n" in op_name and "transpose(" in op_name:
        return "ReLU masks, backward"
    if "reduce" in op_name:
        return "reductions (bias gradients, softmax sums)"
    if shape in parameter_shapes:  # what is not a gradient's reduction and has a parameter's shape
        return "parameter updates (Adam)"
    return "the rest"


def traced_ms(trace_file: Path) -> dict[str, float]:
    """Name -> total duration in ms of the complete events of a Perfetto JSON trace."""
    with gzip.open(trace_file) as handle:
        trace = json.load(handle)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals: dict[str, float] = collections.Counter()
    for event in events:
        if event.get("ph") == "X":
            totals[event["name"]] += event.get("dur", 0) / 1e3
    return dict(totals)


def by_kind(durations_ms: dict, operations: dict, input_shape, parameter_shapes) -> dict:
    """KINDS and GEMMS -> total ms of the traced operations of that kind, largest first."""
    totals = collections.Counter({kind: 0.0 for kind in (*KINDS, GEMMS)})
    for name, ms in durations_ms.items():
        if name in operations:
            totals[kind_of(operations[name], input_shape, parameter_shapes)] += ms
    return {kind: round(ms, 1) for kind, ms in totals.most_common()}


@at_experiment_precision
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-source", default="pypi")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=BENCH_CONFIG.seeds)
    args = parser.parse_args()
    if Path(args.out).exists():
        sys.exit(f"profile_student_epoch: --out {args.out} exists; choose a fresh path")
    dataset = load_dataset(args.data_source, None, name="mnist")
    alone = phases_alone(BENCH_CONFIG.replace(seeds=args.seeds), dataset)
    state, shared = alone.student_state, alone.student_shared
    compiled, _ = compile_ahead(alone.student_epoch, state, 0, shared)
    jax.block_until_ready(compiled(state, 0, shared))  # warm: the first run allocates
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            started = time.perf_counter()
            jax.block_until_ready(compiled(state, 0, shared))
            epoch_s = time.perf_counter() - started
        durations = traced_ms(next(Path(trace_dir).rglob("*.trace.json.gz")))
    config = alone.config
    sizes = network_for(config, dataset.input_dim).sizes
    samples = config.seeds * config.noise_steps * config.batch_size
    input_shape = (config.seeds, config.batch_size, dataset.input_dim)
    parameter_shapes = {leaf.shape for leaf in jax.tree.leaves(state.params)}
    kinds = by_kind(durations, hlo_operations(compiled.as_text()), input_shape, parameter_shapes)
    report = {
        "what": "one student epoch of the benchmark experiment (four students), traced",
        "config": {"seeds": config.seeds, "batch_size": config.batch_size},
        "epoch_s_traced": round(epoch_s, 3),
        "epoch_gflop": samples * len(STUDENTS) * step_flops(sizes) / 1e9,
        "square_matmul_gflops": round(square_matmul_gflops(), 1),  # timed in this run, after
        "ms_by_kind": kinds,
        "non_gemm_ms": round(sum(ms for kind, ms in kinds.items() if kind != GEMMS), 1),
        "environment": environment(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
