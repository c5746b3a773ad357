"""The results record of a run: its models and their labels, summaries, table and provenance.

Everything here reads and writes plain dicts (as stored in results.json), so figures and
reports never need the training code.
"""

from __future__ import annotations

import math
import platform
from importlib import metadata

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.errors import UserError
from sublim_toy.stats import (
    ci_text,
    correlation,
    mean_ci,
    mean_within_r,
    paired_difference,
    pearson_r,
    seed_bootstrap,
)

# Each student of a seed: (where its init comes from, which logits it imitates). The
# cross-model students imitate their own seed's teacher from an independently keyed init:
# the paper's setting (only the inits differ), it can never pair a student with its own init
# (docs/pitfalls.md, pitfall 1), and it makes student_aux - cross_aux a paired comparison.
STUDENTS = {
    "student_aux": ("shared", "aux"),
    "student_all": ("shared", "all"),
    "cross_aux": ("independent", "aux"),
    "cross_all": ("independent", "all"),
}
STUDENT_OUTPUTS = {name: outputs for name, (_, outputs) in STUDENTS.items()}
MODELS = ("reference", "teacher", *STUDENTS)
MODEL_LABELS = {
    "reference": "Reference",
    "teacher": "Teacher",
    "student_aux": "Student (aux. only)",
    "student_all": "Student (all logits)",
    "cross_aux": "Cross-model (aux. only)",
    "cross_all": "Cross-model (all logits)",
}
PAIRED = ("student_aux", "cross_aux")  # same teacher, same noise: only the init differs


def record(
    config: Config,
    dataset: Dataset,
    accuracies: dict,
    wall_time: dict,
    *,
    devices_used: int,
    alignment: dict,
    first_order: dict,
    at_start: dict | None = None,
    diverged: dict | None = None,
    updates: dict | None = None,
) -> dict:
    """The results record: config, per-seed accuracies, CIs, the paired test, provenance.

    `at_start` {student: per-seed test accuracy at step 0}: "start" then holds it with each
    student's gain over its own start (paired per seed), which differs from the gain over
    chance when a student starts from a trained head.

    `updates` (`updates.updates_record`): what every student step did, summarised per seed,
    and step by step every `log_every` steps; its non-finite values are recorded as null.

    `diverged` {model: [seed indices]} names the seeds on which a model's parameters are not
    all finite: their accuracies and first-order predictions are recorded as null, and so is
    every non-finite probe value, so the file is strict JSON and no summary counts them.
    """
    diverged = diverged or {}
    first_order = drop_diverged(first_order, diverged)
    return {
        **summarise(config, dataset, accuracies, wall_time, diverged),
        "devices_used": devices_used,
        "alignment": finite_or_none(alignment),
        "first_order": {
            "accuracy": first_order,
            "summary": {name: mean_ci(values) for name, values in first_order.items()},
        },
        "start": None if at_start is None else start_record(accuracies, at_start, diverged),
        "updates": finite_or_none(updates),
    }


def start_record(accuracies: dict, at_start: dict, diverged: dict) -> dict:
    """Each student's accuracy at step 0 and its gain over that start, seed by seed."""
    final = drop_diverged(accuracies, diverged)
    return {
        "accuracy": at_start,
        "summary": {name: mean_ci(values) for name, values in at_start.items()},
        "gain": {name: paired_difference(final[name], at_start[name]) for name in at_start},
    }


def summarise(
    config: Config, dataset: Dataset, accuracies: dict, wall_time: dict, diverged=None
) -> dict:
    """Config, per-seed accuracies, their summaries and the paired difference, provenance."""
    first, second = PAIRED
    diverged = {name: sorted(diverged[name]) for name in MODELS if (diverged or {}).get(name)}
    accuracies = drop_diverged(accuracies, diverged)
    return {
        "experiment": "figure10",
        "config": config.to_dict(),
        "diverged": diverged,
        "accuracy": accuracies,
        "summary": {name: mean_ci(accuracies[name]) for name in MODELS},
        "paired_difference": {
            "a": first,
            "b": second,
            **paired_difference(accuracies[first], accuracies[second]),
        },
        "data": {"name": dataset.name, "source": dataset.source, "sha256": dataset.sha256},
        "environment": environment(),
        "wall_time": wall_time,
    }


def drop_diverged(per_seed: dict, diverged: dict) -> dict:
    """{model: [value per seed]} with the diverged seeds' values, and any non-finite one, None."""
    return {
        name: [
            None if seed in diverged.get(name, ()) else finite_or_none(value)
            for seed, value in enumerate(values)
        ]
        for name, values in per_seed.items()
    }


def finite_or_none(value):
    """Nested lists and dicts of numbers with every nan or infinity replaced by None."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def environment() -> dict:
    """Package versions and the device, recorded with every result."""
    import jax  # the device list is the only thing here that needs JAX

    packages = ("sublim-toy", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib")
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "devices": [str(device.device_kind) for device in jax.devices()],
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
        "packages": versions,
    }


def format_table(results: dict) -> str:
    """The six-row table printed after a run."""
    lines = [f"{'model':<26}{'mean':>7}   {'95% CI':<17}{'sd':>6}"]
    for name in MODELS:
        row = results["summary"][name]
        ci = "" if row["ci_low"] is None else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        sd = "" if row["sd"] is None else f"{row['sd']:.3f}"
        mean = "-" if row["mean"] is None else f"{row['mean']:.3f}"
        lines.append(f"{MODEL_LABELS[name]:<26}{mean:>7}   {ci:<17}{sd:>6}")
    diff = results["paired_difference"]
    lines.append(f"paired {diff['a']} - {diff['b']}: {ci_text(diff, '+.3f')} (n = {diff['n']})")
    if results.get("start"):
        start, gain = results["start"]["summary"][PAIRED[0]], results["start"]["gain"][PAIRED[0]]
        lines.append(
            f"{PAIRED[0]} over its own start ({start['mean']:.3f} at step 0): "
            + ci_text(gain, "+.3f")
        )
    if results.get("diverged"):
        seeds = len(results["accuracy"]["reference"])
        models = ", ".join(
            f"{MODEL_LABELS[name]} on {len(indices)} of {seeds} seeds"
            for name, indices in results["diverged"].items()
        )
        lines.append(
            f"DIVERGED: {models} (parameters not finite: accuracy recorded as null and left "
            "out of the summaries; try a lower learning rate)"
        )
    return "\n".join(lines)


def first_order_summary(points: list[dict], student: str = "student_aux") -> dict:
    """Measured against first-order predicted accuracy of one student, over study points.

    Per point: both means, the paired gap predicted - measured and the correlation over its
    seeds (independent runs: a Fisher-z CI). Over all points, the mean of those within-point
    correlations and the correlation over every seed-point, each with a CI from a bootstrap
    over seeds (`stats.seed_bootstrap`): a study's points reuse the same seeds and teachers, so
    its seed-points are not independent, and a pooled r is mostly the split between points
    that transfer and points that do not. The CIs are None when points differ in their seeds.
    """
    rows, measured, predicted = [], [], []
    for result in points:
        xs = result["accuracy"][student]
        ys = result["first_order"]["accuracy"][student]
        measured.append(xs)
        predicted.append(ys)
        rows.append(
            {
                "measured": mean_ci(xs),
                "predicted": mean_ci(ys),
                "gap": paired_difference(ys, xs),
                "r": correlation(xs, ys),
            }
        )
    flat_measured = [x for xs in measured for x in xs]
    flat_predicted = [y for ys in predicted for y in ys]
    pooled = {**correlation(flat_measured, flat_predicted), "ci_low": None, "ci_high": None}
    within = {"r": None, "ci_low": None, "ci_high": None}
    if points and len({len(xs) for xs in measured}) == 1:
        pooled_boot = seed_bootstrap(pearson_r, measured, predicted)
        within_boot = seed_bootstrap(mean_within_r, measured, predicted)
        pooled.update(ci_low=pooled_boot["ci_low"], ci_high=pooled_boot["ci_high"])
        within = {
            "r": within_boot["value"],
            "ci_low": within_boot["ci_low"],
            "ci_high": within_boot["ci_high"],
        }
    seeds = len(measured[0]) if measured else 0
    within.update(points=sum(row["r"]["r"] is not None for row in rows), seeds=seeds)
    pooled.update(seeds=seeds, ci="bootstrap over seeds")
    return {"points": rows, "pooled_r": pooled, "mean_within_r": within}


# What each use of a results file reads from it.
FIGURE10_NEEDS = ("config", "accuracy", "summary")
ALIGNMENT_METRICS = ("cos", "cos_layers", "teacher_loss", "accuracy")


def check_record(obj, where: str, need: tuple[str, ...] = FIGURE10_NEEDS) -> dict:
    """`obj` as read from `where` if it is a results record with `need`; else one clear error
    saying what is missing (a theorem.json, `{}` or a list is not a results file)."""
    if not isinstance(obj, dict):
        raise UserError(
            f"{where} is not a sublim-toy results file: it holds a JSON {type(obj).__name__}, "
            "not an object"
        )
    missing = [key for key in need if key not in obj]
    for key in ("accuracy", "summary"):
        if key in need and isinstance(obj.get(key), dict):
            missing += [f"{key}.{name}" for name in MODELS if name not in obj[key]]
    if missing:
        hint = " (it is a theorem check's file)" if "conditions" in obj else ""
        raise UserError(
            f"{where} is not a sublim-toy results file{hint}: missing {', '.join(missing)}"
        )
    return obj


def check_alignment(obj, where: str) -> dict:
    """`obj` if it is a results record with alignment probes, for the alignment figure."""
    check_record(obj, where, need=("config",))
    alignment = obj.get("alignment")
    if not isinstance(alignment, dict) or not alignment.get("steps"):
        raise UserError(f"{where} has no alignment probes (rerun with --probe-every N > 0)")
    missing = [f"alignment.{key}" for key in ("probe_images", *STUDENTS) if key not in alignment]
    missing += [
        f"alignment.{name}.{metric}"
        for name in STUDENTS
        for metric in ALIGNMENT_METRICS
        if name in alignment and metric not in alignment[name]
    ]
    if missing:
        raise UserError(f"{where} is not a sublim-toy results file: missing {', '.join(missing)}")
    return obj
