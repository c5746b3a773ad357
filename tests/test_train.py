import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_toy.config import Config
from sublim_toy.losses import imitation_loss
from sublim_toy.model import network_for, preprocess
from sublim_toy.train import (
    init_optimizer,
    make_evaluate,
    make_student_epoch,
    make_teacher_epoch,
    noise_batch_order,
)

CONFIG = Config(hidden=(32,), batch_size=64, noise_images=256, learning_rate=3e-3)


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
    trained, _, _ = epoch(
        params, init_optimizer(CONFIG, params), shuffle_keys, 0, images, seed_labels
    )
    trained, _, _ = epoch(
        trained, init_optimizer(CONFIG, params), shuffle_keys, 1, images, seed_labels
    )
    after = evaluate(trained, images, labels)
    assert np.all(after > 0.9) and np.all(before < 0.3)

    for i in range(2):
        alone = _index(params, slice(i, i + 1))
        alone_trained, _, _ = epoch(
            alone,
            init_optimizer(CONFIG, alone),
            shuffle_keys[i : i + 1],
            0,
            images,
            seed_labels[:1],
        )
        together, _, _ = epoch(
            params, init_optimizer(CONFIG, params), shuffle_keys, 0, images, seed_labels
        )
        for a, b in zip(jax.tree.leaves(alone_trained), jax.tree.leaves(together), strict=True):
            np.testing.assert_allclose(a[0], b[i], rtol=1e-5, atol=1e-6)


def _student_epoch_setup(config, outputs, teacher, students):
    seeds = jax.tree.leaves(teacher)[0].shape[0]
    network = network_for(config)
    opts = {name: init_optimizer(config, params) for name, params in students.items()}
    epoch = make_student_epoch(network, config, outputs)
    noise_keys = jax.random.split(jax.random.key(2), seeds)
    order_keys = jax.random.split(jax.random.key(3), seeds)
    return epoch(students, opts, teacher, noise_keys, order_keys, 0, None, None)


def test_students_move_towards_their_teacher():
    network = network_for(CONFIG)
    teacher = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 2))
    stranger = jax.vmap(network.init)(jax.random.split(jax.random.key(1), 2))
    outputs = {"aux": "aux", "all": "all"}
    students = {"aux": stranger, "all": stranger}
    config = CONFIG.replace(noise_images=32 * 64)
    trained, _, _, _ = _student_epoch_setup(config, outputs, teacher, students)

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
    trained, _, losses, _ = _student_epoch_setup(
        config, {"copy": "all"}, teacher, {"copy": teacher}
    )
    for a, b in zip(jax.tree.leaves(trained["copy"]), jax.tree.leaves(teacher), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(losses["copy"], 0.0)


def test_every_epoch_visits_each_noise_batch_once_in_a_new_order():
    order_key = jax.random.key(6)
    orders = [noise_batch_order(order_key, epoch, 58).tolist() for epoch in range(3)]
    assert all(sorted(order) == list(range(58)) for order in orders)
    assert len({tuple(order) for order in orders}) == 3


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
    opts = {"s": init_optimizer(config, student, frozen)}
    epoch = make_student_epoch(network, config, {"s": "all"}, frozen_layers={"s": frozen})
    keys = jax.random.split(jax.random.key(2), 2)
    trained = epoch({"s": student}, opts, teacher, keys, keys, 0, None, None)[0]["s"]
    for layer in range(2):
        for leaf in ("kernel", "bias"):
            before = np.asarray(student["layers"][layer][leaf][...])
            after = np.asarray(trained["layers"][layer][leaf][...])
            assert np.array_equal(before, after) == (layer in frozen), (layer, leaf)
