import jax
import numpy as np
import pytest

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.results import MODELS, first_order_summary, format_table, summarise

CONFIG = Config(seeds=3, hidden=(16,))


def test_summary_and_table_from_known_accuracies():
    accuracies = {name: [0.1, 0.2, 0.3] for name in MODELS}
    accuracies["student_aux"] = [0.5, 0.6, 0.7]
    dataset = Dataset(*(np.zeros(1),) * 4, source="test", sha256="abc")
    results = summarise(CONFIG, dataset, accuracies, {"total_s": 1.0})
    assert results["summary"]["student_aux"]["mean"] == pytest.approx(0.6)
    assert results["paired_difference"]["mean"] == pytest.approx(0.4)
    assert results["paired_difference"]["sd"] == pytest.approx(0.0, abs=1e-12)
    assert results["data"] == {"name": "mnist", "source": "test", "sha256": "abc"}
    assert results["config"]["seeds"] == 3
    assert results["environment"]["packages"]["jax"] == jax.__version__
    table = format_table(results)
    assert "Student (aux. only)         0.600" in table
    assert "paired student_aux - cross_aux: +0.400" in table


def test_first_order_summary_per_point_and_pooled():
    points = [
        {
            "accuracy": {"student_aux": [0.5, 0.6, 0.7, 0.8]},
            "first_order": {"accuracy": {"student_aux": [0.4, 0.5, 0.6, 0.7]}},
        },
        {
            "accuracy": {"student_aux": [0.1, 0.2, 0.1, 0.2]},
            "first_order": {"accuracy": {"student_aux": [0.2, 0.1, 0.2, 0.1]}},
        },
    ]
    summary = first_order_summary(points)
    first, second = summary["points"]
    assert first["gap"]["mean"] == pytest.approx(-0.1)
    assert first["r"]["r"] == pytest.approx(1.0)
    assert second["r"]["r"] == pytest.approx(-1.0)
    assert first["measured"]["mean"] == pytest.approx(0.65)
    assert first["predicted"]["mean"] == pytest.approx(0.55)
    assert summary["pooled_r"]["n"] == 8
    assert summary["pooled_r"]["r"] == pytest.approx(
        np.corrcoef(
            [0.5, 0.6, 0.7, 0.8, 0.1, 0.2, 0.1, 0.2], [0.4, 0.5, 0.6, 0.7, 0.2, 0.1, 0.2, 0.1]
        )[0, 1]
    )
    # the points share 4 seeds: CIs from resampling seeds, within-point r averaged (+1 and -1)
    assert summary["pooled_r"]["ci"] == "bootstrap over seeds"
    assert summary["pooled_r"]["seeds"] == 4
    within = summary["mean_within_r"]
    assert within["r"] == pytest.approx(0.0, abs=1e-12)
    assert (within["points"], within["seeds"]) == (2, 4)
    assert within["ci_low"] <= within["r"] <= within["ci_high"]
    # points on different numbers of seeds cannot be resampled jointly: no interval
    points[1] = {
        "accuracy": {"student_aux": [0.1, 0.2, 0.1, 0.2, 0.3]},
        "first_order": {"accuracy": {"student_aux": [0.2, 0.1, 0.2, 0.1, 0.3]}},
    }
    uneven = first_order_summary(points)
    assert uneven["pooled_r"]["ci_low"] is None and uneven["mean_within_r"]["r"] is None


def test_diverged_seeds_are_null_and_left_out_of_the_summaries():
    accuracies = {name: [0.1, 0.2, 0.3] for name in MODELS}
    accuracies["student_aux"] = [0.5, float("nan"), 0.7]
    dataset = Dataset(*(np.zeros(1),) * 4, source="test", sha256="abc")
    results = summarise(CONFIG, dataset, accuracies, {}, {"student_aux": [1], "teacher": [0]})
    assert results["diverged"] == {"teacher": [0], "student_aux": [1]}  # in table order
    assert results["accuracy"]["student_aux"] == [0.5, None, 0.7]
    assert results["accuracy"]["teacher"] == [None, 0.2, 0.3]
    assert results["summary"]["student_aux"]["n"] == 2
    assert results["summary"]["student_aux"]["mean"] == pytest.approx(0.6)
    assert results["paired_difference"]["n"] == 2  # the pair of seed 1 has a diverged side
    assert "DIVERGED: Teacher on 1 of 3 seeds, Student (aux. only) on 1 of 3 seeds" in (
        format_table(results)
    )


def test_check_record_says_what_is_missing():
    from sublim_toy.errors import UserError
    from sublim_toy.results import check_alignment, check_record

    with pytest.raises(UserError, match="x.json is not a sublim-toy results file: missing config"):
        check_record({"accuracy": {}, "summary": {}}, "x.json")
    with pytest.raises(UserError, match="holds a JSON str"):
        check_record("text", "x.json")
    with pytest.raises(UserError, match="has no alignment probes"):
        check_alignment({"config": {}, "alignment": {"steps": []}}, "x.json")
