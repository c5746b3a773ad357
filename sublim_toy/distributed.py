"""One run across several processes, on JAX's own distributed runtime.

Every process runs the same command. `join` connects them (`jax.distributed.initialize`, before
any JAX computation); from then on the seed axis spans every device of every process
(sharding.py), each process feeds its devices from its own copy of the data, and results are
gathered to every process with `process_allgather`. Only process 0 prints and writes files.

A process that dies must not leave the others waiting forever: the coordination service
declares a silent peer dead after HEARTBEAT_S and stops the others, and on the CPU a
collective gives up after COLLECTIVE_TIMEOUT_S; either way the survivors exit with one line
(cli.py) instead of hanging.
"""

from __future__ import annotations

from typing import NamedTuple

from sublim_toy import default_xla_flag
from sublim_toy.errors import UserError

HEARTBEAT_S = 20  # a peer silent this long is dead
JOIN_TIMEOUT_S = 120  # every process must have joined within this long
COLLECTIVE_TIMEOUT_S = 60  # a CPU collective waiting this long on a peer gives up
# What `jax.distributed.initialize()` reads when it detects the cluster on its own.
DETECTED_FROM = "SLURM (srun), Open MPI (mpirun), Kubernetes/JobSet, or Cloud TPU"


class Join(NamedTuple):
    """How this process joins a run: the coordinator's HOST:PORT, the number of processes and
    this one's index, each None where JAX's cluster detection is to fill it in."""

    coordinator: str | None
    num_processes: int | None
    process_id: int | None


def join(how: Join) -> None:
    """Join the run before any JAX computation. CPU devices talk over gloo."""
    import jax

    explicit = (how.coordinator, how.num_processes, how.process_id)
    if any(value is not None for value in explicit) and None in explicit:
        raise UserError(
            "--coordinator, --num-processes and --process-id go together (or give none and "
            f"--distributed, to detect them from {DETECTED_FROM})"
        )
    if how.num_processes is not None and how.num_processes < 1:
        raise UserError(f"--num-processes {how.num_processes}: must be at least 1")
    if how.num_processes is not None and not 0 <= how.process_id < how.num_processes:
        raise UserError(
            f"--process-id {how.process_id}: must be in 0..{how.num_processes - 1} "
            f"(--num-processes {how.num_processes})"
        )
    default_xla_flag("--xla_cpu_collective_timeout_seconds", COLLECTIVE_TIMEOUT_S)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=how.coordinator,
            num_processes=how.num_processes,
            process_id=how.process_id,
            initialization_timeout=JOIN_TIMEOUT_S,
            heartbeat_timeout_seconds=HEARTBEAT_S,
        )
    except ValueError as err:  # nothing detected and nothing given
        raise UserError(
            f"--distributed found no cluster ({err}): run it under {DETECTED_FROM}, or give "
            "--coordinator HOST:PORT --num-processes N --process-id I"
        ) from None


def is_main_process() -> bool:
    """Process 0 prints and writes; a run in one process is its own process 0."""
    import jax

    return jax.process_index() == 0


def agree_with_main(flags: list[bool]) -> list[bool]:
    """Process 0's `flags`, on every process (each may see other files): all then train the same
    points. The identity in a run of one process."""
    import jax

    if jax.process_count() == 1:
        return flags
    import numpy as np
    from jax.experimental import multihost_utils

    agreed = multihost_utils.broadcast_one_to_all(np.asarray(flags, np.int32))
    return [bool(flag) for flag in np.asarray(agreed)]
