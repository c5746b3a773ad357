import matplotlib.pyplot as plt
import numpy as np
import pytest

from sublim_toy.plots import (
    alignment_figure,
    figure10,
    first_order_figure,
    paired_scatter,
    save_figures,
)
from sublim_toy.results import MODELS
from sublim_toy.stats import mean_ci


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
