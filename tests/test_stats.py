import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sublim_toy.stats import correlation, mean_ci, paired_difference


def test_mean_ci_matches_a_hand_computed_t_interval():
    # values 1..5: mean 3, sd sqrt(2.5), t_{0.975, 4} = 2.7764451
    result = mean_ci([1, 2, 3, 4, 5])
    half_width = 2.7764451 * np.sqrt(2.5) / np.sqrt(5)
    assert result["mean"] == pytest.approx(3.0)
    assert result["sd"] == pytest.approx(np.sqrt(2.5))  # ddof = 1, not 0
    assert result["ci_low"] == pytest.approx(3 - half_width, rel=1e-6)
    assert result["ci_high"] == pytest.approx(3 + half_width, rel=1e-6)


def test_single_value_has_no_interval():
    assert mean_ci([0.5]) == {"n": 1, "mean": 0.5, "sd": None, "ci_low": None, "ci_high": None}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=30), st.floats(-0.5, 0.5))
def test_paired_difference_removes_a_shared_offset(values, offset):
    # b = a + offset exactly: the paired sd is ~0, whatever the spread of a itself.
    a = np.asarray(values)
    result = paired_difference(a + offset, a)
    assert result["mean"] == pytest.approx(offset, abs=1e-9)
    assert result["sd"] == pytest.approx(0.0, abs=1e-9)


def test_paired_difference_needs_equal_lengths():
    with pytest.raises(ValueError, match="shape"):
        paired_difference([1, 2], [1, 2, 3])


def test_correlation_matches_a_hand_computed_fisher_interval():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    y = [1.2, 1.9, 3.4, 3.8, 5.3, 5.9]
    result = correlation(x, y)
    r = np.corrcoef(x, y)[0, 1]
    half_width = 1.959964 / np.sqrt(len(x) - 3)
    assert result["r"] == pytest.approx(r)
    assert result["ci_low"] == pytest.approx(np.tanh(np.arctanh(r) - half_width), rel=1e-5)
    assert result["ci_high"] == pytest.approx(np.tanh(np.arctanh(r) + half_width), rel=1e-5)
    assert correlation([1, 2, 3], [1, 2, 3])["r"] is None  # too few for an interval
    assert correlation([1, 1, 1, 1], [1, 2, 3, 4])["r"] is None  # constant: undefined


def test_summaries_use_only_finite_values():
    from sublim_toy.stats import correlation, mean_ci, paired_difference

    assert mean_ci([0.5, None, float("nan"), 0.7])["n"] == 2
    assert mean_ci([None, None]) == {
        "n": 0,
        "mean": None,
        "sd": None,
        "ci_low": None,
        "ci_high": None,
    }
    assert paired_difference([1.0, None, 3.0], [0.0, 1.0, None])["n"] == 1
    assert correlation([1, 2, None, 4, 5, 6], [1, 2, 3, None, 5, 7])["n"] == 4


def test_seed_bootstrap_draws_the_same_seeds_at_every_point():
    from sublim_toy.stats import seed_bootstrap

    # two points holding the same per-seed values: any resample drawing seeds jointly keeps
    # them equal, one drawing each point's seeds on its own would not
    row = [0.1, 0.5, 0.2, 0.9, 0.4, 0.3, 0.8, 0.6]
    seen = []

    def gap(sample):
        seen.append(sample.shape)
        return float(np.max(np.abs(sample[0] - sample[1])))

    result = seed_bootstrap(gap, [row, row], resamples=200)
    assert result["value"] == result["ci_low"] == result["ci_high"] == 0.0
    assert result["seeds"] == 8 and seen[-1] == (2, 8)
    with pytest.raises(ValueError, match="number of seeds"):
        seed_bootstrap(gap, [row, row], [row[:4], row[:4]])
    again = seed_bootstrap(lambda s: float(np.mean(s)), [row])
    assert again == seed_bootstrap(lambda s: float(np.mean(s)), [row])  # seeded: reproducible


def test_seed_bootstrap_and_seed_point_pooling_disagree_where_points_share_seeds():
    from sublim_toy.stats import mean_within_r, pearson_r, seed_bootstrap

    # Two points of one study on the same 8 seeds: one transfers (accuracy ~0.5), one does not
    # (~0.1), and within each point prediction and measurement are unrelated noise. Pooled
    # over the 16 seed-points r is ~0.99 with a tight Fisher interval, as if 16 independent
    # runs showed it; within a point there is nothing, and the bootstrap over seeds says so.
    rng = np.random.default_rng(1)
    measured = [0.5 + 0.03 * rng.standard_normal(8), 0.1 + 0.03 * rng.standard_normal(8)]
    predicted = [0.45 + 0.03 * rng.standard_normal(8), 0.1 + 0.03 * rng.standard_normal(8)]
    naive = correlation(np.ravel(measured), np.ravel(predicted))
    assert naive["r"] > 0.95 and naive["ci_low"] > 0.85
    within = seed_bootstrap(mean_within_r, measured, predicted)
    assert abs(within["value"]) < 0.6 and within["ci_low"] < 0 < within["ci_high"]
    pooled = seed_bootstrap(pearson_r, measured, predicted)
    assert pooled["value"] == pytest.approx(naive["r"])


def test_pearson_r_leaves_out_missing_values_and_refuses_constants():
    from sublim_toy.stats import pearson_r

    assert pearson_r([1, 2, None, 4], [2, 4, 5, 8]) == pytest.approx(1.0)
    assert np.isnan(pearson_r([1, 1, 1, 1], [1, 2, 3, 4]))
    assert np.isnan(pearson_r([1, 2], [1, 2]))
