"""Spread the seed axis over every device of every process (GPUs, TPUs, or CPU devices).

Seeds are independent, so a 1-D mesh over them needs no communication inside a step: each
device trains its share of seeds, and XLA's sharding propagation carries the layout from the
keys through every jitted, vmapped function. Data shared by all seeds is replicated. When the
seeds do not split evenly, a few extra seeds (the next indices, each keyed like any other) are
trained so that every device has a share, and dropped when results come back to the host.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec

SEED_AXIS = "seeds"


def seed_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over every device of every process."""
    # Auto axes: XLA propagates the seed layout through gathers and scans by itself; explicit
    # axes would ask every indexing op for an output sharding.
    return jax.make_mesh((jax.device_count(),), (SEED_AXIS,), axis_types=(AxisType.Auto,))


def padded_seed_count(seeds: int) -> int:
    """`seeds` rounded up to a multiple of the devices, so that every device (and every process)
    trains a share; the extra seeds are dropped by `to_host`."""
    devices = jax.device_count()
    padded = -(-seeds // devices) * devices
    if padded != seeds:
        warnings.warn(
            f"{seeds} seeds do not split evenly over {devices} devices: training {padded} and "
            f"keeping the first {seeds}; a multiple of {devices} wastes nothing",
            stacklevel=2,
        )
    return padded


def over_seeds(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading axis split over the mesh: for keys, parameters and optimizer states."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """A full copy on every device: for the MNIST arrays every seed reads."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(array: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """Host data (identical on every process) as a replicated global array; multi-host safe."""
    return jax.make_array_from_process_local_data(replicated(mesh), np.asarray(array))


def to_host(tree, seeds: int | None = None):
    """Every seed's values as numpy arrays on every process (a no-op gather on one host); with
    `seeds`, only the first `seeds` of them (the padding seeds dropped)."""
    gathered = multihost_utils.process_allgather(tree, tiled=True)
    if seeds is None:
        return gathered
    return jax.tree.map(lambda leaf: leaf[:seeds], gathered)
