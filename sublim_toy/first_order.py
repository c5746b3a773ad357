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

from sublim_toy.losses import chunked_accuracies
from sublim_toy.model import Network, Params


def start_and_linearised_logits(network: Network, start_params: Params, params: Params, inputs_BxD):
    """(f(theta0, x), f(theta0, x) + J(theta0, x) (theta - theta0)): the logits at the start and
    to first order around it, from one JVP (its primal output is the forward pass at theta0).
    Any float dtype."""
    displacement = jax.tree.map(jnp.subtract, params, start_params)
    logits, change = jax.jvp(
        lambda p: network.apply(p, inputs_BxD), (start_params,), (displacement,)
    )
    return logits, logits + change


def linearised_logits(network: Network, start_params: Params, params: Params, inputs_BxD):
    """f(theta0, x) + J(theta0, x) (theta - theta0): the logits to first order around theta0."""
    return start_and_linearised_logits(network, start_params, params, inputs_BxD)[1]


def make_first_order_evaluate(network: Network) -> Callable:
    """evaluate(starts[S], params[S], images uint8 [N, 28, 28], labels [N]) -> ([S] test
    accuracies at the start, [S] first-order predictions of the accuracy at `params`): both from
    the same JVP, so the start's forward pass is not run twice; the images in chunks
    (`losses.chunked_accuracies`)."""

    def one_seed(start, params, images, labels):
        return chunked_accuracies(
            lambda x: start_and_linearised_logits(network, start, params, x), images, labels
        )

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, None, None)))
