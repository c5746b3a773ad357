"""Grids over any Config fields, and the shipped studies; resumable point by point.

Each finished point is one JSON file named by a hash of its full config, written atomically,
so an interrupted sweep (Ctrl-C, kill, crash) resumes where it stopped: finished points are
read back, never redone. A directory holds one sweep: sweep.json records its grid (base
config, swept values, data), the same grid resumes, another is refused (or, with overwrite,
replaces it), and a lock keeps two sweeps from writing into one directory at once.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from sublim_toy.config import DEFAULTS, Config, value_label
from sublim_toy.data import Dataset
from sublim_toy.distributed import agree_with_main
from sublim_toy.errors import Interrupted, UserError
from sublim_toy.experiment import run_experiment
from sublim_toy.files import atomic_write, check_directory, write_json
from sublim_toy.results import MODELS, PAIRED, first_order_summary
from sublim_toy.stats import ci_text, mean_ci, number_text

try:
    import fcntl
except ImportError:  # not POSIX: sweeps run unlocked
    fcntl = None

Assignment = tuple[str, tuple]  # (config field, the values it takes)
Part = Sequence[Assignment]  # one product of assigned values; a sweep is a union of parts
# What a sweep directory holds besides points/: discarded together by overwrite. The figure
# stems are every study's (plots.STUDY_FIGURES included; a test keeps them in step).
SWEEP_FILES = ("points.csv", "sweep.json")
FIGURE_STEMS = ("study", "first_order", "weight_scale", "first_order_gap", "causal")
LOCK_FILE = ".lock"
PAIRED_STUDENT = PAIRED[0]  # the aux-only shared-init student


def grid(base: Config, assignments: list[Assignment]) -> list[Config]:
    """Every combination of the assigned values on top of `base`, validated."""
    fields = [field for field, _ in assignments]
    if len(set(fields)) != len(fields):
        raise UserError(f"a field is set twice: {fields}")
    combinations = itertools.product(*(values for _, values in assignments))
    return [base.replace(**dict(zip(fields, values, strict=True))) for values in combinations]


def union_grid(base: Config, parts: Sequence[Part]) -> list[Config]:
    """Every point of every part (each a product, `grid`), in order, each config once: parts
    that share a point (the paper's setting, say) run it and list it once."""
    configs, names = [], set()
    for part in parts:
        for config in grid(base, list(part)):
            if point_name(config) not in names:
                names.add(point_name(config))
                configs.append(config)
    return configs


def swept_fields(parts: Sequence[Part]) -> list[str]:
    """The fields any part sweeps, each once, in order of appearance."""
    return list(dict.fromkeys(field for part in parts for field, _ in part))


def _json_config(config: Config) -> dict:
    return json.loads(json.dumps(config.to_dict()))


# Every field's default as stored in JSON. A field added to Config later takes a default that
# keeps the older behaviour (a new field never changes what an old config computes), so a
# config stored before the field existed is that config with the field at its default.
JSON_DEFAULTS = json.loads(json.dumps(DEFAULTS))


def _upgraded(stored_config: dict) -> dict:
    """A stored config (or sweep base) with the fields it predates at their defaults."""
    return {**JSON_DEFAULTS, **stored_config}


def point_name(config: Config, fields: Sequence[str] | None = None) -> str:
    """A stable file name for a point: the hash of its whole config (with `fields`, of those
    fields only: the name a sweep stored before the other fields existed gave it)."""
    json_config = _json_config(config)
    if fields is not None:
        json_config = {field: json_config[field] for field in fields}
    text = json.dumps(json_config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _finished(path: Path, config: Config, dataset: Dataset) -> dict | None:
    """The stored results of this exact config and data, or None if absent, unreadable or
    different (a point run on other data is recomputed, and its file replaced)."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same_data = stored.get("data", {}).get("sha256") == dataset.sha256
    same_config = _upgraded(stored.get("config") or {}) == _json_config(config)
    return stored if same_data and same_config else None


def _stored_fields(out_dir: Path) -> list[str] | None:
    """The config fields of the sweep stored in `out_dir` when it predates some of today's
    (its base config lacks them); None when it has them all or cannot be read."""
    try:
        base = json.loads((out_dir / "sweep.json").read_text())["base"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(base, dict) or set(base) >= set(JSON_DEFAULTS):
        return None
    return [field for field in base if field in JSON_DEFAULTS]


def _finished_under_older_name(
    out_dir: Path, config: Config, dataset: Dataset, fields: list[str] | None
) -> dict | None:
    """A point stored by a version whose Config had only `fields`, found under the name that
    version gave it and renamed to today's (its config upgraded): a new field must not orphan
    a finished point. None if there is none."""
    if fields is None:
        return None
    older = out_dir / "points" / f"{point_name(config, fields)}.json"
    result = _finished(older, config, dataset)
    if result is None:
        return None
    result = {**result, "point": point_name(config), "config": _json_config(config)}
    write_json(out_dir / "points" / f"{point_name(config)}.json", result)
    older.unlink(missing_ok=True)
    return result


_HELD: set[Path] = set()  # directories this process holds the lock of (it is reentrant)


@contextlib.contextmanager
def locked(out_dir: Path):
    """Hold OUT/.lock exclusively while the block runs: a second sweep into OUT meanwhile, from
    any process, is refused at once instead of computing every point a second time."""
    out_dir = Path(out_dir)
    key = out_dir.resolve()
    if fcntl is None or key in _HELD:
        yield
        return
    check_directory(out_dir, "--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(
            f"--out {out_dir}: another sweep is running into this directory (it holds "
            f"{out_dir / LOCK_FILE}); wait for it to finish, or choose another --out"
        ) from None
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        os.close(fd)  # releases the lock


def grid_record(base: Config, parts: Sequence[Part], dataset: Dataset) -> dict:
    """What makes a sweep the same sweep: its base config, swept values and data. A single
    product is stored as "set" (as sweeps have always been), a union of products as "parts"."""
    swept = [{field: list(values) for field, values in part} for part in parts]
    grid_key = {"set": swept[0]} if len(swept) == 1 else {"parts": swept}
    return json.loads(
        json.dumps(
            {
                "base": base.to_dict(),
                **grid_key,
                "data": {"name": dataset.name, "sha256": dataset.sha256},
            }
        )
    )


def claim(out_dir: Path, record: dict, *, overwrite: bool) -> None:
    """Make `out_dir` this grid's. The same grid resumes; another sweep stored there is
    refused, or with `overwrite` discarded whole (points, table, sweep.json, figures)."""
    stored_path = out_dir / "sweep.json"
    if not stored_path.exists() and not (out_dir / "points").exists():
        return
    try:
        stored = json.loads(stored_path.read_text())
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        stored = {"unreadable": f"unreadable sweep.json: {err}"}
    if "data" not in stored and "base" in stored:  # written before sweep.json recorded its data
        stored = {**stored, "data": record["data"]}  # (points still check their own data)
    if isinstance(stored.get("base"), dict):  # a sweep stored before some fields existed
        stored = {**stored, "base": _upgraded(stored["base"])}
    if all(stored.get(key) == record[key] for key in record):
        if not overwrite:
            return
    elif not overwrite:
        raise UserError(
            f"--out {out_dir} holds another sweep ({_difference(stored, record)}); choose "
            "another --out, or pass --overwrite to discard that sweep"
        )
    shutil.rmtree(out_dir / "points", ignore_errors=True)
    for name in (
        *SWEEP_FILES,
        *(f"{stem}.{fmt}" for stem in FIGURE_STEMS for fmt in ("png", "pdf")),
    ):
        (out_dir / name).unlink(missing_ok=True)


def _difference(stored: dict, record: dict) -> str:
    """How a stored sweep differs from this one, in a few words."""
    if "unreadable" in stored:
        return stored["unreadable"]
    parts = []
    if any(stored.get(key) != record.get(key) for key in ("set", "parts")):
        stored_parts = stored.get("parts") or [stored.get("set") or {}]
        texts = []
        for part in stored_parts:
            swept = [
                f"{field}={','.join(value_label(v) for v in values)}"
                for field, values in part.items()
            ]
            texts.append(f"--set {' --set '.join(swept)}" if swept else "no swept fields")
        parts.append(" | ".join(texts))
    base = stored.get("base") or {}
    changed = [field for field, value in record["base"].items() if base.get(field) != value]
    parts += [f"{field}={value_label(base.get(field))}" for field in changed]
    if stored.get("data") != record["data"]:
        data = stored.get("data") or {}
        parts.append(f"data {data.get('name')} sha256 {str(data.get('sha256'))[:12]}...")
    return ", ".join(parts)


def run_sweep(
    base: Config,
    parts: Sequence[Part],
    out_dir: Path,
    dataset: Dataset,
    *,
    progress: bool = True,
    overwrite: bool = False,
    writer: bool = True,
) -> list[dict]:
    """Run every point not yet finished in `out_dir`; return all points' results in grid order.

    The grid is the union of `parts`, each a product of assigned values (`union_grid`; one
    part for a plain sweep). Holds the directory's lock throughout; refuses a directory that
    holds another sweep unless `overwrite`. Ctrl-C raises Interrupted saying how many points
    are kept. In a run of several processes only process 0 is the `writer`: the others neither
    lock nor write, and train the points that process 0 found missing (its view is broadcast),
    so all train the same points.
    """
    configs = union_grid(base, parts)
    fields = swept_fields(parts)
    out_dir = Path(out_dir)
    record = grid_record(base, parts, dataset)
    names = [point_name(config) for config in configs]
    with locked(out_dir) if writer else contextlib.nullcontext():
        older_fields = _stored_fields(out_dir) if writer else None
        if writer:
            claim(out_dir, record, overwrite=overwrite)
        results = [
            _finished(out_dir / "points" / f"{n}.json", c, dataset)
            or _finished_under_older_name(out_dir, c, dataset, older_fields)
            for n, c in zip(names, configs, strict=True)
        ]
        missing = agree_with_main([result is None for result in results])
        try:
            if writer:
                write_json(out_dir / "sweep.json", {**record, "points": names})
            _run_missing(configs, results, missing, fields, out_dir, dataset, progress, writer)
            if writer:
                write_table(out_dir / "points.csv", results, fields)
        except KeyboardInterrupt:
            kept = sum(result is not None for result in results)
            raise Interrupted(
                f"interrupted; {kept} of {len(configs)} points are kept in {out_dir}; run the "
                "same command again to resume"
            ) from None
    return results


def _run_missing(
    configs, results, missing, fields, out_dir, dataset, progress: bool, writer: bool
) -> None:
    """Fill in `results` where `missing`, one point at a time, each written at once."""
    done = len(configs) - sum(missing)
    bar = tqdm(total=len(configs), initial=done, unit="point", disable=not progress)
    if done:
        bar.write(f"resuming: {done} of {len(configs)} points already finished in {out_dir}")
    try:
        for index, config in enumerate(configs):
            if missing[index]:
                started = time.perf_counter()
                results[index] = _run_point(config, dataset, out_dir, progress, writer)
                if writer:
                    write_table(out_dir / "points.csv", [r for r in results if r], fields)
                bar.set_postfix_str(f"last point {time.perf_counter() - started:.0f} s")
                bar.update()
    finally:
        bar.close()


def _run_point(config: Config, dataset: Dataset, out_dir: Path, progress: bool, writer: bool):
    """One point, trained (its epoch bar under the sweep's bar) and written atomically."""
    result = {"point": point_name(config), **run_experiment(config, dataset, progress=progress)}
    if writer:
        write_json(out_dir / "points" / f"{point_name(config)}.json", result)
    return result


def write_table(path: Path, results: list[dict], fields: Sequence[str]) -> Path:
    """Tidy CSV: one row per point and model (plus the paired difference), swept fields first;
    for students also the first-order prediction, the accuracy at step 0 and the gain over it
    (blank for points stored before they were recorded)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    summary_columns = ["n", "mean", "sd", "ci_low", "ci_high"]
    extra_columns = [
        "first_order_mean",
        "first_order_ci_low",
        "first_order_ci_high",
        "start_mean",
        "gain_over_start_mean",
        "gain_over_start_ci_low",
        "gain_over_start_ci_high",
    ]
    writer.writerow(["point", *fields, "model", *summary_columns, *extra_columns])
    for result in results:
        swept = [value_label(result["config"][field]) for field in fields]
        rows = {name: result["summary"][name] for name in MODELS}
        rows["student_aux - cross_aux"] = result["paired_difference"]
        for model, row in rows.items():
            summary = [row[column] for column in summary_columns]
            writer.writerow(
                [result["point"], *swept, model, *summary, *_student_columns(result, model)]
            )
    return atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))


def _student_columns(result: dict, model: str) -> list:
    """First-order mean and CI, start mean, gain over the start and its CI ("" where absent)."""
    columns = [""] * 7
    predicted = (result.get("first_order") or {}).get("summary", {}).get(model)
    if predicted is not None:
        columns[0:3] = predicted["mean"], predicted["ci_low"], predicted["ci_high"]
    start = result.get("start")
    if start is not None and model in start["summary"]:
        gain = start["gain"][model]
        columns[3:7] = (
            start["summary"][model]["mean"],
            gain["mean"],
            gain["ci_low"],
            gain["ci_high"],
        )
    return columns


@dataclass(frozen=True)
class Study:
    """A shipped sweep: what it varies, and what it asks.

    A grid is one product of `assignments`, or with `union` several products (parts) whose
    points are run once each: the optimizer study sweeps SGD's learning rates apart from
    Adam's, and the batch size at Adam's rate only.
    """

    question: str
    assignments: tuple[Assignment, ...] = ()
    note: str = ""
    union: tuple[tuple[Assignment, ...], ...] = ()
    # the parts a preset (`--quick`, `--lab`) runs instead of the whole grid (a first look; CI)
    quick: tuple[tuple[Assignment, ...], ...] = ()

    def preset(self, *, quick: bool) -> Study:
        """This study, or with `quick` its reduced grid (itself if it has none)."""
        if not (quick and self.quick):
            return self
        return dataclasses.replace(self, assignments=(), union=self.quick, quick=())

    @property
    def parts(self) -> tuple[tuple[Assignment, ...], ...]:
        return self.union or (self.assignments,)

    @property
    def fields(self) -> list[str]:
        return swept_fields(self.parts)

    @property
    def varied_fields(self) -> list[str]:
        """The fields that take more than one value: what tells the points apart (a field
        set to one value at every point, such as log_every, is a setting, not a variable)."""
        return [field for field in self.fields if len(self.values(field)) > 1]

    def values(self, field: str) -> list:
        """Every value a part gives `field`, each once; a part that leaves it alone gives it
        its default (SGD's part of the optimizer study varies student_optimizer against the
        other parts' adam)."""
        found = []
        for part in self.parts:
            assigned = dict(part)
            found += assigned[field] if field in assigned else [DEFAULTS[field]]
        return list(dict.fromkeys(found))

    def point_label(self, result: dict) -> str:
        """A point as its swept values: 'shared, trained'; in a union of parts, the swept
        fields away from their defaults: 'student_optimizer=sgd, momentum=0.9'."""
        config, fields = result["config"], self.varied_fields
        if not self.union:
            return ", ".join(value_label(config[field]) for field in fields)
        changed = [f for f in fields if value_label(config[f]) != value_label(DEFAULTS[f])]
        return ", ".join(f"{field}={value_label(config[field])}" for field in changed) or "defaults"


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
    "optimizer": Study(
        "Where does the students' optimizer stop carrying the signal? Adam and SGD (momentum 0 "
        "and 0.9) from well below their working learning rates to past failure, Adam's weight "
        "decay decoupled and coupled, and the students' batch at fixed epochs; the teacher "
        "keeps Adam 3e-4, batch 1024.",
        union=(
            (("student_learning_rate", (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),),
            (
                ("student_optimizer", ("sgd",)),
                ("student_learning_rate", (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)),
                ("momentum", (0.0, 0.9)),
            ),
            (("student_learning_rate", (3e-4,)), ("weight_decay", (0.0, 1e-5, 1e-4))),
            (
                ("student_learning_rate", (3e-4,)),
                ("weight_decay_mode", ("coupled",)),
                ("weight_decay", (1e-5, 1e-4)),
            ),
            (
                ("student_learning_rate", (3e-4,)),
                ("student_batch_size", (64, 256, 1024, 4096, 16384)),
            ),
        ),
        note="The Adam 3e-4 point (the paper's) is run once and drawn in every part it belongs to.",
        quick=(
            (("student_learning_rate", (3e-4, 3e-3)),),
            (("student_optimizer", ("sgd",)), ("student_learning_rate", (1.0,))),
            (("student_learning_rate", (3e-4,)), ("weight_decay", (0.0, 1e-4))),
            (("student_learning_rate", (3e-4,)), ("student_batch_size", (256, 1024))),
        ),
    ),
    "causal": Study(
        "Is the alignment the cause of the transfer? Every update of the shared-init students "
        "loses its component along the teacher's move, along the teacher's gradient at the "
        "student, or (control) along a random direction of the same norm.",
        (
            ("project_out", ("none", "teacher_move", "teacher_gradient", "random")),
            ("log_every", (1,)),
        ),
        "Cross-model students are never projected: the same in every row.",
    ),
    "perturb": Study(
        "How exactly must the student share the teacher's init, and where? Gaussian noise of "
        "perturb_std x the init's own sd added to the shared-init students' head, hidden layers "
        "or all layers.",
        (("perturb_std", (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)), ("perturb", ("head", "hidden", "all"))),
        "perturb_std=0 is the shared init itself whatever the target (three identical points).",
        quick=((("perturb_std", (0.0, 0.5)), ("perturb", ("head", "hidden"))),),
    ),
    "width": Study(
        "Towards the wide (kernel) limit: the second hidden layer's width, the shared-init "
        "students' head trainable or frozen, m = 3 and 30; is the first-order prediction exact "
        "when the network is wide?",
        (
            ("hidden", ((256, 16), (256, 64), (256, 256), (256, 1024), (256, 4096))),
            ("freeze", ("none", "head")),
            ("aux", (3, 30)),
        ),
        quick=((("hidden", ((256, 16), (256, 64))), ("freeze", ("none", "head")), ("aux", (3,))),),
    ),
    "noise": Study(
        "The noise budget: how many distinct noise images (noise_pool) does the student need, "
        "against m, at a fixed training length?",
        (("noise_pool", (1024, 4096, 16384, 59392, 245760, 296960)), ("aux", (3, 30))),
        "At 5 student epochs of 58 steps of 1024: 59392 = 58 batches, one epoch's (the paper's "
        "fixed set, reused every epoch); 296960 = 290 batches, one per step: fresh noise.",
        quick=((("noise_pool", (1024, 296960)), ("aux", (3,))),),
    ),
    "student-arch": Study(
        "Students of another architecture, sharing with the teacher's init only what can be "
        "shared (the first layer and/or the head), with the head shared or independent.",
        (
            ("student_hidden", ((256, 256), (256,), (256, 256, 256), (128, 256), (512, 256))),
            ("head_init", ("shared", "independent")),
        ),
        "256x256: the teacher's widths, every layer shared; 256 and 256x256x256: the first "
        "layer and the head; 128x256 and 512x256: the head only (independent head: nothing "
        "shared, the cross-model student exactly).",
        quick=(
            (("student_hidden", ((256,), (128, 256))), ("head_init", ("shared", "independent"))),
        ),
    ),
}
STUDY_SEEDS = 8  # enough for CIs of +-0.05 on the aux-only student (its seed sd is ~0.1)


def format_study(study: Study, results: list[dict]) -> str:
    """One line per point: the swept values, aux-only and cross-model aux-only accuracy.
    (A union of parts names each point by its fields away from their defaults.)"""
    labels = {
        # value_label: the same text for a point trained now (tuples) or read back (JSON lists)
        id(result): "  ".join(value_label(result["config"][f]) for f in study.varied_fields)
        for result in results
    }
    header = "  ".join(study.varied_fields)
    if study.union:
        labels = {id(result): study.point_label(result) for result in results}
        header = "point"
    width = max(32, *(len(label) + 2 for label in labels.values()))
    lines = [f"{header:<{width}}{'student aux':>22}{'cross aux':>22}"]
    for result in results:
        values = labels[id(result)]
        cells = []
        for name in ("student_aux", "cross_aux"):
            row = result["summary"][name]
            ci = "" if row["ci_low"] is None else f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
            cells.append(f"{number_text(row['mean'], '.3f')}{ci}")
        lines.append(f"{values:<{width}}{cells[0]:>22}{cells[1]:>22}")
    if study.note:
        lines.append(study.note)
    return "\n".join(lines)


def format_first_order(study: Study, results: list[dict]) -> str:
    """Per point: the aux-only student's measured and first-order predicted accuracy, their
    paired gap and their correlation over seeds; then the correlation over every seed of every
    point (`results.first_order_summary`)."""
    summary = first_order_summary(results)
    width = max(28, *(len(study.point_label(result)) + 2 for result in results))
    lines = [
        "first-order prediction (aux-only student, linearised around its init):",
        f"{'point':<{width}}{'measured':>9}{'predicted':>10}{'predicted - measured':>28}"
        f"{'r over seeds':>24}",
    ]
    for result, row in zip(results, summary["points"], strict=True):
        gap = row["gap"]
        ci = "" if gap["ci_low"] is None else f" [{gap['ci_low']:+.3f}, {gap['ci_high']:+.3f}]"
        lines.append(
            f"{study.point_label(result):<{width}}{number_text(row['measured']['mean'], '.3f'):>9}"
            f"{number_text(row['predicted']['mean'], '.3f'):>10}"
            f"{number_text(gap['mean'], '+.3f'):>12}{ci:>16}"
            f"{_r_text(row['r']):>24}"
        )
    pooled, within = summary["pooled_r"], summary["mean_within_r"]
    seeds = f"bootstrap over the {pooled['seeds']} seeds, the same at every point"
    lines.append(
        f"mean within-point r = {_r_text(within)} over {within['points']} points ({seeds})"
    )
    lines.append(
        f"pooled over all {pooled['n']} seed-points: r = {_r_text(pooled)} (same bootstrap; "
        "mostly the split between points that transfer and points that do not)"
    )
    return "\n".join(lines)


def format_updates(study: Study, results: list[dict]) -> str:
    """Per point, for the aux-only student: its paired gain over the cross-model student and
    over its own start, the cosine of its displacement with the teacher's at the end, its mean
    step |update| (norm over all parameters), the fraction of its steps whose update has a
    positive cosine with the teacher's move, what a projection removed (mean |cos(update, d)|)
    and its imitation loss at the first and last step; means over seeds, 95 % t-CIs for the
    gains and the cosine. Points stored before these were recorded are left out."""
    rows = [result for result in results if result.get("updates")]
    if not rows:
        return ""
    width = max(28, *(len(study.point_label(result)) + 2 for result in rows))
    lines = [
        "the aux-only student's steps (means over seeds; gains and cos with 95 % CI):",
        f"{'point':<{width}}{'gain vs cross':>25}{'gain vs start':>25}{'cos end':>25}"
        f"{'|step|':>9}{'cos>0':>7}{'removed':>9}{'loss first -> last':>22}",
    ]
    for result in rows:
        updates = result["updates"][PAIRED_STUDENT]
        gain = ci_text(result["paired_difference"], "+.3f")
        start = result.get("start")
        over_start = ci_text(start["gain"][PAIRED_STUDENT], "+.3f") if start else "-"
        cos_end = ci_text(mean_ci(updates["cos_end"]), "+.3f")
        means = {
            key: mean_ci(updates[key])["mean"]
            for key in ("update_norm_mean", "cos_positive_fraction", "removed_mean")
        }
        loss = f"{number_text(mean_ci(updates['loss_first'])['mean'], '.2e')} -> "
        loss += number_text(mean_ci(updates["loss_last"])["mean"], ".2e")
        lines.append(
            f"{study.point_label(result):<{width}}{gain:>25}{over_start:>25}{cos_end:>25}"
            f"{number_text(means['update_norm_mean'], '.3g'):>9}"
            f"{number_text(means['cos_positive_fraction'], '.2f'):>7}"
            f"{number_text(means['removed_mean'], '.3f'):>9}{loss:>22}"
        )
    return "\n".join(lines)


def _r_text(r: dict) -> str:
    if r["r"] is None:
        return "-"
    if r["ci_low"] is None:
        return f"{r['r']:+.2f}"
    return f"{r['r']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
