"""The deep linear toy (sublim_toy.linear_toy): the closed form against real training with the
package's model, loss and noise; the recovered fraction over random heads; Adam as the optimiser
the closed form does not cover; the identity activation.

Everything numeric runs in float64 inside `jax.enable_x64`, entered per test (and in the
module's fixture) so that x64 never leaks into other test modules.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
import pytest
from conftest import float64

from sublim_toy import linear_toy
from sublim_toy.config import Config
from sublim_toy.errors import ConfigError
from sublim_toy.inputs import noise_batch
from sublim_toy.losses import teacher_loss
from sublim_toy.model import network_for

INPUT_DIM, WIDTH, AUX = 32, 16, 3  # d, k, m: small enough to train to convergence in seconds
BATCH = 256
TEACHER_STEPS = 200
# Plain SGD reaches the closed form to rounding (~1e-15 relative) within these steps; KL's
# curvature is about 1/m of squared error's, hence its larger step.
SGD = {"mse": (0.5, 1000), "kl": (2.0, 1500)}
MATCH = 1e-8  # |trained - closed form| / |teacher's move|: converged, to far below any wrong answer
WRONG = 0.1  # every wrong projection tried below lands at least this far (0.29 to 0.94 here)


def toy_network(aux: int = AUX, init: str = "normal"):
    config = Config(activation="identity", hidden=(WIDTH,), aux=aux, init=init)
    return network_for(config, input_dim=INPUT_DIM, param_dtype=jnp.float64)


def train_teacher(network, init, key, steps: int = TEACHER_STEPS):
    """Real teacher training: Adam on `teacher_loss` (regular logits only), labels from a fixed
    random linear rule on noise inputs, so every layer but the auxiliary outputs moves."""
    rule_key, input_key = jax.random.split(key)
    rule_DxC = jax.random.normal(rule_key, (INPUT_DIM, 10))
    adam = optax.adam(1e-2)

    def step(carry, batch_index):
        params, state = carry
        inputs = noise_batch(input_key, batch_index, batch_size=BATCH, input_dim=INPUT_DIM)
        labels = jnp.argmax(inputs @ rule_DxC, axis=-1)
        grads = jax.grad(lambda p: teacher_loss(network.apply(p, inputs), labels))(params)
        updates, state = adam.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    run = jax.jit(lambda p: jax.lax.scan(step, (p, adam.init(p)), jnp.arange(steps))[0][0])
    return run(init)


@pytest.fixture(scope="module")
def shared_init():
    """(network, init, trained teacher): the student starts from the teacher's init."""
    with jax.enable_x64(True):
        network = toy_network()
        init = network.init(jax.random.key(0))
        return network, init, train_teacher(network, init, jax.random.key(1))


def head(params):
    return params["layers"][1]


def distance(params, hidden_D1xK, scale) -> float:
    return float(jnp.linalg.norm(linear_toy.hidden_layer(params) - hidden_D1xK) / scale)


@pytest.mark.parametrize("kind", ["mse", "kl"])
@float64
def test_sgd_ends_at_the_closed_form_and_not_at_a_wrong_projection(shared_init, kind):
    network, init, teacher = shared_init
    # the premise: the teacher's loss never moved its auxiliary columns or biases
    assert jnp.array_equal(head(teacher)["kernel"][:, 10:], head(init)["kernel"][:, 10:])
    assert jnp.array_equal(head(teacher)["bias"][10:], head(init)["bias"][10:])

    learning_rate, steps = SGD[kind]
    imitate = linear_toy.make_imitate(
        network, optax.sgd(learning_rate), kind=kind, batch_size=BATCH
    )
    student = imitate(init, teacher, jax.random.key(2), steps)
    closed_form = linear_toy.limit(init, teacher, kind)
    # the head stayed frozen, and the closed form keeps it too
    assert jnp.array_equal(head(student)["kernel"], head(init)["kernel"])
    assert jnp.array_equal(head(closed_form)["kernel"], head(init)["kernel"])

    start_D1xK = linear_toy.hidden_layer(init)
    teacher_move = linear_toy.hidden_move(init, teacher)
    scale = jnp.linalg.norm(teacher_move)
    assert distance(student, linear_toy.hidden_layer(closed_form), scale) < MATCH
    # the closed form at a shared init is the projection of the teacher's move
    projected = start_D1xK + teacher_move @ linear_toy.projection(init, kind)
    assert distance(closed_form, projected, scale) < MATCH

    # ... and not another projection: all of the move, the span of the regular columns, or
    # with KL the uncentred auxiliary columns (with squared error: the centred ones)
    regular_KxC = head(init)["kernel"][:, :10]
    other_kind = "mse" if kind == "kl" else "kl"
    wrong = {
        "identity": jnp.eye(WIDTH),
        "regular columns": regular_KxC @ jnp.linalg.pinv(regular_KxC),
        "other centring": linear_toy.projection(init, other_kind),
    }
    for name, projection_KxK in wrong.items():
        assert distance(student, start_D1xK + teacher_move @ projection_KxK, scale) > WRONG, name

    # the recovered fraction is the trained student's share of the teacher's move
    student_move = linear_toy.hidden_move(init, student)
    share = jnp.vdot(student_move, teacher_move) / jnp.vdot(teacher_move, teacher_move)
    fraction = linear_toy.recovered_fraction(init, teacher, kind)
    assert float(fraction) == pytest.approx(float(share), rel=1e-8)
    assert 0 < float(fraction) < 1


@pytest.mark.parametrize("kind", ["mse", "kl"])
@float64
def test_an_unshared_head_ends_where_its_auxiliary_logits_match_the_teachers(shared_init, kind):
    """The general closed form: a student with its own head (torch init, so its output biases
    differ from the teacher's too) ends where its auxiliary logits equal the teacher's."""
    network, _, teacher = shared_init
    student_init = toy_network(init="torch").init(jax.random.key(3))
    # the output biases differ, so the closed form must carry them in its target
    bias_gap = head(teacher)["bias"][10:] - head(student_init)["bias"][10:]
    if kind == "kl":
        bias_gap = bias_gap - bias_gap.mean()
    assert float(jnp.abs(bias_gap).max()) > 1e-3  # far above the 1e-10 asked of the logits
    learning_rate, steps = SGD[kind]
    imitate = linear_toy.make_imitate(
        network, optax.sgd(learning_rate), kind=kind, batch_size=BATCH
    )
    student = imitate(student_init, teacher, jax.random.key(4), steps)
    closed_form = linear_toy.limit(student_init, teacher, kind)
    scale = jnp.linalg.norm(linear_toy.hidden_move(student_init, closed_form))
    assert distance(student, linear_toy.hidden_layer(closed_form), scale) < MATCH

    # the closed form imitates exactly on fresh noise: zero loss, or a constant shift with KL
    inputs = noise_batch(jax.random.key(5), 0, batch_size=BATCH, input_dim=INPUT_DIM)
    gap_BxM = (network.apply(closed_form, inputs) - network.apply(teacher, inputs))[:, 10:]
    if kind == "kl":
        gap_BxM = gap_BxM - gap_BxM.mean(axis=1, keepdims=True)
    assert float(jnp.abs(gap_BxM).max()) < 1e-10


@pytest.mark.parametrize(("kind", "aux"), [("mse", 3), ("kl", 3), ("mse", 6), ("kl", 6)])
@float64
def test_recovered_fraction_averages_span_over_k_over_random_heads(shared_init, kind, aux):
    _, init, teacher = shared_init
    start_D1xK, end_D1xK = linear_toy.hidden_layer(init), linear_toy.hidden_layer(teacher)
    network = toy_network(aux=aux)

    def fraction(key):
        heads = network.init(key)  # the package's own head init, a fresh draw per key
        return linear_toy.recovered_fraction(
            linear_toy.with_hidden_layer(heads, start_D1xK),
            linear_toy.with_hidden_layer(heads, end_D1xK),
            kind,
        )

    draws = 4000
    fractions = jax.jit(jax.vmap(fraction))(jax.random.split(jax.random.key(6), draws))
    expected = linear_toy.expected_fraction(aux, WIDTH, kind)
    # Tolerance: with Gaussian heads the span is a uniformly random r-dimensional subspace, so
    # for a rank-one move the fraction is Beta(r/2, (k - r)/2), of variance mu (1 - mu) /
    # (k/2 + 1); a move of higher rank averages such Betas with weights summing to one, whose sd
    # is at most theirs. Five standard errors of the mean of 4000 draws (at most 0.013 here)
    # leave the wrong mean 1/k away (m/k against (m - 1)/k: centring mixed up) at least three
    # tolerances, 15 standard errors, beyond the accepted band.
    bound_sd = math.sqrt(expected * (1 - expected) / (WIDTH / 2 + 1))
    tolerance = 5 * bound_sd / math.sqrt(draws)
    assert abs(float(fractions.mean()) - expected) < tolerance
    assert float(fractions.std()) <= bound_sd * 1.05  # the bound holds (up to sampling)
    assert 1 / WIDTH > 4 * tolerance


@float64
def test_recovered_fraction_is_one_once_the_span_is_every_hidden_unit(shared_init):
    _, init, teacher = shared_init
    heads = toy_network(aux=WIDTH + 4).init(jax.random.key(7))
    fraction = linear_toy.recovered_fraction(
        linear_toy.with_hidden_layer(heads, linear_toy.hidden_layer(init)),
        linear_toy.with_hidden_layer(heads, linear_toy.hidden_layer(teacher)),
        "mse",
    )
    assert float(fraction) == pytest.approx(1.0, abs=1e-12)
    assert linear_toy.expected_fraction(WIDTH + 4, WIDTH, "mse") == 1.0


@pytest.mark.parametrize("kind", ["mse", "kl"])
@float64
def test_adam_imitates_exactly_but_does_not_end_at_the_closed_form(shared_init, kind):
    """A sanity check of the closed form's assumption on the optimiser, not a claim about Adam:
    its per-coordinate scaling leaves the gradients' span, so it finds another exact imitator,
    farther from the init than the closed form (which is the nearest one)."""
    network, init, teacher = shared_init
    steps = 1000
    adam = optax.adam(optax.cosine_decay_schedule(1e-2, steps))
    student = linear_toy.make_imitate(network, adam, kind=kind, batch_size=BATCH)(
        init, teacher, jax.random.key(2), steps
    )
    closed_form = linear_toy.hidden_layer(linear_toy.limit(init, teacher, kind))
    columns_KxM = linear_toy.aux_columns(init, kind)
    teacher_move = linear_toy.hidden_move(init, teacher)
    mismatch = jnp.linalg.norm(
        (linear_toy.hidden_layer(student) - linear_toy.hidden_layer(teacher)) @ columns_KxM
    ) / jnp.linalg.norm(teacher_move @ columns_KxM)
    assert float(mismatch) < MATCH  # converged: its auxiliary logits are the teacher's
    assert distance(student, closed_form, jnp.linalg.norm(teacher_move)) > WRONG / 2
    start_D1xK = linear_toy.hidden_layer(init)
    assert distance(student, start_D1xK, 1.0) > float(jnp.linalg.norm(closed_form - start_D1xK))


@float64
def test_identity_activation_gives_an_affine_network():
    config = Config(activation="identity", hidden=(8, 8), init="torch")  # torch: nonzero biases
    network = network_for(config, input_dim=5, param_dtype=jnp.float64)
    params = network.init(jax.random.key(8))
    x, y = jax.random.normal(jax.random.key(9), (2, 4, 5))
    a, b = 0.7, -1.9

    def affine_gap(net):
        combined = net.apply(params, a * x + b * y)
        expected = a * net.apply(params, x) + b * net.apply(params, y)
        expected = expected + (1 - a - b) * net.apply(params, jnp.zeros((1, 5)))
        return float(jnp.abs(combined - expected).max())

    assert affine_gap(network) < 1e-12
    relu = network_for(config.replace(activation="relu"), input_dim=5, param_dtype=jnp.float64)
    assert affine_gap(relu) > 1e-3  # the same check fails for a network that is not affine
    with pytest.raises(ConfigError):
        Config(activation="linear")


def test_the_closed_form_refuses_what_it_does_not_cover():
    deep = network_for(Config(activation="identity", hidden=(4, 4)), input_dim=3)
    relu = network_for(Config(hidden=(4,)), input_dim=3)
    for network in (deep, relu):
        with pytest.raises(ValueError, match="identity activation"):
            linear_toy.make_imitate(network, optax.sgd(0.1), kind="mse", batch_size=8)
    with pytest.raises(ValueError, match="two layers"):
        linear_toy.aux_columns(deep.init(jax.random.key(0)), "mse")
    with pytest.raises(ValueError, match="unknown imitation loss"):
        linear_toy.expected_fraction(3, 16, "xent")
