"""BENCHMARKS.md from a `bench.run_bench` report: every figure traced to the run that made it."""

from __future__ import annotations

# What the benchmark is held to (see the performance page of the docs).
TARGET_OF_SQUARE = 0.75  # the experiment's FLOP/s against the square matmul timed beside it
TARGET_SPEEDUP = 1.5  # wall time of the authors' script over ours, same seeds and recipe
AUTHORS_HOW_TO = (
    "Not measured in this run. To measure it, give the authors' script and a Python with torch: "
    "`sublim-toy bench --against-authors PATH/run_mnist_experiment.py --python PY` (the script "
    "comes from https://github.com/MinhxLe/subliminal-learning; offline, put a torchvision "
    "stand-in that reads $MNIST_NPZ first on PYTHONPATH)."
)


def benchmarks_markdown(report: dict) -> str:
    """The whole page: headline, ceilings, FLOPs, throughput, side by side, scaling, memory."""
    sections = (_intro, _headline, _ceilings, _flops, _throughput, _side_by_side, _full_recipe)
    lines = []
    for section in (*sections, _scaling, _across_processes):
        lines += [*section(report), ""]
    return "\n".join(lines).rstrip() + "\n"


def _intro(report: dict) -> list[str]:
    environment = report["environment"]
    return [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`sublim-toy bench`); device: "
        f"{', '.join(environment['devices'])}, {environment['cpu_count']} CPU cores "
        f"({report['machine']}), jax {environment['packages']['jax']}, matmul precision "
        f"{report['matmul_precision']}. All numbers come from this one run; every ratio compares "
        "with work timed in that same run.",
    ]


def _headline(report: dict) -> list[str]:
    """The targets are for the paper's recipe (5 + 5 epochs); the short benchmark experiment
    (1 + 1) is shown beside it, its one-off evaluation and first-order prediction weigh more."""
    square = report["ceilings"]["square_gflops"]
    experiment = report["phases"]["six_model_experiment"]
    config = report["config"]
    side, full = report["side_by_side"], report["full_recipe"]
    lines = ["## Headline", "", "| measure | this run | target |", "|---|---|---|"]
    target = f">= {TARGET_OF_SQUARE:.0%}"
    if full is not None:
        teacher_epochs, student_epochs = full["epochs"]
        lines.append(
            f"| the full recipe ({teacher_epochs} + {student_epochs} epochs), {full['seeds']} "
            f"seeds, FLOP/s against the fp32 square matmul | {full['gflops'] / square:.0%} | "
            f"{target} |"
        )
    lines.append(
        f"| the benchmark experiment ({config['teacher_epochs']} + {config['student_epochs']} "
        f"epochs), {config['seeds']} seeds, FLOP/s against the fp32 square matmul | "
        f"{experiment['gflops'] / square:.0%} | {'' if full else target} |"
    )
    if side is not None:
        lines.append(
            f"| wall time of the authors' script / sublim-toy, {side['seeds']} seeds, full "
            f"recipe, side by side | {side['speedup']:.2f}x | >= {TARGET_SPEEDUP}x |"
        )
    return lines


def _ceilings(report: dict) -> list[str]:
    ceilings, config = report["ceilings"], report["config"]
    n = ceilings["square_n"]
    return [
        "## Matmul ceilings (measured)",
        "",
        "| what | GFLOP/s |",
        "|---|---|",
        f"| fp32 square matmul {n} x {n}, the faster of two timings (start of the run "
        f"{ceilings['square_gflops_at_start']:.1f}, end {ceilings['square_gflops_at_end']:.1f}) "
        f"| {ceilings['square_gflops']:.1f} |",
        f"| one training step's GEMMs alone, {config['seeds']} seeds x batch "
        f"{config['batch_size']} (forward, weight and input gradients) | "
        f"{ceilings['step_gemms_gflops']:.1f} |",
    ]


def _flops(report: dict) -> list[str]:
    config, per_sample = report["config"], report["flops_per_sample"]
    lines = [
        "## FLOPs (analytic)",
        "",
        f"Per sample: forward {per_sample['forward']:,}, training step "
        f"{per_sample['train_step']:,}. The benchmark experiment ({config['seeds']} seeds, "
        f"{config['teacher_epochs']} + {config['student_epochs']} epochs, probes every "
        f"{config['probe_every']} student steps; the teacher's logits on each noise batch are "
        "computed once):",
        "",
        "| part | GFLOP |",
        "|---|---|",
    ]
    return lines + [f"| {name} | {value / 1e9:,.1f} |" for name, value in report["flops"].items()]


def _throughput(report: dict) -> list[str]:
    phases, ceilings = report["phases"], report["ceilings"]
    square, steps = ceilings["square_gflops"], ceilings["step_gemms_gflops"]
    lines = [
        "## Achieved throughput (compile time excluded, reported apart)",
        "",
        "| run | seconds | GFLOP/s | of square matmul | of step GEMMs |",
        "|---|---|---|---|---|",
    ]
    rows = (
        ("six-model experiment, all phases", phases["six_model_experiment"]),
        ("teacher epoch alone", phases["teacher_epoch"]),
        ("student epoch alone (four students)", phases["student_epoch"]),
        ("the teacher's logits on every noise batch, once", phases["teacher_targets"]),
    )
    for label, row in rows:
        lines.append(
            f"| {label} | {_seconds(row['seconds'])} | {row['gflops']:.1f} | "
            f"{row['gflops'] / square:.0%} | {row['gflops'] / steps:.0%} |"
        )
    experiment = phases["six_model_experiment"]
    noise = phases["drawing_one_epoch_of_noise"]
    return lines + [
        "",
        f"Within the six-model experiment: teacher phase {experiment['teacher_phase_gflops']:.1f}"
        f" GFLOP/s, student phase {experiment['student_phase_gflops']:.1f} GFLOP/s; compile "
        f"{experiment['compile_seconds']:.1f} s. Drawing one epoch of noise for all seeds "
        f"(Threefry-2x32 in counter mode, `inputs.noise_batch`) takes "
        f"{_seconds(noise['seconds'])} s alone, "
        f"{noise['seconds'] / phases['student_epoch']['seconds']:.0%} of a student epoch;"
        f" as many values from `jax.random.uniform` per batch take "
        f"{_seconds(noise['jax_random_uniform_seconds'])} s "
        f"({noise['jax_random_uniform_seconds'] / noise['seconds']:.1f}x).",
    ]


def _side_by_side(report: dict) -> list[str]:
    lines = ["## Side by side with the authors' script", ""]
    side = report["side_by_side"]
    if side is None:
        return [*lines, AUTHORS_HOW_TO]
    ours, theirs = side["ours"], side["authors"]
    lines += [
        f"Both on this machine, one right after the other, {side['seeds']} seeds (the script's "
        "N_MODELS), the paper's recipe (5 + 5 epochs, batch 1024, Adam 3e-4); whole-process "
        "wall time, imports, data and compilation included. The script trains 59 batches per "
        "epoch (its last one partial), sublim-toy 58 and also takes the alignment probes and "
        "the first-order prediction.",
        "",
        "| run | wall s | peak RSS MB | aux-only student | cross-model aux-only |",
        "|---|---|---|---|---|",
        f"| sublim-toy reproduce --seeds {side['seeds']} | {ours['process_wall_s']:.1f} | "
        f"{ours['peak_rss_mb']:.0f} | {ours['summary']['student_aux']['mean']:.3f} | "
        f"{ours['summary']['cross_aux']['mean']:.3f} |",
        f"| authors' script | {theirs['wall_s']:.1f} | {theirs['peak_rss_mb'] or 0:.0f} | "
        f"{theirs['table'].get('Student (aux. only)', float('nan')):.3f} | "
        f"{theirs['table'].get('Cross-model (aux. only)', float('nan')):.3f} |",
        "",
        f"sublim-toy is {side['speedup']:.2f}x faster.",
    ]
    return lines


def _full_recipe(report: dict) -> list[str]:
    full = report["full_recipe"]
    lines = ["## The paper's recipe, timed in full", ""]
    if full is None:
        return [
            *lines,
            "Not run on this device (on a CPU it takes minutes; see the scaling below).",
        ]
    square = report["ceilings"]["square_gflops"]
    return lines + [
        f"The full recipe at {full['seeds']} seeds in a fresh process"
        f"{' (the side-by-side run above)' if _is_side_run(report) else ''}: "
        f"{full['process_wall_s']:.1f}"
        f" s in all, of which compile {full['compile_seconds']:.1f} s and run "
        f"{_seconds(full['run_seconds'], 1)} s for {full['tflop']:.1f} TFLOP: "
        f"{full['gflops']:.0f} GFLOP/s,"
        f" {full['gflops'] / square:.0%} of the square matmul; peak memory "
        f"{full['peak_rss_mb']:.0f} MB{_on_device(full)}. Aux-only student "
        f"{full['summary']['student_aux']['mean']:.3f}.",
    ]


def _seconds(seconds: float, decimals: int = 2) -> str:
    """Fixed decimals from one second up; below, three significant digits, so that an
    accelerator's millisecond timings do not print as 0.00."""
    return f"{seconds:.{decimals}f}" if seconds >= 1 else f"{seconds:.3g}"


def _on_device(row: dict) -> str:
    peak = row.get("device_peak_mb")
    return "" if peak is None else f" resident, {peak:.0f} MB on the device"


def _is_side_run(report: dict) -> bool:
    side = report["side_by_side"]
    return side is not None and side["ours"] == report["full_recipe"]


def _scaling(report: dict) -> list[str]:
    rows = report["scaling"].items()
    on_device = any(row.get("device_peak_mb") is not None for _, row in rows)
    header = ["seeds", "run s per seed", "compile s", "peak RSS MB"]
    header += ["device peak MB"] if on_device else []
    lines = [
        "## Cost per seed and memory (each run in a fresh process)",
        "",
        f"| {' | '.join(header)} |",
        "|" + "---|" * len(header),
    ]
    for seeds, row in rows:
        device = f" {row['device_peak_mb']:.0f} |" if on_device else ""
        lines.append(
            f"| {seeds} | {_seconds(row['run_seconds_per_seed'])} | {row['compile_seconds']:.1f} | "
            f"{row['peak_rss_mb']:.0f} |{device}"
        )
    lines += ["", "| one seed, students only | peak RSS MB |", "|---|---|"]
    return lines + [f"| {label} | {mb:.0f} |" for label, mb in report["peak_rss_mb"].items()]


def _across_processes(report: dict) -> list[str]:
    lines = ["## Across processes (the same cores)", ""]
    if report["across_processes"] is None:
        return [
            *lines,
            "Not measured on an accelerator: this compares devices made from the same CPU cores.",
        ]
    lines += [
        f"The benchmark experiment ({report['config']['seeds']} seeds) as one process with two "
        "CPU devices and as two processes with one device each, joined by JAX's distributed "
        "runtime over localhost: on the same two cores this measures what the runtime costs "
        "(a second import, data load and compile; collectives), not a speed-up.",
        "",
        "| layout | run s per seed | compile s | wall s (all processes) |",
        "|---|---|---|---|",
    ]
    for label, row in report["across_processes"].items():
        lines.append(
            f"| {label} | {_seconds(row['run_seconds_per_seed'])} | {row['compile_seconds']:.1f} | "
            f"{row['process_wall_s']:.1f} |"
        )
    return lines
