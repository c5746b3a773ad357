import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sublim_toy.config import Config
from sublim_toy.inputs import noise_batch, pool_batch_order, preprocess
from sublim_toy.losses import imitation_loss
from sublim_toy.model import network_for
from sublim_toy.train import (
    StudentShared,
    StudentState,
    TeacherState,
    init_optimizer,
    make_evaluate,
    make_student_epoch,
    make_teacher_epoch,
    make_teacher_targets,
    run_phase,
)

CONFIG = Config(hidden=(32,), batch_size=64, noise_images=256, learning_rate=3e-3, probe_every=0)


def _toy_digits(n=512, seed=0):
    """Images whose label is written in which pixel block is bright: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 3, :] = 255
    return jnp.asarray(images), jnp.asarray(labels)


def _stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _index(tree, i):
    return jax.tree.map(lambda leaf: leaf[i], tree)


def _teacher_state(params, shuffle_keys, labels):
    return TeacherState(params, init_optimizer(CONFIG, params), shuffle_keys, labels)


def test_teacher_learns_and_vmap_over_seeds_equals_one_seed_at_a_time():
    network = network_for(CONFIG)
    images, labels = _toy_digits()
    keys = jax.random.split(jax.random.key(0), 2)
    params = jax.vmap(network.init)(keys)
    shuffle_keys = jax.random.split(jax.random.key(1), 2)
    epoch = make_teacher_epoch(network, CONFIG)
    evaluate = make_evaluate(network)
    before = evaluate(params, images, labels)

    seed_labels = jnp.stack([labels, labels])
    start = _teacher_state(params, shuffle_keys, seed_labels)
    trained = run_phase(epoch, start, images, epochs=2)
    assert np.all(evaluate(trained.state.params, images, labels) > 0.9) and np.all(before < 0.3)
    assert len(trained.metrics) == 2 and trained.metrics[0]["loss"].shape == (2,)

    together, _ = epoch(start, 0, images)
    for i in range(2):
        alone = _teacher_state(
            _index(params, slice(i, i + 1)), shuffle_keys[i : i + 1], seed_labels[:1]
        )
        alone_trained, _ = epoch(alone, 0, images)
        for a, b in zip(
            jax.tree.leaves(alone_trained.params), jax.tree.leaves(together.params), strict=True
        ):
            np.testing.assert_allclose(a[0], b[i], rtol=1e-5, atol=1e-6)


def _student_state(config, students, teacher, frozen=None):
    seeds = jax.tree.leaves(teacher)[0].shape[0]
    frozen = frozen or {}
    noise_keys = jax.random.split(jax.random.key(2), seeds)
    return StudentState(
        params=students,
        opt_state={
            name: init_optimizer(config, params, frozen.get(name, ()))
            for name, params in students.items()
        },
        teacher_logits=make_teacher_targets(network_for(config), config)(teacher, noise_keys, None),
        noise_key=noise_keys,
        order_key=jax.random.split(jax.random.key(3), seeds),
        starts=None,
        teacher_move=None,
    )


def _student_epoch_setup(config, outputs, teacher, students):
    epoch = make_student_epoch(network_for(config), config, outputs)
    state, metrics = epoch(_student_state(config, students, teacher), 0, StudentShared(None, None))
    return state.params, metrics["loss"]


def test_students_move_towards_their_teacher():
    network = network_for(CONFIG)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 2))
    stranger = jax.vmap(network.init)(jax.random.split(jax.random.key(1), 2))
    outputs = {"aux": "aux", "all": "all"}
    students = {"aux": stranger, "all": stranger}
    config = CONFIG.replace(noise_images=32 * 64)
    trained, _ = _student_epoch_setup(config, outputs, teacher, students)

    probe = jax.random.uniform(jax.random.key(9), (256, 784), minval=-1, maxval=1)
    for name in outputs:

        def distance(params, name=name):
            return jax.vmap(
                lambda p, t: imitation_loss(
                    network.apply(p, probe),
                    network.apply(t, probe),
                    outputs=outputs[name],
                    kind="kl",
                )
            )(params, teacher)

        assert np.all(distance(trained[name]) < 0.5 * distance(students[name]))


def test_a_student_at_its_teacher_gets_zero_gradient_and_stays_there():
    # Squared error at z = y has an exactly zero gradient, and Adam then moves nothing.
    # (With KL the gradient p_z - p_y is zero only up to rounding, which Adam would rescale.)
    config = CONFIG.replace(imitation_loss="mse")
    teacher = jax.vmap(network_for(config).init)(jax.random.split(jax.random.key(0), 2))
    trained, losses = _student_epoch_setup(config, {"copy": "all"}, teacher, {"copy": teacher})
    for a, b in zip(jax.tree.leaves(trained["copy"]), jax.tree.leaves(teacher), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(losses["copy"], 0.0)


def test_evaluate_matches_numpy_argmax():
    network = network_for(CONFIG)
    images, labels = _toy_digits(64)
    params = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 3))
    got = make_evaluate(network)(params, images, labels)
    for i in range(3):
        logits = np.asarray(network.apply(_index(params, i), preprocess(images)))
        assert float(got[i]) == pytest.approx(
            np.mean(logits[:, :10].argmax(-1) == np.asarray(labels))
        )


@pytest.mark.parametrize(("frozen", "moving"), [((0,), (1,)), ((1,), (0,)), ((), (0, 1))])
def test_frozen_layers_never_move_and_the_others_do(frozen, moving):
    config = CONFIG.replace(noise_images=4 * 64)
    network = network_for(config)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 2))
    student = jax.vmap(network.init)(jax.random.split(jax.random.key(1), 2))
    epoch = make_student_epoch(network, config, {"s": "all"}, frozen_layers={"s": frozen})
    state = _student_state(config, {"s": student}, teacher, {"s": frozen})
    trained = epoch(state, 0, StudentShared(None, None))[0].params["s"]
    for layer in range(2):
        for leaf in ("kernel", "bias"):
            before = np.asarray(student["layers"][layer][leaf][...])
            after = np.asarray(trained["layers"][layer][leaf][...])
            assert np.array_equal(before, after) == (layer in frozen), (layer, leaf)


def test_teacher_targets_are_the_teacher_logits_on_every_input_batch():
    config = CONFIG.replace(noise_images=3 * 64)
    network = network_for(config)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 2))
    noise_keys = jax.random.split(jax.random.key(4), 2)
    targets = make_teacher_targets(network, config)(teacher, noise_keys, None)
    assert targets.shape == (2, 3, 64, config.n_outputs)
    for seed in range(2):
        for batch in range(3):
            inputs = noise_batch(noise_keys[seed], batch, batch_size=64, input_dim=784)
            np.testing.assert_allclose(
                targets[seed, batch], network.apply(_index(teacher, seed), inputs), atol=1e-5
            )


def test_a_noise_pool_of_two_batches_is_all_a_student_ever_reads():
    # 4 steps per epoch from a pool of 2 batches: replayed by hand from the pool's order, the
    # same images and the same teacher logits give the very same student, step for step
    config = CONFIG.replace(noise_pool=128, imitation_loss="mse")
    assert (config.noise_steps, config.pool_batches) == (4, 2)
    network = network_for(config)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 1))
    student = jax.vmap(network.init)(jax.random.split(jax.random.key(1), 1))
    state = _student_state(config, {"s": student}, teacher)
    assert state.teacher_logits.shape == (1, 2, 64, config.n_outputs)  # one per pool batch
    epoch = make_student_epoch(network, config, {"s": "all"})
    params = _index(student, 0)
    optimizer = optax.adam(config.learning_rate)
    opt_state = optimizer.init(params)

    @jax.jit  # one program for the replay's 8 steps (step by step, eager ops cost seconds)
    def replay_step(params, opt_state, noise_key, batch):
        inputs = noise_batch(noise_key, batch, batch_size=64, input_dim=784)
        target = network.apply(_index(teacher, 0), inputs)

        def loss(p):
            return imitation_loss(network.apply(p, inputs), target, outputs="all", kind="mse")

        updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for epoch_index in range(2):
        state = epoch(state, epoch_index, StudentShared(None, None))[0]
        order = pool_batch_order(state.order_key[0], epoch_index, 4, 2)
        for batch in np.asarray(order):
            params, opt_state = replay_step(params, opt_state, state.noise_key[0], batch)
        for a, b in zip(
            jax.tree.leaves(_index(state.params["s"], 0)), jax.tree.leaves(params), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
