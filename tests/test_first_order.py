import jax
import jax.numpy as jnp
import numpy as np

from sublim_toy.first_order import linearised_logits
from sublim_toy.model import Network


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
