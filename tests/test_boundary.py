"""Theorem 1's step-size boundary: where dS.dT / eps leaves A (theorem.step_size_boundary), the
crossing and sign-flip finders it rests on, and how study points are set beside it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_toy import theorem
from sublim_toy.boundary import optimizer_label, read_points, updates_beside_boundary
from sublim_toy.cli import main
from sublim_toy.config import N_CLASSES
from sublim_toy.errors import UserError
from sublim_toy.inputs import noise_batch
from sublim_toy.model import Network
from sublim_toy.theorem import Imitation, first_crossing, sign_flip, step_size_boundary
from sublim_toy.theorem_report import boundary_summary


def test_first_crossing_is_exact_for_a_power_law_and_says_when_there_is_none():
    eps = np.logspace(-4, 1, 21)
    error = 0.3 * eps  # the O(eps^2) remainder makes the relative departure ~ eps
    for tolerance in (0.1, 0.5):
        found = first_crossing(eps, error, tolerance)
        assert found["eps"] == pytest.approx(tolerance / 0.3, rel=1e-12)
        assert found["bracket"][0] < found["eps"] < found["bracket"][1]
        assert not found["below_sweep"]
    assert first_crossing(eps, 1e-6 * eps, 0.1)["eps"] is None
    early = first_crossing(eps, np.full(eps.shape, 0.2), 0.1)
    assert early["below_sweep"] and early["eps"] == eps[0]
    # a nan (a diverged point) counts as beyond, never as within
    assert first_crossing(eps, np.where(eps > 1e-2, np.nan, 0.0), 0.1)["bracket"][1] > 1e-2


def test_sign_flip_interpolates_the_zero_and_reports_none_without_one():
    eps = np.array([1.0, 2.0, 3.0, 4.0])
    assert sign_flip(eps, 2.5 - eps)["eps"] == pytest.approx(2.5)
    assert sign_flip(eps, eps)["eps"] is None
    assert sign_flip(eps, np.zeros(4))["eps"] is None  # no sign to leave


def test_the_boundary_of_a_small_mlp_starts_inside_the_first_order_regime_and_leaves_it():
    with jax.enable_x64(True):
        network = Network(sizes=(6, 12, N_CLASSES + 3), activation="tanh", param_dtype=jnp.float64)
        keys = jax.random.split(jax.random.key(3), 4)
        params = network.init(keys[0])
        digits = jax.random.uniform(keys[1], (32, 6), minval=-1, maxval=1)
        labels = jax.random.randint(keys[2], (32,), 0, N_CLASSES)
        objective = theorem.classification_objective(network, digits, labels)
        inputs = noise_batch(keys[3], 0, batch_size=32, input_dim=6)
        eps = np.logspace(-5, 3, 17)
        found = step_size_boundary(
            Imitation(network, "kl", "aux"), params, objective, inputs, eps=eps
        )
    relative = np.array(found["relative_departure"], np.float64)
    assert found["A"] > 0
    # inside: dS.dT / eps = A + O(eps), so the departure falls with eps by a decade per decade
    assert relative[0] < 1e-3
    slope = np.polyfit(np.log10(eps[:5]), np.log10(relative[:5]), 1)[0]
    assert 0.8 < slope < 1.2
    ten, fifty = found["departures"]
    assert ten["eps"] is not None and (fifty["eps"] is None or fifty["eps"] > ten["eps"])
    assert ten["distance"] == pytest.approx(ten["eps"] * found["teacher_update_norm"])
    # the reported crossing is where the sweep itself goes past 10 %
    below, above = ten["bracket"]
    assert relative[list(eps).index(below)] <= 0.1 < relative[list(eps).index(above)]
    assert "exceeds 10%" in boundary_summary(found)


def _scan(norm=2.0, ten=0.5, fifty=3.0):
    crossing = [
        {"tolerance": 0.1, "eps": ten, "bracket": None, "below_sweep": False},
        {"tolerance": 0.5, "eps": fifty, "bracket": None, "below_sweep": False},
    ]
    return {
        "init_scales": [{"init_scale": 1.0, "teacher_update_norm": norm, "departures": crossing}]
    }


def _point(step_norms, **config):
    row = {"n": 2, "mean": 0.5, "sd": 0.1, "ci_low": 0.4, "ci_high": 0.6}
    config = {"init_scale": 1.0, "learning_rate": 3e-4, "batch_size": 1024, **config}
    updates = {
        "update_norm_mean": step_norms,
        "update_norm_max": [2 * s for s in step_norms],
        "cos_end": [0.1, 0.2],
    }
    return {
        "config": config,
        "summary": {"student_aux": row},
        "paired_difference": row,
        "updates": {"student_aux": updates},
    }


def test_study_points_are_set_beside_the_boundary_in_units_of_the_teachers_step():
    points = [
        _point([0.1, 0.3], student_optimizer="adam", student_learning_rate=3e-4),
        _point([2.0, 4.0], student_optimizer="sgd", student_learning_rate=1.0, momentum=0.9),
    ]
    small, large = updates_beside_boundary(_scan(norm=2.0, ten=0.5, fifty=3.0), points)
    assert small["eps_step"] == pytest.approx(0.2 / 2.0)
    assert small["beyond"] == {"0.1": False, "0.5": False}
    assert large["eps_step"] == pytest.approx(3.0 / 2.0)
    assert large["eps_largest_step"] == pytest.approx(6.0 / 2.0)
    assert large["beyond"] == {"0.1": True, "0.5": False}
    assert large["label"] == "sgd 1.0 momentum 0.9"
    assert (
        optimizer_label({**points[0]["config"], "student_batch_size": 64}) == "adam 0.0003 batch 64"
    )


def test_updates_need_a_study_directory_and_the_scan(tmp_path, capsys):
    with pytest.raises(UserError, match="no points/\\*.json"):
        read_points(tmp_path)
    assert main(["theorem", "--updates-from", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    assert "--updates-from sets study points beside --boundary-scan" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # refused before any compute or file
