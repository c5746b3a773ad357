"""Figures from results dicts (as written to JSON); nothing here imports the training code."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; the CLI runs headless and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sublim_toy.config import WEIGHT_SD, value_label, weight_sd  # noqa: E402
from sublim_toy.data import DATASETS  # noqa: E402
from sublim_toy.files import atomic_write  # noqa: E402
from sublim_toy.results import MODEL_LABELS, MODELS, STUDENTS, first_order_summary  # noqa: E402
from sublim_toy.stats import mean_ci  # noqa: E402

CHANCE = 0.1
BAR_COLORS = {
    "reference": "#9e9e9e",
    "teacher": "#2c3e50",
    "student_aux": "#c0392b",
    "student_all": "#e59866",
    "cross_aux": "#2471a3",
    "cross_all": "#85c1e9",
}
# Two-line tick labels: "Student (aux. only)" -> "Student\n(aux. only)".
TICK_LABELS = {name: label.replace(" (", "\n(") for name, label in MODEL_LABELS.items()}


# ---- styles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """How large figures and their texts are drawn. Each text of a figure names a size (its
    role); the style says how many points that is."""

    # points per size, from a figure's heading down to its most crowded legend
    sizes: dict[str, float]
    # matplotlib settings for the texts no figure sizes itself (axis labels, tick values)
    rc: dict[str, float] = field(default_factory=dict)
    # every figure's width and height are multiplied by this
    scale: float = 1.0
    # the alignment figure's panels per row (4: one row)
    alignment_columns: int = 4
    # the alignment figure's legend beside its panels, not on them
    legend_beside: bool = False
    # break titles too long for the figure's width into lines
    wrap_titles: bool = False


PROJECTOR_POINTS = 16  # every text of the projector style but the titles
STYLES = {
    # The committed figures, read on a page: matplotlib's 10 pt and these sizes below it.
    "docs": Style(
        sizes={
            "heading": 11,  # a figure's title over several panels (theorem, boundary)
            "title": 10,  # an axes' title; a study figure's title
            "label": 9,  # text on the axes: the values above bars, the model names under them
            "small": 8,  # "chance", crowded tick values, a two-line title, short legends
            "legend": 7,  # legends, the fixed fields over a study's panel
            "dense": 6,  # legends of many entries, notes beside markers
        }
    ),
    # For a lecture room: no text under 16 pt (titles larger), legends as large as the axis
    # labels, figures 1.5 times as large, and the alignment figure's four panels in a 2 x 2 grid.
    "projector": Style(
        sizes={
            "heading": 20,
            "title": 18,
            "label": PROJECTOR_POINTS,
            "small": PROJECTOR_POINTS,
            "legend": PROJECTOR_POINTS,
            "dense": PROJECTOR_POINTS,
        },
        rc={
            "font.size": PROJECTOR_POINTS,
            "axes.labelsize": PROJECTOR_POINTS,
            "axes.titlesize": 18,
            "figure.titlesize": 20,
            "xtick.labelsize": PROJECTOR_POINTS,
            "ytick.labelsize": PROJECTOR_POINTS,
            "legend.fontsize": PROJECTOR_POINTS,
            "legend.title_fontsize": PROJECTOR_POINTS,
        },
        scale=1.5,
        alignment_columns=2,
        legend_beside=True,
        wrap_titles=True,
    ),
}
_style = STYLES["docs"]


@contextlib.contextmanager
def figure_style(name: str) -> Iterator[Style]:
    """Draw and render the figures made inside the block in style `name` (a key of STYLES):
    `with figure_style("projector"): save_figures(figure10(results), "fig10")`."""
    global _style
    if name not in STYLES:
        raise ValueError(f"unknown figure style {name!r}; styles: {', '.join(STYLES)}")
    previous = _style
    with plt.rc_context(STYLES[name].rc):
        _style = STYLES[name]
        try:
            yield _style
        finally:
            _style = previous


def _size(role: str) -> float:
    """The current style's points for a text of this role."""
    return _style.sizes[role]


def _title(ax, text: str, role: str = "title") -> None:
    """An axes' title at the style's size for `role`, wrapped to the axes' width where the
    style wraps titles."""
    inches = ax.get_position().width * ax.figure.get_figwidth()
    ax.set_title(_wrapped(text, inches, _size(role)), fontsize=_size(role))


def _suptitle(fig: Figure, text: str, role: str = "heading") -> None:
    """A figure's title over its panels, as `_title` (wrapped to the figure's width)."""
    fig.suptitle(_wrapped(text, fig.get_figwidth(), _size(role)), fontsize=_size(role))


def _wrapped(text: str, inches: float, points: float) -> str:
    """`text` broken into lines about `inches` wide at `points` where the style wraps titles;
    a $...$ formula is never split (mathtext could not parse its halves)."""
    if not _style.wrap_titles:
        return text
    width = max(10, int(inches * 72 / (0.6 * points)))  # characters: about 0.6 em wide each
    lines = []
    for line in text.split("\n"):
        current = ""
        for word in re.findall(r"(?:\$[^$]*\$|\S)+", line):
            if current and len(current) + 1 + len(word) > width:
                lines.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        lines.append(current)
    return "\n".join(lines)


def _subplots(*grid: int, size: tuple[float, float], **kwargs):
    """plt.subplots with constrained layout, `size` (inches, docs style) scaled by the style."""
    width, height = size
    figsize = (width * _style.scale, height * _style.scale)
    return plt.subplots(*grid, figsize=figsize, layout="constrained", **kwargs)


def figure10(results: dict) -> Figure:
    """The paper's Figure 10: test accuracy of the six models, mean with 95 % t-CI and seeds."""
    names = list(MODELS)
    summary = results["summary"]
    n_seeds = summary["reference"]["n"]
    means = _floats([summary[name]["mean"] for name in names])  # nan where every seed diverged
    fig, ax = _subplots(size=(7.5, 4.2))
    positions = np.arange(len(names))
    ax.bar(positions, means, color=[BAR_COLORS[n] for n in names], width=0.7, zorder=1)
    if n_seeds > 1:
        lower = means - _floats([summary[name]["ci_low"] for name in names])
        upper = _floats([summary[name]["ci_high"] for name in names]) - means
        ax.errorbar(
            positions,
            means,
            yerr=[lower, upper],
            fmt="none",
            ecolor="black",
            capsize=4,
            lw=1.2,
            zorder=3,
        )
    rng = np.random.default_rng(0)  # fixed jitter: the figure is a pure function of the JSON
    for position, name in zip(positions, names, strict=True):
        per_seed = _floats(results["accuracy"][name])
        jitter = rng.uniform(-0.18, 0.18, per_seed.size)
        ax.scatter(position + jitter, per_seed, s=9, color="black", alpha=0.45, zorder=2, lw=0)
    # each label above its bar's highest seed and CI whisker (few seeds: the whisker can be higher)
    tops = np.fmax(means, [np.nanmax(_floats(results["accuracy"][name] + [0])) for name in names])
    if n_seeds > 1:
        tops = np.fmax(tops, _floats([summary[name]["ci_high"] for name in names]))
    for position, mean, top in zip(positions, means, tops, strict=True):
        text = "diverged" if np.isnan(mean) else f"{mean:.2f}"
        ax.text(position, top + 0.02, text, ha="center", va="bottom", fontsize=_size("label"))
    ax.axhline(CHANCE, color="gray", ls="--", lw=1, zorder=0)
    ax.text(
        len(names) - 0.5,
        CHANCE + 0.01,
        "chance",
        ha="right",
        va="bottom",
        fontsize=_size("small"),
        color="gray",
    )
    ax.set_xticks(positions, [TICK_LABELS[name] for name in names], fontsize=_size("label"))
    ax.set_ylim(0, 1.08)
    label = _dataset_label(results)
    ax.set_ylabel(f"{label} test accuracy")
    config = results["config"]
    _title(
        ax,
        f"Subliminal learning on {label}: {n_seeds} seeds, m = {config['aux']} aux logits, "
        f"{config['teacher_epochs']} + {config['student_epochs']} epochs (bars: 95 % CI)",
    )
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def paired_scatter(results: dict) -> Figure:
    """Per-seed accuracy of the aux-only student against the cross-model aux-only student."""
    student = np.asarray(results["accuracy"]["student_aux"])
    cross = np.asarray(results["accuracy"]["cross_aux"])
    fig, ax = _subplots(size=(4.2, 4.2))
    ax.scatter(cross, student, s=22, color=BAR_COLORS["student_aux"], zorder=2)
    ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--", zorder=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("cross-model student (aux. only)")
    ax.set_ylabel("shared-init student (aux. only)")
    _title(ax, "One point per seed (same teacher, same noise)")
    return fig


def _mean_band(ax, steps, per_seed_SxT, color, label):
    """Mean over seeds with a 95 % t-interval band (none for one seed)."""
    per_seed_SxT = np.asarray(per_seed_SxT, dtype=np.float64)
    rows = [mean_ci(per_seed_SxT[:, t]) for t in range(per_seed_SxT.shape[1])]
    ax.plot(steps, [row["mean"] for row in rows], color=color, label=label, lw=1.6)
    if rows and rows[0]["ci_low"] is not None:
        ax.fill_between(
            steps,
            [r["ci_low"] for r in rows],
            [r["ci_high"] for r in rows],
            color=color,
            alpha=0.2,
            lw=0,
        )


def alignment_figure(results: dict) -> Figure:
    """Alignment along real distillation: does Theorem 1's one-step picture persist?

    Panels: cos(theta_S(t) - theta_S(0), theta_T - theta_T(0)) over all parameters; the same
    per layer for the aux-only students; the teacher's loss L_T(theta_S(t)) on training images;
    accuracy on test images. In a row (docs style) or a 2 x 2 grid (projector style).
    """
    alignment = results["alignment"]
    steps = np.asarray(alignment["steps"])
    columns = _style.alignment_columns
    rows = -(-4 // columns)
    width = 3.75 * columns + (3.0 if _style.legend_beside else 0.0)
    fig, grid = _subplots(rows, columns, size=(width, 3.6 * rows), squeeze=False)
    axes = grid.ravel()
    for name in STUDENTS:
        label = MODEL_LABELS[name]
        for ax, metric in zip(axes[[0, 2, 3]], ("cos", "teacher_loss", "accuracy"), strict=True):
            _mean_band(ax, steps, _floats(alignment[name][metric]), BAR_COLORS[name], label)
    layer_styles = ("-", "--", ":", "-.")
    for name in ("student_aux", "cross_aux"):
        cos_layers = _floats(alignment[name]["cos_layers"])  # [seeds, T, layers]
        n_layers = cos_layers.shape[2]
        for layer in range(n_layers):
            _mean_band(
                axes[1],
                steps,
                cos_layers[:, :, layer],
                BAR_COLORS[name],
                f"{TICK_LABELS[name].splitlines()[0]} layer {layer + 1}",
            )
            axes[1].lines[-1].set_linestyle(layer_styles[layer % len(layer_styles)])
    images = alignment["probe_images"]
    panels = (
        ("cos(student move, teacher move)", "cosine, all parameters"),
        ("per layer, aux-only students", "cosine, one layer"),
        ("teacher's loss $L_T$ at the student", f"$L_T$ on {images} training images"),
        (f"accuracy, {images} test images", "test accuracy"),
    )
    for ax, (title, ylabel) in zip(axes, panels, strict=True):
        _title(ax, title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("student step")
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[:2]:
        ax.axhline(0, color="gray", lw=0.8)
    axes[3].axhline(CHANCE, color="gray", ls="--", lw=0.8)
    if _style.legend_beside:  # one legend right of the grid: colours, then the layers' lines
        handles, labels = axes[0].get_legend_handles_labels()
        for layer in range(n_layers):
            style = layer_styles[layer % len(layer_styles)]
            handles.append(Line2D([], [], color="gray", ls=style))
            labels.append(f"layer {layer + 1} (per layer)")
        fig.legend(handles, labels, loc="outside right upper", fontsize=_size("legend"))
    else:
        axes[0].legend(fontsize=_size("legend"), loc="best")
        axes[1].legend(fontsize=_size("dense"), loc="best", ncol=2)
    return fig


def _ci_whiskers(summaries: list[dict]) -> list[list[float]]:
    """errorbar's [below, above] lengths from `stats.mean_ci` rows (none where n = 1)."""
    below, above = [], []
    for row in summaries:
        below.append(0.0 if row["ci_low"] is None else row["mean"] - row["ci_low"])
        above.append(0.0 if row["ci_high"] is None else row["ci_high"] - row["mean"])
    return [below, above]


def _floats(values) -> np.ndarray:
    """Numbers as stored in a record, None (a diverged seed, or no seed left) as nan."""
    array = np.array(values, dtype=object)
    return np.where(np.equal(array, None), np.nan, array).astype(np.float64)


def _point(results: list[dict], assignment: dict) -> dict | None:
    """The first point whose config has every (field, value) of `assignment`."""
    for result in results:
        config = result["config"]
        if all(value_label(config[f]) == value_label(v) for f, v in assignment.items()):
            return result
    return None


def _axes(part):
    """A product of assignments as (its single-valued fields, x field and values, the other
    varied fields, every combination of their values as a dict). x is the first field with
    several values (else the part's last field)."""
    fixed = {field: values[0] for field, values in part if len(values) == 1}
    varied = [(field, values) for field, values in part if len(values) > 1] or [part[-1]]
    (x_field, x_values), *rest = varied
    fields = [field for field, _ in rest]
    combinations = itertools.product(*(values for _, values in rest))
    series = [dict(zip(fields, c, strict=True)) for c in combinations]
    return fixed, (x_field, x_values), fields, series


def _series_label(series: dict) -> str:
    return ", ".join(f"{field}={value_label(value)}" for field, value in series.items())


def study_figure(name: str, study, results: list[dict]) -> Figure:
    """Aux-only accuracy (shared init: filled, cross-model: open) at each point of a study.

    The first swept field (with more than one value) is the x axis; the others, if any, give
    one series per combination. A union of parts (`sweep.Study.union`) gets one panel per
    part, and beneath it the cosine of the aux-only student's displacement with the teacher's
    at the end of the run.
    """
    n_seeds = results[0]["summary"]["student_aux"]["n"]
    title = f"study {name}: {n_seeds} seeds per point, 95 % t-CI"
    if len(study.parts) > 1:
        return _parts_figure(study, results, title)
    fig, ax = _subplots(size=(7.5, 4.2))
    _study_panel(ax, results, study.parts[0], "accuracy")
    _title(ax, title)
    return fig


def _parts_figure(study, results: list[dict], title: str) -> Figure:
    """One column per part: accuracy on top, the aux-only student's final cosine beneath."""
    columns = len(study.parts)
    fig, axes = _subplots(2, columns, size=(3.4 * columns, 6.4), squeeze=False)
    for column, part in enumerate(study.parts):
        fixed = ", ".join(f"{f}={value_label(v[0])}" for f, v in part if len(v) == 1)
        _study_panel(axes[0, column], results, part, "accuracy")
        _study_panel(axes[1, column], results, part, "cos_end")
        _title(axes[0, column], fixed, "legend")
        if column:
            for ax in axes[:, column]:
                ax.set_ylabel("")
    _suptitle(fig, title, "title")
    return fig


def _study_panel(ax, results: list[dict], part, metric: str) -> None:
    """One product of assignments on one axis: x the first field with several values, series
    the second. metric "accuracy": aux-only accuracy, shared init filled and cross-model open;
    "cos_end": cos(theta_S - theta_S(0), theta_T - theta_T(0)) of the aux-only student."""
    fixed, (x_field, x_values), series_fields, all_series = _axes(part)
    students = (
        (("student_aux", True), ("cross_aux", False))
        if metric == "accuracy"
        else (("student_aux", True),)
    )
    width = 0.8 / len(all_series)
    colors = plt.get_cmap("tab10")
    for s_index, series in enumerate(all_series):
        offset = (s_index - (len(all_series) - 1) / 2) * width
        color = colors(s_index)
        for student, filled in students:
            xs, rows = [], []
            for x_index, x_value in enumerate(x_values):
                point = _point(results, {**fixed, x_field: x_value, **series})
                if point is None:
                    continue
                if metric == "accuracy":
                    rows.append(point["summary"][student])
                elif point.get("updates"):
                    rows.append(mean_ci(point["updates"][student]["cos_end"]))
                else:
                    continue
                xs.append(x_index + offset)
            label = None
            if filled:
                label = _series_label(series) if series_fields else "shared init"
            ax.errorbar(
                xs,
                _floats([row["mean"] for row in rows]),
                yerr=_ci_whiskers(rows),
                fmt="o" if filled else "s",
                ls="-" if filled else ":",
                color=color,
                mfc=color if filled else "white",
                capsize=3,
                label=label,
            )
    ax.set_xticks(range(len(x_values)), [value_label(v) for v in x_values], fontsize=_size("small"))
    ax.set_xlabel(x_field)
    if metric == "accuracy":
        ax.plot([], [], "s:", color="gray", mfc="white", label="cross-model (open)")
        ax.axhline(CHANCE, color="gray", ls="--", lw=0.8)
        ax.set_ylabel(f"aux-only student, {_dataset_label(results[0])} test accuracy")
        ax.set_ylim(0, 1)
    else:
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_ylabel("cos(student move, teacher move) at the end")
    ax.legend(fontsize=_size("legend"))
    ax.spines[["top", "right"]].set_visible(False)


def first_order_figure(name: str, study, results: list[dict]) -> Figure:
    """Measured against first-order predicted test accuracy, per seed, at every study point.

    The prediction linearises each student around its own init along the update it made
    (`first_order.linearised_logits`); on the diagonal the first-order picture is the whole story.
    Filled: the aux-only student (one colour per point); open grey: the cross-model one.
    """
    fig, ax = _subplots(size=(6.4, 5.2))
    colors = plt.get_cmap("tab10")
    for index, result in enumerate(results):
        for student, filled in (("cross_aux", False), ("student_aux", True)):
            ax.scatter(
                _floats(result["accuracy"][student]),
                _floats(result["first_order"]["accuracy"][student]),
                s=22 if filled else 14,
                lw=0.8,
                color=colors(index % 10) if filled else "white",
                edgecolors=colors(index % 10) if filled else "gray",
                label=study.point_label(result) if filled else None,
                zorder=3 if filled else 2,
            )
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--", zorder=1)
    ax.scatter([], [], s=14, color="white", edgecolors="gray", label="cross-model (open)")
    summary = first_order_summary(results)
    within, pooled = summary["mean_within_r"], summary["pooled_r"]
    _title(
        ax,
        f"study {name}: first-order prediction, aux-only students\n"
        f"mean within-point r {_r_label(within)} over {within['points']} points; pooled "
        f"{_r_label(pooled)} over {pooled['n']} seed-points (CIs: bootstrap over "
        f"{pooled['seeds']} seeds)",
        "small",
    )
    label = _dataset_label(results[0])
    ax.set_xlabel(f"measured {label} test accuracy")
    ax.set_ylabel("predicted by the linearisation around the init")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(
        fontsize=_size("dense"),
        title=", ".join(study.varied_fields),
        title_fontsize=_size("dense"),
        ncol=1 + len(results) // 12,
    )
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _r_label(r: dict) -> str:
    """'0.52 [0.21, 0.70]', or without a CI, or 'undefined'."""
    if r["r"] is None:
        return "undefined"
    if r["ci_low"] is None:
        return f"{r['r']:.2f}"
    return f"{r['r']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def weight_scale_figure(name: str, study, results: list[dict]) -> Figure:
    """Aux-only accuracy against the init's weight sd (units of 1/sqrt(d_in)), all schemes on
    one axis: does the scheme matter beyond its scale? (study `init`)"""
    fig, ax = _subplots(size=(7.5, 4.2))
    colors = plt.get_cmap("tab10")
    schemes = sorted({r["config"]["init"] for r in results}, key=list(WEIGHT_SD).index)
    for index, scheme in enumerate(schemes):
        for student, filled in (("student_aux", True), ("cross_aux", False)):
            rows = sorted(
                [
                    (weight_sd(scheme, r["config"]["init_scale"]), r["summary"][student])
                    for r in results
                    if r["config"]["init"] == scheme
                ],
                key=lambda pair: pair[0],
            )
            summaries = [row for _, row in rows]
            ax.errorbar(
                [sd for sd, _ in rows],
                _floats([row["mean"] for row in summaries]),
                yerr=_ci_whiskers(summaries),
                fmt="o" if filled else "s",
                ls="none",
                capsize=3,
                color=colors(index),
                mfc=colors(index) if filled else "white",
                label=scheme if filled else None,
            )
    ax.plot([], [], "s", color="gray", mfc="white", label="cross-model (open)")
    ax.axhline(CHANCE, color="gray", ls="--", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(r"initial weight sd $\times \sqrt{d_{in}}$ (scheme's sd x init_scale)")
    ax.set_ylabel(f"aux-only student, {_dataset_label(results[0])} test accuracy")
    n_seeds = results[0]["summary"]["student_aux"]["n"]
    _title(ax, f"study {name} by weight scale: {n_seeds} seeds per point, 95 % t-CI")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=_size("small"), title="init", title_fontsize=_size("small"))
    ax.spines[["top", "right"]].set_visible(False)
    return fig


PROJECTION_COLORS = {
    "none": "#2c3e50",
    "teacher_move": "#c0392b",
    "teacher_gradient": "#e67e22",
    "random": "#27ae60",
}


def causal_figure(name: str, study, results: list[dict]) -> Figure:
    """The causal test (projection.py), one colour per `project_out`: the aux-only student's
    imitation loss at every step (mean over seeds, 95 % t-band; log scale), its test accuracy
    (mean, CI and seeds; the cross-model student in grey), cos(update, theta_T - theta_T(0))
    at every step with the fraction of steps where it is positive, and the fraction of each
    update's norm the projection removed. Needs the step log (`Config.log_every`)."""
    fig, axes = _subplots(1, 4, size=(16, 3.9))
    loss_ax, accuracy_ax, cos_ax, removed_ax = axes
    student = "student_aux"
    for index, result in enumerate(results):
        variant = result["config"]["project_out"]
        color = PROJECTION_COLORS.get(variant, f"C{index}")
        updates = result["updates"]
        steps = np.asarray(updates["steps"])
        per_seed = updates[student]
        if steps.size:
            _mean_band(loss_ax, steps, _floats(per_seed["loss"]), color, variant)
            fraction = np.nanmean(_floats(per_seed["cos_positive_fraction"]))
            _mean_band(
                cos_ax,
                steps,
                _floats(per_seed["cos"]),
                color,
                f"{variant}: cos > 0 on {fraction:.0%} of steps",
            )
            _mean_band(removed_ax, steps, _floats(per_seed["removed"]), color, variant)
        for offset, model, alpha in ((-0.15, student, 1.0), (0.15, "cross_aux", 0.35)):
            row = result["summary"][model]
            accuracy_ax.errorbar(
                [index + offset],
                _floats([row["mean"]]),
                yerr=_ci_whiskers([row]),
                fmt="o" if model == student else "s",
                color=color if model == student else "gray",
                mfc=color if model == student else "white",
                capsize=3,
            )
            seeds = _floats(result["accuracy"][model])
            accuracy_ax.scatter(
                np.full(seeds.size, index + offset),
                seeds,
                s=8,
                color="black",
                alpha=alpha * 0.5,
                lw=0,
                zorder=3,
            )
    loss_ax.set_yscale("log")
    _title(loss_ax, "aux-only student: imitation loss per step")
    loss_ax.set_ylabel(
        "KL on the aux logits"
        if results[0]["config"]["imitation_loss"] == "kl"
        else "imitation loss"
    )
    accuracy_ax.set_xticks(
        range(len(results)), [r["config"]["project_out"] for r in results], fontsize=_size("small")
    )
    accuracy_ax.axhline(CHANCE, color="gray", ls="--", lw=0.8)
    accuracy_ax.set_ylim(0, 1)
    _title(accuracy_ax, "test accuracy (filled: aux-only, open: cross-model)")
    accuracy_ax.set_xlabel("project_out")
    cos_ax.axhline(0, color="gray", lw=0.8)
    _title(cos_ax, "cos(update, teacher move) per step")
    _title(removed_ax, "|cos(update, removed direction)|")
    for ax in (loss_ax, cos_ax, removed_ax):
        ax.set_xlabel("student step")
        ax.legend(fontsize=_size("legend"))
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    n_seeds = results[0]["summary"][student]["n"]
    _suptitle(fig, f"study {name}: {n_seeds} seeds per variant", "title")
    return fig


def first_order_gap_figure(name: str, study, results: list[dict]) -> Figure:
    """Does the linearisation become exact as the network widens? (study `width`)

    Left: the aux-only student's measured accuracy (filled) and its first-order prediction
    (open) against the first swept field; right: the paired gap predicted - measured with its
    95 % t-CI. One series per combination of the other fields.
    """
    fixed, (x_field, x_values), series_fields, all_series = _axes(study.parts[0])
    summary = first_order_summary(results)
    rows = {id(result): row for result, row in zip(results, summary["points"], strict=True)}
    fig, (left, right) = _subplots(1, 2, size=(11, 4.2))
    colors = plt.get_cmap("tab10")
    for s_index, series in enumerate(all_series):
        points = [_point(results, {**fixed, x_field: x, **series}) for x in x_values]
        xs = [i for i, point in enumerate(points) if point is not None]
        found = [rows[id(point)] for point in points if point is not None]
        label = _series_label(series) if series_fields else None
        color = colors(s_index)
        for key, filled in (("measured", True), ("predicted", False)):
            stats = [row[key] for row in found]
            left.errorbar(
                xs,
                _floats([row["mean"] for row in stats]),
                yerr=_ci_whiskers(stats),
                fmt="o-" if filled else "s:",
                color=color,
                mfc=color if filled else "white",
                capsize=3,
                label=label if filled else None,
            )
        gaps = [row["gap"] for row in found]
        right.errorbar(
            xs,
            _floats([gap["mean"] for gap in gaps]),
            yerr=_ci_whiskers(gaps),
            fmt="o-",
            color=color,
            capsize=3,
            label=label,
        )
    left.plot([], [], "s:", color="gray", mfc="white", label="first-order prediction (open)")
    left.axhline(CHANCE, color="gray", ls="--", lw=0.8)
    left.set_ylim(0, 1)
    left.set_ylabel(f"aux-only student, {_dataset_label(results[0])} test accuracy")
    _title(left, "measured (filled) and predicted by the linearisation (open)")
    right.axhline(0, color="gray", lw=0.8)
    right.set_ylabel("predicted - measured (paired over seeds)")
    _title(right, "first-order gap: 0 where the linearisation is exact")
    for ax in (left, right):
        ax.set_xticks(range(len(x_values)), [value_label(v) for v in x_values])
        ax.set_xlabel(x_field)
        ax.spines[["top", "right"]].set_visible(False)
    left.legend(fontsize=_size("legend"))
    n_seeds = results[0]["summary"]["student_aux"]["n"]
    _suptitle(fig, f"study {name}: {n_seeds} seeds per point, 95 % t-CI", "title")
    return fig


# Figures drawn for one study only, beside study.png and first_order.png: name -> (stem, plot)
STUDY_FIGURES = {
    "init": ("weight_scale", weight_scale_figure),
    "causal": ("causal", causal_figure),
    "width": ("first_order_gap", first_order_gap_figure),
}


def _dataset_label(results: dict) -> str:
    """The dataset's display name; results written before Fashion-MNIST existed are MNIST."""
    return DATASETS[results.get("data", {}).get("name", "mnist")].label


# The formats a figure is written in; SVG (for slides that scale) only when asked for.
FORMATS = ("png", "pdf")


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write a figure atomically; the format follows the suffix (.png, .pdf, .svg)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".")
    return atomic_write(path, lambda tmp: _render(fig, tmp, fmt))


def figure_files(fig: Figure, stem: str, formats: tuple[str, ...] = FORMATS) -> dict[str, bytes]:
    """The figure rendered as {stem.png: ..., stem.pdf: ...} (one per format), then closed:
    for `files.OutputDir.commit`, which writes a run's files all at once."""
    rendered = {}
    for fmt in formats:
        buffer = io.BytesIO()
        _render(fig, buffer, fmt)
        rendered[f"{stem}.{fmt}"] = buffer.getvalue()
    plt.close(fig)
    return rendered


def save_figures(
    fig: Figure, stem: str | os.PathLike, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """The figure as stem.png and stem.pdf (one file per format), then closed."""
    paths = [save_figure(fig, f"{stem}.{fmt}") for fmt in formats]
    plt.close(fig)
    return paths


def _render(fig: Figure, target, fmt: str) -> None:
    """fig.savefig at the package's resolution; an SVG without a date and with ids from a
    fixed salt, so that the same figure gives the same bytes."""
    extra = {"metadata": {"Date": None}} if fmt == "svg" else {}
    with plt.rc_context({"svg.hashsalt": "sublim-toy"}):
        fig.savefig(target, format=fmt, dpi=150, **extra)


# ---- Theorem 1 (sublim_toy.theorem) -----------------------------------------------------------

THEOREM_COLORS = {"shared": "#c0392b", "independent": "#2471a3", "reference": "#7f8c8d"}


def _positive(eps, values):
    """(eps, |values|) where |values| > 0: a log axis cannot show a zero."""
    eps, values = np.asarray(eps, float), np.abs(np.asarray(values, float))
    keep = values > 0
    return eps[keep], values[keep]


def theorem_figure(report: dict) -> Figure:
    """Theorem 1 on log-log axes, from a `theorem.check_theorem` report.

    Left: |dS.dT| against eps, shared init (-> eps A, slope 1) and independent init (-> a
    non-zero constant). Right: the remainder |dS.dT - eps A| with slope-1 and slope-2 reference
    lines; the shaded span is the window where it was fitted.
    """
    boundary = report.get("boundary")
    panels = 3 if boundary else 2
    fig, axes = _subplots(1, panels, size=(5 * panels, 4.2))
    left, right = axes[:2]
    _dot_panel(left, report)
    _remainder_panel(right, report)
    if boundary:
        boundary_panel(axes[2], [(boundary, "fresh init")])
    setting = report["setting"]
    _suptitle(
        fig,
        f"Theorem 1, float64: L_S = {setting['kind']} on {setting['outputs']} outputs, "
        f"A = {report['A']:.3g}, {'passed' if report['passed'] else 'FAILED'}",
    )
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=_size("small"))
        ax.spines[["top", "right"]].set_visible(False)
    return fig


def boundary_panel(ax, boundaries: list[tuple[dict, str]], markers=()) -> None:
    """|dS.dT / eps - A| / A against eps (`theorem.step_size_boundary`), one line per
    (boundary, label), with the tolerances as horizontal lines; `markers` are (eps, label)
    drawn as vertical lines (the optimizers' per-step updates in units of |dT|)."""
    colors = plt.get_cmap("viridis")
    for index, (boundary, label) in enumerate(boundaries):
        color = colors(index / max(1, len(boundaries) - 1)) if len(boundaries) > 1 else "#c0392b"
        ax.loglog(
            *_positive(boundary["eps"], _floats(boundary["relative_departure"])),
            "o-",
            ms=3,
            color=color,
            label=label,
        )
        flip = boundary["dot_sign_flip"]["eps"]
        if flip is not None:
            ax.axvline(flip, color=color, ls=":", lw=0.8)
    for crossing in boundaries[0][0]["departures"]:
        ax.axhline(crossing["tolerance"], color="gray", ls="--", lw=0.8)
    for eps, label in markers:
        ax.axvline(eps, color="#2471a3", lw=0.8, alpha=0.6)
        ax.text(
            eps,
            ax.get_ylim()[0],
            label,
            rotation=90,
            fontsize=_size("dense"),
            va="bottom",
            ha="right",
        )
    ax.set_xlabel(r"teacher step $\varepsilon$ (a step of $\varepsilon|\Delta\theta_T|$)")
    ax.set_ylabel(r"$|\Delta\theta_S\cdot\Delta\theta_T/\varepsilon - A|\,/\,A$")
    _title(ax, "where the first-order picture departs (dotted: dS.dT < 0)")


def _dot_panel(ax, report: dict) -> None:
    """|dS.dT| against eps: like eps A with the shared init, a constant with an independent one."""
    eps = np.asarray(report["eps"], float)
    shared, cross = report["shared_init"], report["different_init"]
    ax.loglog(
        *_positive(eps, shared["dot"]), "o-", color=THEOREM_COLORS["shared"], label="shared init"
    )
    if report["A"] > 0:
        ax.loglog(
            eps,
            eps * report["A"],
            "--",
            color=THEOREM_COLORS["reference"],
            lw=1,
            label=r"$\varepsilon A$",
        )
    if cross is not None:
        ax.loglog(
            *_positive(eps, cross["dot"]),
            "s-",
            color=THEOREM_COLORS["independent"],
            label=f"independent init ({cross['fraction_negative']:.0%} of "
            f"{cross['n_inits']} limits < 0)",
        )
    ax.set_xlabel(r"teacher step $\varepsilon$")
    ax.set_ylabel(r"$|\Delta\theta_S \cdot \Delta\theta_T|$")
    _title(
        ax,
        r"$\Delta\theta_S\cdot\Delta\theta_T$: $\to 0$ like $\varepsilon$ only "
        "with a shared init",
    )


def _remainder_panel(ax, report: dict) -> None:
    """The remainder |dS.dT - eps A| and the teacher-loss remainder, with slope-1 and slope-2
    reference lines through the fitted window (else the middle point)."""
    eps = np.asarray(report["eps"], float)
    shared = report["shared_init"]
    fit = shared["remainder_fit"]
    remainder_eps, remainder = _positive(eps, shared["remainder"])
    ax.set_xlabel(r"teacher step $\varepsilon$")
    ax.set_ylabel("remainder")
    slope = "n/a" if fit["slope"] is None else f"{fit['slope']:.2f}"
    _title(ax, f"Remainder is $O(\\varepsilon^2)$: fitted slope {slope}")
    if not remainder.size:
        ax.text(
            0.5, 0.5, "dS.dT vanishes identically", ha="center", va="center", transform=ax.transAxes
        )
        return
    ax.loglog(
        remainder_eps,
        remainder,
        "o-",
        color=THEOREM_COLORS["shared"],
        label=r"$|\Delta\theta_S\cdot\Delta\theta_T - \varepsilon A|$",
    )
    ax.loglog(
        *_positive(eps, shared["loss_change_remainder"]),
        "^-",
        color="#e59866",
        ms=4,
        lw=1,
        label=r"$|\Delta L_T + \varepsilon\alpha A|$",
    )
    if fit["window"] is not None:
        low, high = fit["window"]
        ax.axvspan(low, high, color="#f5e6e3", zorder=0, label="fit window")
        anchor_eps = np.sqrt(low * high)
    else:
        anchor_eps = remainder_eps[len(remainder_eps) // 2]
    anchor = np.exp(np.interp(np.log(anchor_eps), np.log(remainder_eps), np.log(remainder)))
    for power, style in ((2, "--"), (1, ":")):
        ax.loglog(
            eps,
            anchor * (eps / anchor_eps) ** power,
            style,
            color=THEOREM_COLORS["reference"],
            lw=1,
            label=f"slope {power}",
        )


def boundary_figure(scan: dict, rows: list[dict] | None = None) -> Figure:
    """Theorem 1's step-size boundary (`boundary.boundary_scan`): the departure of dS.dT / eps
    from A against eps at fresh inits of each scale, and along a real run; with `rows`
    (`boundary.updates_beside_boundary`) each study point's aux-only accuracy against its mean
    step in units of |dT| (eps_step), beside the 10 % and 50 % boundaries of the init."""
    panels = 3 if rows else 2
    fig, axes = _subplots(1, panels, size=(5.2 * panels, 4.3))
    boundary_panel(axes[0], [(b, f"init_scale {b['init_scale']:g}") for b in scan["init_scales"]])
    _title(axes[0], "fresh inits")
    boundary_panel(axes[1], [(b, f"after {b['step']} steps") for b in scan["training"]])
    _title(axes[1], "along real training (aux-only student)")
    if rows:
        _updates_panel(axes[2], scan, rows)
    for ax in axes:
        ax.legend(fontsize=_size("legend"))
        ax.spines[["top", "right"]].set_visible(False)
    _suptitle(
        fig,
        r"Theorem 1's small-step condition: where $\Delta\theta_S\cdot\Delta\theta_T$"
        r"$/\varepsilon$ leaves $A$ (dashed: 10 % and 50 %)",
    )
    return fig


def _updates_panel(ax, scan: dict, rows: list[dict]) -> None:
    """Aux-only accuracy against eps_step, one colour per optimizer family."""
    families = {}
    for row in rows:
        config = row["config"]
        family = config.get("student_optimizer", "adam")
        if config.get("momentum"):
            family += " + momentum"
        if config.get("weight_decay"):
            family += f" + wd ({config.get('weight_decay_mode', 'decoupled')})"
        if config.get("student_batch_size") not in (None, config["batch_size"]):
            family += " (batch)"
        families.setdefault(family, []).append(row)
    colors = plt.get_cmap("tab10")
    for index, (family, members) in enumerate(families.items()):
        members = [m for m in members if m["eps_step"] is not None]
        members.sort(key=lambda m: m["eps_step"])
        summaries = [m["accuracy"] for m in members]
        ax.errorbar(
            [m["eps_step"] for m in members],
            _floats([s["mean"] for s in summaries]),
            yerr=_ci_whiskers(summaries),
            fmt="o-" if len(members) > 2 else "o",
            color=colors(index),
            capsize=2,
            ms=4,
            lw=1,
            label=family,
        )
    reference = next((b for b in scan["init_scales"] if b["init_scale"] == 1.0), None)
    if reference is not None:
        for crossing, style in zip(reference["departures"], ("--", ":"), strict=False):
            if crossing["eps"] is not None:
                ax.axvline(crossing["eps"], color="gray", ls=style, lw=1)
    ax.axhline(CHANCE, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel(r"mean student step $|\Delta u|\,/\,|\Delta\theta_T|$ (eps_step)")
    ax.set_ylabel("aux-only student, test accuracy")
    _title(ax, "the optimizers' steps (grey: 10 % and 50 % boundary at init)")
