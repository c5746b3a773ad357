import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_toy import host_memory, train
from sublim_toy.host_memory import release_free_memory


def _resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or host_memory._malloc_trim() is None,
    reason="malloc_trim is glibc's",
)
def test_freed_heap_pages_go_back_to_the_os():
    # 2000 blocks of 96 KiB, under glibc's mmap threshold, so they come from the heap; keeping
    # the last one alive pins the heap's top, so free() alone cannot shrink it.
    blocks = [np.ones(96 * 1024, np.uint8) for _ in range(2000)]
    last = blocks[-1]
    del blocks
    held = _resident_mb()
    assert release_free_memory()
    assert held - _resident_mb() > 100  # of the 187 MB freed
    assert last.sum() == last.size


def test_every_epoch_of_a_phase_hands_its_memory_back(monkeypatch):
    calls = []
    monkeypatch.setattr(train, "release_free_memory", lambda: calls.append(1))
    epoch = jax.jit(lambda state, epoch, shared: (state + 1, {}))
    run = train.run_phase(epoch, jnp.zeros(()), None, epochs=3)
    assert int(run.state) == 3 and len(calls) == 3
