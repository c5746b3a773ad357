"""Benchmarks: achieved FLOP/s of the experiment against this machine's own matmul throughput.

FLOPs are counted analytically: per sample, a forward pass is
F = 2 * sum(d_in * d_out) over layers; a training step adds the weight gradients (another F)
and the input gradients of every layer but the first. For 784-256-256-13 that is 539 136 and
1 216 000. Throughput is always compared with matmuls timed in the same run: a large square
fp32 matmul and the exact GEMMs of one training step, batched over seeds.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.experiment import (
    initial_params,
    run_experiment,
    student_inits,
    student_state,
    teacher_state,
)
from sublim_toy.inputs import student_batch
from sublim_toy.keys import Stream, seed_keys, stream
from sublim_toy.model import network_for
from sublim_toy.probes import PROBE_IMAGES
from sublim_toy.results import STUDENT_OUTPUTS, STUDENTS, environment
from sublim_toy.train import (
    StudentShared,
    make_student_epoch,
    make_teacher_epoch,
    make_teacher_targets,
    run_phase,
    timed_call,
)

# The runs a benchmark makes: the paper's model and batch, one epoch per phase (throughput
# per step does not depend on the number of epochs; compile time is timed apart).
BENCH_CONFIG = Config(seeds=8, teacher_epochs=1, student_epochs=1)
SCALING_SEEDS = (1, 8, 32)


# ---- FLOP model -----------------------------------------------------------------------------


def forward_flops(sizes: tuple[int, ...]) -> int:
    """Multiply-adds x 2 of one sample's forward pass."""
    return 2 * sum(d_in * d_out for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True))


def step_flops(sizes: tuple[int, ...]) -> int:
    """One sample's training step: forward, weight gradients, input gradients of layers 2..L."""
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    input_gradients = 2 * sum(d_in * d_out for d_in, d_out in layers[1:])
    return 2 * forward_flops(sizes) + input_gradients


def experiment_flops(config: Config, n_train: int, n_test: int, input_dim: int = 784) -> dict:
    """Analytic FLOPs of `run_experiment(config)`, by phase."""
    sizes = network_for(config, input_dim).sizes
    batch = config.batch_size
    teacher_steps = config.seeds * config.teacher_epochs * (n_train // batch)
    student_steps = config.seeds * config.student_epochs * config.noise_steps
    probes = (
        config.student_epochs * config.noise_steps // config.probe_every
        if config.probe_every
        else 0
    )
    flops = {
        "teacher_steps": teacher_steps * batch * step_flops(sizes),
        "student_steps": len(STUDENTS) * student_steps * batch * step_flops(sizes),
        # once per input batch, not per epoch: `train.make_teacher_targets`
        "teacher_forwards_on_noise": (
            config.seeds * config.noise_steps * batch * forward_flops(sizes)
            if config.student_epochs
            else 0
        ),
        "probes": probes * len(STUDENTS) * config.seeds * 2 * PROBE_IMAGES * forward_flops(sizes),
        "evaluation": (2 + len(STUDENTS)) * config.seeds * n_test * forward_flops(sizes),
        # the first-order prediction: a JVP is a forward pass plus a tangent pass with the
        # backward pass's matmul shapes (no tangent flows into the input), i.e. a step's FLOPs
        "first_order": len(STUDENTS) * config.seeds * n_test * step_flops(sizes),
    }
    flops["total"] = sum(flops.values())
    return flops


# ---- matmul ceilings ------------------------------------------------------------------------


def _median_seconds(run, repeats: int) -> float:
    jax.block_until_ready(run())  # compile and warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def square_matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 [n, n] @ [n, n]: the machine's headline matmul rate."""
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.random.normal(key, (n, n), jnp.float32) for key in keys)
    matmul = jax.jit(jnp.matmul)
    return 2 * n**3 / _median_seconds(lambda: matmul(a, b), repeats) / 1e9


def step_gemm_gflops(sizes: tuple[int, ...], seeds: int, batch: int, repeats: int = 10) -> float:
    """The GEMMs of one training step (forward, weight and input gradients), batched over
    seeds, timed alone: the ceiling the experiment's own work can reach on this machine."""
    key = jax.random.key(1)
    weights = [
        jax.random.normal(jax.random.fold_in(key, i), (seeds, d_in, d_out), jnp.float32)
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    ]
    inputs = jax.random.normal(jax.random.fold_in(key, 99), (seeds, batch, sizes[0]), jnp.float32)

    @jax.jit
    def gemms(inputs, weights):
        activations = [inputs]
        for weight in weights:
            activations.append(jnp.matmul(activations[-1], weight))
        grad_outputs = activations[1:]  # same shapes as the real output gradients
        # Contractions over the batch / output axes as backprop writes them: GEMMs on
        # transposed operands, with no transpose materialised.
        weight_grads = [
            jnp.einsum("sbi,sbo->sio", a, g)
            for a, g in zip(activations[:-1], grad_outputs, strict=True)
        ]
        input_grads = [
            jnp.einsum("sbo,sio->sbi", g, w)
            for g, w in zip(grad_outputs[1:], weights[1:], strict=True)
        ]
        return activations[1:], weight_grads, input_grads

    seconds = _median_seconds(lambda: gemms(inputs, weights), repeats)
    return seeds * batch * step_flops(sizes) / seconds / 1e9


# ---- the experiment's phases ----------------------------------------------------------------


def phase_rates(config: Config, dataset: Dataset) -> dict:
    """GFLOP/s of one teacher epoch alone and of one epoch of the four students alone, each
    built and run exactly as `run_experiment` does (compiled first, compile time apart)."""
    config = config.replace(probe_every=0)
    network = network_for(config, dataset.input_dim)
    keys = seed_keys(config.seed, config.seeds)
    inits = initial_params(network, keys)
    sizes = network.sizes
    images, labels = jnp.asarray(dataset.train_images), jnp.asarray(dataset.train_labels)

    teacher = run_phase(
        make_teacher_epoch(network, config),
        teacher_state(config, keys, inits["shared"], labels),
        images,
        epochs=1,
    )
    teacher_work = config.seeds * (len(images) // config.batch_size) * config.batch_size
    noise_keys = stream(keys, Stream.NOISE)
    targets = timed_call(
        make_teacher_targets(network, config), teacher.state.params, noise_keys, images
    )
    students = run_phase(
        make_student_epoch(network, config, STUDENT_OUTPUTS),
        student_state(config, keys, student_inits(inits, config), targets.value, None),
        StudentShared(images, None),
        epochs=1,
    )
    samples = config.seeds * config.noise_steps * config.batch_size
    return {
        "teacher_epoch": {
            "seconds": teacher.run_s,
            "gflops": teacher_work * step_flops(sizes) / teacher.run_s / 1e9,
        },
        "drawing_one_epoch_of_noise": {"seconds": _input_drawing_seconds(config, keys, images)},
        "teacher_targets": {
            "seconds": targets.run_s,
            "gflops": samples * forward_flops(sizes) / targets.run_s / 1e9,
        },
        "student_epoch": {
            "seconds": students.run_s,
            "gflops": samples * len(STUDENTS) * step_flops(sizes) / students.run_s / 1e9,
        },
    }


def _input_drawing_seconds(config: Config, keys, images) -> float:
    """Drawing one student epoch of inputs for every seed, alone (reduced to a scalar so only
    drawing them is timed)."""

    def one_seed(noise_key):
        def draw(total, batch_index):
            batch = student_batch(
                config.student_inputs,
                noise_key,
                batch_index,
                batch_size=config.batch_size,
                input_dim=images.shape[1] * images.shape[2],
                train_images=images,
            )
            return total + batch[0, 0], None

        return jax.lax.scan(draw, 0.0, jnp.arange(config.noise_steps))[0]

    draw_epoch = jax.jit(jax.vmap(one_seed))
    noise_keys = stream(keys, Stream.NOISE)
    compiled = draw_epoch.lower(noise_keys).compile()
    started = time.perf_counter()
    jax.block_until_ready(compiled(noise_keys))
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM on Linux, ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def run_in_child(config: Config, dataset: Dataset, cache_dir: str | None) -> dict:
    """run_experiment in a fresh process (`python -m sublim_toy.bench_child`), for its own wall
    times and peak resident memory. The child loads `dataset` again from the same source and
    cache."""
    fields = json.dumps({**config.to_dict(), "hidden": list(config.hidden)})
    where = [dataset.source, str(cache_dir or ""), dataset.name]
    done = subprocess.run(
        [sys.executable, "-m", "sublim_toy.bench_child", fields, *where],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_bench(
    dataset: Dataset,
    cache_dir,
    *,
    config: Config = BENCH_CONFIG,
    scaling_seeds: tuple[int, ...] = SCALING_SEEDS,
    memory_cases: tuple[tuple[int, int], ...] | None = None,
    progress=print,
) -> dict:
    """Every number of BENCHMARKS.md, measured in this one run."""
    sizes = network_for(config, dataset.input_dim).sizes
    n_train, n_test = len(dataset.train_images), len(dataset.test_images)
    progress("matmul ceilings ...")
    ceilings = {
        "square_2048_gflops": square_matmul_gflops(),
        "step_gemms_gflops": step_gemm_gflops(sizes, config.seeds, config.batch_size),
    }
    progress("teacher and one student alone ...")
    phases = phase_rates(config, dataset)
    progress(f"six-model experiment, {config.seeds} seeds ...")
    experiment = run_experiment(config, dataset)
    flops = experiment_flops(config, n_train, n_test, dataset.input_dim)
    wall = experiment["wall_time"]
    run_seconds = wall["teacher_s"] + wall["students_s"] + wall["evaluation_s"]
    phases["six_model_experiment"] = {
        "seconds": run_seconds,
        "compile_seconds": sum(wall["compile_s"].values()),
        "gflops": flops["total"] / run_seconds / 1e9,
        "teacher_phase_gflops": flops["teacher_steps"] / wall["teacher_s"] / 1e9,
        "student_phase_gflops": (
            flops["student_steps"] + flops["teacher_forwards_on_noise"] + flops["probes"]
        )
        / wall["students_s"]
        / 1e9,
    }
    scaling = {}
    for seeds in scaling_seeds:
        progress(f"{seeds} seeds in a fresh process ...")
        child = run_in_child(config.replace(seeds=seeds), dataset, cache_dir)
        child_wall = child["wall_time"]
        scaling[seeds] = {
            "run_seconds_per_seed": (child_wall["total_s"] - sum(child_wall["compile_s"].values()))
            / seeds,
            "compile_seconds": sum(child_wall["compile_s"].values()),
            "peak_rss_mb": child["peak_rss_mb"],
        }
    progress("memory against batch and epoch size ...")
    memory = {}
    # (batch, noise images per epoch): peak memory must follow the batch, not the epoch.
    batch = config.batch_size
    if memory_cases is None:
        memory_cases = ((batch, 15 * batch), (batch, 60 * batch), (4 * batch, 60 * batch))
    for batch_size, noise_images in memory_cases:
        small = config.replace(
            seeds=1, teacher_epochs=0, batch_size=batch_size, noise_images=noise_images
        )
        memory[f"batch {batch_size}, {noise_images} noise images"] = run_in_child(
            small, dataset, cache_dir
        )["peak_rss_mb"]
    return {
        "config": config.to_dict(),
        "flops": flops,
        "flops_per_sample": {"forward": forward_flops(sizes), "train_step": step_flops(sizes)},
        "ceilings": ceilings,
        "phases": phases,
        "scaling": scaling,
        "peak_rss_mb": memory,
        "environment": {**environment(), "cpu_count": _cpu_count()},
        "machine": platform.processor() or platform.machine(),
    }


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def benchmarks_markdown(report: dict) -> str:
    """BENCHMARKS.md from a report: every figure traced to the run that measured it."""
    ceilings, phases = report["ceilings"], report["phases"]
    step_ceiling, square = ceilings["step_gemms_gflops"], ceilings["square_2048_gflops"]
    config = report["config"]
    devices = ", ".join(report["environment"]["devices"])
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`sublim-toy bench`); device: {devices}, "
        f"{report['environment']['cpu_count']} CPU cores, jax "
        f"{report['environment']['packages']['jax']}. All numbers come from one run; ratios "
        "compare with matmuls timed in that same run.",
        "",
        "## Matmul ceilings (measured)",
        "",
        "| what | GFLOP/s |",
        "|---|---|",
        f"| fp32 square matmul 2048 x 2048 | {square:.1f} |",
        f"| one training step's GEMMs, {config['seeds']} seeds x batch {config['batch_size']} "
        f"(forward, weight and input gradients) | {step_ceiling:.1f} |",
        "",
        "## FLOPs (analytic)",
        "",
        f"Per sample: forward {report['flops_per_sample']['forward']:,}, training step "
        f"{report['flops_per_sample']['train_step']:,}. The benchmark experiment "
        f"({config['seeds']} seeds, {config['teacher_epochs']} + {config['student_epochs']} "
        "epochs, probes every "
        f"{config['probe_every']} student steps):",
        "",
        "| part | GFLOP |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value / 1e9:,.1f} |" for name, value in report["flops"].items()]
    lines += [
        "",
        "## Achieved throughput (compile time excluded, reported apart)",
        "",
        "| run | seconds | GFLOP/s | of step GEMMs | of square matmul |",
        "|---|---|---|---|---|",
    ]
    rows = [
        ("six-model experiment, all phases", phases["six_model_experiment"]),
        ("teacher epoch alone", phases["teacher_epoch"]),
        ("student epoch alone (four students)", phases["student_epoch"]),
        ("the teacher's logits on every noise batch, once", phases["teacher_targets"]),
    ]
    for label, row in rows:
        lines.append(
            f"| {label} | {row['seconds']:.1f} | {row['gflops']:.1f} | "
            f"{row['gflops'] / step_ceiling:.0%} | {row['gflops'] / square:.0%} |"
        )
    experiment = phases["six_model_experiment"]
    noise = phases["drawing_one_epoch_of_noise"]["seconds"]
    student_epoch = phases["student_epoch"]["seconds"]
    lines += [
        "",
        f"Within the six-model experiment: teacher phase {experiment['teacher_phase_gflops']:.1f}"
        f" GFLOP/s, student phase {experiment['student_phase_gflops']:.1f} GFLOP/s; compile "
        f"{experiment['compile_seconds']:.1f} s.",
        "",
        f"Where the rest goes: drawing one epoch of noise for {config['seeds']} seeds (threefry, "
        f"the same images every epoch) takes {noise:.2f} s alone, "
        f"{noise / student_epoch:.0%} of the student epoch (shared by all four students of a "
        "teacher); the remainder is the elementwise work around the GEMMs (ReLU masks, "
        "softmax, Adam updates) and the probes.",
        "",
        "## Cost per seed and memory (each run in a fresh process)",
        "",
        "| seeds | run s per seed | compile s | peak RSS MB |",
        "|---|---|---|---|",
    ]
    for seeds, row in report["scaling"].items():
        lines.append(
            f"| {seeds} | {row['run_seconds_per_seed']:.2f} | {row['compile_seconds']:.1f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    lines += ["", "| one seed, students only | peak RSS MB |", "|---|---|"]
    lines += [f"| {label} | {mb:.0f} |" for label, mb in report["peak_rss_mb"].items()]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: Path) -> list[Path]:
    from sublim_toy.files import atomic_write, write_json

    markdown = benchmarks_markdown(report)
    return [
        write_json(out_dir / "benchmarks.json", report),
        atomic_write(out_dir / "BENCHMARKS.md", lambda tmp: tmp.write_text(markdown)),
    ]
