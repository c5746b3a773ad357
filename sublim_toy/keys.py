"""Every random stream of a run, derived from one root key and named by its purpose.

Seed i of a run uses `fold_in(key(config.seed), i)`, so its numbers do not depend on how many
seeds run beside it; each purpose then folds in its own `Stream` tag, so adding a consumer never
shifts another's stream. The Theorem 1 check draws its network and data like seed 0 of a run.
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp


@enum.unique
class Stream(enum.IntEnum):
    """What a key is for: the tag folded into a seed's key (values are part of the results)."""

    REFERENCE_INIT = 0  # the shared init: reference, teacher and shared-init students
    INDEPENDENT_INIT = 1  # the cross-model students' init (and other independent inits)
    TEACHER_SHUFFLE = 2  # the teacher's batch order, one permutation per epoch
    NOISE = 3  # the students' inputs: batch b is a pure function of (key, b)
    NOISE_ORDER = 4  # the order in which an epoch visits the students' input batches
    LABEL_SHUFFLE = 5  # a shuffled-label teacher's fixed relabelling of the training set
    TEACHER_BATCH = 6  # the theorem check's batch of training digits for L_T
    PERTURBATION = 7  # the noise added to the shared-init students' start (Config.perturb)
    RANDOM_DIRECTION = 8  # the causal test's control: the random direction removed (projection)


def seed_keys(root_seed: int, seeds: int, sharding: jax.sharding.Sharding | None = None):
    """One key per seed: fold_in(key(root_seed), i) for i < seeds, laid out by `sharding`."""

    def make_keys():
        root = jax.random.key(root_seed)
        return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(root, jnp.arange(seeds))

    return jax.jit(make_keys, out_shardings=sharding)()


def stream(keys, purpose: Stream):
    """Each seed's key for one purpose (keys [S] -> [S])."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, int(purpose))
