import jax
import jax.numpy as jnp
import numpy as np

from sublim_toy.config import Config
from sublim_toy.first_order import (
    linearised_logits,
    make_first_order_evaluate,
    start_and_linearised_logits,
)
from sublim_toy.inputs import preprocess
from sublim_toy.losses import accuracy
from sublim_toy.model import Network, network_for
from sublim_toy.train import make_evaluate


def test_linearised_logits_are_exact_along_the_head_and_second_order_elsewhere():
    network = Network((784, 32, 32, 13), "tanh", "normal")  # smooth: no kinks to cross
    start = network.init(jax.random.key(0))
    other = network.init(jax.random.key(1))
    inputs = jax.random.uniform(jax.random.key(2), (64, 784), minval=-1, maxval=1)

    def moved(scale, layers):
        return jax.tree_util.tree_map_with_path(
            lambda path, a, b: a + scale * (b - a) if path[1].key in layers else a, start, other
        )

    # the logits are linear in the output layer: first order is the whole story there
    head_moved = moved(0.5, (2,))
    np.testing.assert_allclose(
        linearised_logits(network, start, head_moved, inputs),
        network.apply(head_moved, inputs),
        rtol=1e-5,
        atol=1e-5,
    )
    # elsewhere the error is O(displacement^2): shrinking the move 10x shrinks it ~100x
    errors = [
        float(
            jnp.max(
                jnp.abs(
                    linearised_logits(network, start, moved(scale, (0, 1)), inputs)
                    - network.apply(moved(scale, (0, 1)), inputs)
                )
            )
        )
        for scale in (1e-1, 1e-2)
    ]
    assert errors[0] > 0 and 30 < errors[0] / errors[1] < 300


def test_the_accuracy_at_the_start_comes_with_the_prediction_and_equals_a_forward_pass():
    # evaluate() takes every student's accuracy at step 0 from the JVP's primal output
    # instead of a forward pass of its own: the two must give the same accuracies.
    network = Network((784, 32, 13), "relu", "normal")
    keys = jax.random.split(jax.random.key(0), 3)
    starts = jax.vmap(network.init)(keys)
    moved = jax.tree.map(lambda leaf: leaf + 0.05, starts)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (200, 28, 28)).astype(np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, 200).astype(np.uint8))
    at_start, predicted = make_first_order_evaluate(network)(starts, moved, images, labels)
    np.testing.assert_array_equal(at_start, make_evaluate(network)(starts, images, labels))
    assert not np.array_equal(at_start, predicted)  # the pair is not one value twice


def test_the_evaluation_in_chunks_needs_a_fraction_of_the_temporaries_of_all_at_once():
    # The first-order evaluation of 8 seeds on MNIST's 10 000 test images was the largest set
    # of temporaries of a run, and set its peak memory. Compiled, not run.
    network = network_for(Config())
    starts = jax.vmap(network.init)(jax.random.split(jax.random.key(0), 8))
    images = jax.ShapeDtypeStruct((10_000, 28, 28), jnp.uint8)
    labels = jax.ShapeDtypeStruct((10_000,), jnp.uint8)

    def all_at_once(start, params, images, labels):
        x = preprocess(images)
        return tuple(
            accuracy(z, labels) for z in start_and_linearised_logits(network, start, params, x)
        )

    def temporaries_mb(evaluate):
        compiled = evaluate.lower(starts, starts, images, labels).compile()
        return compiled.memory_analysis().temp_size_in_bytes / 2**20

    chunked = temporaries_mb(make_first_order_evaluate(network))
    whole = temporaries_mb(jax.jit(jax.vmap(all_at_once, in_axes=(0, 0, None, None))))
    assert chunked < whole / 4, (chunked, whole)
