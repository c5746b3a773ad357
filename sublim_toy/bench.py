"""Benchmarks: achieved FLOP/s of the experiment against this machine's own matmul throughput.

FLOPs are counted analytically: per sample, a forward pass is
F = 2 * sum(d_in * d_out) over layers; a training step adds the weight gradients (another F)
and the input gradients of every layer but the first. For 784-256-256-13 that is 539 136 and
1 216 000. Throughput is always compared with matmuls timed in the same run: a large square
fp32 matmul and the exact GEMMs of one training step, batched over seeds.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sublim_toy.bench_runs import run_authors, run_ours, run_ours_across
from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.experiment import (
    at_experiment_precision,
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
    PhaseRun,
    StudentShared,
    StudentState,
    TimedCall,
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
PAPER_RECIPE = Config()  # the side-by-side and full-recipe runs: the paper's, 5 + 5 epochs


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
            config.seeds * config.pool_batches * batch * forward_flops(sizes)
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
        # transposed operands, with no transpose materialised; the output layer's as
        # [out, in], the orientation `model._through_transposed_kernel` makes reverse mode use.
        weight_grads = [
            jnp.einsum("sbi,sbo->sio", a, g)
            for a, g in zip(activations[:-2], grad_outputs[:-1], strict=True)
        ] + [jnp.einsum("sbo,sbi->soi", grad_outputs[-1], activations[-2])]
        input_grads = [
            jnp.einsum("sbo,sio->sbi", g, w)
            for g, w in zip(grad_outputs[1:], weights[1:], strict=True)
        ]
        return activations[1:], weight_grads, input_grads

    seconds = _median_seconds(lambda: gemms(inputs, weights), repeats)
    return seeds * batch * step_flops(sizes) / seconds / 1e9


# ---- the experiment's phases ----------------------------------------------------------------


class PhasesAlone(NamedTuple):
    """A teacher epoch and the teacher's logits on the noise, run; the students' epoch, built."""

    config: Config  # the one given, without probes
    teacher: PhaseRun  # one teacher epoch
    targets: TimedCall  # the teacher's logits on every noise batch, once
    student_epoch: Callable
    student_state: StudentState
    student_shared: StudentShared


def phases_alone(config: Config, dataset: Dataset) -> PhasesAlone:
    """Each phase built and run exactly as `run_experiment` does (compiled first, compile time
    apart), up to the students' epoch, which is built for the caller to time or profile."""
    config = config.replace(probe_every=0)
    network = network_for(config, dataset.input_dim)
    keys = seed_keys(config.seed, config.seeds)
    inits = initial_params(network, keys)
    images, labels = jnp.asarray(dataset.train_images), jnp.asarray(dataset.train_labels)
    teacher = run_phase(
        make_teacher_epoch(network, config),
        teacher_state(config, keys, inits["shared"], labels),
        images,
        epochs=1,
    )
    targets = timed_call(
        make_teacher_targets(network, config),
        teacher.state.params,
        stream(keys, Stream.NOISE),
        images,
    )
    return PhasesAlone(
        config,
        teacher,
        targets,
        make_student_epoch(network, config, STUDENT_OUTPUTS),
        student_state(config, keys, student_inits(inits, config), targets.value, None),
        StudentShared(images, None),
    )


def phase_rates(config: Config, dataset: Dataset) -> dict:
    """GFLOP/s of one teacher epoch alone and of one epoch of the four students alone, each
    built and run exactly as `run_experiment` does (`phases_alone`)."""
    alone = phases_alone(config, dataset)
    config, teacher, targets = alone.config, alone.teacher, alone.targets
    sizes = network_for(config, dataset.input_dim).sizes
    students = run_phase(alone.student_epoch, alone.student_state, alone.student_shared, epochs=1)
    teacher_work = (
        config.seeds * (len(dataset.train_images) // config.batch_size) * config.batch_size
    )
    samples = config.seeds * config.noise_steps * config.batch_size
    return {
        "teacher_epoch": {
            "seconds": teacher.run_s,
            "gflops": teacher_work * step_flops(sizes) / teacher.run_s / 1e9,
        },
        "drawing_one_epoch_of_noise": _input_drawing_seconds(
            config, seed_keys(config.seed, config.seeds), alone.student_shared.train_images
        ),
        "teacher_targets": {
            "seconds": targets.run_s,
            "gflops": samples * forward_flops(sizes) / targets.run_s / 1e9,
        },
        "student_epoch": {
            "seconds": students.run_s,
            "gflops": samples * len(STUDENTS) * step_flops(sizes) / students.run_s / 1e9,
        },
    }


def _input_drawing_seconds(config: Config, keys, images) -> dict:
    """Drawing one student epoch of inputs for every seed, alone (summed, so that every value is
    drawn and only drawing is timed): with the package's generator, and with
    `jax.random.uniform` per batch for comparison (what a plain JAX program would do)."""
    shape = (config.batch_size, images.shape[1] * images.shape[2])

    def ours(noise_key, batch_index):
        return student_batch(
            config.student_inputs,
            noise_key,
            batch_index,
            batch_size=shape[0],
            input_dim=shape[1],
            train_images=images,
        )

    def jax_random(noise_key, batch_index):
        key = jax.random.fold_in(noise_key, batch_index)
        return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)

    noise_keys = stream(keys, Stream.NOISE)
    seconds = {}
    for name, draw in (("seconds", ours), ("jax_random_uniform_seconds", jax_random)):

        def one_seed(noise_key, draw=draw):
            def add(total, batch_index):
                return total + draw(noise_key, batch_index).sum(), None

            return jax.lax.scan(add, 0.0, jnp.arange(config.noise_steps))[0]

        seconds[name] = timed_call(jax.jit(jax.vmap(one_seed)), noise_keys).run_s
    return seconds


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


def device_peak_mb() -> float | None:
    """The peak memory JAX's allocator held on this process's first device, where the backend
    reports it (GPUs and TPUs); None on the CPU, whose arrays count in the resident memory."""
    stats = jax.local_devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


class Authors(NamedTuple):
    """Where the authors' script is, the Python (with torch) to run it, and how many seeds."""

    script: Path
    python: str
    seeds: int = 8


@at_experiment_precision
def run_bench(
    dataset: Dataset,
    cache_dir,
    *,
    config: Config = BENCH_CONFIG,
    scaling_seeds: tuple[int, ...] = SCALING_SEEDS,
    memory_cases: tuple[tuple[int, int], ...] | None = None,
    authors: Authors | None = None,
    full_seeds: int | None = None,
    recipe: Config = PAPER_RECIPE,
    progress=print,
) -> dict:
    """Every number of BENCHMARKS.md, measured in this one run.

    With `authors`, the authors' script and `sublim-toy reproduce` run one right after the
    other on the same seeds count and the full `recipe` (the paper's: `Config()`). With
    `full_seeds`, that recipe at that many seeds (the paper's 100 on an accelerator) runs in a
    fresh process. Every matmul, the ceilings' included, runs at the experiment's precision
    (`experiment.MATMUL_PRECISION`, true float32).
    """
    sizes = network_for(config, dataset.input_dim).sizes
    progress("matmul ceilings ...")
    square_n = SQUARE_N[jax.default_backend() == "cpu"]
    ceilings = {
        "square_gflops_at_start": square_matmul_gflops(square_n),
        "square_n": square_n,
        "step_gemms_gflops": step_gemm_gflops(sizes, config.seeds, config.batch_size),
    }
    progress("teacher and students alone ...")
    phases = phase_rates(config, dataset)
    progress(f"six-model experiment, {config.seeds} seeds ...")
    phases["six_model_experiment"] = experiment_rates(
        config, dataset, run_experiment(config, dataset)
    )
    report = {
        "config": config.to_dict(),
        "flops": experiment_flops(
            config, len(dataset.train_images), len(dataset.test_images), dataset.input_dim
        ),
        "flops_per_sample": {"forward": forward_flops(sizes), "train_step": step_flops(sizes)},
        "ceilings": ceilings,
        "phases": phases,
        "scaling": scaling(config, dataset, cache_dir, scaling_seeds, progress),
        "peak_rss_mb": memory(config, dataset, cache_dir, memory_cases, progress),
        # Devices made from the same CPU cores; one accelerator is not split that way.
        "across_processes": (
            across_processes(config, dataset, cache_dir, progress)
            if jax.default_backend() == "cpu"
            else None
        ),
        "side_by_side": None,
        "full_recipe": None,
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
        "environment": {**environment(), "cpu_count": _cpu_count()},
        "machine": cpu_model(),
    }
    if authors is not None:
        report["side_by_side"] = side_by_side(authors, recipe, dataset, cache_dir, progress)
    side = report["side_by_side"]
    if side is not None and side["seeds"] == full_seeds:
        report["full_recipe"] = side["ours"]  # that very run: the same recipe and seeds
    elif full_seeds:
        progress(f"the full recipe, {full_seeds} seeds, in a fresh process ...")
        report["full_recipe"] = full_recipe(recipe.replace(seeds=full_seeds), dataset, cache_dir)
    # A ceiling is what the machine can do: a shared machine's quiet moments set it, so the
    # square matmul is timed again at the end and the faster of the two is the reference.
    ceilings["square_gflops_at_end"] = square_matmul_gflops(square_n)
    ceilings["square_gflops"] = max(
        ceilings["square_gflops_at_start"], ceilings["square_gflops_at_end"]
    )
    return report


SQUARE_N = {True: 2048, False: 8192}  # on the CPU / on an accelerator


def experiment_rates(config: Config, dataset: Dataset, results: dict) -> dict:
    """Throughput of a run of `run_experiment` by its own phase times (compile apart)."""
    flops = experiment_flops(
        config, len(dataset.train_images), len(dataset.test_images), dataset.input_dim
    )
    wall = results["wall_time"]
    run_seconds = wall["teacher_s"] + wall["students_s"] + wall["evaluation_s"]
    student_flops = flops["student_steps"] + flops["teacher_forwards_on_noise"] + flops["probes"]
    return {
        "seconds": run_seconds,
        "compile_seconds": sum(wall["compile_s"].values()),
        "gflops": flops["total"] / run_seconds / 1e9,
        "teacher_phase_gflops": flops["teacher_steps"] / wall["teacher_s"] / 1e9,
        "student_phase_gflops": student_flops / wall["students_s"] / 1e9,
    }


def scaling(config: Config, dataset: Dataset, cache_dir, seed_counts, progress) -> dict:
    """Run time per seed, compile time and peak memory at each seed count, fresh processes."""
    rows = {}
    for seeds in seed_counts:
        progress(f"{seeds} seeds in a fresh process ...")
        child = run_ours(config.replace(seeds=seeds), dataset, cache_dir)
        compile_s = sum(child["wall_time"]["compile_s"].values())
        rows[seeds] = {
            "run_seconds_per_seed": (child["wall_time"]["total_s"] - compile_s) / seeds,
            "compile_seconds": compile_s,
            "peak_rss_mb": child["peak_rss_mb"],
            "device_peak_mb": child["device_peak_mb"],
        }
    return rows


def memory(config: Config, dataset: Dataset, cache_dir, cases, progress) -> dict:
    """Peak memory of one seed's students against batch and epoch size: it must follow the
    batch (inputs are drawn per batch), not the number of noise images."""
    progress("memory against batch and epoch size ...")
    batch = config.batch_size
    if cases is None:
        cases = ((batch, 15 * batch), (batch, 60 * batch), (4 * batch, 60 * batch))
    peaks = {}
    for batch_size, noise_images in cases:
        small = config.replace(
            seeds=1, teacher_epochs=0, batch_size=batch_size, noise_images=noise_images
        )
        label = f"batch {batch_size}, {noise_images} noise images"
        peaks[label] = run_ours(small, dataset, cache_dir)["peak_rss_mb"]
    return peaks


def across_processes(config: Config, dataset: Dataset, cache_dir, progress) -> dict:
    """Cost per seed of one process with two CPU devices against two processes with one each,
    on the same cores: what JAX's distributed runtime costs (not a speed-up)."""
    rows = {}
    for processes, devices in ((1, 2), (2, 1)):
        label = (
            f"{processes} process{'es' if processes > 1 else ''} x "
            f"{devices} device{'s' if devices > 1 else ''}"
        )
        progress(f"{label} ...")
        child = run_ours_across(config, dataset, cache_dir, processes=processes, devices=devices)
        compile_s = sum(child["wall_time"]["compile_s"].values())
        rows[label] = {
            "run_seconds_per_seed": (child["wall_time"]["total_s"] - compile_s) / config.seeds,
            "compile_seconds": compile_s,
            "process_wall_s": child["process_wall_s"],
        }
    return rows


def side_by_side(authors: Authors, recipe: Config, dataset: Dataset, cache_dir, progress) -> dict:
    """`sublim-toy reproduce --seeds N` (the paper's full recipe, `full_recipe`) and the authors'
    script for N models, one right after the other: whole-process wall time (imports, data and
    compilation included on both sides) and peak memory."""
    progress(f"sublim-toy, the full recipe, {authors.seeds} seeds, in a fresh process ...")
    ours = full_recipe(recipe.replace(seeds=authors.seeds), dataset, cache_dir)
    progress(f"the authors' script, {authors.seeds} models ...")
    theirs = run_authors(authors.script, authors.python, authors.seeds, dataset)
    return {
        "seeds": authors.seeds,
        "ours": ours,
        "authors": theirs,
        "speedup": theirs["wall_s"] / ours["process_wall_s"],
    }


def full_recipe(config: Config, dataset: Dataset, cache_dir) -> dict:
    """The paper's full recipe at `config.seeds` in a fresh process: wall time, compile time
    and throughput (the square-matmul ratio is taken against this run's ceiling)."""
    child = run_ours(config, dataset, cache_dir)
    wall = child["wall_time"]
    flops = experiment_flops(
        config, len(dataset.train_images), len(dataset.test_images), dataset.input_dim
    )
    run_seconds = wall["teacher_s"] + wall["students_s"] + wall["evaluation_s"]
    return {
        "seeds": config.seeds,
        "epochs": [config.teacher_epochs, config.student_epochs],
        "process_wall_s": child["process_wall_s"],
        "compile_seconds": sum(wall["compile_s"].values()),
        "run_seconds": run_seconds,
        "tflop": flops["total"] / 1e12,
        "gflops": flops["total"] / run_seconds / 1e9,
        "peak_rss_mb": child["peak_rss_mb"],
        "device_peak_mb": child["device_peak_mb"],
        "summary": child["summary"],
    }


def cpu_model() -> str:
    """The processor as the OS names it (Linux: /proc/cpuinfo's model name) and the
    architecture: pages from different machines are not to be compared ratio by ratio."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {platform.machine()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
