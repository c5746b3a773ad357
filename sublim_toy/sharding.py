"""Spread the seed axis over every local device (GPUs, TPUs, or forced CPU devices).

Seeds are independent, so a 1-D mesh over them needs no communication inside a step: each
device trains its share of seeds, and XLA's sharding propagation carries the layout from the
keys through every jitted, vmapped function. Data shared by all seeds is replicated.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec

SEED_AXIS = "seeds"


def seed_mesh(seeds: int) -> jax.sharding.Mesh:
    """A 1-D mesh over the most devices that divide `seeds` evenly (all of them, ideally)."""
    available = jax.device_count()
    used = max(d for d in range(1, available + 1) if seeds % d == 0)
    if used < available:
        warnings.warn(
            f"{seeds} seeds do not split evenly over {available} devices; using {used}. "
            f"Pick a multiple of {available} to use them all.",
            stacklevel=2,
        )
    # Auto axes: XLA propagates the seed layout through gathers and scans by itself; explicit
    # axes would ask every indexing op for an output sharding.
    return jax.make_mesh(
        (used,), (SEED_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:used]
    )


def over_seeds(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading axis split over the mesh: for keys, parameters and optimizer states."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """A full copy on every device: for the MNIST arrays every seed reads."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(array: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """Host data (identical on every process) as a replicated global array; multi-host safe."""
    return jax.make_array_from_process_local_data(replicated(mesh), np.asarray(array))


def to_host(tree):
    """Every seed's values as numpy arrays on every process (a no-op gather on one host)."""
    return multihost_utils.process_allgather(tree, tiled=True)
