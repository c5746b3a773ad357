"""The first-order (linearised) prediction of a whole run.

Theorem 1 (section 6.1, Appendix C, step 2) expands the network to first order around its init
for one small step. Applied to the update a student actually made over a whole run, the same
expansion asks how much of what the student's outputs became is the linear image, through the
Jacobian at its init, of how far its parameters moved: where predicted and measured accuracy
agree, the first-order picture is the whole story.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from sublim_toy.inputs import preprocess
from sublim_toy.losses import accuracy
from sublim_toy.model import Network, Params


def linearised_logits(network: Network, start_params: Params, params: Params, inputs_BxD):
    """f(theta0, x) + J(theta0, x) (theta - theta0): the logits to first order around theta0.

    One JVP; any float dtype.
    """
    displacement = jax.tree.map(jnp.subtract, params, start_params)
    logits, change = jax.jvp(
        lambda p: network.apply(p, inputs_BxD), (start_params,), (displacement,)
    )
    return logits + change


def linearised_accuracy(network: Network, start_params, params, inputs_BxD, labels_B):
    """Test accuracy of `linearised_logits`' regular logits: the first-order prediction."""
    return accuracy(linearised_logits(network, start_params, params, inputs_BxD), labels_B)


def make_first_order_evaluate(network: Network) -> Callable:
    """predicted(starts[S], params[S], images uint8 [N, 28, 28], labels [N]) -> [S] accuracies."""

    def one_seed(start, params, images, labels):
        return linearised_accuracy(network, start, params, preprocess(images), labels)

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, None, None)))
