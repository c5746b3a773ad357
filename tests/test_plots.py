import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text

from sublim_toy import plots
from sublim_toy.plots import (
    alignment_figure,
    figure10,
    figure_files,
    figure_style,
    first_order_figure,
    paired_scatter,
    save_figures,
)
from sublim_toy.results import MODELS
from sublim_toy.stats import mean_ci

DOCS = Path(__file__).parents[1] / "docs"


def _results(n=4):
    rng = np.random.default_rng(0)
    accuracy = {name: rng.uniform(0.05, 0.95, n).tolist() for name in MODELS}
    return {
        "config": {"aux": 3, "teacher_epochs": 5, "student_epochs": 5},
        "accuracy": accuracy,
        "summary": {name: mean_ci(values) for name, values in accuracy.items()},
    }


def test_figure10_bars_are_the_means_and_whiskers_the_cis():
    results = _results()
    fig = figure10(results)
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([results["summary"][name]["mean"] for name in MODELS])
    whiskers = ax.collections[0].get_segments()  # errorbar line segments, one per bar
    for segment, name in zip(whiskers, MODELS, strict=True):
        low, high = sorted(segment[:, 1])
        assert low == pytest.approx(results["summary"][name]["ci_low"])
        assert high == pytest.approx(results["summary"][name]["ci_high"])
    plt.close(fig)


def test_one_seed_draws_without_intervals(tmp_path):
    paths = save_figures(figure10(_results(n=1)), tmp_path / "fig")
    assert [path.name for path in paths] == ["fig.png", "fig.pdf"]
    assert not list(tmp_path.glob("*.tmp"))


def test_paired_scatter_has_one_point_per_seed():
    fig = paired_scatter(_results(n=7))
    assert fig.axes[0].collections[0].get_offsets().shape == (7, 2)
    plt.close(fig)


def test_alignment_figure_draws_the_mean_over_seeds():
    results = _results(n=3)
    rng = np.random.default_rng(1)
    record = {"steps": [29, 58, 87], "probe_images": 1024}
    for name in ("student_aux", "student_all", "cross_aux", "cross_all"):
        record[name] = {
            "cos": rng.uniform(-1, 1, (3, 3)).tolist(),
            "cos_layers": rng.uniform(-1, 1, (3, 3, 3)).tolist(),
            "teacher_loss": rng.uniform(0, 3, (3, 3)).tolist(),
            "accuracy": rng.uniform(0, 1, (3, 3)).tolist(),
        }
    results["alignment"] = record
    fig = alignment_figure(results)
    first_line = fig.axes[0].lines[0]
    np.testing.assert_allclose(
        first_line.get_ydata(), np.mean(record["student_aux"]["cos"], axis=0)
    )
    np.testing.assert_array_equal(first_line.get_xdata(), [29, 58, 87])
    plt.close(fig)


def test_first_order_figure_plots_every_seed_and_states_the_correlation():
    from sublim_toy.stats import correlation
    from sublim_toy.sweep import STUDIES

    points = []
    for head in ("shared", "independent"):
        result = _results(n=5)
        result["config"].update(hidden_init="shared", head_init=head)
        result["data"] = {"name": "fashion-mnist"}
        result["first_order"] = {
            "accuracy": {name: result["accuracy"][name][::-1] for name in MODELS[2:]}
        }
        points.append(result)
    fig = first_order_figure("layers", STUDIES["layers"], points)
    ax = fig.axes[0]
    filled = [
        c for c in ax.collections if c.get_label() in ("shared, shared", "shared, independent")
    ]
    assert [c.get_offsets().shape for c in filled] == [(5, 2), (5, 2)]
    np.testing.assert_allclose(
        filled[0].get_offsets(),
        np.c_[points[0]["accuracy"]["student_aux"], points[0]["accuracy"]["student_aux"][::-1]],
    )
    measured = sum((p["accuracy"]["student_aux"] for p in points), [])
    predicted = sum((p["first_order"]["accuracy"]["student_aux"] for p in points), [])
    # the title leads with the mean within-point r, then the pooled one, both with CIs from
    # the bootstrap over seeds
    title = ax.get_title()
    assert "mean within-point r " in title and "bootstrap over 5 seeds" in title
    assert f"pooled {correlation(measured, predicted)['r']:.2f} [" in title
    assert ax.get_xlabel() == "measured Fashion-MNIST test accuracy"
    plt.close(fig)


def test_weight_scale_figure_places_each_point_at_its_scheme_s_weight_sd():
    from sublim_toy.config import weight_sd
    from sublim_toy.plots import weight_scale_figure
    from sublim_toy.sweep import STUDIES

    points = []
    for init in ("he", "torch"):
        for scale in (0.5, 2.0):
            result = _results(n=3)
            result["config"].update(init=init, init_scale=scale)
            points.append(result)
    fig = weight_scale_figure("init", STUDIES["init"], points)
    ax = fig.axes[0]
    (he_bars,) = [bars for bars in ax.containers if bars.get_label() == "he"]
    he_line = he_bars.lines[0]
    np.testing.assert_allclose(
        np.asarray(he_line.get_xdata(), float), [weight_sd("he", 0.5), weight_sd("he", 2.0)]
    )
    np.testing.assert_allclose(
        np.asarray(he_line.get_ydata(), float),
        [p["summary"]["student_aux"]["mean"] for p in points[:2]],
    )
    plt.close(fig)


def _committed(path: str) -> dict:
    """A record the docs show (a real run's, so every panel has real data to draw)."""
    return json.loads((DOCS / path).read_text())


def _every_figure():
    """(name, figure) for every kind of figure plots.py draws, from real and made-up records."""
    from sublim_toy.sweep import STUDIES

    run = _committed("reproduce/results.json")
    yield "figure10", figure10(run)
    yield "alignment", alignment_figure(run)
    yield "paired", paired_scatter(run)
    yield "theorem", plots.theorem_figure(_committed("theorem/theorem.json"))
    boundary = _committed("theorem/boundary.json")
    yield "boundary", plots.boundary_figure(boundary, boundary["updates"])
    points = []
    for init in ("he", "torch"):
        for scale in (0.5, 2.0):
            result = _results(n=3)
            result["config"].update(init=init, init_scale=scale)
            result["first_order"] = {"accuracy": {n: result["accuracy"][n] for n in MODELS[2:]}}
            points.append(result)
    yield "study", plots.study_figure("init", STUDIES["init"], points)
    yield "first_order", first_order_figure("init", STUDIES["init"], points)
    yield "weight_scale", plots.weight_scale_figure("init", STUDIES["init"], points)
    steps = [10, 20]
    variants = ("none", "teacher_move", "random", "teacher_gradient")
    grid = [(hidden, freeze) for hidden in ((256, 16), (256, 64)) for freeze in ("none", "head")]
    for point, variant, (hidden, freeze) in zip(points, variants, grid, strict=True):
        point["config"].update(project_out=variant, imitation_loss="kl")
        point["config"].update(hidden=hidden, freeze=freeze)  # the width study's quick grid
        per_seed = {key: np.full((3, 2), 0.5).tolist() for key in ("loss", "cos", "removed")}
        point["updates"] = {"steps": steps, "student_aux": per_seed}
        point["updates"]["student_aux"]["cos_positive_fraction"] = [0.5] * 3
    yield "causal", plots.causal_figure("causal", STUDIES["causal"], points)
    width = STUDIES["width"].preset(quick=True)
    yield "first_order_gap", plots.first_order_gap_figure("width", width, points)


def test_the_projector_style_draws_every_text_at_14_pt_or_more():
    with figure_style("projector"):
        for name, fig in _every_figure():
            fig.canvas.draw()  # ticks and wrapped titles exist once drawn
            texts = fig.findobj(Text)
            small = {(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < 14}
            assert not small, name
            assert len(texts) > 10, name
            plt.close(fig)
    # and the block restores the docs style: the committed figures keep their sizes
    fig = figure10(_committed("reproduce/results.json"))
    assert fig.axes[0].title.get_fontsize() == 10
    assert {label.get_fontsize() for label in fig.axes[0].get_xticklabels()} == {9}
    plt.close(fig)


@pytest.mark.parametrize("style", ["docs", "projector"])
def test_every_panel_of_the_alignment_figure_has_labelled_axes(style):
    with figure_style(style):
        fig = alignment_figure(_committed("reproduce/results.json"))
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_ylabel() and ax.get_xlabel() == "student step"
    if style == "projector":
        # one legend beside the grid, its text as large as the axis labels
        (legend,) = fig.legends
        label_size = fig.axes[0].yaxis.label.get_fontsize()
        assert min(text.get_fontsize() for text in legend.get_texts()) >= label_size
        assert [ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes] == [(2, 2)] * 4
    plt.close(fig)


def test_an_unknown_style_is_refused():
    with pytest.raises(ValueError, match="unknown figure style 'poster'; styles: docs, projector"):
        with figure_style("poster"):
            pass


def test_svg_is_written_only_when_asked_and_the_same_every_time(tmp_path):
    assert [path.name for path in save_figures(figure10(_results()), tmp_path / "a")] == [
        "a.png",
        "a.pdf",
    ]
    formats = ("png", "pdf", "svg")
    paths = save_figures(figure10(_results()), tmp_path / "b", formats)
    assert [path.name for path in paths] == ["b.png", "b.pdf", "b.svg"]
    svg = paths[2].read_text()
    assert svg.startswith("<?xml") and "</svg>" in svg
    again = figure_files(figure10(_results()), "b", formats)
    assert again["b.svg"] == paths[2].read_bytes()  # no date, no random ids
    assert sorted(again) == ["b.pdf", "b.png", "b.svg"]


def test_long_titles_wrap_in_the_projector_style_without_splitting_a_formula():
    with figure_style("projector"):
        wrapped = plots._wrapped("a b c d $x + y = z$ e f g h i j k", inches=1.0, points=16)
    lines = wrapped.splitlines()
    assert len(lines) > 1 and "$x + y = z$" in lines
    assert plots._wrapped("a long title", inches=0.1, points=16) == "a long title"  # docs
