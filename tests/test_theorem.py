"""Theorem 1 check (sublim_toy.theorem): closed forms against autodiff, the eps expansion on
random MLPs, the degenerate cases, and the `theorem` command.

Everything numeric runs in float64 inside `jax.enable_x64`, entered per test so that x64 never
leaks into other test modules.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import float64
from hypothesis import assume, given, settings

from sublim_toy import theorem
from sublim_toy.cli import main
from sublim_toy.config import ACTIVATIONS, IMITATION_LOSSES, N_CLASSES
from sublim_toy.inputs import noise_batch
from sublim_toy.losses import imitation_loss
from sublim_toy.model import Network, select_outputs
from sublim_toy.plots import save_figures, theorem_figure
from sublim_toy.theorem import Imitation
from sublim_toy.theorem_report import format_report, verdict

# Each example builds and compiles a new MLP (~1-5 s on 2 cores): few examples, no deadline.
FEW = settings(max_examples=5, deadline=None)
MANY = settings(max_examples=6, deadline=None)
BATCH = 16


@st.composite
def mlp_settings(draw) -> dict:
    """A small random MLP and imitation setting: 1-3 hidden layers of width 3-16, 2-6 outputs
    distilled ("all" of them, or the "aux" ones after N_CLASSES regular outputs)."""
    depth = draw(st.integers(1, 3))
    return {
        "hidden": tuple(draw(st.lists(st.integers(3, 16), min_size=depth, max_size=depth))),
        "n_distilled": draw(st.integers(2, 6)),
        "outputs": draw(st.sampled_from(["all", "aux"])),
        "activation": draw(st.sampled_from(ACTIVATIONS)),
        "kind": draw(st.sampled_from(IMITATION_LOSSES)),
        "weighted": draw(st.booleans()),
        "input_dim": draw(st.integers(2, 8)),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def build(setting: dict) -> dict:
    """Network, theta0, an independent init, L_T, noise inputs and MSE weights of a setting.

    L_T is the teacher's cross-entropy on the regular outputs (all of them when there are fewer
    than N_CLASSES), so with outputs="aux" L_T and L_S see disjoint outputs, as on MNIST.
    """
    n_distilled = setting["n_distilled"]
    n_outputs = n_distilled if setting["outputs"] == "all" else N_CLASSES + n_distilled
    network = Network(
        sizes=(setting["input_dim"], *setting["hidden"], n_outputs),
        activation=setting["activation"],
        param_dtype=jnp.float64,
    )
    keys = jax.random.split(jax.random.key(setting["seed"]), 6)
    init = jax.jit(network.init)  # one compile instead of one per eager op
    digits = jax.random.uniform(keys[3], (BATCH, setting["input_dim"]), minval=-1, maxval=1)
    labels = jax.random.randint(keys[4], (BATCH,), 0, min(n_outputs, N_CLASSES))
    weights = None
    if setting["kind"] == "mse" and setting["weighted"]:
        weights = jax.random.uniform(keys[5], (n_distilled,), minval=0.5, maxval=2.0)
    return {
        "network": network,
        "params": init(keys[0]),
        "independent": init(keys[1]),
        "inputs": noise_batch(keys[2], 0, batch_size=BATCH, input_dim=setting["input_dim"]),
        "objective": theorem.classification_objective(network, digits, labels),
        "options": dict(kind=setting["kind"], outputs=setting["outputs"], weights=weights),
        "imitation": Imitation(network, setting["kind"], setting["outputs"], weights),
    }


@functools.partial(jax.jit, static_argnames=("kind", "outputs"))
def hessian_block(z_K, y_K, *, kind, outputs, weights=None):
    """-d^2 L_S / (dy_j dz_i) of `imitation_loss`, by reverse-over-reverse autodiff in the
    opposite order to theorem.autodiff_curvature (first d/dy, then d/dz)."""

    def loss(z, y):
        return imitation_loss(z[None], y[None], outputs=outputs, kind=kind, weights=weights)

    d2_dz_dy = jax.jacrev(jax.grad(loss, argnums=1), argnums=0)(z_K, y_K)  # [j, i]
    return -select_outputs(select_outputs(d2_dz_dy.T, outputs).T, outputs)


@functools.partial(jax.jit, static_argnames=("network", "kind", "outputs"))
def coefficient_by_differences(network, params, dT, inputs, *, kind, outputs, weights, h=1e-6):
    """E_x[u^T M u] with u from central differences of f along dT and M from `hessian_block`."""
    labels = network.apply(params, inputs)
    u = (
        network.apply(theorem.step(params, dT, h), inputs)
        - network.apply(theorem.step(params, dT, -h), inputs)
    ) / (2 * h)
    u = select_outputs(u, outputs)
    M = jax.vmap(functools.partial(hessian_block, kind=kind, outputs=outputs, weights=weights))(
        labels, labels
    )
    return jnp.mean(jnp.einsum("bi,bij,bj->b", u, M, u))


def three_curvatures(z_K, y_K, *, kind, outputs, weights):
    """M in closed form, by theorem.autodiff_curvature, and by `hessian_block`."""
    imitation = Imitation(Network((1, 1)), kind, outputs, weights)
    return (
        theorem.curvature(select_outputs(y_K, outputs), kind=kind, weights=weights),
        theorem.autodiff_curvature(imitation, z_K, y_K),
        hessian_block(z_K, y_K, kind=kind, outputs=outputs, weights=weights),
    )


@functools.partial(jax.jit, static_argnames=("kind",))
def curvatures_and_gradients(z_BxK, y_BxK, *, kind):
    """Closed-form M and dL_S/dz of a batch of (z, y) pairs, all outputs distilled."""
    M = jax.vmap(functools.partial(theorem.curvature, kind=kind))(y_BxK)
    imitation = Imitation(Network((1, 1)), kind, "all")
    gradient = jax.vmap(functools.partial(theorem.imitation_gradient, imitation))(z_BxK, y_BxK)
    return M, gradient


# ---- M (proof step 3) -------------------------------------------------------------------------


@MANY
@given(
    kind=st.sampled_from(IMITATION_LOSSES),
    outputs=st.sampled_from(["all", "aux"]),
    n_distilled=st.integers(2, 6),
    seed=st.integers(0, 2**31 - 1),
)
@float64
def test_closed_form_M_is_the_autodiff_hessian_block_of_imitation_loss(
    kind, outputs, n_distilled, seed
):
    n_outputs = n_distilled if outputs == "all" else N_CLASSES + n_distilled
    rng = np.random.default_rng(seed)
    z, y = (jnp.asarray(3 * rng.normal(size=n_outputs)) for _ in range(2))  # z != y on purpose
    weights = jnp.asarray(rng.uniform(0.5, 2.0, n_distilled)) if kind == "mse" else None
    closed_form, by_theorem_autodiff, expected = three_curvatures(
        z, y, kind=kind, outputs=outputs, weights=weights
    )
    assert closed_form.shape == (n_distilled, n_distilled)
    np.testing.assert_allclose(closed_form, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(by_theorem_autodiff, expected, rtol=1e-12, atol=1e-14)


@float64
def test_M_by_hand():
    # uniform softmax over 4 outputs: covariance of a uniform one-hot draw
    np.testing.assert_allclose(
        theorem.curvature(jnp.zeros(4), kind="kl"), np.eye(4) / 4 - np.ones((4, 4)) / 16
    )
    np.testing.assert_allclose(
        theorem.curvature(jnp.zeros(3), kind="mse", weights=jnp.array([1.0, 0.5, 3.0])),
        np.diag([2.0, 1.0, 6.0]),
    )


@MANY
@given(kind=st.sampled_from(IMITATION_LOSSES), n=st.integers(2, 6), seed=st.integers(0, 2**31))
@float64
def test_curvature_check_accepts_M_and_rejects_matrices_without_its_null_space(kind, n, seed):
    rng = np.random.default_rng(seed)
    z, y = 3 * rng.normal(size=(2, 8, n))
    M, gradient = curvatures_and_gradients(jnp.asarray(z), jnp.asarray(y), kind=kind)
    check = theorem.curvature_check(M, gradient, kind=kind)
    assert check["passed"], check
    assert check["null_space_dims"] == [1 if kind == "kl" else 0]
    assert check["min_eigenvalue_relative"] >= -1e-12
    if kind == "kl":
        assert check["ones_dot_gradient_relative"] <= 1e-12  # 1 is orthogonal to dL_S/dz
        p = jax.nn.softmax(jnp.asarray(y))
        no_null_space = jax.vmap(jnp.diag)(p)  # diag(p) alone: PSD, but 1 is not in its null space
        assert not theorem.curvature_check(no_null_space, gradient, kind="kl")["passed"]
    else:
        singular = np.asarray(M).copy()
        singular[:, 0, 0] = 0.0  # a zero weight: squared error would gain a null space
        assert not theorem.curvature_check(singular, gradient, kind="mse")["passed"]
    indefinite = np.asarray(M).copy()
    indefinite[:, 0, 0] = -indefinite[:, 0, 0] - 1.0
    assert not theorem.curvature_check(indefinite, gradient, kind=kind)["passed"]


# ---- the expansion dS.dT = eps A + O(eps^2) (proof steps 1, 2, 4) -------------------------


@FEW
@given(setting=mlp_settings())
@float64
def test_shared_init_expansion_on_random_mlps(setting):
    case = build(setting)
    network, params, inputs, options = (case[k] for k in ("network", "params", "inputs", "options"))
    report = theorem.check_theorem(case["imitation"], params, case["objective"], inputs)
    # a ReLU unit exactly at 0 (zero biases, dead layer below) is outside the theorem
    assume(report["conditions"]["differentiable_at_theta0"]["passed"])
    A, shared = report["A"], report["shared_init"]
    assert A > 0  # step 3, and dT generically moves the distilled outputs

    # A against an independent computation: central differences of the labels for u, and the
    # autodiff Hessian block of imitation_loss for M
    dT = theorem.teacher_update(case["objective"], params)
    assert A == pytest.approx(
        float(coefficient_by_differences(network, params, dT, inputs, **options)), rel=1e-5
    )

    # dS.dT / eps -> A, with a remainder that falls like eps^2 (or is rounding throughout)
    assert shared["dot_over_eps"][0] == pytest.approx(A, rel=1e-4)
    assert report["conditions"]["first_order_limit"]["passed"], report["conditions"]
    fit = shared["remainder_fit"]
    if fit["window"] is not None and fit["window_decades"] >= 1:
        assert 1.8 <= fit["slope"] <= 2.2

    # step 4: the student's step lowers L_T by eps alpha A to first order
    change, predicted = shared["teacher_loss_change"][0], shared["predicted_loss_change"][0]
    assert change < 0
    assert change == pytest.approx(predicted, rel=1e-2)
    assert report["passed"], format_report(report)


@FEW
@given(setting=mlp_settings())
@float64
def test_limit_of_dS_dot_dT_is_zero_only_with_a_shared_init(setting):
    case = build(setting)
    imitation, params, inputs = (case[k] for k in ("imitation", "params", "inputs"))
    dT = theorem.teacher_update(case["objective"], params)
    eps = [1e-7, 1e-6, 1e-5]
    shared = theorem.eps_sweep(imitation, params, params, dT, inputs, eps=eps)
    independent = theorem.eps_sweep(imitation, params, case["independent"], dT, inputs, eps=eps)
    limit = theorem.limit_dot(imitation, params, case["independent"], dT, inputs)
    assume(np.all(shared["dot"] != 0))  # dead networks: dT may not reach the distilled outputs
    # shared init: dS.dT = O(eps), so it vanishes in the limit
    assert theorem.loglog_slope(eps, shared["dot"]) == pytest.approx(1.0, abs=0.02)
    shared_limit = theorem.limit_dot(imitation, params, params, dT, inputs)
    assert abs(shared_limit) <= 1e-9 * abs(limit)  # zero up to rounding
    # independent init: dS.dT tends to dS(0).dT, which is not zero (cos far above rounding)
    assert abs(independent["cos"][0]) > 1e-8
    # ... converging to it as eps -> 0: dS.dT = dS(0).dT + O(eps), so the gap falls ~100x over
    # the sweep's two decades, or is already below 1e-3 of the limit
    gap = np.abs(np.asarray(independent["dot"]) - limit)
    assert gap[0] <= max(1e-3 * abs(limit), gap[-1] / 30), (gap, limit)
    assert abs(independent["dot"][0]) > 1e3 * abs(shared["dot"][0])


# ---- degenerate and failing cases ---------------------------------------------------------------


def regular_head_penalty(network: Network):
    """An L_T that moves only the regular outputs' biases, which the aux-only L_S never reaches."""
    last = len(network.sizes) - 2

    def penalty(params):
        return jnp.sum((params["layers"][last]["bias"][:N_CLASSES] - 1.0) ** 2)

    return penalty


@float64
def test_dS_dot_dT_that_vanishes_identically_is_reported_not_failed(tmp_path):
    network = Network(sizes=(5, 8, N_CLASSES + 3), activation="tanh", param_dtype=jnp.float64)
    keys = jax.random.split(jax.random.key(7), 3)
    params, independent = network.init(keys[0]), network.init(keys[1])
    inputs = noise_batch(keys[2], 0, batch_size=BATCH, input_dim=5)
    report = theorem.check_theorem(
        Imitation(network, "kl", "aux"),
        params,
        regular_head_penalty(network),
        inputs,
        different_inits=[independent],
    )
    assert report["vanishes_identically"]
    assert report["A"] == 0.0
    assert report["shared_init"]["dot"] == [0.0] * len(report["eps"])
    assert report["different_init"]["dot"] == [0.0] * len(report["eps"])
    assert report["passed"]
    assert report["conditions"]["first_order_limit"]["passed"] is True  # A = 0, consistently
    assert report["conditions"]["teacher_loss_decreases"]["passed"] is None
    assert report["conditions"]["different_init_limit_nonzero"]["passed"] is None
    text = format_report(report)
    assert "vanishes identically" in text and "FAIL" not in text
    json.dumps(report, allow_nan=False)  # JSON-able as written by the CLI
    paths = save_figures(theorem_figure(report), tmp_path / "vanishing")
    assert all(path.stat().st_size > 0 for path in paths)


@float64
def test_a_wrong_A_fails_the_check(monkeypatch):
    setting = dict(
        hidden=(8, 8),
        n_distilled=3,
        outputs="aux",
        activation="gelu",
        kind="kl",
        weighted=False,
        input_dim=4,
        seed=3,
    )
    case = build(setting)
    true_coefficient = theorem.first_order_coefficient
    monkeypatch.setattr(
        theorem, "first_order_coefficient", lambda *a, **k: true_coefficient(*a, **k) * 1.001
    )
    report = theorem.check_theorem(
        case["imitation"], case["params"], case["objective"], case["inputs"]
    )
    assert report["conditions"]["first_order_limit"]["passed"] is False
    assert not report["passed"]
    assert verdict(report).startswith("FAILED")


def test_asymptotic_window_finds_the_eps_squared_range_and_rejects_a_linear_term():
    eps = np.logspace(-7, -2, 11)
    # a rounding floor at the bottom, slope 2 in the middle, a kink-like jump at the top
    remainder = np.maximum(3e-2 * eps**2, 1e-15)  # the floor covers eps[0] only
    remainder[-2:] *= 100  # local slope 6 into eps[9]
    assert theorem.asymptotic_window(eps, remainder) == (1, 8)
    lo, hi = 1, 8
    assert theorem.loglog_slope(eps[lo : hi + 1], remainder[lo : hi + 1]) == pytest.approx(2.0)
    # what a wrong A leaves: an O(eps) term that dominates, slope 1 wherever it shows
    assert theorem.asymptotic_window(eps, 1e-3 * eps + 1e-6 * eps**2) is None


@float64
def test_float32_parameters_are_refused():
    network = Network(sizes=(3, 4, 2))  # float32
    params = network.init(jax.random.key(0))
    with pytest.raises(ValueError, match="float64"):
        theorem.check_theorem(Imitation(network), params, lambda p: 0.0, jnp.zeros((2, 3)))


# ---- the command ----------------------------------------------------------------------------


def test_theorem_command_on_tiny_idx_data(tiny_idx_dir, tmp_path, capsys):
    x64_before = jax.config.jax_enable_x64
    out = tmp_path / "theorem"
    reproduce_results = Path(__file__).parents[1] / "docs" / "reproduce" / "results.json"
    code = main(
        [
            "theorem",
            "--data-source",
            f"idx:{tiny_idx_dir}",
            "--out",
            str(out),
            "--alignment-from",
            str(reproduce_results),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert (out / "alignment.png").stat().st_size > 0  # redrawn from the reproduce run's JSON
    report = json.loads((out / "theorem.json").read_text())
    assert report["passed"] and report["A"] > 0
    assert report["setting"]["sizes"] == [784, 256, 256, N_CLASSES + 3]
    assert report["setting"]["outputs"] == "aux" and report["setting"]["kind"] == "kl"
    assert len(report["different_init"]["limits"]) == 16
    for suffix in ("png", "pdf"):
        assert (out / f"theorem_loglog.{suffix}").stat().st_size > 0
    assert "dS.dT/eps" in printed and "verdict: A > 0" in printed
    # the float64 check leaves the process's x64 setting as it was
    assert jax.config.jax_enable_x64 == x64_before
    assert jnp.ones(1).dtype == (jnp.float64 if x64_before else jnp.float32)


def test_theorem_command_exit_status(tiny_idx_dir, tmp_path, monkeypatch, capsys):
    def failing_check(dataset, **kwargs):
        with jax.enable_x64(True):
            case = build(
                dict(
                    hidden=(6,),
                    n_distilled=2,
                    outputs="all",
                    activation="tanh",
                    kind="mse",
                    weighted=False,
                    input_dim=3,
                    seed=0,
                )
            )
            report = theorem.check_theorem(
                case["imitation"], case["params"], case["objective"], case["inputs"]
            )
        report["conditions"]["first_order_limit"]["passed"] = False
        report["passed"] = False
        return report

    monkeypatch.setattr(theorem, "mnist_check", failing_check)
    out = tmp_path / "failing"
    assert main(["theorem", "--data-source", f"idx:{tiny_idx_dir}", "--out", str(out)]) == 1
    assert json.loads((out / "theorem.json").read_text())["passed"] is False
    assert "FAIL  first_order_limit" in capsys.readouterr().out
    monkeypatch.undo()
    # a user mistake is one line and exit status 2, before any computation
    assert main(["theorem", "--data-source", f"idx:{tiny_idx_dir}", "--seed", "-1"]) == 2
    assert "--seed -1: must be an integer in [0, 4294967295]" in capsys.readouterr().err
    missing = tmp_path / "no-results.json"
    assert (
        main(["theorem", "--data-source", f"idx:{tiny_idx_dir}", "--alignment-from", str(missing)])
        == 2
    )
    assert "cannot read results file" in capsys.readouterr().err
