"""The causal test of the alignment: remove one direction from every student update.

Theorem 1 (section 6.1, Appendix C) says a shared-init student's step is aligned with the
teacher's (dS.dT = eps A + O(eps^2), A >= 0), and the students' moves stay aligned over a whole
run (probes.py). Whether that alignment *causes* the transfer is a separate question: remove
from every update u of the shared-init students its component along a direction d,

    u <- u - (u.d) d / |d|^2,

after the optimizer, so that the applied step (and, for a fixed d, the whole displacement) is
orthogonal to d. With d the teacher's move theta_T - theta_T(0), or the teacher's gradient
grad L_T at the student's current parameters (the "trait gradient" of Kitkana & Arora, arXiv
2604.25779, who project only while the two align), a student whose transfer is caused by the
alignment should stay at chance while its imitation loss falls as fast as before. The control
removes a fixed random direction of the same norm; cross-model students are never projected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from sublim_toy.config import Config
from sublim_toy.data import Dataset
from sublim_toy.keys import Stream, stream
from sublim_toy.losses import teacher_loss
from sublim_toy.model import Network, Params
from sublim_toy.probes import probe_images
from sublim_toy.results import STUDENTS


def project_out(update: Params, direction: Params):
    """(update - (update.d) d / |d|^2, |update.d| / (|update| |d|)): the update without its
    component along d, and the fraction of its norm that component had (|cos(update, d)|).

    A zero d removes nothing. The component is removed twice (Gram-Schmidt's "twice is
    enough"): in float32 one pass leaves a residual of the order of the rounding of u.d itself,
    the second brings u'.d down to the rounding of a dot product of nearly orthogonal vectors.
    """
    d_squared = otu.tree_vdot(direction, direction)
    safe = jnp.where(d_squared > 0, d_squared, 1.0)
    dot = otu.tree_vdot(update, direction)
    projected = update
    for _ in range(2):
        coefficient = jnp.where(d_squared > 0, otu.tree_vdot(projected, direction) / safe, 0.0)
        projected = otu.tree_add_scale(projected, -coefficient, direction)
    norms = otu.tree_norm(update) * jnp.sqrt(d_squared)
    removed = jnp.where(norms > 0, jnp.abs(dot) / jnp.where(norms > 0, norms, 1.0), 0.0)
    return projected, removed


def random_direction(key, like: Params, norm) -> Params:
    """A Gaussian direction shaped like `like` (every leaf), scaled to norm `norm`: the
    control's d, drawn once per seed and fixed for the whole run."""
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    drawn = [
        jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)
    ]
    direction = jax.tree.unflatten(treedef, drawn)
    return otu.tree_scale(norm / otu.tree_norm(direction), direction)


def teacher_gradient(network: Network, params: Params, digits) -> Params:
    """grad L_T at `params`: the teacher's loss (cross-entropy of the regular logits) on fixed
    training digits (images [N, D] in [-1, 1], labels [N])."""
    images, labels = digits
    return jax.grad(lambda p: teacher_loss(network.apply(p, images), labels))(params)


def projected_students(config: Config) -> tuple[str, ...]:
    """The students whose updates are projected: the shared-init ones, when project_out asks."""
    if config.project_out == "none":
        return ()
    return tuple(name for name, (source, _) in STUDENTS.items() if source == "shared")


def fixed_directions(config: Config, keys, teacher_move: Params) -> Params | None:
    """Each seed's fixed d [S]: theta_T - theta_T(0) ("teacher_move"), a Gaussian direction of
    that norm from `Stream.RANDOM_DIRECTION` ("random"); None where d is not fixed
    ("teacher_gradient" follows the student) or nothing is removed."""
    if config.project_out == "teacher_move":
        return teacher_move
    if config.project_out != "random":
        return None
    draw = jax.vmap(lambda key, move: random_direction(key, move, otu.tree_norm(move)))
    return jax.jit(draw, out_shardings=keys.sharding)(
        stream(keys, Stream.RANDOM_DIRECTION), teacher_move
    )


def gradient_digits(config: Config, dataset: Dataset):
    """The digits on which "teacher_gradient" takes grad L_T: the probes' fixed training images
    (the first 1024), so the direction removed is the one that would lower the very L_T the
    probes report; None for the other settings."""
    if config.project_out != "teacher_gradient":
        return None
    images = probe_images(dataset)
    return images.train_x, images.train_y
