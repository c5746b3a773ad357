"""The results record of a run: its models and their labels, summaries, table and provenance.

Everything here reads and writes plain dicts (as stored in results.json), so figures and
reports never need the training code.
"""

from __future__ import annotations

import platform
from importlib import metadata

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.stats import correlation, mean_ci, paired_difference

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
) -> dict:
    """The results record: config, per-seed accuracies, CIs, the paired test, provenance."""
    return {
        **summarise(config, dataset, accuracies, wall_time),
        "devices_used": devices_used,
        "alignment": alignment,
        "first_order": {
            "accuracy": first_order,
            "summary": {name: mean_ci(values) for name, values in first_order.items()},
        },
    }


def summarise(config: Config, dataset: Dataset, accuracies: dict, wall_time: dict) -> dict:
    """Config, per-seed accuracies, their summaries and the paired difference, provenance."""
    first, second = PAIRED
    return {
        "experiment": "figure10",
        "config": config.to_dict(),
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
        "packages": versions,
    }


def format_table(results: dict) -> str:
    """The six-row table printed after a run."""
    lines = [f"{'model':<26}{'mean':>7}   {'95% CI':<17}{'sd':>6}"]
    for name in MODELS:
        row = results["summary"][name]
        ci = "" if row["ci_low"] is None else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        sd = "" if row["sd"] is None else f"{row['sd']:.3f}"
        lines.append(f"{MODEL_LABELS[name]:<26}{row['mean']:>7.3f}   {ci:<17}{sd:>6}")
    diff = results["paired_difference"]
    ci = "" if diff["ci_low"] is None else f" [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]"
    lines.append(f"paired {diff['a']} - {diff['b']}: {diff['mean']:+.3f}{ci} (n = {diff['n']})")
    return "\n".join(lines)


def first_order_summary(points: list[dict], student: str = "student_aux") -> dict:
    """Measured against first-order predicted accuracy of one student, over study points.

    Per point: both means, the paired gap predicted - measured and the correlation over seeds;
    pooled: the correlation over every seed of every point.
    """
    rows, measured, predicted = [], [], []
    for result in points:
        xs = result["accuracy"][student]
        ys = result["first_order"]["accuracy"][student]
        measured += xs
        predicted += ys
        rows.append(
            {
                "measured": mean_ci(xs),
                "predicted": mean_ci(ys),
                "gap": paired_difference(ys, xs),
                "r": correlation(xs, ys),
            }
        )
    return {"points": rows, "pooled_r": correlation(measured, predicted)}
