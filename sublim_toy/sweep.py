"""Grids over any Config fields, and the shipped studies; resumable point by point.

Each finished point is one JSON file named by a hash of its full config, written atomically,
so an interrupted sweep (Ctrl-C, kill, crash) resumes where it stopped: finished points are
read back, never redone, and a point whose config changed gets a new name and is computed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from sublim_toy.config import Config, value_label
from sublim_toy.data import Dataset
from sublim_toy.errors import UserError
from sublim_toy.experiment import run_experiment
from sublim_toy.files import atomic_write, write_json
from sublim_toy.results import MODELS, first_order_summary

Assignment = tuple[str, tuple]  # (config field, the values it takes)


def parse_assignment(text: str) -> Assignment:
    """'aux=2,3,5' -> ("aux", (2, 3, 5)), each value typed like the field's default.

    hidden widths are written with x: 'hidden=256x256,512x512'.
    """
    field, sep, values_text = text.partition("=")
    fields = [f.name for f in dataclasses.fields(Config)]
    if not sep or not values_text:
        raise UserError(f"--set {text!r}: write FIELD=VALUE[,VALUE...], e.g. aux=2,3,5")
    if field not in fields:
        raise UserError(
            f"--set {text!r}: unknown config field {field!r}; fields: {', '.join(fields)}"
        )
    default = getattr(Config(), field)
    return field, tuple(_typed(field, default, item.strip()) for item in values_text.split(","))


def _typed(field: str, default, item: str):
    try:
        if isinstance(default, tuple):
            return tuple(int(width) for width in item.split("x"))
        if isinstance(default, int):
            return int(item)
        if isinstance(default, float):
            return float(item)
    except ValueError:
        kind = "widths like 256x256" if isinstance(default, tuple) else type(default).__name__
        raise UserError(f"{field}={item!r}: expected {kind}") from None
    return item


def grid(base: Config, assignments: list[Assignment]) -> list[Config]:
    """Every combination of the assigned values on top of `base`, validated."""
    fields = [field for field, _ in assignments]
    if len(set(fields)) != len(fields):
        raise UserError(f"a field is set twice: {fields}")
    combinations = itertools.product(*(values for _, values in assignments))
    return [base.replace(**dict(zip(fields, values, strict=True))) for values in combinations]


def _json_config(config: Config) -> dict:
    return json.loads(json.dumps(config.to_dict()))


def point_name(config: Config) -> str:
    """A stable file name for a point: the hash of its whole config."""
    text = json.dumps(_json_config(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finished(path: Path, config: Config, dataset: Dataset) -> dict | None:
    """The stored results of this exact config and data, or None if absent, unreadable or
    different (a point run on other data is recomputed, and its file replaced)."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same_data = stored.get("data", {}).get("sha256") == dataset.sha256
    return stored if same_data and stored.get("config") == _json_config(config) else None


def run_sweep(
    base: Config,
    assignments: list[Assignment],
    out_dir: Path,
    dataset: Dataset,
    *,
    progress: bool = True,
) -> list[dict]:
    """Run every point not yet finished in `out_dir`; return all points' results in grid order."""
    configs = grid(base, assignments)
    out_dir = Path(out_dir)
    write_json(
        out_dir / "sweep.json",
        {
            "base": _json_config(base),
            "set": {field: list(values) for field, values in assignments},
            "points": [point_name(config) for config in configs],
        },
    )
    results = [_finished(out_dir / "points" / f"{point_name(c)}.json", c, dataset) for c in configs]
    done = sum(result is not None for result in results)
    bar = tqdm(total=len(configs), initial=done, unit="point", disable=not progress)
    if done:
        bar.write(f"resuming: {done} of {len(configs)} points already finished in {out_dir}")
    for index, config in enumerate(configs):
        if results[index] is not None:
            continue
        started = time.perf_counter()
        results[index] = {"point": point_name(config), **run_experiment(config, dataset)}
        write_json(out_dir / "points" / f"{point_name(config)}.json", results[index])
        write_table(out_dir / "points.csv", [r for r in results if r is not None], assignments)
        bar.set_postfix_str(f"last point {time.perf_counter() - started:.0f} s")
        bar.update()
    bar.close()
    write_table(out_dir / "points.csv", results, assignments)
    return results


def write_table(path: Path, results: list[dict], assignments: list[Assignment]) -> Path:
    """Tidy CSV: one row per point and model (plus the paired difference), swept fields first."""
    fields = [field for field, _ in assignments]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["point", *fields, "model", "n", "mean", "sd", "ci_low", "ci_high"])
    for result in results:
        config = result["config"]
        swept = [value_label(config[field]) for field in fields]
        rows = {name: result["summary"][name] for name in MODELS}
        rows["student_aux - cross_aux"] = result["paired_difference"]
        for model, row in rows.items():
            writer.writerow(
                [
                    result["point"],
                    *swept,
                    model,
                    row["n"],
                    row["mean"],
                    row["sd"],
                    row["ci_low"],
                    row["ci_high"],
                ]
            )
    return atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))


@dataclass(frozen=True)
class Study:
    """A shipped sweep: what it varies, and what it asks."""

    question: str
    assignments: tuple[Assignment, ...]
    note: str = ""

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.assignments]

    def point_label(self, result: dict) -> str:
        """A point as its swept values: 'shared, trained'."""
        return ", ".join(value_label(result["config"][field]) for field in self.fields)


STUDIES = {
    "aux": Study(
        "How does the effect grow with the number m of auxiliary logits?",
        (("aux", (2, 3, 5, 10, 30, 100)),),
        "m = 1 is left out: with KL the softmax of one logit is constant, so the aux-only "
        "student gets no gradient at all (Config refuses it).",
    ),
    "init": Study(
        "How much do the init scheme and its scale decide the effect size?",
        (("init", ("normal", "lecun", "he", "torch")), ("init_scale", (0.5, 1.0, 2.0))),
    ),
    "architecture": Study(
        "Width and depth of the MLP.",
        (("hidden", ((64, 64), (128, 128), (256, 256), (512, 512), (256,), (256, 256, 256))),),
    ),
    "angle": Study(
        "How far from the teacher's init can the student start? "
        "theta_S0 = cos(phi) theta_T0 + sin(phi) theta_indep.",
        (("init_angle", (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0)),),
    ),
    "loss-inputs": Study(
        "Does it depend on the imitation loss and on what the student sees?",
        (
            ("imitation_loss", ("kl", "mse")),
            ("student_inputs", ("uniform", "gaussian", "mnist", "shuffled_pixels")),
        ),
    ),
    "layers": Study(
        "Which layers carry the signal? The aux-only student's hidden layers and head start "
        "from the teacher's init (shared), an independent init, or (head) the trained teacher.",
        (
            ("hidden_init", ("shared", "independent")),
            ("head_init", ("shared", "independent", "trained")),
        ),
        "hidden_init=independent, head_init=independent is the cross-model student exactly.",
    ),
    "teacher": Study(
        "Does the student learn the teacher's training, or its init? Teacher epochs 0-10, "
        "true or shuffled labels.",
        (("teacher_epochs", (0, 1, 2, 5, 10)), ("teacher_labels", ("true", "shuffled"))),
    ),
}
STUDY_SEEDS = 8  # enough for CIs of +-0.05 on the aux-only student (its seed sd is ~0.1)


def format_study(study: Study, results: list[dict]) -> str:
    """One line per point: the swept values, aux-only and cross-model aux-only accuracy."""
    lines = [f"{'  '.join(study.fields):<32}{'student aux':>22}{'cross aux':>22}"]
    for result in results:
        values = "  ".join(str(result["config"][field]) for field in study.fields)
        cells = []
        for name in ("student_aux", "cross_aux"):
            row = result["summary"][name]
            ci = "" if row["ci_low"] is None else f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
            cells.append(f"{row['mean']:.3f}{ci}")
        lines.append(f"{values:<32}{cells[0]:>22}{cells[1]:>22}")
    if study.note:
        lines.append(study.note)
    return "\n".join(lines)


def format_first_order(study: Study, results: list[dict]) -> str:
    """Per point: the aux-only student's measured and first-order predicted accuracy, their
    paired gap and their correlation over seeds; then the correlation over every seed of every
    point (`results.first_order_summary`)."""
    summary = first_order_summary(results)
    lines = [
        "first-order prediction (aux-only student, linearised around its init):",
        f"{'point':<28}{'measured':>9}{'predicted':>10}{'predicted - measured':>28}"
        f"{'r over seeds':>24}",
    ]
    for result, row in zip(results, summary["points"], strict=True):
        gap = row["gap"]
        ci = "" if gap["ci_low"] is None else f" [{gap['ci_low']:+.3f}, {gap['ci_high']:+.3f}]"
        lines.append(
            f"{study.point_label(result):<28}{row['measured']['mean']:>9.3f}"
            f"{row['predicted']['mean']:>10.3f}{gap['mean']:>+12.3f}{ci:>16}"
            f"{_r_text(row['r']):>24}"
        )
    pooled = summary["pooled_r"]
    lines.append(f"over all {pooled['n']} seeds x points: r = {_r_text(pooled)}")
    return "\n".join(lines)


def _r_text(r: dict) -> str:
    if r["r"] is None:
        return "-"
    return f"{r['r']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
