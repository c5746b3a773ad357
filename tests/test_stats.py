import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sublim_toy.stats import mean_ci, paired_difference


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
